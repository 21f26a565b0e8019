"""``HindsightInterviewsToSqlOperator``: land interviews' statuses and transcripts in a SQL table, incrementally.

Ids come from ``ids_sql`` or, by default, the ``created`` rows of the interview ledger. Each run
fetches only the interviews the polling plan (:mod:`airflow_provider_hindsight.polling`) says are
due: never fetched yet, or an interval after their last fetch that grows with their age; never a
completed one, and none past ``stop_polling_after``. Those are fetched by the bulk engine (paced,
in parallel, the circuit breaker, every id accounted for) and upserted ``batch_size`` at a time as
results come, so a killed run loses at most one batch and memory stays flat. Needs the ``sql`` extra.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow_provider_hindsight.bulk.report import RunReport
from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult, check_rows
from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.inputs import parse_flag
from airflow_provider_hindsight.ledgers.interviews import DEFAULT_INTERVIEW_TABLE
from airflow_provider_hindsight.ledgers.sql import LEDGER_BATCH, batches
from airflow_provider_hindsight.ledgers.transcripts import (
    DEFAULT_TRANSCRIPTS_TABLE,
    TranscriptTable,
    poll_state,
    polls_so_far,
)
from airflow_provider_hindsight.ledgers.values import whole_number
from airflow_provider_hindsight.ledgers.watched_ids import (
    ids_query,
    landing_arguments,
    polling_arguments,
    run_ids_query,
)
from airflow_provider_hindsight.operators.bulk import BaseHindsightBulkOperator
from airflow_provider_hindsight.polling import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_MIN_POLL_INTERVAL,
    DEFAULT_POLL_AGE_FACTOR,
    DEFAULT_STOP_POLLING_AFTER,
    PollState,
    validate_max_requests,
)
from airflow_provider_hindsight.resources.interviews import validate_interview_request_id
from airflow_provider_hindsight.sql_connection import sql_hook
from airflow_provider_hindsight.transfers.streaming import streaming_cursor

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

OUTCOMES = ("already_completed", "newly_completed", "pending", "not_due", "stopped", "failed")
NOT_FETCHED = ("already_completed", "not_due", "stopped")
"""Outcomes of ids this run does not fetch; a :class:`RowResult` of one carries it as its ``code``."""


@dataclass(frozen=True)
class Fetch:
    """One interview to fetch."""

    interview_request_id: int

    @property
    def key(self) -> int:
        return self.interview_request_id


class _Known(NamedTuple):
    """What planning keeps of an id between reading the table and fetching: little, for ``max_requests``."""

    position: int
    polls: int
    stop_recorded: bool
    """Its row already has ``polling_stopped_at``."""


def _not_fetched(position: int, key: int, outcome: str) -> RowResult:
    return RowResult(position, key, False, code=outcome, unchanged=True)


def _fetch_from(value: object) -> Fetch:
    return Fetch(validate_interview_request_id(whole_number(value)))


def _duplicate(key: Any, first: int) -> tuple[str, str]:
    return ("duplicate_id", f"interview {key} already came in row {first}; fetched once.")


class HindsightInterviewsToSqlOperator(BaseHindsightBulkOperator):
    """Fetch interviews (``GET /interviews/{id}``) and upsert their status and transcript into ``table``.

    :param sql_conn_id: the Airflow SQL connection of the warehouse (write access).
    :param table: the landing table (``name`` or ``schema.name``), created on first use.
    :param ids_sql: a query on ``sql_conn_id`` returning an ``interview_request_id`` column (or one
        column); templated. Default: the ``created`` rows of ``ledger_table``.
    :param ledger_table: the interview ledger the create operators write (read only here).
    :param batch_size: rows per upsert (and the most a killed run loses).
    :param poll_age_factor: after a fetch, an interview is due again after this share of its age
        (time since ``email_sent_at``, else since its creation), ...
    :param min_poll_interval: ... but not sooner than this (seconds or a ``timedelta``; 15 minutes) ...
    :param max_poll_interval: ... nor later than this (a day).
    :param stop_polling_after: an interview older than this that is not completed is not fetched
        again (30 days; ``None``: never stop); its row keeps its last status and ``polling_stopped_at``.
    :param max_requests: at most this many fetches per run (``None``: no cap): never-fetched ids
        first, then the most overdue; the rest wait for the next run.
    :param poll_all: fetch every interview that is not completed, due or not, stopped or not (a
        one-off catch-up); ``max_requests`` still caps it. Templated.

    Plus the bulk operators' ``hindsight_conn_id``, ``requests_per_minute``, ``max_failures``,
    ``max_workers``, ... Returns (and pushes under the XCom key ``summary``) ``{"total",
    "already_completed", "newly_completed", "pending", "not_due", "stopped", "failed", "failures"}``,
    ``total`` their sum.
    """

    template_fields: Sequence[str] = ("ids_sql", "poll_all")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"ids_sql": "sql"}
    ui_color = "#dcecd5"

    def __init__(
        self,
        *,
        sql_conn_id: str,
        table: str = DEFAULT_TRANSCRIPTS_TABLE,
        ids_sql: str | None = None,
        ledger_table: str = DEFAULT_INTERVIEW_TABLE,
        batch_size: int = 500,
        poll_age_factor: float = DEFAULT_POLL_AGE_FACTOR,
        min_poll_interval: float | datetime.timedelta = DEFAULT_MIN_POLL_INTERVAL,
        max_poll_interval: float | datetime.timedelta = DEFAULT_MAX_POLL_INTERVAL,
        stop_polling_after: float | datetime.timedelta | None = DEFAULT_STOP_POLLING_AFTER,
        max_requests: int | None = None,
        poll_all: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sql_conn_id, self.table, self.ledger_table, self.plan = landing_arguments(
            sql_conn_id=sql_conn_id,
            table=table,
            ledger_table=ledger_table,
            poll_age_factor=poll_age_factor,
            min_poll_interval=min_poll_interval,
            max_poll_interval=max_poll_interval,
            stop_polling_after=stop_polling_after,
        )
        self.ids_sql = ids_sql
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise HindsightValidationError(
                f"batch_size must be a positive int (rows per upsert), got {batch_size!r}.", field="batch_size"
            )
        self.batch_size = batch_size
        with polling_arguments():
            self.max_requests = validate_max_requests(max_requests)
        self.poll_all = poll_all
        self._id_position = 0
        self._polls: dict[int, int] = {}

    # -- running ------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        with self.recorded(context, "land"):
            return self._fetch_and_land(context)

    def _fetch_and_land(self, context: Context) -> dict[str, Any]:
        sql = self._ids_query()
        poll_all = parse_flag("poll_all", self.poll_all)
        _ = self.hook.settings  # the Hindsight connection is checked before the warehouse is touched
        table = TranscriptTable(sql_conn_id=self.sql_conn_id, table=self.table)
        table.prepare(create=not self.is_dry_run)
        db_hook, _ = sql_hook(self.sql_conn_id, parameter="sql_conn_id")
        report = self.new_report(outcomes=OUTCOMES, total=None)
        with table, closing(db_hook.get_conn()) as connection, streaming_cursor(connection) as cursor:
            self._run_ids_query(cursor, sql)
            checked = check_rows(self._ids(cursor), _fetch_from, duplicate=_duplicate)
            checked = self._planned(checked, table, poll_all=poll_all)
            if self.is_dry_run:
                self._dry_run(checked, report)
            else:
                self._land(checked, table, report)
        return self.finish(report, context)

    def _land(self, checked: Iterable[CheckedRow], table: TranscriptTable, report: RunReport) -> None:
        buffer: list[tuple[Any, ...]] = []
        try:
            for result in self.start_engine(checked, self._send, report):
                outcome = self._outcome(result)
                polls = self._polls.pop(result.key, None)
                if result.succeeded and result.answer is not None and polls is not None:
                    buffer.append(table.fetched_row(result.answer, polls=polls + 1, plan=self.plan))
                    if len(buffer) >= self.batch_size:
                        table.land(buffer)
                        buffer = []
                report.record(result, outcome)
        finally:
            if buffer:  # even when the run fails or is killed: what was fetched is kept
                table.land(buffer)

    def _send(self, position: int, job: Fetch, stopped: threading.Event) -> dict[str, Any]:
        return self.hook.get_interview(job.interview_request_id, stopped=stopped)

    @staticmethod
    def _outcome(result: RowResult) -> str:
        if result.unchanged:
            return result.code if result.code in NOT_FETCHED else "already_completed"
        if not result.succeeded:
            return "failed"
        status = (result.answer or {}).get("status")
        return "newly_completed" if status == "completed" else "pending"

    def _dry_run(self, checked: Iterable[CheckedRow], report: RunReport) -> None:
        """Count what would be fetched (as pending); fetch and write nothing."""
        for position, job in checked:
            result = job if isinstance(job, RowResult) else RowResult.sent(position, job.key)
            report.record(result, "pending" if result.succeeded else self._outcome(result))

    def _planned(
        self, checked: Iterable[CheckedRow], table: TranscriptTable, *, poll_all: bool
    ) -> Iterator[CheckedRow]:
        """The ids the polling plan says are due, in its order; the others end here with their outcome.

        The table is read 500 ids at a time, and they are planned as they come; under
        ``max_requests`` all at once at the end (its order is the whole run's), keeping of each id only
        what planning needs.
        """
        states: list[PollState[int]] = []
        known: dict[int, _Known] = {}
        for chunk in batches(checked, LEDGER_BATCH):
            yield from ((position, job) for position, job in chunk if isinstance(job, RowResult))
            jobs = [(position, job.key) for position, job in chunk if not isinstance(job, RowResult)]
            landed = table.landed(key for _, key in jobs)
            for position, key in jobs:
                row = landed.get(key)
                states.append(poll_state(key, row))
                known[key] = _Known(position, polls_so_far(row), row is not None and row.polling_stopped_at is not None)
            if self.max_requests is None:
                yield from self._schedule(states, known, table, poll_all=poll_all)
                states, known = [], {}
        if states:
            yield from self._schedule(states, known, table, poll_all=poll_all)

    def _schedule(
        self, states: list[PollState[int]], known: dict[int, _Known], table: TranscriptTable, *, poll_all: bool
    ) -> Iterator[CheckedRow]:
        """One plan over ``states``: the due ids as jobs, the others ended; newly stopped ids marked so."""
        now = time.time()
        schedule = self.plan.due(states, now, max_requests=self.max_requests, poll_all=poll_all)
        newly_stopped = [key for key in schedule.stopped if not known[key].stop_recorded]
        if newly_stopped and not self.is_dry_run:
            table.mark_stopped(newly_stopped)
        for outcome, keys in (
            ("already_completed", schedule.completed),
            ("not_due", schedule.not_due),
            ("stopped", schedule.stopped),
        ):
            for key in keys:
                yield known[key].position, _not_fetched(known[key].position, key, outcome)
        for key in schedule.due:
            self._polls[key] = known[key].polls
            yield known[key].position, Fetch(key)

    # -- the ids ------------------------------------------------------------------------------------

    def _ids_query(self) -> str:
        return ids_query(self.ids_sql, self.ledger_table)

    def _run_ids_query(self, cursor: Any, sql: str) -> None:
        self._id_position = run_ids_query(
            cursor, sql, ids_sql=self.ids_sql, ledger_table=self.ledger_table, sql_conn_id=self.sql_conn_id
        )

    def _ids(self, cursor: Any) -> Iterator[Any]:
        while rows := cursor.fetchmany(LEDGER_BATCH):
            for record in rows:
                yield record[self._id_position]

    # -- lineage ------------------------------------------------------------------------------------

    def get_openlineage_facets_on_start(self) -> OperatorLineage | None:
        """Input: the interviews of the Hindsight connection (and the tables the ids come from); output: the table."""
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            return None
        source = self._sql_lineage(self._ids_query() if isinstance(self.ids_sql, str) or self.ids_sql is None else "")
        target = self._sql_lineage(f"INSERT INTO {self.table} (interview_request_id) VALUES (1)")
        return OperatorLineage(
            inputs=[*self._openlineage_interviews_datasets(), *(source.inputs if source else [])],
            outputs=list(target.outputs) if target else [],
        )

    def _sql_lineage(self, sql: str) -> OperatorLineage | None:
        if not sql:
            return None
        try:
            from airflow.providers.common.compat.openlineage.utils.sql import get_openlineage_facets_with_sql

            hook, _ = sql_hook(self.sql_conn_id, parameter="sql_conn_id")
            return get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=self.sql_conn_id, database=None)
        except Exception as error:  # lineage never fails a task
            self.log.debug("OpenLineage: no SQL datasets from %r: %s", self.sql_conn_id, error)
            return None
