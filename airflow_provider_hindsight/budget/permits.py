"""The permit source a hook's pacer asks before each request when its connection has ``budget_conn_id``.

:class:`SharedBudget` hands out the start times of this process's current grant, one per request,
and takes the next grant from the store when the last one is near, in the one thread of the budget
that talks to the store (the event loop's callers await it, so the loop never waits on the
database). A 429 seen here is written to the store at once, without waiting for it, so every
process of the key slows down and holds back. :data:`SHARED_BUDGETS` keeps one budget per key and
pace in a process, as the async hooks' pacers are kept.

The store failing never stops a run and never lets requests out together: this process paces
alone at the share it last had (the pace over the processes it last saw sharing it), spacing
the requests that were waiting, and tries the store again every :data:`STORE_RETRY_SECONDS` in the
budget's thread, going back to the shared budget as soon as the store answers. The budget's thread
logs nothing above DEBUG of it: its lines would reach no trigger's log. The callers tell their own
logs, through a :class:`BudgetNews` each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from airflow_provider_hindsight.budget.share import ACTIVE_SECONDS, LEASE_SECONDS
from airflow_provider_hindsight.budget.store import BudgetConfigurationError, BudgetStore, BudgetStoreError
from airflow_provider_hindsight.pace import SAFETY_MARGIN, PaceSchedule, PaceState

STORE_RETRY_SECONDS = 2.0
"""While pacing alone, the store is tried again this often (in the budget's thread; no request waits for it)."""
REJOIN_SECONDS = STORE_RETRY_SECONDS + ACTIVE_SECONDS
"""After the store is back, this process keeps to its fallback pace too this long: until every other process
tried the store again and counts in the shares, a grant would count too few sharers and hand out too much."""
MAX_USED_FRACTION = 0.9
"""A grant asks for at most ten times the requests waiting (a process using nearly the whole pace)."""
FETCH_AHEAD_SECONDS = 0.1
"""The next grant is taken this long before the current grant's last start time, so none is missed."""
LATE_SECONDS = 0.25
"""A start time this far in the past is dropped, not used: requests held up by a stall (a busy machine)
do not go out together, crowding the start times of the other processes. A task capped below its
share by its own pace uses its grant at that pace, so its start times are counted late from there."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Step:
    """What a caller does next: start at ``start``, wait until ``until``, or take a grant (neither set).

    ``take_next``: the start was the grant's last and is near: take the next grant before waiting for it.
    ``retry_store``: pacing alone and the store is due another try: ask it in the background.
    """

    start: float | None = None
    until: float | None = None
    take_next: bool = False
    retry_store: bool = False


@dataclass(frozen=True)
class BudgetStatus:
    """What a caller's log may say of the budget: whether it is shared now, the share, and the fallbacks so far."""

    shared: bool
    share_requests_per_minute: float | None
    """This process's share (after the safety margin) at the last grant, ``None`` before the first."""
    members: int
    fallbacks: int
    """How many times this process fell back to pacing alone."""
    failure: str
    """Why it last fell back: the store's error, with its fix."""
    alone_requests_per_minute: float | None
    """While pacing alone: its pace (after the safety margin)."""


class SharedBudget:
    """This process's share of one budget (one API key and base URL), for any number of threads and coroutines.

    :meth:`take` (from a worker thread) and :meth:`atake` (from the event loop) say how long until the
    caller's start time; :meth:`pause` and :meth:`slow_down` pass a 429 on to every process of the
    key. ``cap_requests_per_minute`` is this task's own pace: a grant never holds more than a second
    of it. :meth:`close` ends the budget's thread and its database connection.
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
    ) -> None:
        self.store = store
        self.name = name
        self.member = uuid.uuid4().hex
        self.requests_per_minute = requests_per_minute
        self.cap_requests_per_minute = min(cap_requests_per_minute, requests_per_minute)
        self.store_failures = 0
        self.news = BudgetNews(self)
        """What this process's worker-side log was told (one task per process); a trigger keeps its own."""
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        """Guards the local grant and counters; held only for arithmetic."""
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="hindsight-budget")
        """The one thread that talks to the store: a driver's connection may belong to the thread that made
        it (SQLite's does), and the event loop never waits on the database."""
        self._starts: deque[tuple[float, float]] = deque()
        """The current grant's start times not yet handed out, each with the time it must be used by."""
        self._grant_end = 0.0
        self._last_start = 0.0
        """The latest start time handed out: pacing alone goes on from there, not beside the grant's last ones."""
        self._waiting = 0
        self._taken: deque[float] = deque()
        self._pause_until = 0.0
        self._slow_down = False
        self._share: tuple[float, int] | None = None
        """The pace in force and the processes sharing it at the last grant."""
        self._alone: PaceSchedule | None = None
        """While the store fails: this process's own schedule at its last share."""
        self._rejoining: PaceSchedule | None = None
        self._rejoin_until = 0.0
        """After the store is back: the fallback's schedule, a floor under the grants' start times until then."""
        self._retry_at = 0.0
        self._retrying = False
        self._fallbacks = 0
        self._failure = ""

    @property
    def shared(self) -> bool:
        """Whether the store is in use now (``False`` while pacing alone after a failure)."""
        return self._alone is None

    def status(self) -> BudgetStatus:
        """What a caller's log may say of this budget now (see :class:`BudgetNews`)."""
        with self._lock:
            share = None
            members = 0
            if self._share is not None:
                rate, members = self._share
                share = min(rate / members, self.cap_requests_per_minute) * SAFETY_MARGIN
            alone = None if self._alone is None else self._alone.effective_requests_per_minute
            return BudgetStatus(self._alone is None, share, members, self._fallbacks, self._failure, alone)

    def take(self) -> float:
        """Take this process's next start time; return the seconds until it (the pacer waits them).

        Waits here only while every start time of the current grant is taken and the next grant is
        not due yet.
        """
        with closing(self._taking()) as taking:
            while True:
                try:
                    wait = next(taking)
                except StopIteration as done:
                    seconds: float = done.value
                    return seconds
                if wait is None:
                    self._store_thread.submit(self._take_grant).result()
                else:
                    self._sleep(wait)

    async def atake(self) -> float:
        """:meth:`take` for the event loop: the store is asked in the budget's thread, waits are awaited."""
        with closing(self._taking()) as taking:
            while True:
                try:
                    wait = next(taking)
                except StopIteration as done:
                    seconds: float = done.value
                    return seconds
                if wait is None:
                    await asyncio.wrap_future(self._store_thread.submit(self._take_grant))
                else:
                    await self._async_sleep(wait)

    def _taking(self) -> Generator[float | None, None, float]:
        """One take's steps, for :meth:`take` and :meth:`atake` alike: yields ``None`` where a grant must be taken
        from the store (in the budget's thread), or the seconds to wait; returns the seconds until the start time."""
        with self._lock:
            self._waiting += 1
        try:
            while True:
                step = self._step()
                if step.retry_store:
                    self._store_thread.submit(self._retry_store)
                if step.start is None and step.until is None:
                    yield None
                    continue
                if step.take_next:
                    yield None
                if step.start is not None:
                    return max(0.0, step.start - self._clock())
                yield max(0.0, (step.until or 0.0) - self._clock())
        finally:
            with self._lock:
                self._waiting -= 1

    def pause(self, seconds: float) -> None:
        """Hold every process of the key back ``seconds`` (a ``Retry-After``); returns at once."""
        with self._lock:
            now = self._clock()
            self._pause_until = max(self._pause_until, now + seconds)
            self._void_grant()
            if self._alone is not None:
                self._alone.pause(seconds, now)
        self._report()

    def slow_down(self) -> None:
        """Lower the key's shared pace (a 429); returns at once."""
        with self._lock:
            self._slow_down = True
            self._void_grant()
            if self._alone is not None:
                self._alone.slow_down(self._clock())
        self._report()

    def close(self) -> None:
        """End the budget's thread and close its database connection (the budget is not used again)."""
        self._store_thread.submit(self.store.close)
        self._store_thread.shutdown(wait=True)

    # -- the local grant ---------------------------------------------------------------------------

    def _step(self) -> _Step:
        with self._lock:
            now = self._clock()
            if self._alone is not None:  # the store failed: this process's last share, spaced as the budget would
                retry = not self._retrying and now >= self._retry_at
                self._retrying = self._retrying or retry
                ahead = self._too_far_ahead(self._alone, now)
                if ahead is not None:
                    return _Step(until=ahead, retry_store=retry)
                start, _generation, _change = self._alone.reserve(now)
                return _Step(start=start, retry_store=retry)
            rejoining = self._rejoining if now < self._rejoin_until else None
            if rejoining is not None:
                ahead = self._too_far_ahead(rejoining, now)
                if ahead is not None:
                    return _Step(until=ahead)
            while self._starts and self._starts[0][1] < now:
                self._starts.popleft()
            if self._starts:
                self._taken.append(now)
                start, _ = self._starts.popleft()
                if rejoining is not None:
                    start = max(start, rejoining.reserve(now)[0])
                self._last_start = max(self._last_start, start)
                return _Step(start=start, take_next=not self._starts and now >= start - FETCH_AHEAD_SECONDS)
            if now < self._grant_end - FETCH_AHEAD_SECONDS:
                return _Step(until=self._grant_end - FETCH_AHEAD_SECONDS)
            return _Step()

    @staticmethod
    def _too_far_ahead(schedule: PaceSchedule, now: float) -> float | None:
        """When to ask again, if ``schedule``'s next start time is more than :data:`LEASE_SECONDS` away.

        Pacing alone hands out at most a grant's worth of start times ahead, as the budget does: start
        times handed out far ahead would still go out once this process is back on the shared budget.
        """
        state = schedule.state()
        upcoming = max(state.next_start, state.paused_until)
        return upcoming - LEASE_SECONDS if upcoming > now + LEASE_SECONDS else None

    def _use_by(self, starts: tuple[float, ...]) -> list[tuple[float, float]]:
        """Each start time with the time it must be used by: :data:`LATE_SECONDS` after it, or, for a task
        whose own pace is slower than the shared one, after the time its own pace reaches it."""
        own_interval = 60.0 / (self.cap_requests_per_minute * SAFETY_MARGIN)
        return [
            (start, max(start, starts[0] + index * own_interval) + LATE_SECONDS) for index, start in enumerate(starts)
        ]

    def _void_grant(self) -> None:
        """Start times taken before a 429 no longer hold: the next grant carries the pause."""
        self._starts.clear()
        self._grant_end = 0.0

    def _demand(self, now: float) -> int:
        """A grant's size at most: the requests waiting now, and those expected while the grant's start times come.

        A grant's start times are spaced at the key's whole pace; a process that used the fraction ``x`` of
        that pace in the last :data:`LEASE_SECONDS` sees about ``x`` new requests per start time, so ``w``
        waiting requests use ``w / (1 - x)`` start times. A busy process reaches its fair share in a few
        grants; one that sends now and then (a triggerer of a few sensors) takes the start times it waits
        for, not start times the others would have used.
        """
        while self._taken and self._taken[0] < now - LEASE_SECONDS:
            self._taken.popleft()
        pace = self.requests_per_minute if self._share is None else self._share[0]
        used = min(MAX_USED_FRACTION, len(self._taken) / LEASE_SECONDS / (pace * SAFETY_MARGIN / 60.0))
        return max(self._waiting, math.floor(self._waiting / (1.0 - used)))

    # -- the store ---------------------------------------------------------------------------------

    def _take_grant(self, *, report_only: bool = False) -> None:
        """Take the next grant, passing on a 429 seen here; ``report_only``: pass it on, take no start time.

        On failure, this process paces alone at its last share (see :meth:`_pace_alone`).
        """
        with self._lock:
            now = self._clock()
            current = bool(self._starts) or now < self._grant_end - FETCH_AHEAD_SECONDS
            pending = self._slow_down or self._pause_until > now
            if self._alone is not None or ((current or report_only) and not pending):
                return  # pacing alone, or another caller took the grant (or passed the 429 on) just before
            demand = 0 if current or report_only else self._demand(now)
        self._ask_store(demand)

    def _retry_store(self) -> None:
        """While pacing alone: ask the store for nothing but to pass on a 429; its answer ends the fallback."""
        try:
            self._ask_store(0)
        finally:
            with self._lock:
                self._retrying = False

    def _ask_store(self, demand: int) -> None:
        with self._lock:
            pause_until, slow_down = self._pause_until, self._slow_down
        try:
            grant = self.store.lease(
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
            if grant.starts:
                self._starts.extend(self._use_by(grant.starts))
                self._grant_end = grant.starts[-1]
            if demand:
                self._share = (grant.state.rate, grant.members)
            back = self._alone is not None
            if back:
                self._rejoining, self._rejoin_until = self._alone, self._clock() + REJOIN_SECONDS
            self._alone = None
        if back:
            log.debug("The shared rate budget on %r is in use again.", self.store.budget_conn_id)
        for change in grant.changes:
            log.info(
                "The shared pace of this API key changed from %.0f to %.0f requests a minute: %s.",
                change.old_requests_per_minute,
                change.new_requests_per_minute,
                change.reason,
            )

    def _report(self) -> None:
        """Pass a 429 on to the store without waiting for it: the caller may be the event loop."""
        if self.shared:
            self._store_thread.submit(self._take_grant, report_only=True)

    def _pace_alone(self, error: BudgetStoreError) -> None:
        """Space this process's requests at its last share (its own pace if it never had one) until the
        store answers again; the callers' logs say so (:class:`BudgetNews`)."""
        if isinstance(error, BudgetConfigurationError):
            reason = str(error)
        else:
            reason = f"{error}. Fix: check that the connection's database is up and writable"
        with self._lock:
            now = self._clock()
            self._retry_at = now + STORE_RETRY_SECONDS
            self.store_failures += 1
            if self._alone is None:
                share = self.cap_requests_per_minute
                if self._share is not None:
                    rate, members = self._share
                    share = min(rate / members, share)
                interval = 60.0 / (share * SAFETY_MARGIN)
                first = max(now, self._last_start + interval)
                self._alone = PaceSchedule.restore(share, PaceState(share, first, self._pause_until, now, -math.inf))
                self._void_grant()
                self._fallbacks += 1
                self._failure = reason
        log.debug("The shared rate budget on %r cannot be used: %s", self.store.budget_conn_id, reason)


class BudgetNews:
    """What one log (a task's, a trigger's) has been told of a shared budget: told from the caller's side.

    :meth:`tell` is called after each permit, from the caller's thread or coroutine, so the lines reach
    that task's or trigger's log: one INFO line at the first request (paced through the shared budget,
    with the share then), one WARNING each time the budget fell back to pacing alone since the last
    look, and one INFO line when it is shared again.
    """

    def __init__(self, budget: SharedBudget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._looked = False
        self._announced = False
        self._fallbacks = 0
        self._alone = False

    def tell(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        status = self.budget.status()
        with self._lock:
            if not self._looked and status.shared:
                self._fallbacks = status.fallbacks  # a fallback over before this log's first request is not its news
            self._looked = True
            announce = not self._announced and status.share_requests_per_minute is not None and status.shared
            fell_back = status.fallbacks > self._fallbacks
            back = self._alone and status.shared and not fell_back
            self._announced = self._announced or announce
            self._fallbacks = status.fallbacks
            self._alone = not status.shared
        connection = self.budget.store.budget_conn_id
        if announce:
            logger.info(
                "Paced through the shared rate budget on budget_conn_id %r: this process's share is %.0f requests a "
                "minute now (%d process(es) sharing the key's %s a minute).",
                connection,
                status.share_requests_per_minute,
                status.members,
                f"{self.budget.requests_per_minute * SAFETY_MARGIN:.0f}",
            )
        if fell_back:
            logger.warning(
                "The shared rate budget on budget_conn_id %r cannot be used (%s): this process paces alone at "
                "its last share, %.0f requests a minute, and goes back to the budget when its database answers "
                "(tried every %.0f s).",
                connection,
                status.failure,
                status.alone_requests_per_minute or 0.0,
                STORE_RETRY_SECONDS,
            )
        if back:
            logger.info("The shared rate budget on budget_conn_id %r is in use again.", connection)


class SharedBudgets:
    """The budgets of one process: one per key (and budget table), connection pace and task pace, made on first use."""

    def __init__(self) -> None:
        self._budgets: dict[tuple[str, str, str, float, float], SharedBudget] = {}
        self._lock = threading.Lock()

    def get(
        self,
        budget_conn_id: str,
        table: str,
        *,
        name: str,
        requests_per_minute: float,
        cap_requests_per_minute: float,
    ) -> SharedBudget:
        cap = min(cap_requests_per_minute, requests_per_minute)
        key = (budget_conn_id, table, name, float(requests_per_minute), float(cap))
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = SharedBudget(
                    BudgetStore(budget_conn_id, table),
                    name=name,
                    requests_per_minute=requests_per_minute,
                    cap_requests_per_minute=cap,
                )
            return budget

    def close(self) -> None:
        """Close every budget (their threads and connections) and forget them: the next use makes new ones."""
        with self._lock:
            budgets, self._budgets = list(self._budgets.values()), {}
        for budget in budgets:
            budget.close()


SHARED_BUDGETS = SharedBudgets()
"""The process's budgets, those every hook with ``budget_conn_id`` uses."""
