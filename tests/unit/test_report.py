"""``RunReport``, a bulk run's accountant, with no Airflow database: counts, listed rows, the rows a
stopped run did not send, progress lines that say what was sent, and the verdict."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from airflow_provider_hindsight.bulk.report import LOGGED_FAILURES, RunReport
from airflow_provider_hindsight.bulk.rows import RowResult, RunStop
from airflow_provider_hindsight.exceptions import (
    HindsightBadRequestError,
    HindsightPermanentError,
    HindsightServerError,
    HindsightTransientError,
)

from .helpers import FakeTime

STOP = RunStop("the API refused the key", "stopped_auth", transient=False)


class Lines:
    """A logger double that keeps each line with its level."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str]] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append((logging.INFO, message % args))

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append((logging.WARNING, message % args))

    def at(self, level: int) -> list[str]:
        return [line for at, line in self.lines if at == level]


def update_report(log: Lines, **kwargs: Any) -> RunReport:
    return RunReport(log, outcomes=("succeeded", "failed", "unchanged"), key_name="interview_request_id", **kwargs)


def test_every_row_is_counted_under_its_outcome() -> None:
    log = Lines()
    report = update_report(log, total=4)
    report.record(RowResult.sent(1, 11), "succeeded")
    report.record(
        RowResult.failed(2, 12, HindsightBadRequestError("bad", status_code=400, code="bad_request")), "failed"
    )
    report.record(RowResult.skipped(3, 13), "unchanged")
    report.record(RowResult.not_sent(4, 14, STOP), "failed")

    summary = report.summary(STOP)

    assert summary["total"] == 4
    assert (summary["succeeded"], summary["failed"], summary["unchanged"]) == (1, 2, 1)
    assert summary["failures"] == [
        {"row": 2, "interview_request_id": 12, "status_code": 400, "code": "bad_request", "message": "bad"}
    ]
    assert summary["stopped"] == {"code": "stopped_auth", "reason": "the API refused the key", "not_sent": 1}
    (final,) = [line for line in log.at(logging.INFO) if line.startswith("Finished")]
    assert "4 rows done of 4" in final
    assert "2 sent (1 accepted)" in final, "the unchanged and the not-sent rows were not sent"
    assert "1 unchanged" in final and "(1 not sent)" in final
    assert any("1 rows, between row 4 and row 4, were not sent" in line for line in log.at(logging.WARNING))


def test_failed_rows_are_logged_up_to_the_limit_then_counted() -> None:
    log = Lines()
    report = update_report(log)
    for row in range(1, LOGGED_FAILURES + 4):
        report.record(RowResult.failed(row, row, HindsightServerError("down", status_code=503)), "failed")
    report.summary()

    per_row = [line for line in log.at(logging.WARNING) if line.startswith("Row ")]
    assert len(per_row) == LOGGED_FAILURES
    assert per_row[0] == "Row 1, interview 1 failed: down (HTTP 503 None)."
    assert any(line.startswith("3 more rows failed;") for line in log.at(logging.WARNING))


def test_progress_lines_come_every_interval_with_an_eta() -> None:
    fake = FakeTime()
    log = Lines()
    report = update_report(log, total=10, progress_interval=5, clock=fake.clock, pace=lambda: "970 requests a minute")
    for row in range(1, 4):
        fake.advance(2)
        report.record(RowResult.sent(row, row), "succeeded")

    (line,) = log.at(logging.INFO)
    assert line.startswith("3 rows done of 10 in 6.0s: 3 sent (3 accepted)")
    assert "pace 970 requests a minute" in line
    assert line.endswith("ETA 14.0s.")


@pytest.mark.parametrize(
    ("max_failures", "failed", "fails"),
    [(0, 0, False), (0, 1, True), (2, 2, False), (2, 3, True), (0.5, 5, False), (0.5, 6, True)],
)
def test_the_verdict_counts_failures_against_max_failures(max_failures: float, failed: int, fails: bool) -> None:
    log = Lines()
    report = update_report(log)
    for row in range(1, 11):
        if row <= failed:
            report.record(RowResult.failed(row, row, HindsightBadRequestError("bad", status_code=400)), "failed")
        else:
            report.record(RowResult.sent(row, row), "succeeded")
    summary = report.summary()

    if fails:
        with pytest.raises(HindsightPermanentError, match=f"max_failures={max_failures!r}"):
            report.verdict(summary, max_failures=max_failures, stop=None)
    else:
        report.verdict(summary, max_failures=max_failures, stop=None)
        if failed:
            assert any(f"within max_failures={max_failures!r}" in line for line in log.at(logging.INFO))


def test_a_transient_cause_makes_the_failure_retryable() -> None:
    report = update_report(Lines())
    report.record(RowResult.failed(1, 1, HindsightServerError("down", status_code=503)), "failed")
    with pytest.raises(HindsightTransientError, match=r"1 of 1 rows failed"):
        report.verdict(report.summary(), max_failures=0, stop=None)


def test_a_stopped_run_fails_as_its_stop_says() -> None:
    report = update_report(Lines())
    report.record(RowResult.not_sent(1, 1, STOP), "failed")
    summary = report.summary(STOP)
    with pytest.raises(HindsightPermanentError, match="The run stopped early: the API refused the key") as info:
        report.verdict(summary, max_failures=100, stop=STOP)
    assert not isinstance(info.value, HindsightTransientError)


def test_listed_outcomes_besides_failed_count_and_are_listed() -> None:
    """A create's newly unknown rows: listed in failures and counted against max_failures."""
    report = RunReport(
        Lines(),
        outcomes=("created", "existing", "failed", "unknown"),
        listed=("failed", "unknown"),
        key_name="request_key",
    )
    report.record(RowResult.sent(1, "D-1:C-1"), "created")
    unknown = RowResult(2, "D-2:C-2", False, None, "unknown_outcome", "may have been created")
    report.record(unknown, "unknown")
    summary = report.summary()

    assert summary["unknown"] == 1
    assert summary["failures"][0]["request_key"] == "D-2:C-2"
    with pytest.raises(HindsightPermanentError):
        report.verdict(summary, max_failures=0, stop=None)


def test_a_run_waiting_for_its_rows_still_logs_progress() -> None:
    """No row ends while the API holds every worker (a long Retry-After): the log still says the run is alive."""
    logged = threading.Event()

    class Waiting(Lines):
        def info(self, message: str, *args: Any) -> None:
            super().info(message, *args)
            logged.set()

    lines = Waiting()
    report = RunReport(lines, outcomes=("succeeded", "failed"), total=2, progress_interval=0.05)

    def results() -> Any:
        assert logged.wait(timeout=30), "no progress line while the run waited"
        yield RowResult.sent(1, 4821)

    for result in report.beating(results()):
        report.record(result, "succeeded")
    assert lines.at(logging.INFO)[0].startswith("0 rows done of 2 in ")
    assert not any(thread.name == "hindsight-progress" for thread in threading.enumerate())


def test_failures_are_listed_in_row_order_whatever_order_the_workers_finish_in() -> None:
    report = update_report(Lines(), total=3)
    for row in (3, 1, 2):
        report.record(
            RowResult.failed(row, 10 + row, HindsightBadRequestError("bad", status_code=400, code="bad_request")),
            "failed",
        )

    assert [failure["row"] for failure in report.summary()["failures"]] == [1, 2, 3]
