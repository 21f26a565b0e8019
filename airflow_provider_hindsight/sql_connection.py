"""The SQL hook behind an Airflow connection id, for the transfers' sources, the landing table and the ledgers.

One place turns ``sql_conn_id`` or ``ledger_conn_id`` into a common-sql ``DbApiHook``, and says
which parameter, which connection and what fix when it cannot. It lives outside ``hooks/`` (the
Hindsight API's hooks): the ledgers know no Hindsight transport.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_hindsight.exceptions import HindsightConfigurationError


def sql_hook(
    conn_id: str, *, parameter: str, purpose: str = "", hook_params: Mapping[str, Any] | None = None
) -> tuple[Any, Any]:
    """``(DbApiHook, Connection)`` for ``conn_id``; raises :class:`HindsightConfigurationError` naming ``parameter``.

    :param purpose: what the database is for, appended to the fix (e.g. ``" with write access"``).
    """
    try:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
    except ImportError:
        raise _error(
            f"{parameter} needs apache-airflow-providers-common-sql: pip install 'airflow-provider-hindsight[sql]'."
        ) from None
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise _error(
            f"{parameter} {conn_id!r} is not a defined Airflow connection. Fix: create it (Admin > Connections, "
            f"or an AIRFLOW_CONN_{conn_id.upper()} variable) pointing at a database{purpose}, or fix the id."
        ) from None
    try:
        hook = connection.get_hook(hook_params=dict(hook_params or {}))
    except Exception as error:
        package = provider_package(connection.conn_type)
        install = f"pip install {package}" if package else "install the provider package of that connection type"
        raise _error(
            f"{parameter} {conn_id!r} (type {connection.conn_type!r}) gives no hook: {error}. Fix: {install} "
            "where the tasks run (workers and the dag-processor), or use another SQL connection."
        ) from None
    if not isinstance(hook, DbApiHook):
        raise _error(
            f"{parameter} {conn_id!r} is a {connection.conn_type!r} connection ({type(hook).__name__}), not a SQL "
            f"database connection. Fix: point {parameter} at a database connection (postgres, sqlite, snowflake, "
            f"...){purpose}."
        )
    return hook, connection


_PROVIDER_BY_CONN_TYPE = {
    "postgres": "postgres",
    "mysql": "mysql",
    "sqlite": "sqlite",
    "snowflake": "snowflake",
    "mssql": "microsoft-mssql",
    "oracle": "oracle",
    "trino": "trino",
    "presto": "presto",
    "databricks": "databricks",
    "redshift": "amazon",
    "aws": "amazon",
    "google_cloud_platform": "google",
    "gcpbigquery": "google",
    "vertica": "vertica",
    "exasol": "exasol",
    "jdbc": "jdbc",
    "odbc": "odbc",
    "teradata": "teradata",
    "hive_cli": "apache-hive",
    "hiveserver2": "apache-hive",
    "impala": "apache-impala",
    "pinot_broker": "apache-pinot",
    "drill": "apache-drill",
}


def provider_package(conn_type: str | None) -> str | None:
    """The Airflow provider package that brings the hook of ``conn_type`` (``postgres`` ->
    ``apache-airflow-providers-postgres``), or ``None`` for a type not known here."""
    name = _PROVIDER_BY_CONN_TYPE.get(str(conn_type or "").lower())
    return None if name is None else f"apache-airflow-providers-{name}"


def _error(message: str) -> HindsightConfigurationError:
    return HindsightConfigurationError(message, code="invalid_connection")
