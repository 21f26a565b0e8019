"""The bulk operators' shared base: one hook, one engine run, one report, one verdict.

:class:`BaseHindsightBulkOperator` is what every bulk operator (updates, creates, landing) shares:
the connection and pace, the failure budget, dry runs, the workers, and the end of a run (summary to
XCom, then the verdict). :class:`BaseHindsightUpdateOperator` adds change-only sync for updates.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_hindsight.bulk.changes import ChangeOnlySync
from airflow_provider_hindsight.bulk.circuit import CircuitBreaker
from airflow_provider_hindsight.bulk.engine import Send, run_rows, update_send
from airflow_provider_hindsight.bulk.report import RunReport
from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult, RunStop, check_rows
from airflow_provider_hindsight.bulk.sync_lease import SyncLease
from airflow_provider_hindsight.exceptions import HindsightAuthError, HindsightError
from airflow_provider_hindsight.history import ON_KILL, HistoryRecorder, RecordedRun, failed_rows, run_end
from airflow_provider_hindsight.hooks.hindsight import (
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_MAX_WORKERS,
    HindsightHook,
    validate_max_workers,
)
from airflow_provider_hindsight.hooks.request import key_check_request
from airflow_provider_hindsight.inputs import check_max_failures, parse_flag
from airflow_provider_hindsight.ledgers.faults import HindsightLedgerUnavailableError
from airflow_provider_hindsight.ledgers.history import RunEnd
from airflow_provider_hindsight.ledgers.sync import (
    DEFAULT_LEDGER_TABLE,
    HindsightLedgerError,
    SyncLedger,
    validate_ledger_table,
    validate_sync_id,
)
from airflow_provider_hindsight.lineage import HindsightLineageMixin
from airflow_provider_hindsight.pace import SAFETY_MARGIN
from airflow_provider_hindsight.times import utc_timestamp

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

DRY_RUN_SAMPLE = 5
"""How many bodies a bulk dry run logs."""


def dag_run_start(context: Context | None) -> datetime.datetime | None:
    """When the task's DAG run began (naive UTC), from ``context["dag_run"].start_date``; ``None`` if unknown."""
    dag_run = context.get("dag_run") if context is not None else None
    start = getattr(dag_run, "start_date", None)
    return utc_timestamp(start) if isinstance(start, datetime.datetime) else None


def task_instance_parts(operator: BaseOperator, context: Context | None) -> dict[str, Any]:
    """This try of this task instance: ``dag_id``, ``task_id``, ``run_id``, ``map_index`` and ``try_number``."""
    values: Any = context or {}
    dag_run = values.get("dag_run")
    ti = values.get("ti")
    return {
        "dag_id": operator.dag_id,
        "task_id": operator.task_id,
        "run_id": values.get("run_id") or getattr(dag_run, "run_id", None),
        "map_index": getattr(ti, "map_index", -1),
        "try_number": getattr(ti, "try_number", None),
    }


def task_instance_id(operator: BaseOperator, context: Context | None) -> str:
    """This task instance, ``<dag_id>/<task_id>/<run_id>/<map_index>``: the same for each of its tries.

    The owner of a sync's lease and the ``claimed_by`` of a create's claim: a retry knows what an
    earlier try of its task instance left.
    """
    parts = task_instance_parts(operator, context)
    return "/".join(str(parts[name]) for name in ("dag_id", "task_id", "run_id", "map_index"))


def is_database_error(error: BaseException) -> bool:
    """A DB-API driver's error (``DatabaseError`` in its classes) or the ledger's own."""
    if isinstance(error, (HindsightLedgerError, HindsightLedgerUnavailableError)):
        return True
    return any(cls.__name__ == "DatabaseError" for cls in type(error).__mro__)


