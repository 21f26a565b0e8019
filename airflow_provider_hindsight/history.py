"""The run history recorder: every run writes its history to the Hindsight connection's ``history_conn_id``.

With the connection extra ``history_conn_id`` (an Airflow SQL connection), a run of a bulk update
or sync, a create, a landing and each event of the answers trigger writes a row of the runs' table
(``history_table``, default ``hindsight_runs``): ``running`` as it starts, then ``succeeded``,
``failed`` or ``stopped`` with its summary's counts, requests and 429s; and a row of
``<history_table>_rows`` per row that did not succeed (at most :data:`MAX_FAILED_ROWS` a run). The
tables are :class:`~airflow_provider_hindsight.ledgers.history.HistoryTable`'s.

Never in the way of the run: every write runs on the recorder's own thread
(:class:`~airflow_provider_hindsight.sql_connection.session.SessionThread`), so :meth:`HistoryRecorder.start`
and :meth:`HistoryRecorder.finish` return at once, from a worker's thread or a trigger's event loop
alike (``await asyncio.wrap_future(...)`` where a trigger wants to know it is written). The store
failing or unreachable costs one WARNING naming ``history_conn_id`` and the fix; the recorder then
stops writing, and the run goes on as without history (a ``history_table`` that is not a table name
is refused with the connection, before any request). Each recorder deletes history older than
``history_retention_days``, :data:`~airflow_provider_hindsight.ledgers.history.PURGE_BATCH` runs at
a time, at most once an hour.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, wait
from typing import Any

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.bulk.rows import RunStop
from airflow_provider_hindsight.exceptions import HindsightError
from airflow_provider_hindsight.hooks.connection import ConnectionSettings
from airflow_provider_hindsight.ledgers.history import COUNT_COLUMNS, FailedRow, HistoryTable, RunEnd, RunStart
from airflow_provider_hindsight.sql_connection.session import SessionThread
from airflow_provider_hindsight.times import utc_now

MAX_FAILED_ROWS = 10_000
"""Rows that did not succeed written per run; the summary XCom and the task log still have them all."""
WAIT_SECONDS = 10.0
"""How long a run's end waits for its history to be written before the task process goes on (and may exit)."""
PURGE_EVERY_SECONDS = 3600.0
"""A recorder deletes old history at its first run, then at most once an hour (a trigger's recorder lives long)."""
ON_KILL = RunStop(reason="the task was killed (on_kill)", code="on_kill", transient=True)
"""How a run that Airflow is killing ends in its history (its execute may still end it otherwise)."""
_FAILURE_FIELDS = frozenset({"row", "status_code", "code", "message"})
"""The fields of a summary's failure besides its key (``interview_request_id`` or ``request_key``)."""

log = logging.getLogger(__name__)


class RecordedRun:
    """One run in the history: its ``run_uid`` and the future of its last write."""

    def __init__(self, run_uid: str) -> None:
        self.run_uid = run_uid
        self.last_write: Future[None] | None = None


