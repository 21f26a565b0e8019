"""Operators that update Hindsight interview requests: one at a time, or a whole table at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf
from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

from airflow_provider_hindsight.exceptions import (
    HindsightPermanentError,
    HindsightRateLimitError,
    HindsightTransientError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.circuit import CircuitBreaker
from airflow_provider_hindsight.hooks.hindsight import (
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_MAX_WORKERS,
    HindsightHook,
    validate_max_workers,
)
from airflow_provider_hindsight.hooks.pacing import SAFETY_MARGIN
from airflow_provider_hindsight.ledger import DEFAULT_LEDGER_TABLE, SyncLedger, validate_ledger_table
from airflow_provider_hindsight.lineage import HindsightLineageMixin
from airflow_provider_hindsight.payload import (
    InterviewUpdate,
    UpdateResult,
    build_interview_update,
    check_rows,
    reject_rendered_python_literal,
)
from airflow_provider_hindsight.sync import ChangeOnlySync, CheckedRow

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

MAX_DEFERRALS = 5
"""How many times one task defers on long rate-limit waits before it fails for Airflow to retry."""

DRY_RUN_SAMPLE = 5
"""How many bodies a bulk dry run logs."""

LOGGED_FAILURES = 50
"""How many failed rows a bulk run logs one by one; the rest are counted (the summary XCom has all)."""


class HindsightUpdateInterviewOperator(HindsightLineageMixin, BaseOperator):
    """Update one interview request's ``contact_context``, ``contact_name`` and/or ``objective``.

    Every value may be a literal, a Jinja template or an XComArg from an upstream task; fields left
    ``None`` are not sent (the API leaves them unchanged). ``contact_context`` overwrites the
    contact's notes. Returns the API's answer, ``{"interview_request_id": ...}``.

    :param interview_request_id: the id returned by ``POST /interviews`` (int or a string of digits).
    :param contact_context: notes for Paige: prose (str) or structured (dict).
    :param contact_name: the contact's display name.
    :param objective: the goal of this interview.
    :param hindsight_conn_id: the ``hindsight`` connection.
    :param dry_run: validate and log the body that would be sent; send nothing.
    :param deferrable: when the API asks to wait longer than ``max_retry_wait``, free the worker
        slot and resume after the wait (default: Airflow's ``[operators] default_deferrable``).
    :param max_retry_wait: the longest wait slept in the worker between attempts.
    """

    template_fields: Sequence[str] = ("interview_request_id", "contact_context", "contact_name", "objective")
    template_fields_renderers = {"contact_context": "json"}
    ui_color = "#f4e3c4"

    def __init__(
        self,
        *,
        interview_request_id: int | str | Any,
        contact_context: str | Mapping[str, Any] | Any | None = None,
        contact_name: str | Any | None = None,
        objective: str | Any | None = None,
        hindsight_conn_id: str = HindsightHook.default_conn_name,
        dry_run: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.interview_request_id = interview_request_id
        self.contact_context = contact_context
        self.contact_name = contact_name
        self.objective = objective
        self.hindsight_conn_id = hindsight_conn_id
        self.is_dry_run = dry_run
        self.deferrable = deferrable
        self.max_retry_wait = max_retry_wait

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate the rendered fields, then send the update (or log it, in a dry run)."""
        update = self._validated_update()
        if self.is_dry_run:
            self.log.info(
                "Dry run: would PATCH /interviews/%s with %s", update.interview_request_id, update.payload.decode()
            )
            return {"dry_run": True, "interview_request_id": update.interview_request_id, "body": update.body}
        return self._send(update, deferrals=0)

    def execute_complete(self, context: Context, event: Any = None, deferrals: int = 1) -> dict[str, Any]:
        """Resume after a deferred rate-limit wait and send the update again."""
        return self._send(self._validated_update(), deferrals=deferrals)

    def _validated_update(self) -> InterviewUpdate:
        reject_rendered_python_literal("contact_context", self.contact_context)
        return build_interview_update(
            self.interview_request_id,
            contact_context=self.contact_context,
            contact_name=self.contact_name,
            objective=self.objective,
        )

    @cached_property
    def hook(self) -> HindsightHook:
        """The hook for this task's connection."""
        return HindsightHook(self.hindsight_conn_id, max_retry_wait=self.max_retry_wait)

    def _send(self, update: InterviewUpdate, *, deferrals: int) -> dict[str, Any]:
        self.log.info("Updating interview %s: %s", update.interview_request_id, ", ".join(update.body))
        try:
            return self.hook.send_update(update)
        except HindsightRateLimitError as error:
            wait_for = error.retry_after
            if self.deferrable and wait_for is not None and deferrals < MAX_DEFERRALS:
                self.log.info(
                    "Hindsight asked to wait %.0fs, longer than max_retry_wait (%.0fs): deferring.",
                    wait_for,
                    self.max_retry_wait,
                )
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=wait_for)),
                    method_name="execute_complete",
                    kwargs={"deferrals": deferrals + 1},
                )
            raise


