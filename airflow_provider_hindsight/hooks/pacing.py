"""The one client-side pacer: spaces request starts so the API's rate limit is never tripped.

:class:`~airflow_provider_hindsight.pace.PaceSchedule` (in ``pace.py``, below the hooks: the shared
budget runs it too) is the arithmetic, pure; :class:`RatePacer` puts a lock and a clock around it
and offers a blocking waiter (worker threads) and an awaiting one (the triggerer's event loop).
:class:`SharedPacers` gives every trigger of one connection and pace in one process the same pacer,
so they share one budget. A :class:`PermitSource` is the seam for a budget shared beyond the
process: the pacer asks it for leave after its own start time came."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from airflow_provider_hindsight.budget.permits import SHARED_BUDGETS, SharedBudget
from airflow_provider_hindsight.budget.share import budget_name
from airflow_provider_hindsight.hooks.connection import ConnectionSettings
from airflow_provider_hindsight.pace import PaceChange, PaceSchedule


class PermitSource(Protocol):
    """Leave to start one request, beyond the pacer's own schedule: a rate budget shared with other processes.

    The pacer asks once per request, when its own start time has come, and waits what the answer
    says before the request leaves. :meth:`atake` serves the event loop and must not block it. The
    pacer passes on every pause and slow-down it makes, so that the other processes feel a 429 too.
    """

    def take(self) -> float:
        """Take one permit; return the seconds to wait before using it (0: now)."""
        ...

    async def atake(self) -> float:
        """:meth:`take` for the event loop."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every process back ``seconds`` (a ``Retry-After`` this process saw); must not block."""
        ...

    def slow_down(self) -> None:
        """Lower the shared pace (a 429 this process saw); must not block."""
        ...


PaceListener = Callable[[PaceChange], None]
"""Hears of a change of pace: a hook's log line."""


