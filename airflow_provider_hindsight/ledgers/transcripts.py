"""The landing table: one row per interview, its status and its transcript, in the user's warehouse.

Not a ledger (nothing in it decides what is sent): the operator's output table, kept through a
:class:`~.sql.SqlTable`, so creation on first use (two runs at once both go on), the column check,
the write probe, SQLite's write-ahead logging and the batched upserts are the shared machinery's,
and its messages name ``sql_conn_id`` and ``table``. Columns (timestamps as ``TIMESTAMP``, UTC
without time zone; text on SQLite):

``interview_request_id`` (primary key), ``status``, ``contact_id``, ``deal_id``, ``survey_url``,
``objective``, ``email_sent_at``, ``interview_created_at``, ``transcript_document_id``,
``transcript_created_at``, ``transcript`` (the markdown), ``fetched_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_hindsight.ledgers.sql import SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.table import Column, TableSpec

DEFAULT_TRANSCRIPTS_TABLE = "hindsight_transcripts"
PROBE_ID = 0
"""The ``interview_request_id`` of the write probe: ids are positive, so it never meets a real row."""

SPEC = TableSpec(
    kind="Hindsight transcripts table",
    columns=(
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
    ),
    key=("interview_request_id",),
)
TRANSCRIPT_COLUMNS: tuple[str, ...] = SPEC.names


def validate_transcripts_table(table: object) -> str:
    return validate_table_name(table, parameter="table", example=DEFAULT_TRANSCRIPTS_TABLE)


class TranscriptTable:
    """The landing table ``table`` on the Airflow SQL connection ``sql_conn_id``.

    Call :meth:`prepare` first, then :meth:`statuses` and :meth:`land` as the run goes, and
    :meth:`close` at the end (or use it as a context manager).
    """

    def __init__(self, *, sql_conn_id: str, table: str = DEFAULT_TRANSCRIPTS_TABLE) -> None:
        self.sql = SqlTable(
            SPEC,
            conn_id=sql_conn_id,
            table=validate_transcripts_table(table),
            probe_rows=self._probe_rows,
            noun="transcripts table",
            conn_parameter="sql_conn_id",
            table_parameter="table",
            missing_means="no interview was landed yet",
        )

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        now = self.sql.now()
        return [(PROBE_ID, status, *([None] * 9), now) for status in ("created", "sent")]

    def prepare(self, *, create: bool = True) -> None:
        """See :meth:`~.sql.SqlTable.prepare`."""
        self.sql.prepare(create=create)

    def close(self) -> None:
        self.sql.close()

    def __enter__(self) -> TranscriptTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def statuses(self, interview_request_ids: Iterable[int]) -> dict[int, str]:
        """``{id: status}`` of the given ids that have a row; one query per 500 ids."""
        self.sql.require_prepared()
        if not self.sql.exists:
            return {}
        rows = self.sql.select_by_keys(("interview_request_id", "status"), ((key,) for key in interview_request_ids))
        return {int(key): str(status) for key, status in rows}

    def row(self, answer: Mapping[str, Any], fetched_at: Any) -> tuple[Any, ...]:
        """The table's row for one ``GET /interviews/{id}`` answer."""
        transcript = answer.get("transcript")
        transcript = transcript if isinstance(transcript, Mapping) else {}
        timestamp = self.sql.dialect.timestamp
        return (
            int(answer["interview_request_id"]),
            str(answer.get("status")),
            _text(answer.get("contact_id")),
            _text(answer.get("deal_id")),
            _text(answer.get("survey_url")),
            _text(answer.get("objective")),
            timestamp(answer.get("email_sent_at")),
            timestamp(answer.get("created_at")),
            _text(transcript.get("document_id")),
            timestamp(transcript.get("created_at")),
            _text(transcript.get("content")),
            fetched_at,
        )

    def land(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Upsert rows (the last of an id wins), committed per 500; returns how many."""
        self.sql.require_writable("TranscriptTable.land()")
        return self.sql.upsert_rows(rows)

    def now(self) -> Any:
        return self.sql.now()


def _text(value: object) -> str | None:
    return None if value is None else str(value)
