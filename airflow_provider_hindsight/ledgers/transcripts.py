"""The landing table: one row per interview, its status and its transcript, in the user's warehouse.

Not a ledger (nothing in it decides what is sent): the operator's output table, kept through a
:class:`~.sql.SqlTable`, so creation on first use (two runs at once both go on), the column check,
the write probe, SQLite's write-ahead logging and the batched upserts are the shared machinery's,
and its messages name ``sql_conn_id`` and ``table``. Columns (timestamps as ``TIMESTAMP``, UTC
without time zone; text on SQLite):

``interview_request_id`` (primary key), ``status``, ``contact_id``, ``deal_id``, ``survey_url``,
``objective``, ``email_sent_at``, ``interview_created_at``, ``transcript_document_id``,
``transcript_created_at``, ``transcript`` (the markdown), ``fetched_at``, and for the polling plan
``polls`` (how many times it was fetched), ``next_poll_at`` and ``polling_stopped_at``. A table from
an earlier version gains the last three on first use (see :mod:`.schema`); its rows read them as
``NULL`` until landed again. The answers trigger adds ``announced_at``
(:mod:`.announcements`); the landing leaves that column alone.

One row path for every writer: :meth:`TranscriptTable.fetched_row` (the row of an answer fetched
now, with the polling plan's bookkeeping), :meth:`LandedInterview.poll_state` and
:func:`polls_so_far`, used by the landing and by the answers trigger alike.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.ledgers.sql import SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.table import Column, TableSpec
from airflow_provider_hindsight.polling import PollingPlan, PollState, answer_started_at, started_at
from airflow_provider_hindsight.times import posix, utc, utc_timestamp

DEFAULT_TRANSCRIPTS_TABLE = "hindsight_transcripts"
ANNOUNCED_AT = "announced_at"
"""The answers trigger's column: when a completed row was announced (an asset event); the landing leaves it alone."""
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
        Column("polls", "INTEGER", nullable=True),
        Column("next_poll_at", "TIMESTAMP", nullable=True),
        Column("polling_stopped_at", "TIMESTAMP", nullable=True),
    ),
    key=("interview_request_id",),
    others_columns=(ANNOUNCED_AT,),
)
TRANSCRIPT_COLUMNS: tuple[str, ...] = SPEC.names


_POLLING_COLUMNS = (
    "interview_request_id",
    "status",
    "email_sent_at",
    "interview_created_at",
    "fetched_at",
    "polls",
    "next_poll_at",
    "polling_stopped_at",
)


@dataclass(frozen=True)
class LandedInterview:
    """What the landing table holds of one interview for the polling plan; times naive UTC.

    ``polls`` is ``None`` (and so are the other two polling times) on a row an earlier version landed.
    """

    interview_request_id: int
    status: str
    email_sent_at: datetime.datetime | None
    interview_created_at: datetime.datetime | None
    fetched_at: datetime.datetime | None
    polls: int | None
    next_poll_at: datetime.datetime | None
    polling_stopped_at: datetime.datetime | None

    @property
    def started_at(self) -> datetime.datetime | None:
        """Where its age counts from (the polling plan's rule)."""
        return started_at(self.email_sent_at, self.interview_created_at)

    def poll_state(self) -> PollState[int]:
        """What the polling plan knows of it from its row."""
        completed = self.status == "completed"
        return PollState(self.interview_request_id, posix(self.started_at), posix(self.fetched_at), completed=completed)


def poll_state(key: int, landed: LandedInterview | None) -> PollState[int]:
    """What the plan knows of an id: nothing before its first fetch, else its row."""
    return PollState(key) if landed is None else landed.poll_state()


def polls_so_far(landed: LandedInterview | None) -> int:
    """Fetches so far: none without a row; at least one with a row an earlier version landed (no count)."""
    if landed is None:
        return 0
    return 1 if landed.polls is None else landed.polls


def validate_transcripts_table(table: object) -> str:
    return validate_table_name(table, parameter="table", example=DEFAULT_TRANSCRIPTS_TABLE)


class TranscriptTable:
    """The landing table ``table`` on the Airflow SQL connection ``sql_conn_id``.

    Call :meth:`prepare` first, then :meth:`landed` and :meth:`land` as the run goes, and
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
        return [(PROBE_ID, status, *([None] * 9), now, 1, now, None) for status in ("created", "sent")]

    def prepare(self, *, create: bool = True) -> None:
        """See :meth:`~.sql.SqlTable.prepare`."""
        self.sql.prepare(create=create)

    def close(self) -> None:
        self.sql.close()

    def __enter__(self) -> TranscriptTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def landed(self, interview_request_ids: Iterable[int]) -> dict[int, LandedInterview]:
        """What the table holds of the given ids that have a row, for the polling plan; one query per 500 ids."""
        self.sql.require_prepared()
        if not self.sql.exists:
            return {}
        rows = self.sql.select_by_keys(_POLLING_COLUMNS, ((key,) for key in interview_request_ids))
        found = {}
        for key, status, sent, created, fetched, polls, next_poll, stopped in rows:
            found[int(key)] = LandedInterview(
                int(key),
                str(status),
                utc_timestamp(sent),
                utc_timestamp(created),
                utc_timestamp(fetched),
                None if polls is None else int(polls),
                utc_timestamp(next_poll),
                utc_timestamp(stopped),
            )
        return found

    def row(
        self,
        answer: Mapping[str, Any],
        fetched_at: Any,
        *,
        polls: int | None = None,
        next_poll_at: datetime.datetime | None = None,
        polling_stopped_at: datetime.datetime | None = None,
    ) -> tuple[Any, ...]:
        """The table's row for one ``GET /interviews/{id}`` answer, with the polling plan's columns (naive UTC)."""
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
            polls,
            timestamp(next_poll_at),
            timestamp(polling_stopped_at),
        )

    def fetched_row(
        self, answer: Mapping[str, Any], *, polls: int, plan: PollingPlan, fetched_at: float | None = None
    ) -> tuple[Any, ...]:
        """The row of an answer fetched at ``fetched_at`` (POSIX seconds; now), its ``polls``-th fetch, and when
        ``plan`` fetches it next.

        ``next_poll_at`` is ``None`` when the plan will not fetch it again: completed, or past
        ``stop_polling_after`` by then. The caller's clock is the plan's: a trigger on a test's clock lands its times.
        """
        fetched = time.time() if fetched_at is None else fetched_at
        started = answer_started_at(answer)
        next_poll_at = plan.next_poll_at(started, fetched)
        done = answer.get("status") == "completed" or plan.stopped(started, next_poll_at)
        stored = self.sql.dialect.timestamp(utc(fetched))
        return self.row(answer, stored, polls=polls, next_poll_at=None if done else utc(next_poll_at))

    def mark_stopped(self, interview_request_ids: Iterable[int]) -> int:
        """Set ``polling_stopped_at`` to now and empty ``next_poll_at`` on these rows: the plan stopped them."""
        now = self.sql.now()
        columns = ("polling_stopped_at", "next_poll_at")
        return self.sql.update_by_key(columns, ((now, None, key) for key in interview_request_ids))

    def land(self, rows: Iterable[tuple[Any, ...]]) -> int:
        """Upsert rows (the last of an id wins), committed per 500; returns how many."""
        self.sql.require_writable("TranscriptTable.land()")
        return self.sql.upsert_rows(rows)

    def now(self) -> Any:
        return self.sql.now()


def _text(value: object) -> str | None:
    return None if value is None else str(value)
