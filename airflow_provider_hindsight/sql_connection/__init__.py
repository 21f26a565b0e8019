"""The SQL connection layer under the ledgers, the landing table, the run history and the shared rate budget.

One place turns an Airflow connection id (``sql_conn_id``, ``ledger_conn_id``, ``budget_conn_id`` or
``history_conn_id``) into a common-sql ``DbApiHook`` (:func:`sql_hook`), saying which parameter, which
connection and what fix when it cannot, and holds the one rule of what a table name may be (:func:`valid_table_name`: it
goes into SQL text). Its modules hold what every table on such a connection shares:

- :mod:`.faults`: what a driver's error means (:func:`~.faults.classify_database_error`, one table
  of SQLSTATEs and drivers' words), and the driver's message without the connection's password;
- :mod:`.session`: which driver a connection is, the session's bounds on lock waits, and the one
  thread that uses a connection.

It lives outside ``hooks/`` (the Hindsight API's hooks): the ledgers and the budget know no Hindsight
transport.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_hindsight.exceptions import HindsightConfigurationError

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,127}"
_TABLE_NAME = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})?")


def valid_table_name(table: object) -> TypeGuard[str]:
    """Whether ``table`` is ``name`` or ``schema.name`` of letters, digits and underscores (not starting with a
    digit): the name goes into SQL text, so no quotes, spaces or other punctuation."""
    return isinstance(table, str) and _TABLE_NAME.fullmatch(table) is not None


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
