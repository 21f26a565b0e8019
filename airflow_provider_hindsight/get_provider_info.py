"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_hindsight import __version__


def get_provider_info() -> dict[str, Any]:
    """Describe the provider, its hook and the ``hindsight`` connection type with its form fields."""
    return {
        "package-name": "airflow-provider-hindsight",
        "name": "Hindsight",
        "description": "Push warehouse context to Hindsight win-loss interviews (https://usehindsight.com/).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Hindsight",
                "external-doc-url": "https://docs.usehindsight.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Hindsight",
                "python-modules": ["airflow_provider_hindsight.hooks.hindsight"],
            }
        ],
        "operators": [
            {
                "integration-name": "Hindsight",
                "python-modules": ["airflow_provider_hindsight.operators.hindsight"],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "Common SQL",
                "target-integration-name": "Hindsight",
                "python-module": "airflow_provider_hindsight.transfers.sql_to_hindsight",
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_hindsight.hooks.hindsight.HindsightHook",
                "hook-name": "Hindsight",
                "connection-type": "hindsight",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"password": "API key", "host": "Base URL"},
                    "placeholders": {
                        "host": "https://app.usehindsight.com/api/v1",
                        "password": "Your Hindsight API key",
                        "plan": "essentials",
                        "requests_per_minute": "60",
                        "timeout": "30",
                        "max_retries": "5",
                    },
                },
                "conn-fields": {
                    "plan": {
                        "label": "Plan",
                        "schema": {"type": ["string", "null"], "enum": ["essentials", "growth", "enterprise"]},
                        "description": "Optional. Your Hindsight plan: paces requests at 60, 300 or 1,000 a "
                        "minute. Without a plan or requests per minute the pace is 60 a minute.",
                    },
                    "requests_per_minute": {
                        "label": "Requests per minute",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                        "description": "Optional. Explicit pace; wins over the plan.",
                    },
                    "timeout": {
                        "label": "Timeout",
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
                        "description": "Optional. Seconds to wait for each answer. Default 30.",
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                        "description": "Optional. Retries after the first attempt on 429, 5xx and network "
                        "errors. Default 5.",
                    },
                    "allow_insecure_http": {
                        "label": "Allow plain HTTP to a remote host",
                        "schema": {"type": ["boolean", "null"]},
                        "description": "Sends the API key unencrypted: trusted networks only. Loopback "
                        "(127.0.0.1, localhost) needs no flag.",
                    },
                },
            }
        ],
    }
