"""The permit source a hook's pacer asks before each request when its connection has ``budget_conn_id``.

:class:`SharedBudget` hands out the start times of this process's current lease, one per request,
and takes the next lease from the store when the last one is near, in the one thread of the budget
that talks to the store (the event loop's callers await it, so the loop never waits on the
database). A 429 seen here is written to the store at once, without waiting for it, so every
process of the key slows down and holds back. The store failing costs one WARNING per budget (per
task), then this process paces alone, as it would without a budget, and tries the store again every
:data:`STORE_RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from airflow_provider_hindsight.budget.share import LEASE_SECONDS
from airflow_provider_hindsight.budget.store import BudgetStore, BudgetStoreError
from airflow_provider_hindsight.pace import SAFETY_MARGIN, PaceChange

STORE_RETRY_SECONDS = 30.0
"""After the store failed, this process paces alone this long before it tries the store again."""
FETCH_AHEAD_SECONDS = 0.1
"""The next lease is taken this long before the current lease's last start time, so none is missed."""
LATE_SECONDS = 0.25
"""A start time this far in the past is dropped, not used: requests held up by a stall (a busy machine)
do not go out together, crowding the start times of the other processes. A task capped below its
share by its own pace uses its lease at that pace, so its start times are counted late from there."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Step:
    """What a caller does next: start at ``start``, wait until ``until``, or take a lease (neither set).

    ``take_next``: the start was the lease's last and is near: take the next lease before waiting for it.
    """

    start: float | None = None
    until: float | None = None
    take_next: bool = False


class SharedBudget:
    """This process's share of one budget (one API key and base URL), for any number of threads and coroutines.

    :meth:`take` (from a worker thread) and :meth:`atake` (from the event loop) say how long until the
    caller's start time; :meth:`pause` and :meth:`slow_down` pass a 429 on to every process of the
    key. ``cap_requests_per_minute`` is this task's own pace: a lease never holds more than a second
    of it.
    """

    def __init__(
        self,
        store: BudgetStore,
        *,
        name: str,
        requests_per_minute: float,
        cap_requests_per_minute: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_change: Callable[[PaceChange], None] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.member = uuid.uuid4().hex
        self.requests_per_minute = requests_per_minute
        self.cap_requests_per_minute = min(cap_requests_per_minute, requests_per_minute)
        self.store_failures = 0
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._on_change = on_change
        self._lock = threading.Lock()
        """Guards the local lease and counters; held only for arithmetic."""
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="hindsight-budget")
        """The one thread that talks to the store: a driver's connection may belong to the thread that made
        it (SQLite's does), and the event loop never waits on the database."""
        self._starts: deque[tuple[float, float]] = deque()
        """The current lease's start times not yet handed out, each with the time it must be used by."""
        self._lease_end = 0.0
        self._alone_until = 0.0
        self._waiting = 0
        self._taken: deque[float] = deque()
        self._pause_until = 0.0
        self._slow_down = False
        self._failed = False
        """Whether the last call to the store failed (the next success says so at INFO)."""

    @property
    def shared(self) -> bool:
        """Whether the store is in use now (``False`` while pacing alone after a failure)."""
        return self._clock() >= self._alone_until

    def take(self) -> float:
        """Take this process's next start time; return the seconds until it (the pacer waits them).

        Waits here only while every start time of the current lease is taken and the next lease is
        not due yet.
        """
        with self._lock:
            self._waiting += 1
        try:
            while True:
                step = self._step()
                if step.start is None and step.until is None:
                    self._store_thread.submit(self._take_lease).result()
                    continue
                if step.take_next:
                    self._store_thread.submit(self._take_lease).result()
                if step.start is not None:
                    return max(0.0, step.start - self._clock())
                self._sleep(max(0.0, (step.until or 0.0) - self._clock()))
        finally:
            with self._lock:
                self._waiting -= 1

    async def atake(self) -> float:
        """:meth:`take` for the event loop: the store is asked in the budget's thread, waits are awaited."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                step = self._step()
                if step.start is None and step.until is None:
                    await asyncio.wrap_future(self._store_thread.submit(self._take_lease))
                    continue
                if step.take_next:
                    await asyncio.wrap_future(self._store_thread.submit(self._take_lease))
                if step.start is not None:
                    return max(0.0, step.start - self._clock())
                await self._async_sleep(max(0.0, (step.until or 0.0) - self._clock()))
        finally:
            with self._lock:
                self._waiting -= 1

    def pause(self, seconds: float) -> None:
        """Hold every process of the key back ``seconds`` (a ``Retry-After``); returns at once."""
        with self._lock:
            self._pause_until = max(self._pause_until, self._clock() + seconds)
            self._void_lease()
        self._report()

    def slow_down(self) -> None:
        """Lower the key's shared pace (a 429); returns at once."""
        with self._lock:
            self._slow_down = True
            self._void_lease()
        self._report()

    # -- the local lease ---------------------------------------------------------------------------

    def _step(self) -> _Step:
        with self._lock:
            now = self._clock()
            if now < self._alone_until:
                return _Step(start=now)  # pacing alone: the hook's own pacer spaces the requests
            while self._starts and self._starts[0][1] < now:
                self._starts.popleft()
            if self._starts:
                self._taken.append(now)
                start, _ = self._starts.popleft()
                return _Step(start=start, take_next=not self._starts and now >= start - FETCH_AHEAD_SECONDS)
            if now < self._lease_end - FETCH_AHEAD_SECONDS:
                return _Step(until=self._lease_end - FETCH_AHEAD_SECONDS)
            return _Step()

    def _use_by(self, starts: tuple[float, ...]) -> list[tuple[float, float]]:
        """Each start time with the time it must be used by: :data:`LATE_SECONDS` after it, or, for a task
        whose own pace is slower than the shared one, after the time its own pace reaches it."""
        own_interval = 60.0 / (self.cap_requests_per_minute * SAFETY_MARGIN)
        return [
            (start, max(start, starts[0] + index * own_interval) + LATE_SECONDS) for index, start in enumerate(starts)
        ]

    def _void_lease(self) -> None:
        """Start times taken before a 429 no longer hold: the next lease carries the pause."""
        self._starts.clear()
        self._lease_end = 0.0

    def _demand(self, now: float) -> int:
        """A lease's size at most: twice the requests waiting now and started in the last lease period.

        A busy process reaches its fair share in a few leases; one that sends now and then (a triggerer
        of a few sensors) takes a few start times, not a share it would leave unused.
        """
        while self._taken and self._taken[0] < now - LEASE_SECONDS:
            self._taken.popleft()
        return 2 * (self._waiting + len(self._taken))

    # -- the store ---------------------------------------------------------------------------------

    def _take_lease(self, *, report_only: bool = False) -> None:
        """Take the next lease, passing on a 429 seen here; ``report_only``: pass it on, take no start time.

        On failure, this process paces alone for :data:`STORE_RETRY_SECONDS`.
        """
        with self._lock:
            now = self._clock()
            current = bool(self._starts) or now < self._lease_end - FETCH_AHEAD_SECONDS
            pending = self._slow_down or self._pause_until > now
            if now < self._alone_until or ((current or report_only) and not pending):
                return  # pacing alone, or another caller took the lease (or passed the 429 on) just before
            demand = 0 if current or report_only else self._demand(now)
            pause_until, slow_down = self._pause_until, self._slow_down
        try:
            lease = self.store.lease(
                self.name,
                self.member,
                configured_requests_per_minute=self.requests_per_minute,
                cap_requests_per_minute=self.cap_requests_per_minute,
                demand=demand,
                pause_until=pause_until,
                slow_down=slow_down,
            )
        except BudgetStoreError as error:
            self._pace_alone(error)
            return
        with self._lock:
            if self._pause_until <= pause_until:
                self._pause_until = 0.0
            self._slow_down = self._slow_down and not slow_down
            if lease.starts:
                self._starts.extend(self._use_by(lease.starts))
                self._lease_end = lease.starts[-1]
            back, self._failed = self._failed, False
        if back:
            log.info("The shared rate budget on %r is in use again.", self.store.budget_conn_id)
        for change in lease.changes:
            if self._on_change is not None:
                self._on_change(change)

    def _report(self) -> None:
        """Pass a 429 on to the store without waiting for it: the caller may be the event loop."""
        if self.shared:
            self._store_thread.submit(self._take_lease, report_only=True)

    def _pace_alone(self, error: BudgetStoreError) -> None:
        with self._lock:
            self._alone_until = self._clock() + STORE_RETRY_SECONDS
            self._void_lease()
        self.store_failures += 1
        self._failed = True
        message = (
            "The shared rate budget on budget_conn_id %r cannot be used (%s): this task paces alone at its own "
            "%s requests a minute and tries the budget again in %.0f s. Tasks on the same API key may then be "
            "answered 429 (and retried). Fix: check that the connection's database is up and writable."
        )
        arguments = (self.store.budget_conn_id, error, f"{self.cap_requests_per_minute:g}", STORE_RETRY_SECONDS)
        if self.store_failures == 1:
            log.warning(message, *arguments)
        else:
            log.debug(message, *arguments)
