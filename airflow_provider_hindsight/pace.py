"""The pace's arithmetic, pure: evenly spaced start times, pauses, slow-downs and recovery, told the time.

:class:`PaceSchedule` is what every pacer runs: a hook's :class:`~airflow_provider_hindsight.hooks.pacing.RatePacer`
on a monotonic clock in one process, and a key's shared budget (:mod:`airflow_provider_hindsight.budget`)
on the wall clock, kept in a store as a :class:`PaceState`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PaceState:
    """A :class:`PaceSchedule`'s state without its configured rate: what a shared budget stores per key."""

    rate: float
    next_start: float
    paused_until: float
    quiet_since: float | None
    last_slow_down: float


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

    def state(self) -> PaceState:
        """What a store shared by processes keeps of this schedule (its times on their common clock)."""
        return PaceState(self.rate, self._next_start, self._paused_until, self._quiet_since, self._last_slow_down)

    @classmethod
    def restore(cls, requests_per_minute: float, state: PaceState) -> PaceSchedule:
        """The schedule a store kept, at the configured ``requests_per_minute`` (the rate in force stays below it)."""
        schedule = cls(requests_per_minute, now=0.0)
        schedule.rate = min(max(state.rate, schedule._floor), schedule.configured_requests_per_minute)
        schedule._next_start = state.next_start
        schedule._paused_until = state.paused_until
        schedule._quiet_since = state.quiet_since
        schedule._last_slow_down = state.last_slow_down
        return schedule

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
