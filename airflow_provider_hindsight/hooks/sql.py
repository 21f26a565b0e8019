"""The SQL hook behind an Airflow connection id, for the transfer's source and the sync ledger.

One place turns ``sql_conn_id`` or ``ledger_conn_id`` into a common-sql ``DbApiHook``, and says
which parameter, which connection and what fix when it cannot.
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
        raise _error(
            f"{parameter} {conn_id!r} (type {connection.conn_type!r}) gives no hook: {error}. Fix: install the "
            "provider of that connection type, or use a SQL connection."
        ) from None
    if not isinstance(hook, DbApiHook):
        raise _error(
            f"{parameter} {conn_id!r} is a {connection.conn_type!r} connection ({type(hook).__name__}), not a SQL "
            f"database connection. Fix: point {parameter} at a database connection (postgres, sqlite, snowflake, "
            f"...){purpose}."
        )
    return hook, connection


def _error(message: str) -> HindsightConfigurationError:
    return HindsightConfigurationError(message, code="invalid_connection")
