"""What a landing and the answers trigger share: their checked arguments, and the ids they land and watch.

One rule for both: :func:`landing_arguments` (the warehouse connection, the landing table, the
interview ledger and the polling plan, checked when the operator or trigger is made),
:func:`polling_arguments` (a bad polling parameter as a validation error naming it), :func:`ids_query`
(``ids_sql``, or the ledger's ``created`` rows), :func:`run_ids_query` (running it: which column holds
the ids, and what a missing ledger means, with its fix).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.ledgers.interviews import created_ids_query, validate_interview_table
from airflow_provider_hindsight.ledgers.sql import validate_sql_conn_id
from airflow_provider_hindsight.ledgers.transcripts import validate_transcripts_table
from airflow_provider_hindsight.polling import PollingPlan, PollingPlanError, optional_seconds, seconds
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error


class LandingArguments(NamedTuple):
    """The arguments a landing and the answers trigger share, checked."""

    sql_conn_id: str
    table: str
    ledger_table: str
    plan: PollingPlan


@contextmanager
def polling_arguments() -> Iterator[None]:
    """Turn a :class:`~airflow_provider_hindsight.polling.PollingPlanError` raised inside into the
    :class:`HindsightValidationError` naming the same parameter (the polling rules import no Airflow)."""
    try:
        yield
    except PollingPlanError as error:
        raise HindsightValidationError(str(error), field=error.field) from None


def landing_arguments(
    *,
    sql_conn_id: object,
    table: object,
    ledger_table: object,
    poll_age_factor: float,
    min_poll_interval: float | datetime.timedelta,
    max_poll_interval: float | datetime.timedelta,
    stop_polling_after: float | datetime.timedelta | None,
) -> LandingArguments:
    """The landing's arguments, checked before any connection is made; a bad one raises naming it."""
    conn_id = validate_sql_conn_id(sql_conn_id)
    landing_table = validate_transcripts_table(table)
    ledger = validate_interview_table(ledger_table)
    with polling_arguments():
        plan = PollingPlan(
            poll_age_factor=poll_age_factor,
            min_poll_interval=seconds(min_poll_interval, name="min_poll_interval"),
            max_poll_interval=seconds(max_poll_interval, name="max_poll_interval"),
            stop_polling_after=optional_seconds(stop_polling_after, name="stop_polling_after"),
        )
    return LandingArguments(conn_id, landing_table, ledger, plan)


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


def run_ids_query(cursor: Any, sql: str, *, ids_sql: object, ledger_table: str, sql_conn_id: str) -> int:
    """Run the ids query ``sql`` (from :func:`ids_query`) on ``cursor``; return the position of its id column.

    With no ``ids_sql``, a missing ledger is :func:`missing_ledger_error`; any other error is raised as is.
    """
    try:
        cursor.execute(sql)
    except Exception as error:
        if ids_sql is None and classify_database_error(error) is DatabaseFault.MISSING_TABLE:
            raise missing_ledger_error(ledger_table, sql_conn_id) from None
        raise
    return id_position(cursor.description)


def missing_ledger_error(ledger_table: str, sql_conn_id: str) -> HindsightConfigurationError:
    """The interview ledger does not exist and ``ids_sql`` is not set: nothing to land."""
    return HindsightConfigurationError(
        f"the interview ledger table {ledger_table!r} does not exist on connection {sql_conn_id!r}, and ids_sql is "
        "not set: nothing to land. Create interviews with HindsightCreateInterviewsOperator (which writes that "
        "table), set ledger_table to where it lives, or give ids_sql.",
        code="invalid_ledger",
    )
