"""The SQL connection errors name the provider package to install."""

from __future__ import annotations

import json

import pytest

from airflow_provider_hindsight.exceptions import HindsightConfigurationError
from airflow_provider_hindsight.sql_connection import provider_package, sql_hook


@pytest.mark.parametrize(
    ("conn_type", "package"),
    [
        ("postgres", "apache-airflow-providers-postgres"),
        ("mssql", "apache-airflow-providers-microsoft-mssql"),
        ("google_cloud_platform", "apache-airflow-providers-google"),
        ("no_such_type", None),
    ],
)
def test_provider_package_of_a_connection_type(conn_type: str, package: str | None) -> None:
    assert provider_package(conn_type) == package


def test_a_connection_whose_provider_is_missing_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.providers.common.sql")
    try:
        import airflow.providers.microsoft.mssql  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the mssql provider is installed: its connections have a hook")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_MSSQL", json.dumps({"conn_type": "mssql", "host": "db.example"}))

    with pytest.raises(HindsightConfigurationError) as raised:
        sql_hook("warehouse_mssql", parameter="sql_conn_id")

    message = str(raised.value)
    assert "sql_conn_id 'warehouse_mssql' (type 'mssql') gives no hook" in message
    assert "pip install apache-airflow-providers-microsoft-mssql" in message