class RunHistoryMixin:
    """Each run of the operator in the run history of its Hindsight connection (its extra ``history_conn_id``).

    ``execute`` runs its work inside :meth:`recorded`; the run's summary, set in :attr:`run_summary`,
    gives the counts and the rows that did not succeed; ``on_kill`` calls :meth:`record_kill`.
    """

    if TYPE_CHECKING:

        @property
        def hook(self) -> HindsightHook: ...

    run_summary: dict[str, Any] | None = None
    """The run's summary once it has one (the counts and failures the history records)."""
    _history: tuple[HistoryRecorder, RecordedRun] | None = None

    @contextlib.contextmanager
    def recorded(self, context: Context, operation: str) -> Iterator[None]:
        """The run's row in the history: ``running`` now, and how it ended when the block ends (however it ends).

        Without ``history_conn_id`` (or with a Hindsight connection the block itself refuses), and in a dry run
        (nothing is sent or written), nothing is recorded.
        """
        try:
            recorder = HistoryRecorder.of(self.hook.settings)
        except HindsightError as error:
            if error.code != "invalid_connection":
                raise
            recorder = None  # the run refuses the connection itself, as without history
        if recorder is None or getattr(self, "is_dry_run", False):
            yield
            return
        run = recorder.start(operation, **task_instance_parts(self, context))  # type: ignore[arg-type]
        self._history = (recorder, run)
        self.run_summary = None
        try:
            yield
        except BaseException as error:
            self._end_history(error)
            raise
        self._end_history(None)

    def _end_history(self, error: BaseException | None) -> None:
        if self._history is None:
            return
        recorder, run = self._history
        self._history = None
        recorder.finish(run, self._run_end(error, self.run_stop()), failed_rows(self.run_summary))
        recorder.close()

    def _run_end(self, error: BaseException | None, stop: RunStop | None) -> RunEnd:
        return run_end(
            self.run_summary,
            error=error,
            stop=stop,
            requests=self.hook.request_count,
            answered_429=self.hook.rate_limited_count,
        )

    def run_stop(self) -> RunStop | None:
        """Why the run stopped sending early, if it did."""
        return None

    def record_kill(self) -> None:
        """``on_kill``: the run's row says ``stopped`` now, in the background (the process may not live to the
        end of ``execute``, which records its own end if it does)."""
        if self._history is not None:
            recorder, run = self._history
            recorder.finish(run, self._run_end(None, ON_KILL), failed_rows(self.run_summary))


