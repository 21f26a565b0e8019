"""The bulk engine: many requests at the hook's pace, in a thread pool fed lazily, one result per row.

At most ``2 * max_workers`` rows are in flight, so memory stays flat however many rows come. What a
row's request is, is the caller's ``send`` (an update, a create, a read), usually a hook's method
handed over: the hooks know no bulk run. The engine only runs it, hands its result to the circuit
breaker in the worker (before any other row starts), and ends the rows not yet sent once the
breaker trips. :func:`update_interviews` is the engine for updates, for users' own tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from airflow_provider_hindsight.bulk.circuit import CircuitBreaker
from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult, check_rows
from airflow_provider_hindsight.exceptions import HindsightRunStoppedError

if TYPE_CHECKING:
    from airflow_provider_hindsight.hooks.hindsight import HindsightHook
    from airflow_provider_hindsight.resources.interviews import InterviewUpdate

Send = Callable[[int, Any, threading.Event], "dict[str, Any] | RowResult"]
"""Sends one job: ``(position, job, stopped)``, ``stopped`` being the breaker's event. Returns the API's
answer, or the row's own result when it ended otherwise (a create another run had claimed)."""


def update_interviews(
    hook: HindsightHook,
    rows: Iterable[Mapping[str, Any] | InterviewUpdate],
    *,
    breaker: CircuitBreaker | None = None,
) -> Iterator[RowResult]:
    """Send many updates through ``hook``, at its pace with its ``max_workers``; one :class:`RowResult` per row.

    Results come in completion order. Rows are consumed lazily (at most ``2 * max_workers`` in
    flight: flat memory); invalid rows and repeated ids are reported, never sent. ``breaker`` (a new
    one by default) stops the run when no further row can succeed: the rest end ``not_sent``;
    ``breaker.stop`` says why.
    """
    return run_rows(check_rows(rows), update_send(hook), max_workers=hook.max_workers, breaker=breaker)


def update_send(hook: HindsightHook) -> Send:
    """The engine's ``send`` for updates: the hook's PATCH, whose attempts end when the run stops."""

    def send(position: int, update: InterviewUpdate, stopped: threading.Event) -> dict[str, Any]:
        return hook.send_update(update, stopped=stopped)

    return send


def run_rows(
    checked: Iterable[CheckedRow],
    send: Send,
    *,
    max_workers: int,
    breaker: CircuitBreaker | None = None,
) -> Iterator[RowResult]:
    """Send every job of ``checked`` with ``send`` in ``max_workers`` threads; yield one result per row.

    A :class:`RowResult` in ``checked`` is a row that ended before sending (invalid, a duplicate,
    unchanged): it is passed through as it is. Results come in completion order. After ``breaker``
    trips, rows not yet sent end as ``not_sent``; read ``breaker.stop`` for why. After
    ``breaker.abort()`` no further row is read.

    When reading ``checked`` fails (the source query, a ledger look-up), the rows in flight are still
    collected and yielded, then the error is raised: every row that was sent is accounted for.
    """
    breaker = breaker or CircuitBreaker()
    in_flight: set[Future[RowResult]] = set()
    reading_error: Exception | None = None
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hindsight") as pool:
        try:
            for position, job in checked:
                if breaker.aborted:
                    break
                if isinstance(job, RowResult):
                    yield job
                elif breaker.stop is not None:
                    yield RowResult.not_sent(position, job.key, breaker.stop)
                else:
                    in_flight.add(pool.submit(_send_row, position, job, send, breaker))
                    if len(in_flight) >= 2 * max_workers:
                        yield from _collect(in_flight)
        except Exception as error:  # reading the rows failed: stop sending, account for what was sent
            reading_error = error
            breaker.abort(f"reading the rows failed ({type(error).__name__})")
        while in_flight:
            yield from _collect(in_flight)
    if reading_error is not None:
        raise reading_error


def _send_row(position: int, job: Any, send: Send, breaker: CircuitBreaker) -> RowResult:
    """Send one row in a worker thread; the breaker hears of its result before any other row starts."""
    try:
        answer = send(position, job, breaker.stopped)
    except HindsightRunStoppedError:
        assert breaker.stop is not None  # the event is set only after the stop is recorded
        return RowResult.not_sent(position, job.key, breaker.stop)
    except Exception as error:  # a row's failure is its result, whatever it is
        result = RowResult.failed(position, job.key, error)
    else:
        result = answer if isinstance(answer, RowResult) else RowResult.sent(position, job.key, answer)
    breaker.record(result)
    return result


def _collect(in_flight: set[Future[RowResult]]) -> Iterator[RowResult]:
    """Wait for at least one row in flight to end; yield the results of those that did."""
    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
    for future in done:
        in_flight.discard(future)
        yield future.result()