class RatePacer:
    """A :class:`PaceSchedule` shared by any number of threads and coroutines.

    :meth:`acquire` blocks a worker thread, :meth:`acquire_async` awaits on an event loop; both take
    start times from the same schedule, so a process's threads and triggers share one pace.
    ``on_change`` hears of every drop, recovery and pause, outside the lock; so does the listener a
    caller passes to a call (a pacer shared by several hooks tells the hook whose request met the
    change, in that hook's log). The lock is only ever held for arithmetic, never across a wait, so
    taking it on the event loop does not stall it. ``permits``, when given, is asked for leave once
    per request after the pacer's own start time (see :class:`PermitSource`).

    A caller that wakes late (a busy machine, a stalled process) does not go at once: it takes a new
    start time, so the requests held up by a stall do not leave together as a burst.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_change: PaceListener | None = None,
        permits: PermitSource | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._on_change = on_change
        self._permits = permits
        self._lock = threading.Lock()
        self._schedule = PaceSchedule(requests_per_minute, now=clock())

    @property
    def permits(self) -> PermitSource | None:
        """Where this pacer takes its permits beyond its own schedule (a shared budget), if anywhere."""
        return self._permits

    @property
    def configured_requests_per_minute(self) -> float:
        return self._schedule.configured_requests_per_minute

    @property
    def requests_per_minute(self) -> float:
        """The pace in force now, before the safety margin (lower than configured after 429s)."""
        return self._schedule.rate

    @property
    def effective_requests_per_minute(self) -> float:
        """Requests a minute actually started: the pace in force times ``SAFETY_MARGIN``."""
        return self._schedule.effective_requests_per_minute

    def acquire(self, on_change: PaceListener | None = None) -> float:
        """Block until this caller may start a request; return how long it waited.

        A start time handed out before a 429 paused or slowed the pace is void: the caller takes a
        new one, so requests queued at the old pace do not go out after the API said stop. So is one
        the caller woke up too late for: going then would crowd the starts handed out after it.
        """
        waited = 0.0
        while True:
            start, generation, wait = self._reserve(on_change)
            if wait > 0:
                self._sleep(wait)
                waited += wait
            if self._holds(start, generation, waited=wait > 0):
                break
        if self._permits is not None:
            wait = self._permits.take()
            if wait > 0:
                self._sleep(wait)
                waited += wait
        return waited

    async def acquire_async(self, on_change: PaceListener | None = None) -> float:
        """:meth:`acquire` for the event loop: awaits instead of blocking."""
        waited = 0.0
        while True:
            start, generation, wait = self._reserve(on_change)
            if wait > 0:
                await self._async_sleep(wait)
                waited += wait
            if self._holds(start, generation, waited=wait > 0):
                break
        if self._permits is not None:
            wait = await self._permits.atake()
            if wait > 0:
                await self._async_sleep(wait)
                waited += wait
        return waited

    def pause(self, seconds: float, on_change: PaceListener | None = None) -> None:
        """Hold every caller back for ``seconds`` (the API's ``Retry-After``).

        The listener hears of a pause when it starts; a later 429 that extends it does not repeat it.
        """
        with self._lock:
            change = self._schedule.pause(seconds, self._clock())
        self._tell(change, on_change)
        if self._permits is not None:
            self._permits.pause(seconds)

    def slow_down(self, on_change: PaceListener | None = None) -> None:
        """Lower the pace after a 429: the API's limit is lower than the pace in force.

        Several callers see the same burst of 429s, so the rate drops at most once a second; 429s
        that keep coming keep lowering it. Recovery counts from the last 429.
        """
        with self._lock:
            change = self._schedule.slow_down(self._clock())
        self._tell(change, on_change)
        if self._permits is not None:
            self._permits.slow_down()

    def _reserve(self, on_change: PaceListener | None) -> tuple[float, int, float]:
        with self._lock:
            now = self._clock()
            start, generation, change = self._schedule.reserve(now)
        self._tell(change, on_change)
        return start, generation, start - now

    def _holds(self, start: float, generation: int, *, waited: bool) -> bool:
        with self._lock:
            return self._schedule.holds(start, generation, self._clock(), waited=waited)

    def _tell(self, change: PaceChange | None, on_change: PaceListener | None) -> None:
        if change is None:
            return
        for listener in (self._on_change, on_change):
            if listener is not None:
                listener(change)


class SharedPacers:
    """The pacers that hooks of one process share: one per connection, base URL and pace.

    Every trigger of one connection in one triggerer draws on the same pacer, so together they stay
    within the connection's limit, however many sensors wait. A hook that sets its own
    ``requests_per_minute`` gets the pacer of that pace: it never runs at another hook's pace. The
    pacers tell no one of changes by themselves: each caller passes its own listener (its log).

    ``clock``, ``sleep`` and ``async_sleep`` are the pacers' time; tests give a registry of their own
    a fake clock, or :meth:`reset` the process's.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._pacers: dict[tuple[str, str, float], RatePacer] = {}
        self._lock = threading.Lock()

    def get(
        self,
        conn_id: str,
        base_url: str,
        requests_per_minute: float,
        permits: Callable[[], PermitSource | None] | None = None,
    ) -> RatePacer:
        """The one pacer of this connection, base URL and pace, made at the first call (with the permit
        source ``permits`` makes, if any: the connection's shared budget)."""
        key = (conn_id, base_url, float(requests_per_minute))
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                pacer = self._pacers[key] = RatePacer(
                    requests_per_minute,
                    clock=self._clock,
                    sleep=self._sleep,
                    async_sleep=self._async_sleep,
                    permits=permits() if permits is not None else None,
                )
            return pacer

    def reset(self) -> None:
        """Forget every pacer: the next hook starts a fresh pace (tests, between cases)."""
        with self._lock:
            self._pacers.clear()


SHARED_PACERS = SharedPacers()
"""The process's shared pacers, those every async hook (trigger) uses."""


def connection_budget(settings: ConnectionSettings) -> SharedBudget | None:
    """The key's shared budget in this process for a connection with ``budget_conn_id`` (else ``None``), at the
    connection's pace: one per key, budget table and pace, however many hooks use it.

    A hook's own ``requests_per_minute`` caps this process's share; it never raises the key's pace.
    """
    if settings.budget_conn_id is None:
        return None
    return SHARED_BUDGETS.get(
        settings.budget_conn_id,
        settings.budget_table,
        name=budget_name(settings.api_key, settings.base_url),
        requests_per_minute=settings.connection_requests_per_minute or settings.requests_per_minute,
        cap_requests_per_minute=settings.requests_per_minute,
    )
