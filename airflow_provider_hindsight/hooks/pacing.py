"""The one client-side pacer: spaces request starts so the API's rate limit is never tripped."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

SAFETY_MARGIN = 0.97
"""Fraction of the configured rate actually used: a strict sliding-window limiter set to exactly the
plan's limit must never see a burst, and network jitter eats into the gap between requests."""

SLOW_DOWN_FACTOR = 0.7
RECOVERY_FACTOR = 1.1
RECOVERY_AFTER_SECONDS = 20.0
MIN_REQUESTS_PER_MINUTE = 1.0


class RatePacer:
    """Hands out evenly spaced start times to any number of threads.

    Consecutive starts are at least ``60 / (rate * SAFETY_MARGIN)`` seconds apart, and at least
    ``1 / (floor(rate / 60) * SAFETY_MARGIN)``, so no one-second span ever holds more than ``rate / 60``
    starts (at 1,000 a minute that caps the pace at 16 a second, about 931 a minute). A 429 pauses every thread for what
    the API asked and lowers the rate (the API's limit may be lower than the plan configured); after
    ``RECOVERY_AFTER_SECONDS`` without a 429 the rate creeps back up to the configured one.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, got {requests_per_minute!r}")
        self.configured_requests_per_minute = float(requests_per_minute)
        self._rate = float(requests_per_minute)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._paused_until = 0.0
        self._last_change = clock()
        self._last_slow_down = -math.inf
        self._generation = 0

    @property
    def requests_per_minute(self) -> float:
        """The pace in force now (lower than configured after 429s)."""
        return self._rate

    def acquire(self) -> float:
        """Block until this caller may start a request; return how long it waited.

        A start time handed out before a 429 paused or slowed the pace is void: the caller takes a
        new one, so requests queued at the old pace do not go out after the API said stop.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._recover(now)
                start = max(now, self._next_start, self._paused_until)
                self._next_start = start + self._interval()
                generation = self._generation
            wait = start - now
            if wait > 0:
                self._sleep(wait)
                waited += wait
            with self._lock:
                if generation == self._generation:
                    return waited

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the API's ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._void_start_times()

    def slow_down(self) -> None:
        """Lower the pace after a 429: the API's limit is lower than the pace in force.

        Several threads see the same burst of 429s, so the rate drops at most once a second; 429s
        that keep coming keep lowering it. Recovery counts from the last 429.
        """
        with self._lock:
            now = self._clock()
            if now - self._last_slow_down >= 1.0:
                self._rate = max(MIN_REQUESTS_PER_MINUTE, self._rate * SLOW_DOWN_FACTOR)
                self._last_slow_down = now
            self._last_change = now
            self._void_start_times()

    def _interval(self) -> float:
        per_second = math.floor(self._rate / 60.0)
        if per_second < 1:
            return 60.0 / (self._rate * SAFETY_MARGIN)
        return max(60.0 / (self._rate * SAFETY_MARGIN), 1.0 / (per_second * SAFETY_MARGIN))

    def _void_start_times(self) -> None:
        """Start times already handed out no longer hold; the next one is one interval from now."""
        self._generation += 1
        self._next_start = max(self._paused_until, self._clock() + self._interval())

    def _recover(self, now: float) -> None:
        if self._rate < self.configured_requests_per_minute and now - self._last_change >= RECOVERY_AFTER_SECONDS:
            self._rate = min(self.configured_requests_per_minute, self._rate * RECOVERY_FACTOR)
            self._last_change = now
