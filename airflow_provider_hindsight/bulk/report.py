"""A bulk run's accounting: every row counted under one outcome, progress logged, the summary, the verdict.

:class:`RunReport` is the one accountant of every bulk operator. The operator says which outcome
each row ended in (``succeeded``/``unchanged`` for updates, ``created``/``existing``/``unknown`` for
creates, ...); the report counts it, logs failed rows (up to :data:`LOGGED_FAILURES`, no row
values: only the key, the reason and the code), counts the rows a stopped run did not send rather
than listing them, logs progress lines that say what was sent and at what pace, and at the end
builds the summary and decides whether the task fails, and how.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from airflow_provider_hindsight.bulk.rows import RowResult, RunStop
from airflow_provider_hindsight.exceptions import HindsightPermanentError, HindsightTransientError

LOGGED_FAILURES = 50
"""How many failed rows a bulk run logs one by one; the rest are counted (the summary XCom has all)."""

FAILED = "failed"


class RunReport:
    """Counts one bulk run's rows by outcome, logs as it goes, and ends in a summary and a verdict.

    :param log: the operator's logger.
    :param outcomes: the summary's counters, in order (``failed`` is always one of them).
    :param listed: outcomes whose rows are listed in ``failures`` and logged (failed rows, and for
        creates the rows whose outcome is unknown).
    :param key_name: how a row's key is called in ``failures`` (``interview_request_id``, ``request_key``).
    :param key_label: how it is called in log lines (``interview``, ``request_key``).
    :param total: the number of rows, when known (for progress lines and an ETA).
    :param pace: the pace in force, as text for progress lines (``None`` in a dry run).
    """

    def __init__(
        self,
        log: logging.Logger | Any,
        *,
        outcomes: Sequence[str],
        listed: Sequence[str] = (FAILED,),
        key_name: str = "interview_request_id",
        key_label: str = "interview",
        total: int | None = None,
        progress_interval: float = 30.0,
        pace: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.counts: dict[str, int] = dict.fromkeys(outcomes, 0)
        self.counts.setdefault(FAILED, 0)
        self.listed = frozenset(listed)
        self.key_name = key_name
        self.key_label = key_label
        self.total = total
        self.progress_interval = progress_interval
        self.pace = pace
        self.clock = clock
        self.failures: list[dict[str, Any]] = []
        self.done = 0
        self.sent = 0
        self.accepted = 0
        self.any_transient = False
        self.not_sent = 0
        self.unsent: dict[str, tuple[int, str]] = {}
        """Per outcome, rows this run did not send whatever their code, and why: ``{"unknown": (16, "...")}``."""
        self._not_sent_span: tuple[int, int] | None = None
        self._not_sent_message = ""
        self.started = clock()
        self._last_logged = self.started
        self._progress_lock = threading.Lock()

    def record(self, result: RowResult, outcome: str, *, not_sent_because: str = "") -> None:
        """Count one row under ``outcome``; list and log it when that outcome is listed.

        ``not_sent_because`` says why this run did not send a row whose result reads as sent (a create
        an earlier try left ``pending``, now ``unknown``): it is not counted as sent, and the progress
        line says why beside its outcome.
        """
        self.counts[outcome] += 1
        self.done += 1
        if not_sent_because:
            count, _ = self.unsent.get(outcome, (0, ""))
            self.unsent[outcome] = (count + 1, not_sent_because)
        elif result.was_sent:
            self.sent += 1
            self.accepted += result.succeeded
        if result.code == "not_sent":  # counted, not listed: a stopped run of a million rows stays small
            self.not_sent += 1
            first, last = self._not_sent_span or (result.row, result.row)
            self._not_sent_span = (min(first, result.row), max(last, result.row))
            self._not_sent_message = result.message or ""
        elif outcome in self.listed:
            self.failures.append(result.as_failure(self.key_name))
            self.any_transient = self.any_transient or result.transient
            if len(self.failures) <= LOGGED_FAILURES:
                status = f"HTTP {result.status_code} " if result.status_code is not None else ""
                self.log.warning(
                    "Row %d, %s %s %s: %s (%s%s).",
                    result.row,
                    self.key_label,
                    result.key,
                    "failed" if outcome == FAILED else f"ended {outcome}",
                    result.message,
                    status,
                    result.code,
                )
        self._progress_when_due()

    def _progress_when_due(self) -> None:
        with self._progress_lock:
            if self.clock() - self._last_logged >= self.progress_interval:
                self.log_progress()

    def beating(self, results: Iterable[RowResult]) -> Iterator[RowResult]:
        """``results`` as they come, with a progress line at least every ``progress_interval`` while the
        run waits for them: a long ``Retry-After``, a slow API or a plan of many ids ends no row for
        minutes, and the log must still say the run is alive."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.progress_interval / 4):
                self._progress_when_due()

        heart = threading.Thread(target=beat, name="hindsight-progress", daemon=True)
        heart.start()
        try:
            yield from results
        finally:
            stop.set()
            heart.join()

    def log_progress(self, *, final: bool = False) -> None:
        """One line: rows done, what was sent and accepted, each outcome, the rate of sending, the pace, an ETA."""
        now = self.clock()
        self._last_logged = now
        elapsed = max(now - self.started, 1e-9)
        of_total = f" of {self.total:,}" if self.total is not None else ""
        shown = [name for name, count in self.counts.items() if count or name == FAILED]
        counted = ", ".join(f"{self.counts[name]:,} {name}{self._unsent_note(name)}" for name in shown)
        eta = ""
        if self.total is not None and not final and self.done:
            eta = f"; ETA {format_duration(max(self.total - self.done, 0) * elapsed / self.done)}"
        pace = f"; pace {self.pace()}" if self.pace is not None else ""
        self.log.info(
            "%s%s rows done%s in %s: %s sent (%s accepted), %s; %.1f requests/s%s%s.",
            "Finished: " if final else "",
            f"{self.done:,}",
            of_total,
            format_duration(elapsed),
            f"{self.sent:,}",
            f"{self.accepted:,}",
            counted + (f" ({self.not_sent:,} not sent)" if self.not_sent else ""),
            self.sent / elapsed,
            pace,
            eta,
        )

    def summary(self, stop: RunStop | None = None, *, dry_run: bool = False) -> dict[str, Any]:
        """Log the last lines and return the summary: ``total``, each outcome, ``failures``, and why it stopped."""
        self.log_progress(final=True)
        if len(self.failures) > LOGGED_FAILURES:
            self.log.warning(
                "%d more rows %s; the summary XCom (key 'summary') lists every one and why.",
                len(self.failures) - LOGGED_FAILURES,
                self._ended(),
            )
        if self._not_sent_span is not None:
            first, last = self._not_sent_span
            self.log.warning(
                "%d rows, between row %d and row %d, were %s", self.not_sent, first, last, self._not_sent_message
            )
        failures = sorted(self.failures, key=lambda failure: failure["row"])  # workers finish out of order
        summary: dict[str, Any] = {"total": self.done, **self.counts, "failures": failures}
        if stop is not None:
            summary["stopped"] = {"code": stop.code, "reason": stop.reason, "not_sent": self.not_sent}
        if dry_run:
            summary["dry_run"] = True
        return summary

    def verdict(self, summary: dict[str, Any], *, max_failures: int | float, stop: RunStop | None) -> None:
        """Fail the task when it stopped early or too many rows failed; say when tolerated failures kept it green.

        ``failed`` plus the rows listed under other outcomes (a create's newly unknown rows) count
        against ``max_failures``. The failure is retryable when a transient error was among its causes.
        """
        total = summary["total"]
        if stop is not None:
            error_class = HindsightTransientError if stop.transient else HindsightPermanentError
            raise error_class(
                f"The run stopped early: {stop.reason}. {summary[FAILED]} of {total} rows failed, {self.not_sent} of "
                "them not sent; the summary XCom (key 'summary') lists the rows that were sent and failed.",
                code=stop.code,
            )
        bad = sum(self.counts[name] for name in self.listed)
        allowed = int(max_failures * total) if isinstance(max_failures, float) else max_failures
        ended = self._ended()
        if bad <= allowed:
            if bad:
                self.log.info(
                    "%d of %d rows %s, within max_failures=%r (%d allowed): the task succeeds.",
                    bad,
                    total,
                    ended,
                    max_failures,
                    allowed,
                )
            return
        codes = sorted({str(failure["code"]) for failure in summary["failures"]})
        error_class = HindsightTransientError if self.any_transient else HindsightPermanentError
        raise error_class(
            f"{bad} of {total} rows {ended} (max_failures={max_failures!r}, {allowed} allowed); codes: "
            f"{', '.join(codes)}. The task log and the summary XCom (key 'summary') list each row and why.",
            code="too_many_failures",
        )

    def _unsent_note(self, outcome: str) -> str:
        """`` (left pending by an earlier try, not sent)``, or `` (3 of them ...)`` when not all were."""
        if outcome not in self.unsent:
            return ""
        count, why = self.unsent[outcome]
        return f" ({why})" if count == self.counts[outcome] else f" ({count:,} of them {why})"

    def _ended(self) -> str:
        """How the listed rows ended, in words: ``failed``, ``failed or unknown``."""
        return " or ".join([FAILED, *sorted(name for name in self.listed if name != FAILED)])


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