class BaseHindsightBulkOperator(HindsightLineageMixin, BaseOperator):
    """Shared by the bulk operator and the SQL transfer: send rows, count every one, report.

    :param hindsight_conn_id: the ``hindsight`` connection.
    :param requests_per_minute: pace for this task; wins over the connection's plan.
    :param max_failures: failed rows tolerated: an int count, or a float ratio of all rows
        (``0.01`` = 1 %). Checked after every row was tried.
    :param dry_run: validate every row and log a sample of bodies; send nothing.
    :param max_workers: concurrent requests used to hide network latency (1 to 256).
    :param max_retry_wait: the longest single wait between attempts of one row.
    :param progress_interval: seconds between progress lines in the task log.
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
        hindsight_conn_id: str = HindsightHook.default_conn_name,
        requests_per_minute: float | None = None,
        max_failures: int | float = 0,
        dry_run: bool = False,
        max_workers: int = DEFAULT_MAX_WORKERS,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        progress_interval: float = 30.0,
        ledger_conn_id: str | None = None,
        ledger_table: str = DEFAULT_LEDGER_TABLE,
        sync_id: str | None = None,
        full_refresh: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_max_failures(max_failures)
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table
        self.sync_id = sync_id
        self.full_refresh = full_refresh
        self._sync: ChangeOnlySync | None = None
        self.hindsight_conn_id = hindsight_conn_id
        self.requests_per_minute = requests_per_minute
        self.max_failures = max_failures
        self.is_dry_run = dry_run
        self.max_workers = validate_max_workers(max_workers)
        self.max_retry_wait = max_retry_wait
        self.progress_interval = progress_interval

    @cached_property
    def hook(self) -> HindsightHook:
        """The hook for this task's connection, at this task's pace and concurrency."""
        return HindsightHook(
            self.hindsight_conn_id,
            requests_per_minute=self.requests_per_minute,
            max_retry_wait=self.max_retry_wait,
            max_workers=self.max_workers,
        )

    def open_sync(self, context: Context) -> ChangeOnlySync | None:
        """With ``ledger_conn_id``, check the ledger (before any request or query) and start change-only sync."""
        if self.ledger_conn_id is None:
            return None
        full_refresh = parse_flag("full_refresh", self.full_refresh)
        table = validate_ledger_table(self.ledger_table)
        sync_id = self.sync_id or f"{self.dag_id}.{self.task_id}"
        ledger = SyncLedger(ledger_conn_id=self.ledger_conn_id, table=table, sync_id=sync_id)
        base_url = self.hook.settings.base_url  # the Hindsight connection is checked before the ledger is touched
        ledger.prepare(create=not self.is_dry_run)
        self._sync = ChangeOnlySync(ledger, base_url=base_url, full_refresh=full_refresh, dry_run=self.is_dry_run)
        self.log.info(
            "Change-only sync %r with the ledger %s on %r%s.",
            sync_id,
            table,
            self.ledger_conn_id,
            ": full refresh, every row is sent" if full_refresh else "",
        )
        return self._sync

    def on_kill(self) -> None:
        """Record what was delivered so far, so that the retry does not send it again."""
        if self._sync is not None:
            self._sync.checkpoint(wait=False)

    def push_rows(
        self, rows: Iterable[Any], context: Context, *, total: int | None = None, sync: ChangeOnlySync | None = None
    ) -> dict[str, Any]:
        """Send every row, push the summary to XCom (key ``summary``), fail past ``max_failures``.

        With ``sync`` (from :meth:`open_sync`), rows Hindsight already has are skipped as unchanged
        and delivered rows are recorded in the ledger as the run goes, even when the task then fails.
        """
        try:
            return self._push_rows(rows, context, total, sync)
        finally:
            if sync is not None:
                if not self.is_dry_run:
                    sync.checkpoint()
                sync.ledger.close()

    def _push_rows(
        self, rows: Iterable[Any], context: Context, total: int | None, sync: ChangeOnlySync | None
    ) -> dict[str, Any]:
        progress = _Progress(self, total)
        breaker = CircuitBreaker()
        checked = check_rows(rows)
        if sync is not None:
            checked = sync.skip_unchanged(checked)
        if self.is_dry_run:
            results: Iterable[UpdateResult] = _dry_run_results(checked, self)
        else:
            progress.hook = self.hook
            self.log.info(
                "Sending to %s at %s with %d workers.",
                self.hook.settings.base_url,
                _pace_text(self.hook),
                self.max_workers,
            )
            results = self.hook.send_checked(checked, breaker=breaker)
        failures: list[dict[str, Any]] = []
        not_sent = _NotSent()
        any_transient = False
        for result in results:
            if sync is not None:
                sync.account(result)
            if result.unchanged:
                progress.record_unchanged()
                continue
            if result.code == "not_sent":  # counted, not listed: a stopped run of a million rows stays small
                not_sent.add(result)
                progress.record(False)
                continue
            if not result.succeeded:
                failures.append(result.as_failure())
                any_transient = any_transient or result.transient
                if len(failures) <= LOGGED_FAILURES:
                    self.log.warning(
                        "Row %d, interview %s failed: %s (%s).",
                        result.row,
                        result.interview_request_id,
                        result.message,
                        _failure_label(result),
                    )
            progress.record(result.succeeded)
        progress.log(final=True)
        if len(failures) > LOGGED_FAILURES:
            self.log.warning(
                "%d more rows failed; the summary XCom (key 'summary') lists every failed row and why.",
                len(failures) - LOGGED_FAILURES,
            )
        if not_sent.count:
            self.log.warning(
                "%d rows, between row %d and row %d, were %s",
                not_sent.count,
                not_sent.first_row,
                not_sent.last_row,
                not_sent.message,
            )
        failed = len(failures) + not_sent.count
        summary: dict[str, Any] = {
            "total": progress.done,
            "succeeded": progress.done - failed - progress.unchanged,
            "failed": failed,
            "failures": failures,
        }
        if sync is not None:
            summary["unchanged"] = progress.unchanged
        if breaker.stop is not None:
            summary["stopped"] = {"code": breaker.stop.code, "reason": breaker.stop.reason, "not_sent": not_sent.count}
        if self.is_dry_run:
            summary["dry_run"] = True
        context["ti"].xcom_push(key="summary", value=summary)
        if breaker.stop is not None:
            error_class = HindsightTransientError if breaker.stop.transient else HindsightPermanentError
            raise error_class(
                f"The run stopped early: {breaker.stop.reason}. {summary['failed']} of {summary['total']} rows "
                f"failed, {not_sent.count} of them not sent; the summary XCom (key 'summary') lists the rows "
                "that were sent and failed.",
                code=breaker.stop.code,
            )
        self._fail_if_too_many(summary, any_transient=any_transient)
        return summary

    def _fail_if_too_many(self, summary: dict[str, Any], *, any_transient: bool) -> None:
        limit = self.max_failures
        allowed = limit * summary["total"] if isinstance(limit, float) else limit
        if summary["failed"] <= allowed:
            return
        codes = sorted({str(failure["code"]) for failure in summary["failures"]})
        message = (
            f"{summary['failed']} of {summary['total']} rows failed (max_failures={limit!r}); codes: "
            f"{', '.join(codes)}. The task log and the summary XCom (key 'summary') list each failed row and why."
        )
        error_class = HindsightTransientError if any_transient else HindsightPermanentError
        raise error_class(message, code="too_many_failures")


class HindsightBulkUpdateInterviewsOperator(BaseHindsightBulkOperator):
    """Update many interview requests in one task, at the plan's pace, reporting every row.

    ``updates`` is an iterable of mappings (a list, an XComArg, or a template rendering to one),
    each with ``interview_request_id`` and any of ``contact_context``, ``contact_name``,
    ``objective``. Returns (and pushes under the XCom key ``summary``)
    ``{"total", "succeeded", "failed", "failures": [...]}``.

    :param updates: the rows to send.
    """

    template_fields: Sequence[str] = ("updates", "full_refresh")
    ui_color = "#f4e3c4"

    def __init__(self, *, updates: Iterable[Mapping[str, Any]] | str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.updates = updates

    def execute(self, context: Context) -> dict[str, Any]:
        """Push every row of ``updates`` and return the summary."""
        rows = _rows_from(self.updates)
        sync = self.open_sync(context)
        return self.push_rows(rows, context, total=len(rows) if isinstance(rows, Sized) else None, sync=sync)


def _rows_from(updates: Any) -> Iterable[Any]:
    """The rows of ``updates``; a string is a JSON list, or the non-native Jinja trap."""
    if isinstance(updates, str):
        reject_rendered_python_literal("updates", updates)
        try:
            updates = json.loads(updates)
        except ValueError:
            updates = None
        if not isinstance(updates, list):
            raise HindsightValidationError(
                "updates rendered to a string that is not a JSON list of rows. Pass the upstream task's "
                "output (an XComArg) or a list of dicts.",
                field="updates",
            )
    if isinstance(updates, Mapping) or not isinstance(updates, Iterable):
        raise HindsightValidationError(
            f"updates must be an iterable of rows (dicts), got {type(updates).__name__}. Wrap a single "
            "row in a list, or use HindsightUpdateInterviewOperator for one interview.",
            field="updates",
        )
    return updates


def _dry_run_results(checked_rows: Iterable[CheckedRow], operator: BaseOperator) -> Iterator[UpdateResult]:
    """Rows as the engine would end them, sending nothing: a row to send counts as succeeded; log the first bodies."""
    for position, checked in checked_rows:
        if isinstance(checked, UpdateResult):
            yield checked
            continue
        if position <= DRY_RUN_SAMPLE:
            operator.log.info(
                "Dry run: would PATCH /interviews/%s with %s",
                checked.interview_request_id,
                checked.payload.decode(),
            )
        yield UpdateResult(position, checked.interview_request_id, True)


class _Progress:
    """Counts rows and logs rows done, rate, the pace in force, 429s and ETA every ``progress_interval`` s."""

    def __init__(self, operator: BaseHindsightBulkOperator, total: int | None) -> None:
        self.operator = operator
        self.total = total
        self.hook: HindsightHook | None = None
        self.done = 0
        self.failed = 0
        self.unchanged = 0
        self.started = time.monotonic()
        self.last_logged = self.started

    def record(self, succeeded: bool) -> None:
        self.done += 1
        self.failed += not succeeded
        if time.monotonic() - self.last_logged >= self.operator.progress_interval:
            self.log()

    def record_unchanged(self) -> None:
        self.unchanged += 1
        self.record(True)

    def log(self, *, final: bool = False) -> None:
        now = time.monotonic()
        self.last_logged = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        of_total = f" of {self.total:,}" if self.total is not None else ""
        eta = ""
        if self.total is not None and not final and rate > 0:
            eta = f"; ETA {format_duration(max(self.total - self.done, 0) / rate)}"
        pace = ""
        if self.hook is not None:
            pace = f"; pace {_pace_text(self.hook)}, {self.hook.rate_limited_count} answered 429"
        unchanged = f", {self.unchanged:,} unchanged and skipped" if self.unchanged else ""
        self.operator.log.info(
            "%s%s rows done%s (%s failed%s) in %s: %.1f rows/s%s%s.",
            "Finished: " if final else "",
            f"{self.done:,}",
            of_total,
            f"{self.failed:,}",
            unchanged,
            format_duration(elapsed),
            rate,
            pace,
            eta,
        )


class _NotSent:
    """The rows a stopped run did not send: a count and their span, not one entry each."""

    def __init__(self) -> None:
        self.count = 0
        self.first_row = 0
        self.last_row = 0
        self.message = ""

    def add(self, result: UpdateResult) -> None:
        self.count += 1
        self.first_row = min(self.first_row or result.row, result.row)
        self.last_row = max(self.last_row, result.row)
        self.message = result.message or ""


def format_duration(seconds: float) -> str:
    """``9330`` -> ``"2h 35min 30s"``; under a minute, one decimal (``"4.2s"``)."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if hours or minutes:
        parts.append(f"{minutes}min")
    parts.append(f"{secs}s")
    return " ".join(parts)


