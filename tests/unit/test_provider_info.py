"""How Airflow finds the provider: ``get_provider_info()``, the entry point, ProvidersManager and the form."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pytest
from airflow.providers_manager import ProvidersManager

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.get_provider_info import get_provider_info
from airflow_provider_hindsight.hooks.hindsight import HindsightHook

PACKAGE = "airflow-provider-hindsight"
EXTRAS = (
    "plan",
    "requests_per_minute",
    "timeout",
    "max_retries",
    "allow_insecure_http",
    "budget_conn_id",
    "budget_table",
    "history_conn_id",
    "history_table",
    "history_retention_days",
)
PLANS = ["essentials", "growth", "enterprise"]


@pytest.fixture
def connection_type() -> dict[str, Any]:
    (connection_type,) = get_provider_info()["connection-types"]
    return connection_type


def test_provider_info_describes_the_package() -> None:
    info = get_provider_info()

    assert info["package-name"] == PACKAGE
    assert info["name"]
    assert info["description"]
    assert info["versions"] == [__version__]


def test_connection_type_points_at_the_hook(connection_type: dict[str, Any]) -> None:
    module_name, _, class_name = connection_type["hook-class-name"].rpartition(".")
    module = __import__(module_name, fromlist=[class_name])

    assert connection_type["connection-type"] == HindsightHook.conn_type == "hindsight"
    assert getattr(module, class_name) is HindsightHook


def test_conn_fields_cover_every_extra_the_hook_reads(connection_type: dict[str, Any]) -> None:
    fields = connection_type["conn-fields"]

    assert sorted(fields) == sorted(EXTRAS)
    assert all(field["label"] and field["schema"]["type"] for field in fields.values())


def test_plan_is_a_dropdown_of_the_plans(connection_type: dict[str, Any]) -> None:
    schema = connection_type["conn-fields"]["plan"]["schema"]

    assert schema["enum"] == PLANS
    assert None not in schema["enum"]


def test_budget_extras_are_described_text_fields(connection_type: dict[str, Any]) -> None:
    fields = connection_type["conn-fields"]

    for name in ("budget_conn_id", "budget_table"):
        assert fields[name]["schema"] == {"type": ["string", "null"]}
        assert "budget" in fields[name]["description"]
    assert connection_type["ui-field-behaviour"]["placeholders"]["budget_table"] == "hindsight_rate_budget"


def test_history_extras_are_described(connection_type: dict[str, Any]) -> None:
    fields = connection_type["conn-fields"]

    for name in ("history_conn_id", "history_table"):
        assert fields[name]["schema"] == {"type": ["string", "null"]}
    assert fields["history_retention_days"]["schema"] == {"type": ["integer", "null"], "minimum": 1}
    assert connection_type["ui-field-behaviour"]["placeholders"]["history_table"] == "hindsight_runs"
    assert connection_type["ui-field-behaviour"]["placeholders"]["history_retention_days"] == "90"


def test_ui_field_behaviour(connection_type: dict[str, Any]) -> None:
    behaviour = connection_type["ui-field-behaviour"]

    assert {"login", "schema", "port"} <= set(behaviour["hidden-fields"])
    assert {"password", "host"} <= set(behaviour["relabeling"])
    assert behaviour["placeholders"]["host"] == "https://app.usehindsight.com/api/v1"
    assert connection_type["conn-fields"]["plan"]["schema"]["enum"] == list(PLANS)


def test_hook_form_behaviour_matches_the_provider_info(connection_type: dict[str, Any]) -> None:
    behaviour = connection_type["ui-field-behaviour"]

    assert HindsightHook.get_ui_field_behaviour() == {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def test_hook_form_widgets_match_the_conn_fields(connection_type: dict[str, Any]) -> None:
    """The Airflow 2.11 form (Flask AppBuilder) offers the same extras as the 3.x declarative fields."""
    pytest.importorskip("flask_appbuilder")
    assert sorted(HindsightHook.get_connection_form_widgets()) == sorted(connection_type["conn-fields"])


def test_entry_point_is_registered() -> None:
    (entry_point,) = [point for point in entry_points(group="apache_airflow_provider") if point.dist.name == PACKAGE]
    assert entry_point.load() is get_provider_info


def test_providers_manager_lists_the_provider_and_connection_type() -> None:
    manager = ProvidersManager()
    try:  # Airflow 3 serves hooks to tasks from the task SDK's manager
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:
        hooks = manager.hooks

    assert manager.providers[PACKAGE].version == __version__
    hook_info = hooks["hindsight"]
    assert hook_info.hook_class_name == f"{HindsightHook.__module__}.{HindsightHook.__name__}"
    assert hook_info.connection_testable
