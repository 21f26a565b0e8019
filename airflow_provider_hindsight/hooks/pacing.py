"""The one client-side pacer: spaces request starts so the API's rate limit is never tripped."""

from __future__ import annotations

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

    Consecutive starts are at least ``60 / (rate * SAFETY_MARGIN)`` seconds apart, so no
    one-second span ever holds more than ``rate / 60`` starts. A 429 pauses every thread for what
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

    @property
    def requests_per_minute(self) -> float:
        """The pace in force now (lower than configured after 429s)."""
        return self._rate

    def acquire(self) -> float:
        """Block until this caller may start a request; return how long it waited."""
        with self._lock:
            now = self._clock()
            self._recover(now)
            start = max(now, self._next_start, self._paused_until)
            self._next_start = start + 60.0 / (self._rate * SAFETY_MARGIN)
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def pause(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the API's ``Retry-After``)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def slow_down(self) -> None:
        """Lower the pace after a 429: the API's limit is lower than the pace in force.

        Several threads see the same burst of 429s; only the first in a second lowers the rate.
        """
        with self._lock:
            now = self._clock()
            if now - self._last_change >= 1.0 or self._rate == self.configured_requests_per_minute:
                self._rate = max(MIN_REQUESTS_PER_MINUTE, self._rate * SLOW_DOWN_FACTOR)
            self._last_change = now

    def _recover(self, now: float) -> None:
        if self._rate < self.configured_requests_per_minute and now - self._last_change >= RECOVERY_AFTER_SECONDS:
            self._rate = min(self.configured_requests_per_minute, self._rate * RECOVERY_FACTOR)
            self._last_change = now
