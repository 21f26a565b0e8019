"""``HindsightInterviewsToSqlOperator``: land interviews' statuses and transcripts in a SQL table, incrementally.

Ids come from ``ids_sql`` or, by default, the ``created`` rows of the interview ledger. Interviews
whose row already says ``completed`` are never fetched again; the others are fetched by the bulk
engine (paced, in parallel, the circuit breaker, every id accounted for) and upserted
``batch_size`` at a time as results come, so a killed run loses at most one batch and memory stays
flat. Needs the ``sql`` extra.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_hindsight.bulk.report import RunReport
from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult, check_rows
from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.ledgers.faults import DatabaseFault, classify_database_error
from airflow_provider_hindsight.ledgers.sql import LEDGER_BATCH, batches, validate_table_name
from airflow_provider_hindsight.ledgers.transcripts import (
    DEFAULT_TRANSCRIPTS_TABLE,
    TranscriptTable,
    validate_transcripts_table,
)
from airflow_provider_hindsight.ledgers.values import whole_number
from airflow_provider_hindsight.operators.bulk import BaseHindsightBulkOperator
from airflow_provider_hindsight.resources.interviews import validate_interview_request_id
from airflow_provider_hindsight.sql_connection import sql_hook
from airflow_provider_hindsight.transfers.streaming import streaming_cursor

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.providers.openlineage.extractors import OperatorLineage

DEFAULT_INTERVIEW_LEDGER = "hindsight_interviews"
OUTCOMES = ("already_completed", "newly_completed", "pending", "failed")


@dataclass(frozen=True)
class Fetch:
    """One interview to fetch."""

    interview_request_id: int

    @property
    def key(self) -> int:
        return self.interview_request_id


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

    Plus the bulk operators' ``hindsight_conn_id``, ``requests_per_minute``, ``max_failures``,
    ``max_workers``, ... Returns (and pushes under the XCom key ``summary``)
    ``{"total", "already_completed", "newly_completed", "pending", "failed", "failures"}``.
    """

    template_fields: Sequence[str] = ("ids_sql",)
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"ids_sql": "sql"}
    ui_color = "#dcecd5"

    def __init__(
        self,
        *,
        sql_conn_id: str,
        table: str = DEFAULT_TRANSCRIPTS_TABLE,
        ids_sql: str | None = None,
        ledger_table: str = DEFAULT_INTERVIEW_LEDGER,
        batch_size: int = 500,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(sql_conn_id, str) or not sql_conn_id:
            raise HindsightValidationError(
                f"sql_conn_id must name an Airflow SQL connection, got {sql_conn_id!r}.", field="sql_conn_id"
            )
        self.sql_conn_id = sql_conn_id
        self.table = validate_transcripts_table(table)
        self.ids_sql = ids_sql
        self.ledger_table = validate_table_name(
            ledger_table, parameter="ledger_table", example=DEFAULT_INTERVIEW_LEDGER
        )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise HindsightValidationError(
                f"batch_size must be a positive int (rows per upsert), got {batch_size!r}.", field="batch_size"
            )
        self.batch_size = batch_size
        self._id_position = 0

    # -- running ------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        sql = self._ids_query()
        _ = self.hook.settings  # the Hindsight connection is checked before the warehouse is touched
        table = TranscriptTable(sql_conn_id=self.sql_conn_id, table=self.table)
        table.prepare(create=not self.is_dry_run)
        db_hook, _ = sql_hook(self.sql_conn_id, parameter="sql_conn_id")
        report = self.new_report(outcomes=OUTCOMES, total=None)
        with table, closing(db_hook.get_conn()) as connection, streaming_cursor(connection) as cursor:
            self._run_ids_query(cursor, sql)
            checked = self._incremental(check_rows(self._ids(cursor), _fetch_from, duplicate=_duplicate), table)
            if self.is_dry_run:
                self._dry_run(checked, report)
            else:
                self._land(checked, table, report)
        return self.finish(report, context)

    def _land(self, checked: Iterable[CheckedRow], table: TranscriptTable, report: RunReport) -> None:
        buffer: list[tuple[Any, ...]] = []
        try:
            for result in self.start_engine(checked, self._send):
                outcome = self._outcome(result)
                if result.succeeded and result.answer is not None:
                    buffer.append(table.row(result.answer, table.now()))
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
            return "already_completed"
        if not result.succeeded:
            return "failed"
        status = (result.answer or {}).get("status")
        return "newly_completed" if status == "completed" else "pending"

    def _dry_run(self, checked: Iterable[CheckedRow], report: RunReport) -> None:
        """Count what would be fetched (as pending); fetch and write nothing."""
        for position, job in checked:
            result = job if isinstance(job, RowResult) else RowResult.sent(position, job.key)
            report.record(result, "pending" if result.succeeded else self._outcome(result))

    def _incremental(self, checked: Iterable[CheckedRow], table: TranscriptTable) -> Iterator[CheckedRow]:
        """Ids whose row says ``completed`` end as skipped, never fetched; 500 looked up per query."""
        for batch in batches(checked, LEDGER_BATCH):
            keys = [job.key for _, job in batch if not isinstance(job, RowResult)]
            completed = {key for key, status in table.statuses(keys).items() if status == "completed"}
            for position, job in batch:
                if not isinstance(job, RowResult) and job.key in completed:
                    yield position, RowResult.skipped(position, job.key)
                else:
                    yield position, job

    # -- the ids ------------------------------------------------------------------------------------

    def _ids_query(self) -> str:
        if self.ids_sql is None:
            return (
                f"SELECT interview_request_id FROM {self.ledger_table} "
                "WHERE state = 'created' AND interview_request_id IS NOT NULL ORDER BY interview_request_id"
            )
        if not isinstance(self.ids_sql, str) or not self.ids_sql.strip():
            raise HindsightValidationError(
                f"ids_sql must be a non-empty query returning interview_request_id, got {self.ids_sql!r:.80}.",
                field="ids_sql",
            )
        return self.ids_sql

    def _run_ids_query(self, cursor: Any, sql: str) -> None:
        try:
            cursor.execute(sql)
        except Exception as error:
            if self.ids_sql is None and classify_database_error(error) is DatabaseFault.MISSING_TABLE:
                raise HindsightConfigurationError(
                    f"the interview ledger table {self.ledger_table!r} does not exist on connection "
                    f"{self.sql_conn_id!r}, and ids_sql is not set: nothing to land. Create interviews with "
                    "HindsightCreateInterviewsOperator (which writes that table), set ledger_table to where it "
                    "lives, or give ids_sql.",
                    code="invalid_ledger",
                ) from None
            raise
        names = [str(column[0]).lower() for column in cursor.description or ()]
        if "interview_request_id" in names:
            self._id_position = names.index("interview_request_id")
        elif len(names) == 1:
            self._id_position = 0
        else:
            raise HindsightValidationError(
                f"ids_sql returned columns ({', '.join(names)}) but no interview_request_id: select the ids AS "
                "interview_request_id.",
                field="ids_sql",
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