class HistoryRecorder:
    """Writes runs' history to the connection's ``history_conn_id``, each write on the recorder's own thread.

    Use :meth:`of`: ``None`` without ``history_conn_id``.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        if settings.history_conn_id is None:
            raise ValueError("HistoryRecorder needs a connection with history_conn_id; use HistoryRecorder.of().")
        self.hindsight_conn_id = settings.conn_id
        self.history_conn_id = settings.history_conn_id
        self.hindsight_host = settings.host
        self.retention = datetime.timedelta(days=settings.history_retention_days)
        self.table = HistoryTable(
            history_conn_id=settings.history_conn_id,
            table=settings.history_table,
            rows_table=settings.history_rows_table,
        )
        self.thread = SessionThread("hindsight-history")
        self.failed = False
        """The store failed once (one WARNING said so): nothing more is written."""
        self._prepared = False
        self._purged_at: float | None = None
        self._lock = threading.Lock()
        self._writes: list[Future[None]] = []

    @classmethod
    def of(cls, settings: ConnectionSettings) -> HistoryRecorder | None:
        """The recorder of a connection with ``history_conn_id``; ``None`` without it."""
        return None if settings.history_conn_id is None else cls(settings)

    # -- what runs call: each returns at once ---------------------------------------------------------

    def start(
        self,
        operation: str,
        *,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
        try_number: int | None = None,
    ) -> RecordedRun:
        """Write a ``running`` row for a run starting now (an earlier try's ``running`` row turns ``killed``)."""
        run = RecordedRun(uuid.uuid4().hex)
        start = RunStart(
            run_uid=run.run_uid,
            operation=operation,
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            try_number=try_number,
            hindsight_host=self.hindsight_host,
            started_at=utc_now(),
            provider_version=__version__,
        )
        run.last_write = self._submit(self._write_start, start)
        return run

    def finish(self, run: RecordedRun, end: RunEnd, failures: Iterable[FailedRow] = ()) -> Future[None]:
        """Write how ``run`` ended, and its rows that did not succeed (the first :data:`MAX_FAILED_ROWS`)."""
        rows = list(failures)[:MAX_FAILED_ROWS]
        run.last_write = self._submit(self._write_end, run.run_uid, end, rows, utc_now())
        return run.last_write

    def record_event(
        self, operation: str, end: RunEnd, failures: list[FailedRow] | None = None, **task: Any
    ) -> Future[None]:
        """A run that is over as it is recorded (an event of a trigger): its row, written once, and its rows."""
        return self.finish(self.start(operation, **task), end, failures or [])

    def wait(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait up to ``timeout`` for every write submitted so far; whether they are done."""
        with self._lock:
            pending = [write for write in self._writes if not write.done()]
        return not pending or not wait(pending, timeout=timeout).not_done

    def close(self, timeout: float = WAIT_SECONDS) -> None:
        """Let the writes submitted end (up to ``timeout``), then close the store and end the thread.

        Writes still running by then go on in the background; a WARNING says so.
        """
        if not self.wait(timeout):
            log.warning(
                "The run history on history_conn_id %r is not written after %.0f s: the run goes on without waiting "
                "for it. Fix: check that the database behind %r answers quickly, or remove history_conn_id from the "
                "extras of the Hindsight connection %r.",
                self.history_conn_id,
                timeout,
                self.history_conn_id,
                self.hindsight_conn_id,
            )
            return
        self.thread.submit(self.table.close).result()
        self.thread.shutdown()

    # -- on the recorder's thread -----------------------------------------------------------------------

    def _submit(self, write: Callable[..., None], *args: Any) -> Future[None]:
        future = self.thread.submit(self._guarded, write, *args)
        with self._lock:
            self._writes = [pending for pending in self._writes if not pending.done()]
            self._writes.append(future)
        return future

    def _guarded(self, write: Callable[..., None], *args: Any) -> None:
        """``write(*args)`` unless the store failed before; its failure is one WARNING, never the run's."""
        if self.failed:
            return
        try:
            if not self._prepared:
                self.table.prepare()
                self._prepared = True
            write(*args)
        except Exception as error:
            self.failed = True
            self.table.close()
            log.warning(
                "Could not write the run history to history_conn_id %r (%s: %s); the run goes on without history. "
                "Fix: check that connection (host, credentials, write access to %s), or remove history_conn_id from "
                "the extras of the Hindsight connection %r.",
                self.history_conn_id,
                type(error).__name__,
                self.table.runs.describe(error),
                self.table.runs.table,
                self.hindsight_conn_id,
            )

    def _write_start(self, start: RunStart) -> None:
        killed = self.table.start(start)
        if killed:
            log.info("%d run(s) of an earlier try of this task were left running: marked killed.", killed)
        now = time.monotonic()
        if self._purged_at is None or now - self._purged_at >= PURGE_EVERY_SECONDS:
            self._purged_at = now
            deleted = self.table.purge(start.started_at - self.retention)
            if deleted:
                log.info("Deleted %d runs older than %s from the run history.", deleted, self.retention)

    def _write_end(self, run_uid: str, end: RunEnd, rows: list[FailedRow], finished_at: datetime.datetime) -> None:
        self.table.finish(run_uid, end, finished_at)
        self.table.add_rows(run_uid, rows)


def run_end(
    summary: Mapping[str, Any] | None,
    *,
    error: BaseException | None = None,
    stop: RunStop | None = None,
    requests: int | None = None,
    answered_429: int | None = None,
) -> RunEnd:
    """How a run ended, from its summary (or ``None``), the error it raised and why it stopped sending, if it did.

    ``stopped`` when it stopped early (the circuit breaker, ``on_kill``), else ``failed`` when it
    raised, else ``succeeded``.
    """
    counts = {name: value for name, value in (summary or {}).items() if name in COUNT_COLUMNS and _is_count(value)}
    stopped = (summary or {}).get("stopped")
    if isinstance(stopped, Mapping) and _is_count(stopped.get("not_sent")):
        counts["not_sent"] = stopped["not_sent"]
    if stop is not None:
        return RunEnd("stopped", counts, requests, answered_429, stop.code, stop.reason)
    if error is not None:
        code = (error.code if isinstance(error, HindsightError) else None) or type(error).__name__
        message = error.message if isinstance(error, HindsightError) else str(error)
        return RunEnd("failed", counts, requests, answered_429, code, " ".join(message.split()))
    return RunEnd("succeeded", counts, requests, answered_429)


def failed_rows(summary: Mapping[str, Any] | None) -> Iterator[FailedRow]:
    """The rows of a summary's ``failures`` (failed, and a create's unknown), as the task log names them."""
    for failure in (summary or {}).get("failures", ()):
        key = next((value for name, value in failure.items() if name not in _FAILURE_FIELDS), None)
        yield FailedRow(failure["row"], key, failure.get("code"), failure.get("status_code"), failure.get("message"))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
