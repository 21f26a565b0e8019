"""The one client-side pacer: spaces request starts so the API's rate limit is never tripped."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SAFETY_MARGIN = 0.97
"""Fraction of the configured rate actually used: a strict sliding-window limiter set to exactly the
plan's limit must never see a burst, and network jitter eats into the gap between requests."""

SLOW_DOWN_FACTOR = 0.7
RECOVERY_FACTOR = 1.1
RECOVERY_AFTER_SECONDS = 20.0
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


class RatePacer:
    """Hands out evenly spaced start times to any number of threads.

    Consecutive starts are exactly ``60 / (rate * SAFETY_MARGIN)`` seconds apart (at 1,000 a minute,
    one every 61.9 ms: 16.2 a second, 970 a minute), never in bursts: a window of any length holds at
    most its share of ``SAFETY_MARGIN`` times the limit, rounded up to a whole request. A 429 pauses
    every thread for what the API asked and lowers the rate (the API's limit may be lower than the plan
    configured); after ``RECOVERY_AFTER_SECONDS`` without a 429 the rate creeps back up to the
    configured one. ``on_change`` hears of every drop, recovery and pause, outside the pacer's lock.

    A caller that wakes late (a busy machine, a stalled process) does not go at once: it takes a new
    start time, so the requests held up by a stall do not leave together as a burst.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_change: Callable[[PaceChange], None] | None = None,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, got {requests_per_minute!r}")
        self.configured_requests_per_minute = float(requests_per_minute)
        self._rate = float(requests_per_minute)
        self._floor = min(MIN_REQUESTS_PER_MINUTE, self._rate)
        self._clock = clock
        self._sleep = sleep
        self._on_change = on_change
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._paused_until = 0.0
        self._last_change = clock()
        self._last_slow_down = -math.inf
        self._generation = 0

    @property
    def requests_per_minute(self) -> float:
        """The pace in force now, before the safety margin (lower than configured after 429s)."""
        return self._rate

    @property
    def effective_requests_per_minute(self) -> float:
        """Requests a minute actually started: the pace in force times ``SAFETY_MARGIN``."""
        return self._rate * SAFETY_MARGIN

    def acquire(self) -> float:
        """Block until this caller may start a request; return how long it waited.

        A start time handed out before a 429 paused or slowed the pace is void: the caller takes a
        new one, so requests queued at the old pace do not go out after the API said stop. So is one
        the caller woke up too late for: going then would crowd the starts handed out after it.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                change = self._recover(now)
                start = max(now, self._next_start, self._paused_until)
                self._next_start = start + self._interval()
                generation = self._generation
            self._tell(change)
            wait = start - now
            if wait > 0:
                self._sleep(wait)
                waited += wait
            with self._lock:
                late = self._clock() - start if wait > 0 else 0.0
                if generation == self._generation and late <= max(self._interval() / 2, LATE_WAKE_SECONDS):
                    return waited

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the API's ``Retry-After``).

        ``on_change`` hears of a pause when it starts; a later 429 that extends it does not repeat it.
        """
        with self._lock:
            now = self._clock()
            change = None
            if seconds > 0 and self._paused_until <= now:
                rate = self.effective_requests_per_minute
                change = PaceChange(rate, rate, seconds, "the API asked to wait (Retry-After)")
            self._paused_until = max(self._paused_until, now + seconds)
            self._void_start_times()
        self._tell(change)

    def slow_down(self) -> None:
        """Lower the pace after a 429: the API's limit is lower than the pace in force.

        Several threads see the same burst of 429s, so the rate drops at most once a second; 429s
        that keep coming keep lowering it. Recovery counts from the last 429.
        """
        with self._lock:
            now = self._clock()
            change = None
            if now - self._last_slow_down >= 1.0 and self._rate > self._floor:
                old = self.effective_requests_per_minute
                self._rate = max(self._floor, self._rate * SLOW_DOWN_FACTOR)
                self._last_slow_down = now
                change = PaceChange(old, self.effective_requests_per_minute, 0.0, "the API answered 429")
            self._last_change = now
            self._void_start_times()
        self._tell(change)

    def _interval(self) -> float:
        return 60.0 / (self._rate * SAFETY_MARGIN)

    def _void_start_times(self) -> None:
        """Start times already handed out no longer hold; the next one is one interval from now."""
        self._generation += 1
        self._next_start = max(self._paused_until, self._clock() + self._interval())

    def _recover(self, now: float) -> PaceChange | None:
        if self._rate >= self.configured_requests_per_minute or now - self._last_change < RECOVERY_AFTER_SECONDS:
            return None
        old = self.effective_requests_per_minute
        self._rate = min(self.configured_requests_per_minute, self._rate * RECOVERY_FACTOR)
        self._last_change = now
        return PaceChange(old, self.effective_requests_per_minute, 0.0, f"no 429 for {RECOVERY_AFTER_SECONDS:g}s")

    def _tell(self, change: PaceChange | None) -> None:
        if change is not None and self._on_change is not None:
            self._on_change(change)