def _pace_text(hook: HindsightHook) -> str:
    """The pace in force, with the configured one when 429s lowered it."""
    pacer = hook.pacer
    text = f"{pacer.effective_requests_per_minute:,.0f} requests a minute"
    if pacer.requests_per_minute < pacer.configured_requests_per_minute:
        text += f" (lowered from {pacer.configured_requests_per_minute * SAFETY_MARGIN:,.0f} after 429s)"
    return text


def _failure_label(result: UpdateResult) -> str:
    status = f"HTTP {result.status_code} " if result.status_code is not None else ""
    return f"{status}{result.code}"


def parse_flag(name: str, value: object) -> bool:
    """A bool, or what a template renders for one: true/false, 1/0, yes/no (any case), or "" for false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
        return _FLAG_WORDS[value.strip().lower()]
    raise HindsightValidationError(
        f"{name} must be true or false (or a template rendering to true/false, 1/0, yes/no), got {value!r}.",
        field=name,
    )


_FLAG_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}


def _check_max_failures(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HindsightValidationError(
            f"max_failures must be an int count or a float ratio, got {value!r}.", field="max_failures"
        )
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise HindsightValidationError(
            f"max_failures as a float is a ratio between 0.0 and 1.0, got {value!r}; pass an int for a count of rows.",
            field="max_failures",
        )
    if isinstance(value, int) and value < 0:
        raise HindsightValidationError(f"max_failures must be 0 or more, got {value!r}.", field="max_failures")
