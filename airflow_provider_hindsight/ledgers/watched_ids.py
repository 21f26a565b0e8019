"""The ids a landing lands (and the answers trigger watches): ``ids_sql``, or the interview ledger's ``created`` rows.

One rule for both: :func:`ids_query` (the query), :func:`id_position` (which column holds the ids)
and :func:`missing_ledger_error` (what a missing ledger means, and its fix).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.ledgers.interviews import created_ids_query

DEFAULT_INTERVIEW_LEDGER = "hindsight_interviews"


def ids_query(ids_sql: object, ledger_table: str) -> str:
    """``ids_sql``, checked, or the ledger's ``created`` ids when it is ``None``."""
    if ids_sql is None:
        return created_ids_query(ledger_table)
    if not isinstance(ids_sql, str) or not ids_sql.strip():
        raise HindsightValidationError(
            f"ids_sql must be a non-empty query returning interview_request_id, got {ids_sql!r:.80}.",
            field="ids_sql",
        )
    return ids_sql


def id_position(description: Sequence[Any] | None) -> int:
    """The position of the ``interview_request_id`` column in a cursor's description (or its only column)."""
    names = [str(column[0]).lower() for column in description or ()]
    if "interview_request_id" in names:
        return names.index("interview_request_id")
    if len(names) == 1:
        return 0
    raise HindsightValidationError(
        f"ids_sql returned columns ({', '.join(names)}) but no interview_request_id: select the ids AS "
        "interview_request_id.",
        field="ids_sql",
    )


def missing_ledger_error(ledger_table: str, sql_conn_id: str) -> HindsightConfigurationError:
    """The interview ledger does not exist and ``ids_sql`` is not set: nothing to land."""
    return HindsightConfigurationError(
        f"the interview ledger table {ledger_table!r} does not exist on connection {sql_conn_id!r}, and ids_sql is "
        "not set: nothing to land. Create interviews with HindsightCreateInterviewsOperator (which writes that "
        "table), set ledger_table to where it lives, or give ids_sql.",
        code="invalid_ledger",
    )
