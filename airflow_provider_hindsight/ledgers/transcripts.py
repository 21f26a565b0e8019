"""The landing table: one row per interview, its status and its transcript, in the user's warehouse.

Declared on :class:`~.sql.SqlTable`, so creation on first use (two runs at once both go on), the
column check, the write probe, SQLite's write-ahead logging and the batched upserts are the shared
machinery's. Columns (timestamps as ``TIMESTAMP``, UTC without time zone; text on SQLite):

``interview_request_id`` (primary key), ``status``, ``contact_id``, ``deal_id``, ``survey_url``,
``objective``, ``email_sent_at``, ``interview_created_at``, ``transcript_document_id``,
``transcript_created_at``, ``transcript`` (the markdown), ``fetched_at``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_hindsight.ledgers.faults import HindsightLedgerError
from airflow_provider_hindsight.ledgers.sql import SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.statements import Column

DEFAULT_TRANSCRIPTS_TABLE = "hindsight_transcripts"
PROBE_ID = 0
"""The ``interview_request_id`` of the write probe: ids are positive, so it never meets a real row."""

_COLUMNS = (
    Column("interview_request_id", "BIGINT"),
    Column("status", "VARCHAR(16)"),
    Column("contact_id", "VARCHAR(255)", nullable=True),
    Column("deal_id", "VARCHAR(255)", nullable=True),
    Column("survey_url", "VARCHAR(2048)", nullable=True),
    Column("objective", "TEXT", nullable=True),
    Column("email_sent_at", "TIMESTAMP", nullable=True),
    Column("interview_created_at", "TIMESTAMP", nullable=True),
    Column("transcript_document_id", "VARCHAR(255)", nullable=True),
    Column("transcript_created_at", "TIMESTAMP", nullable=True),
    Column("transcript", "TEXT", nullable=True),
    Column("fetched_at", "TIMESTAMP"),
)
TRANSCRIPT_COLUMNS: tuple[str, ...] = tuple(column.name for column in _COLUMNS)


def validate_transcripts_table(table: object) -> str:
    return validate_table_name(table, parameter="table", example=DEFAULT_TRANSCRIPTS_TABLE)


class TranscriptTable(SqlTable):
    """The landing table ``table`` on the Airflow SQL connection ``sql_conn_id``.

    Call :meth:`prepare` first, then :meth:`statuses` and :meth:`land` as the run goes, and
    :meth:`close` at the end (or use it as a context manager).
    """

    KIND = "Hindsight transcripts table"
    COLUMNS = _COLUMNS
    KEY = ("interview_request_id",)
    MISSING_TABLE_MEANS = "no interview was landed yet"

    def __init__(self, *, sql_conn_id: str, table: str = DEFAULT_TRANSCRIPTS_TABLE) -> None:
        super().__init__(ledger_conn_id=sql_conn_id, table=validate_transcripts_table(table))

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        now = self._now()
        return [(PROBE_ID, status, *([None] * 9), now) for status in ("created", "sent")]

    def statuses(self, interview_request_ids: Iterable[int]) -> dict[int, str]:
        """``{id: status}`` of the given ids that have a row; one query per 500 ids."""
        self._require_prepared()
        if not self.exists:
            return {}
        rows = self.select_by_keys(("interview_request_id", "status"), ((key,) for key in interview_request_ids))
        return {int(key): str(status) for key, status in rows}

    def row(self, answer: Mapping[str, Any], fetched_at: Any) -> tuple[Any, ...]:
        """The table's row for one ``GET /interviews/{id}`` answer."""
        transcript = answer.get("transcript")
        transcript = transcript if isinstance(transcript, Mapping) else {}
        return (
            int(answer["interview_request_id"]),
            str(answer.get("status")),
            _text(answer.get("contact_id")),
            _text(answer.get("deal_id")),
            _text(answer.get("survey_url")),
            _text(answer.get("objective")),
            self._timestamp(answer.get("email_sent_at")),
            self._timestamp(answer.get("created_at")),
            _text(transcript.get("document_id")),
            self._timestamp(transcript.get("created_at")),
            _text(transcript.get("content")),
            fetched_at,
        )

    def land(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Upsert rows (the last of an id wins), committed per 500; returns how many."""
        self._require_writable("TranscriptTable.land()")
        return self.upsert_rows(rows)

    def now(self) -> Any:
        return self._now()

    def _timestamp(self, value: object) -> Any:
        """An API time (ISO-8601 UTC) as a naive UTC ``datetime``, or ISO text for SQLite; ``None`` if absent."""
        if not isinstance(value, str) or not value:
            return None
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return moment.isoformat(sep=" ") if self._is_sqlite else moment

    def _error(self, message: str) -> HindsightLedgerError:
        """The shared machinery's message, in this operator's parameter names."""
        message = message.replace("ledger_conn_id", "sql_conn_id").replace("ledger_table", "table")
        return super()._error(message.replace("the ledger table", "the table"))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
