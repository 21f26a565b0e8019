"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.hooks.connection_form import conn_fields, ui_field_behaviour


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
                "python-modules": [
                    "airflow_provider_hindsight.operators.hindsight",
                    "airflow_provider_hindsight.operators.create",
                ],
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
                "ui-field-behaviour": ui_field_behaviour(),
                "conn-fields": conn_fields(),
            }
        ],
    }