class BaseHindsightBulkOperator(RunHistoryMixin, HindsightLineageMixin, BaseOperator):
    """Shared by every bulk operator: send rows through the engine, count every one, report.

    :param hindsight_conn_id: the ``hindsight`` connection.
    :param requests_per_minute: pace for this task; wins over the connection's plan.
    :param max_failures: failed rows tolerated: an int count, or a float ratio of all rows
        (``0.01`` = 1 %). Checked after every row was tried.
    :param dry_run: validate every row and log a sample of bodies; send nothing.
    :param max_workers: concurrent requests used to hide network latency (1 to 256).
    :param max_retry_wait: the longest single wait between attempts of one row.
    :param progress_interval: seconds between progress lines in the task log.
    """

    def __init__(
        self,
        *,
        hindsight_conn_id: str = HindsightHook.default_conn_name,
        requests_per_minute: float | None = None,
        max_failures: int | float = 0,
        dry_run: bool = False,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        progress_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.hindsight_conn_id = hindsight_conn_id
        self.requests_per_minute = requests_per_minute
        self.max_failures = check_max_failures(max_failures)
        self.is_dry_run = dry_run
        self.max_workers = validate_max_workers(max_workers)
        self.max_retry_wait = max_retry_wait
        self.progress_interval = progress_interval
        self._breaker: CircuitBreaker | None = None

    @cached_property
    def hook(self) -> HindsightHook:
        """The hook for this task's connection, at this task's pace and concurrency."""
        return HindsightHook(
            self.hindsight_conn_id,
            requests_per_minute=self.requests_per_minute,
            max_retry_wait=self.max_retry_wait,
            max_workers=self.max_workers,
        )

    def new_report(
        self,
        *,
        outcomes: Sequence[str],
        listed: Sequence[str] = ("failed",),
        key_name: str = "interview_request_id",
        key_label: str = "interview",
        total: int | None,
    ) -> RunReport:
        """The run's accountant, with progress lines at this task's interval and the hook's pace."""
        return RunReport(
            self.log,
            outcomes=outcomes,
            listed=listed,
            key_name=key_name,
            key_label=key_label,
            total=total,
            progress_interval=self.progress_interval,
            pace=None if self.is_dry_run else self._pace_and_429s,
        )

    def _pace_and_429s(self) -> str:
        return f"{self.pace_text()}, {self.hook.rate_limited_count} answered 429"

    def start_engine(self, checked: Iterable[CheckedRow], send: Send, report: RunReport) -> Iterator[RowResult]:
        """The engine's results for ``checked``, with a new circuit breaker that :meth:`on_kill` can halt, and
        ``report``'s progress lines while they come."""
        self._breaker = CircuitBreaker(conn_id=self.hindsight_conn_id)
        self.log.info(
            "Sending to %s at %s with %d workers.", self.hook.settings.base_url, self.pace_text(), self.max_workers
        )
        return report.beating(run_rows(checked, send, max_workers=self.max_workers, breaker=self._breaker))

    def finish(self, report: RunReport, context: Context) -> dict[str, Any]:
        """Push the summary to XCom (key ``summary``), then fail the task if the run says so; return the summary."""
        stop = self._breaker.stop if self._breaker is not None else None
        summary = report.summary(stop, dry_run=self.is_dry_run)
        self.run_summary = summary
        context["ti"].xcom_push(key="summary", value=summary)
        report.verdict(summary, max_failures=self.max_failures, stop=stop)
        return summary

    def _dry_run_results(self, checked: Iterable[CheckedRow]) -> Iterator[RowResult]:
        """Rows as the run would end them, sending and writing nothing: a row to send counts as sent, and the
        first few are logged (:meth:`log_dry_run`)."""
        for position, job in checked:
            if isinstance(job, RowResult):
                yield job
                continue
            if position <= DRY_RUN_SAMPLE:
                self.log_dry_run(job)
            yield RowResult.sent(position, self.dry_run_key(job))

    def dry_run_key(self, job: Any) -> int | str:
        """The key a row to send is reported under."""
        raise NotImplementedError

    def log_dry_run(self, job: Any) -> None:
        """One line saying what would be sent for ``job`` (no personal data)."""
        raise NotImplementedError

    def on_kill(self) -> None:
        """Start no further request: the task is being killed; its history says so."""
        if self._breaker is not None:
            self._breaker.halt("the task was killed (on_kill)")
        self.record_kill()

    def run_stop(self) -> RunStop | None:
        return self._breaker.stop if self._breaker is not None else None

    def pace_text(self) -> str:
        """The pace in force, with the configured one when 429s lowered it."""
        pacer = self.hook.pacer
        text = f"{pacer.effective_requests_per_minute:,.0f} requests a minute"
        if pacer.requests_per_minute < pacer.configured_requests_per_minute:
            text += f" (lowered from {pacer.configured_requests_per_minute * SAFETY_MARGIN:,.0f} after 429s)"
        return text


class BaseHindsightUpdateOperator(BaseHindsightBulkOperator):
    """The bulk update operators' base: change-only sync on top of the bulk base.

    :param ledger_conn_id: an Airflow SQL connection with write access; setting it turns change-only
        sync on: rows whose exact body Hindsight already accepted in an earlier run are not sent.
    :param ledger_table: the ledger table (``name`` or ``schema.name``), created on first use.
    :param sync_id: the ledger's key for this sync; default ``"<dag_id>.<task_id>"``.
    :param full_refresh: send every row whatever the ledger says, and record them all again.
        Templated: ``"{{ params.full_refresh }}"`` renders ``"True"``/``"False"``, which are accepted.
    """

    def __init__(
        self,
        *,
        ledger_conn_id: str | None = None,
        ledger_table: str = DEFAULT_LEDGER_TABLE,
        sync_id: str | None = None,
        full_refresh: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = validate_ledger_table(ledger_table)
        self.sync_id = sync_id if sync_id is None else validate_sync_id(sync_id)
        self.full_refresh = full_refresh
        self._sync: ChangeOnlySync | None = None

    @property
    def operation(self) -> str:
        """The run's operation in the history: ``sync`` with a ledger (change-only), else ``update``."""
        return "update" if self.ledger_conn_id is None else "sync"

    def open_sync(self, context: Context | None = None) -> contextlib.AbstractContextManager[ChangeOnlySync | None]:
        """With ``ledger_conn_id``, check the ledger (before any request or query) and start change-only sync.

        The one owner of the ledger's lifetime: enter it once; leaving it checkpoints and closes.
        ``context`` (the task's) gives the DAG run's start: a full refresh retried in the same DAG run
        skips the rows an earlier try delivered.
        """
        if self.ledger_conn_id is None:
            return contextlib.nullcontext()
        full_refresh = parse_flag("full_refresh", self.full_refresh)
        sync_id = self.sync_id or f"{self.dag_id}.{self.task_id}"
        ledger = SyncLedger(ledger_conn_id=self.ledger_conn_id, table=self.ledger_table, sync_id=sync_id)
        base_url = self.hook.settings.base_url  # the Hindsight connection is checked before the ledger is touched
        ledger.prepare(create=not self.is_dry_run)
        lease = None
        if not self.is_dry_run:  # one run of a sync_id at a time: wait for another one in progress
            lease = SyncLease(ledger, owner=task_instance_id(self, context))
            try:
                lease.acquire()
            except BaseException:
                ledger.close()
                raise
        resume_since = dag_run_start(context) if full_refresh else None
        self._sync = ChangeOnlySync(
            ledger,
            base_url=base_url,
            full_refresh=full_refresh,
            dry_run=self.is_dry_run,
            resume_since=resume_since,
            lease=lease,
        )
        if full_refresh and resume_since is not None:
            refresh = (
                f": full refresh, every row is sent but those this DAG run already delivered (recorded since "
                f"{resume_since:%Y-%m-%d %H:%M:%S} UTC, when it began)"
            )
        else:
            refresh = ": full refresh, every row is sent" if full_refresh else ""
        self.log.info(
            "Change-only sync %r with the ledger %s on %r%s.", sync_id, self.ledger_table, self.ledger_conn_id, refresh
        )
        return self._sync

    def on_kill(self) -> None:
        """Start no further request, then record what was delivered so that the retry does not send it again.

        Airflow 3 lets ``execute`` go on after ``on_kill`` (until its SIGKILL): the rows in flight end,
        and each one delivered from now on is recorded at once, not at the next checkpoint.
        """
        super().on_kill()
        if self._sync is not None:
            self._sync.urgent = True
            try:
                self._sync.checkpoint(wait=False)
            except Exception as error:  # a signal handler: never raise into the code it interrupted
                self.log.warning("on_kill could not write the checkpoint (%s); the run writes it as it ends.", error)

    def push_rows(
        self, rows: Iterable[Any], context: Context, *, total: int | None = None, sync: ChangeOnlySync | None = None
    ) -> dict[str, Any]:
        """Send every row, push the summary to XCom (key ``summary``), fail past ``max_failures``.

        With ``sync`` (from :meth:`open_sync`), rows Hindsight already has are skipped as unchanged
        and delivered rows are recorded in the ledger as the run goes, even when the task then fails.
        An error of the source or the ledger mid-run stops sending; the rows in flight are still
        collected and recorded where the ledger allows, and one line says how many rows were
        delivered and recorded before the error is raised.
        """
        outcomes = ("succeeded", "failed", "unchanged") if sync is not None else ("succeeded", "failed")
        report = self.new_report(outcomes=outcomes, total=total)
        checked = check_rows(rows)
        if sync is not None:
            checked = sync.skip_unchanged(checked)
        if self.is_dry_run:
            results: Iterable[RowResult] = self._dry_run_results(checked)
        else:
            results = self.start_engine(checked, update_send(self.hook), report)
        error: Exception | None = None
        seen = sent = 0
        try:
            for result in results:
                seen += 1
                sent += result.was_sent
                if sync is not None and error is None:
                    try:
                        sync.account(result)
                    except Exception as caught:  # the ledger failed twice in a row: stop, collect what is in flight
                        error = caught
                        if self._breaker is not None:
                            self._breaker.abort(f"the ledger could not be written ({type(caught).__name__})")
                elif sync is not None:
                    sync.account(result)
                report.record(
                    result, "unchanged" if result.unchanged else "succeeded" if result.succeeded else "failed"
                )
        except Exception as caught:  # reading the source or looking the ledger up failed; the engine collected
            error = error or caught
        if error is not None:
            self._stopped_by(error, seen, sync)
            raise error
        if sync is not None and sync.resumed:
            self.log.info(
                "%d rows were skipped because an earlier try of this DAG run delivered them (full refresh retry).",
                sync.resumed,
            )
        if sync is not None and sent == 0 and not self.is_dry_run:
            self.check_key()  # nothing was sent: a wrong key would otherwise go unnoticed
        return self.finish(report, context)

    def check_key(self) -> None:
        """One cheap request that tells a wrong key, for a run that sent nothing (nothing had changed).

        The connection test's empty PATCH to interview 0: a 400 or 404 means the key was accepted; a
        401 or 403 fails the task permanently, naming the connection. A transient failure is a WARNING:
        nothing was owed, so the run has not failed.
        """
        try:
            self.hook.request(key_check_request())
        except HindsightAuthError as error:
            raise HindsightAuthError(
                f"Nothing needed sending, but Hindsight refused the API key of the connection "
                f"{self.hindsight_conn_id!r}: {error.message}",
                status_code=error.status_code,
                code=error.code,
            ) from None
        except HindsightError as error:
            if error.transient:
                self.log.warning("Nothing needed sending; the API key could not be checked: %s", error)
                return
            if error.status_code not in (400, 404):
                raise
        self.log.info("Nothing needed sending; the API key of %r was accepted.", self.hindsight_conn_id)

    def _stopped_by(self, error: Exception, seen: int, sync: ChangeOnlySync | None) -> None:
        """The one line that ends a run stopped by an error of the source or the ledger."""
        what = "a database error" if is_database_error(error) else "an error"
        if sync is None:
            self.log.error("Stopped by %s after %d rows: %s: %s", what, seen, type(error).__name__, error)
            return
        last = sync.last_checkpoint()
        owed = sync.delivered - sync.recorded
        self.log.error(
            "Stopped by %s after %d rows: %d delivered, %d recorded in the ledger%s. %s: %s",
            what,
            seen,
            sync.delivered,
            sync.recorded,
            f" ({owed} delivered rows could not be recorded: the retry sends them again)" if owed else "",
            type(error).__name__,
            " ".join(str(error).split())[:500],
        )
        if last is not None:
            self.log.warning("The last checkpoint failed too: %s: %s", type(last).__name__, last)

    def dry_run_key(self, job: Any) -> int:
        return job.interview_request_id

    def log_dry_run(self, job: Any) -> None:
        self.log.info("Dry run: would PATCH /interviews/%s with %s", job.interview_request_id, job.payload.decode())
