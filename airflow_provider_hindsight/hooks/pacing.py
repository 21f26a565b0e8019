"""The one client-side pacer: spaces request starts so the API's rate limit is never tripped.

:class:`PaceSchedule` is the arithmetic, pure (every method is told the time); :class:`RatePacer`
puts a lock and a clock around it and offers a blocking waiter (worker threads) and an awaiting one
(the triggerer's event loop). :class:`SharedPacers` gives every trigger of one connection and pace
in one process the same pacer, so they share one budget. A :class:`PermitSource` is the seam for a
budget shared beyond the process: the pacer asks it for leave after its own start time came.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

SAFETY_MARGIN = 0.97
"""Fraction of the configured rate actually used: a strict sliding-window limiter set to exactly the
plan's limit must never see a burst, and network jitter eats into the gap between requests."""

SLOW_DOWN_FACTOR = 0.7
RECOVERY_SHARE = 0.5
"""Share of the gap between the pace in force and the configured one won back per quiet period."""
RECOVERY_AFTER_SECONDS = 10.0
"""A quiet period: this long without a 429, counted from the first request after a slow-down or pause."""
RECOVERY_SNAP = 0.02
"""Within this share of the configured pace, recovery goes the rest of the way at once."""
MIN_REQUESTS_PER_MINUTE = 1.0
LATE_WAKE_SECONDS = 0.01
"""A caller that wakes later than this after its start time (or half a gap, if longer) takes a new one."""


@dataclass(frozen=True)
class PaceChange:
    """A change of the pace in force, for a log line: rates are the effective ones (after the safety margin).

    A pause keeps the rate (``old == new``) and says how long every caller is held back.
    """

    old_requests_per_minute: float
    new_requests_per_minute: float
    pause_seconds: float
    reason: str


class PaceSchedule:
    """Evenly spaced start times, pauses and slow-downs as pure arithmetic: no lock, no clock, no sleep.

    Consecutive starts are exactly ``60 / (rate * SAFETY_MARGIN)`` seconds apart (at 1,000 a minute,
    one every 61.9 ms: 16.2 a second, 970 a minute), never in bursts: a window of any length holds at
    most its share of ``SAFETY_MARGIN`` times the limit, rounded up to a whole request. A 429 pauses
    every caller for what the API asked and lowers the rate (the API's limit may be lower than the plan
    configured). Each quiet period (``RECOVERY_AFTER_SECONDS`` without a 429) wins back half the gap
    to the configured rate: fast after a deep drop (another task on the key finished), gentle close to
    the limit. The quiet time counts from the first request started after the last slow-down or pause
    ends, never while paused: a pace not yet tested by a request is not raised.

    A start time is a reservation ``(start, generation)``. It stops holding when a pause or slow-down
    voids the start times handed out before it, or when its caller comes back too late for it.
    """

    def __init__(self, requests_per_minute: float, *, now: float) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, got {requests_per_minute!r}")
        self.configured_requests_per_minute = float(requests_per_minute)
        self.rate = float(requests_per_minute)
        self._floor = min(MIN_REQUESTS_PER_MINUTE, self.rate)
        self._next_start = 0.0
        self._paused_until = 0.0
        self._quiet_since: float | None = now
        """When the current quiet period began (a request's start); ``None`` until the first start after a 429."""
        self._last_slow_down = -math.inf
        self._generation = 0

    @property
    def effective_requests_per_minute(self) -> float:
        return self.rate * SAFETY_MARGIN

    def reserve(self, now: float) -> tuple[float, int, PaceChange | None]:
        """The next start time, its generation, and a recovery of the pace that happened first, if any."""
        change = self._recover(now)
        start = max(now, self._next_start, self._paused_until)
        self._next_start = start + self.interval
        if self._quiet_since is None:
            self._quiet_since = start  # the first request after a 429 (after its pause, if any) starts the count
        return start, self._generation, change

    def holds(self, start: float, generation: int, now: float, *, waited: bool) -> bool:
        """Whether a reservation may start now: not voided, and its caller not late for it."""
        late = now - start if waited else 0.0
        return generation == self._generation and late <= max(self.interval / 2, LATE_WAKE_SECONDS)

    def pause(self, seconds: float, now: float) -> PaceChange | None:
        change = None
        if seconds > 0 and self._paused_until <= now:
            rate = self.effective_requests_per_minute
            change = PaceChange(rate, rate, seconds, "the API asked to wait (Retry-After)")
        self._paused_until = max(self._paused_until, now + seconds)
        self._quiet_since = None
        self._void_start_times(now)
        return change

    def slow_down(self, now: float) -> PaceChange | None:
        change = None
        if now - self._last_slow_down >= 1.0 and self.rate > self._floor:
            old = self.effective_requests_per_minute
            self.rate = max(self._floor, self.rate * SLOW_DOWN_FACTOR)
            self._last_slow_down = now
            change = PaceChange(old, self.effective_requests_per_minute, 0.0, "the API answered 429")
        self._quiet_since = None
        self._void_start_times(now)
        return change

    @property
    def interval(self) -> float:
        return 60.0 / (self.rate * SAFETY_MARGIN)

    def _void_start_times(self, now: float) -> None:
        """Start times already handed out no longer hold; the next one is one interval from now."""
        self._generation += 1
        self._next_start = max(self._paused_until, now + self.interval)

    def _recover(self, now: float) -> PaceChange | None:
        configured = self.configured_requests_per_minute
        quiet_since = self._quiet_since
        if self.rate >= configured or quiet_since is None or now - quiet_since < RECOVERY_AFTER_SECONDS:
            return None
        old = self.effective_requests_per_minute
        rate = self.rate + (configured - self.rate) * RECOVERY_SHARE
        self.rate = configured if configured - rate <= configured * RECOVERY_SNAP else rate
        self._quiet_since = now
        return PaceChange(old, self.effective_requests_per_minute, 0.0, f"no 429 for {RECOVERY_AFTER_SECONDS:g}s")


class PermitSource(Protocol):
    """Leave to start one request, beyond the pacer's own schedule: a rate budget shared with other processes.

    The pacer asks once per request, when its own start time has come, and waits what the answer
    says before the request leaves. :meth:`atake` serves the event loop and must not block it.
    """

    def take(self) -> float:
        """Take one permit; return the seconds to wait before using it (0: now)."""
        ...

    async def atake(self) -> float:
        """:meth:`take` for the event loop."""
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

    def slow_down(self, on_change: PaceListener | None = None) -> None:
        """Lower the pace after a 429: the API's limit is lower than the pace in force.

        Several callers see the same burst of 429s, so the rate drops at most once a second; 429s
        that keep coming keep lowering it. Recovery counts from the last 429.
        """
        with self._lock:
            change = self._schedule.slow_down(self._clock())
        self._tell(change, on_change)

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

    def get(self, conn_id: str, base_url: str, requests_per_minute: float) -> RatePacer:
        """The one pacer of this connection, base URL and pace, made at the first call."""
        key = (conn_id, base_url, float(requests_per_minute))
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                pacer = self._pacers[key] = RatePacer(
                    requests_per_minute, clock=self._clock, sleep=self._sleep, async_sleep=self._async_sleep
                )
            return pacer

    def reset(self) -> None:
        """Forget every pacer: the next hook starts a fresh pace (tests, between cases)."""
        with self._lock:
            self._pacers.clear()


SHARED_PACERS = SharedPacers()
"""The process's shared pacers, those every async hook (trigger) uses."""
