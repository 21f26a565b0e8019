"""The run history: a row per run (``hindsight_runs``) and a row per row that did not succeed (``<table>_rows``).

Not a ledger (nothing in it decides what is sent): what every run of the provider did, for
dashboards and alerts in SQL, kept through two :class:`~.sql.SqlTable` (created on first use,
checked, probed, and a table from an earlier version gains the columns added since). Messages name
the Hindsight connection's extras ``history_conn_id`` and ``history_table``.

The runs' table, keyed by ``run_uid``: the operation, the task instance (``dag_id``, ``task_id``,
``run_id``, ``map_index``, ``try_number``), ``hindsight_host``, ``started_at`` and ``finished_at``
(UTC), ``state`` (:data:`RUN_STATES`), each count of the run's summary in a column of its own
(:data:`COUNT_COLUMNS`, empty where it does not apply), ``requests``, ``answered_429``,
``error_code``, ``error_message`` and ``provider_version``. The rows' table, keyed by ``run_uid``
and ``row_position`` (the row's place in its run's input): ``row_key`` (the request key or
interview id), ``code``, ``status_code`` and ``message``, as the task log has them.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.ledgers.sql import SqlTable
from airflow_provider_hindsight.ledgers.table import Column, TableSpec

RUN_STATES = ("running", "succeeded", "failed", "stopped", "killed")
COUNT_COLUMNS = (
    "total",
    "succeeded",
    "failed",
    "unchanged",
    "created",
    "existing",
    "unknown",
    "already_completed",
    "newly_completed",
    "pending",
    "not_due",
    "stopped",
    "not_sent",
)
"""The summaries' counts, each a column of the runs' table (``stopped`` is the landing's outcome, not a state)."""
PURGE_BATCH = 100
"""Runs (and their rows) one purge deletes: older history goes a batch per run, never all at once."""
KEY_CHARS = 256
CODE_CHARS = 64
MESSAGE_CHARS = 2000
PROBE_RUN_UID = "\x01hindsight-history-probe"
"""The write probe's ``run_uid``: rolled back, and no real one (a UUID) starts with a control character."""

RUNS_SPEC = TableSpec(
    kind="Hindsight run history table",
    columns=(
        Column("run_uid", "VARCHAR(64)"),
        Column("operation", "VARCHAR(16)"),
        Column("dag_id", "VARCHAR(250)", nullable=True),
        Column("task_id", "VARCHAR(250)", nullable=True),
        Column("run_id", "VARCHAR(250)", nullable=True),
        Column("map_index", "INTEGER", nullable=True),
        Column("try_number", "INTEGER", nullable=True),
        Column("hindsight_host", "VARCHAR(255)", nullable=True),
        Column("started_at", "TIMESTAMP"),
        Column("finished_at", "TIMESTAMP", nullable=True),
        Column("state", "VARCHAR(16)"),
        *(Column(name, "INTEGER", nullable=True) for name in COUNT_COLUMNS),
        Column("requests", "INTEGER", nullable=True),
        Column("answered_429", "INTEGER", nullable=True),
        Column("error_code", f"VARCHAR({CODE_CHARS})", nullable=True),
        Column("error_message", "TEXT", nullable=True),
        Column("provider_version", "VARCHAR(32)", nullable=True),
    ),
    key=("run_uid",),
)
ROWS_SPEC = TableSpec(
    kind="Hindsight run history rows table",
    columns=(
        Column("run_uid", "VARCHAR(64)"),
        Column("row_position", "INTEGER"),
        Column("row_key", f"VARCHAR({KEY_CHARS})", nullable=True),
        Column("code", f"VARCHAR({CODE_CHARS})", nullable=True),
        Column("status_code", "INTEGER", nullable=True),
        Column("message", "TEXT", nullable=True),
    ),
    key=("run_uid", "row_position"),
)
FINISH_COLUMNS = (
    "finished_at",
    "state",
    *COUNT_COLUMNS,
    "requests",
    "answered_429",
    "error_code",
    "error_message",
)
"""What a run's end sets on its row."""


@dataclass(frozen=True)
class RunStart:
    """A run's row as it starts (``state`` ``running``); ``started_at`` naive UTC."""

    run_uid: str
    operation: str
    dag_id: str | None
    task_id: str | None
    run_id: str | None
    map_index: int | None
    try_number: int | None
    hindsight_host: str | None
    started_at: datetime.datetime
    provider_version: str

    @property
    def task_instance(self) -> tuple[str, str, str, int] | None:
        """``(dag_id, task_id, run_id, map_index)``, when all four are known."""
        parts = (self.dag_id, self.task_id, self.run_id, self.map_index)
        if any(part is None for part in parts):
            return None
        return (str(self.dag_id), str(self.task_id), str(self.run_id), int(self.map_index or 0))


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: its state, its summary's counts, its requests and 429s, and the error if any."""

    state: str
    counts: dict[str, int]
    requests: int | None = None
    answered_429: int | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class FailedRow:
    """One row of a run that did not succeed, as the task log names it (no row values)."""

    position: int
    key: Any
    code: str | None
    status_code: int | None
    message: str | None


class HistoryTable:
    """The run history tables ``table`` and ``rows_table`` on the Airflow SQL connection ``history_conn_id``.

    Both names were checked with the connection (the extra ``history_table``), before any request.
    Call :meth:`prepare` first and :meth:`close` at the end; from one thread at a time.
    """

    def __init__(self, *, history_conn_id: str, table: str, rows_table: str) -> None:
        common: dict[str, Any] = {
            "conn_id": history_conn_id,
            "conn_parameter": "history_conn_id",
            "table_parameter": "history_table",
            "missing_means": "no run was recorded yet",
        }
        self.runs = SqlTable(RUNS_SPEC, table=table, probe_rows=self._probe_runs, noun="run history table", **common)
        self.rows = SqlTable(
            ROWS_SPEC, table=rows_table, probe_rows=self._probe_rows, noun="run history rows table", **common
        )

    def _probe_runs(self) -> list[tuple[Any, ...]]:
        probe = dict.fromkeys(RUNS_SPEC.names)
        probe.update(run_uid=PROBE_RUN_UID, operation="probe", started_at=self.runs.now())
        return [tuple({**probe, "state": state}.values()) for state in ("running", "succeeded")]

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        return [(PROBE_RUN_UID, 0, key, None, None, None) for key in ("0", "1")]

    def prepare(self) -> None:
        """Create (on first use), check, evolve and probe both tables."""
        self.runs.prepare(create=True)
        self.rows.prepare(create=True)

    def close(self) -> None:
        self.runs.close()
        self.rows.close()

    def __enter__(self) -> HistoryTable:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, run: RunStart) -> int:
        """Mark the runs an earlier try of this task instance left ``running`` as ``killed``, then write this
        run's row as ``running``; returns how many were marked."""
        killed = 0
        stored = self.runs.dialect.stored
        if run.task_instance is not None:
            p = self.runs.dialect.placeholder
            killed = self.runs.execute(
                f"UPDATE {self.runs.table} SET state = {p}, finished_at = {p} WHERE dag_id = {p} AND task_id = {p} "
                f"AND run_id = {p} AND map_index = {p} AND state = {p}",
                ("killed", stored(run.started_at), *run.task_instance, "running"),
            )
        names = RUNS_SPEC.names
        values = {
            **{name: getattr(run, name, None) for name in names},
            "started_at": stored(run.started_at),
            "state": "running",
        }
        self.runs.upsert_rows([tuple(values[name] for name in names)])
        return killed

    def finish(self, run_uid: str, end: RunEnd, finished_at: datetime.datetime) -> None:
        """Set the run's end on its row."""
        values: dict[str, Any] = {
            "finished_at": self.runs.dialect.stored(finished_at),
            "state": end.state,
            **{name: end.counts.get(name) for name in COUNT_COLUMNS},
            "requests": end.requests,
            "answered_429": end.answered_429,
            "error_code": _clip(end.error_code, CODE_CHARS),
            "error_message": _clip(end.error_message, MESSAGE_CHARS),
        }
        self.runs.update_by_key(FINISH_COLUMNS, [(*(values[name] for name in FINISH_COLUMNS), run_uid)])

    def add_rows(self, run_uid: str, rows: Iterable[FailedRow]) -> int:
        """Write the run's rows that did not succeed (written again, a row's last write wins); how many."""
        return self.rows.upsert_rows(
            (
                run_uid,
                row.position,
                _clip(None if row.key is None else str(row.key), KEY_CHARS),
                _clip(row.code, CODE_CHARS),
                row.status_code,
                _clip(row.message, MESSAGE_CHARS),
            )
            for row in rows
        )

    def purge(self, before: datetime.datetime) -> int:
        """Delete at most :data:`PURGE_BATCH` runs that started before ``before``, and their rows; how many runs."""
        stored = self.runs.dialect.stored(before)

        def oldest(cursor: Any) -> list[str]:
            cursor.execute(
                f"SELECT run_uid FROM {self.runs.table} WHERE started_at < {self.runs.dialect.placeholder}", (stored,)
            )
            return [str(row[0]) for row in cursor.fetchmany(PURGE_BATCH)]

        run_uids = self.runs.read(oldest)
        if run_uids:
            self._delete_rows_of(run_uids)
            self.runs.delete_keys((run_uid,) for run_uid in run_uids)
        return len(run_uids)

    def _delete_rows_of(self, run_uids: Sequence[str]) -> None:
        placeholders = self.rows.dialect.placeholders(len(run_uids))
        self.rows.execute(f"DELETE FROM {self.rows.table} WHERE run_uid IN ({placeholders})", run_uids)


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]
