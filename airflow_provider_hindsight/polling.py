"""The polling plan: when each interview that is not completed should be fetched again.

Polling ``GET /interviews/{id}`` is the only way to learn an answer, and every poll spends the same
per-key limit as creates and updates. Most contacts who answer do so within days of the e-mail; most
never answer. So an interview is polled often while it is young, rarely when it is old, and not at
all past an age. The landing, the sensor and the trigger share this arithmetic; it is pure (no
Airflow, no HTTP, no SQL), and every time is POSIX seconds (UTC), every duration seconds.

- An interview's **age** is the time since it started: ``email_sent_at``, or its creation when no
  e-mail was sent (:func:`started_at`; :func:`answer_started_at` for a ``GET`` answer).
- After a poll at ``polled_at`` it is due again at ``polled_at + interval(age at polled_at)``, where
  ``interval(age) = clamp(poll_age_factor * age, min_poll_interval, max_poll_interval)``.
- An interview never polled is due at once; a completed one is never due.
- Past ``stop_polling_after`` (``None``: never) it is stopped: not due again.

The API::

    answer_started_at(answer)                     # an answer's age reference (POSIX seconds) or None
    plan = PollingPlan(poll_age_factor=0.1, min_poll_interval=900, max_poll_interval=86400,
                       stop_polling_after=30 * 86400)
    plan.interval(age)                            # seconds between two polls at this age
    plan.next_poll_at(started_at, polled_at)      # when a poll at polled_at is due again
    plan.stopped(started_at, now)                 # past stop_polling_after?
    plan.verdict(state, now)                      # DUE, NOT_DUE, STOPPED or COMPLETED for one PollState
    schedule = plan.due(states, now, max_requests=100, poll_all=False)
    schedule.due                                  # the ids to fetch now, in order (never polled first,
                                                  # then the most overdue), at most max_requests
    schedule.not_due, schedule.stopped, schedule.completed
    schedule.next_due_at                          # earliest time a waiting id becomes due (None: none)

Bad parameters raise :class:`PollingPlanError` (a ``ValueError``) naming the parameter; operators turn
it into their own validation error.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from airflow_provider_hindsight.times import posix, utc_timestamp

DEFAULT_POLL_AGE_FACTOR = 0.1
DEFAULT_MIN_POLL_INTERVAL = 900.0
"""The landing's shortest interval; a sensor's is its ``poke_interval``."""
DEFAULT_MAX_POLL_INTERVAL = 86400.0
DEFAULT_STOP_POLLING_AFTER = 30 * 86400.0

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class PollingPlanError(ValueError):
    """A polling parameter is wrong; ``field`` names it."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def seconds(value: object, *, name: str, also: str = "") -> float:
    """A duration given as seconds or a ``timedelta``, as positive finite seconds; errors name ``name``.

    ``also`` adds what else the parameter accepts to the error (``" or None (never)"``).
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise PollingPlanError(
            f"{name} must be a positive number of seconds or a timedelta{also}, got {value!r}.", field=name
        )
    return float(value)


def optional_seconds(value: object, *, name: str) -> float | None:
    """As :func:`seconds`, ``None`` meaning never."""
    return None if value is None else seconds(value, name=name, also=" or None (never)")


def started_at(email_sent_at: T | None, created_at: T | None) -> T | None:
    """Where an interview's age counts from: when its e-mail was sent, else its creation (``None``: unknown)."""
    return email_sent_at if email_sent_at is not None else created_at


def answer_started_at(answer: Mapping[str, Any]) -> float | None:
    """The age reference of a ``GET /interviews/{id}`` answer as POSIX seconds; ``None`` without a usable time."""
    sent: datetime | None = utc_timestamp(answer.get("email_sent_at"))
    return posix(started_at(sent, utc_timestamp(answer.get("created_at"))))


def validate_max_requests(value: object) -> int | None:
    """``max_requests``: ``None`` (no cap) or a positive int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PollingPlanError(
            f"max_requests must be a positive int (fetches per run) or None (no cap), got {value!r}.",
            field="max_requests",
        )
    return value


class Verdict(enum.Enum):
    """What the plan says about one interview at one moment."""

    DUE = "due"
    NOT_DUE = "not_due"
    STOPPED = "stopped"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class PollState(Generic[K]):
    """What is known of one interview: its id, when it started, when it was last polled.

    ``started_at`` is ``email_sent_at``, or the creation time when no e-mail was sent; ``None`` when
    not known yet (never fetched): then its interval is ``min_poll_interval`` and it never stops.
    ``last_polled_at`` is ``None`` when it was never polled.
    """

    key: K
    started_at: float | None = None
    last_polled_at: float | None = None
    completed: bool = False


@dataclass(frozen=True)
class Schedule(Generic[K]):
    """One run's plan: the ids to fetch in order, the others by why not, and the next wake-up."""

    due: list[K] = field(default_factory=list)
    not_due: list[K] = field(default_factory=list)
    stopped: list[K] = field(default_factory=list)
    completed: list[K] = field(default_factory=list)
    next_due_at: float | None = None


@dataclass(frozen=True)
class PollingPlan:
    """How often to poll an interview at each age, and when to stop. See the module docstring."""

    poll_age_factor: float = DEFAULT_POLL_AGE_FACTOR
    min_poll_interval: float = DEFAULT_MIN_POLL_INTERVAL
    max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL
    stop_polling_after: float | None = DEFAULT_STOP_POLLING_AFTER

    def __post_init__(self) -> None:
        factor = self.poll_age_factor
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 <= factor < math.inf:
            raise PollingPlanError(
                f"poll_age_factor must be a number >= 0 (the share of an interview's age between two polls, "
                f"e.g. 0.1), got {factor!r}.",
                field="poll_age_factor",
            )
        low = seconds(self.min_poll_interval, name="min_poll_interval")
        high = seconds(self.max_poll_interval, name="max_poll_interval")
        stop = optional_seconds(self.stop_polling_after, name="stop_polling_after")
        if high < low:
            raise PollingPlanError(
                f"max_poll_interval ({high:g} s) must be at least min_poll_interval ({low:g} s): raise "
                "max_poll_interval or lower min_poll_interval.",
                field="max_poll_interval",
            )
        object.__setattr__(self, "poll_age_factor", float(factor))
        object.__setattr__(self, "min_poll_interval", low)
        object.__setattr__(self, "max_poll_interval", high)
        object.__setattr__(self, "stop_polling_after", stop)

    def interval(self, age: float | None) -> float:
        """Seconds between two polls of an interview of this age (an unknown age: the shortest)."""
        if age is None:
            return self.min_poll_interval
        return min(max(self.poll_age_factor * age, self.min_poll_interval), self.max_poll_interval)

    def next_poll_at(self, started_at: float | None, polled_at: float) -> float:
        """When an interview polled at ``polled_at`` is due again."""
        age = None if started_at is None else max(polled_at - started_at, 0.0)
        return polled_at + self.interval(age)

    def stopped(self, started_at: float | None, now: float) -> bool:
        """Whether an interview that started at ``started_at`` is past ``stop_polling_after`` at ``now``."""
        if self.stop_polling_after is None or started_at is None:
            return False
        return now - started_at >= self.stop_polling_after

    def verdict(self, state: PollState[K], now: float) -> Verdict:
        """Due, not due, stopped or completed, for one interview at ``now``."""
        if state.completed:
            return Verdict.COMPLETED
        if self.stopped(state.started_at, now):
            return Verdict.STOPPED
        return Verdict.DUE if self._due_at(state) <= now else Verdict.NOT_DUE

    def due(
        self,
        states: Iterable[PollState[K]],
        now: float,
        *,
        max_requests: int | None = None,
        poll_all: bool = False,
    ) -> Schedule[K]:
        """Sort interviews into one run's :class:`Schedule`.

        Due ids are ordered never-polled first (in the order given), then the most overdue; past
        ``max_requests`` the rest are ``not_due`` (they wait for the next run). ``poll_all`` makes
        every interview that is not completed due, stopped or not (in the same order: by when it
        was due); ``max_requests`` still caps it.
        """
        cap = validate_max_requests(max_requests)
        ranked: list[tuple[float, int, K]] = []
        not_due: list[K] = []
        stopped: list[K] = []
        completed: list[K] = []
        waits: list[float] = []
        for position, state in enumerate(states):
            verdict = self.verdict(state, now)
            if verdict is Verdict.COMPLETED:
                completed.append(state.key)
            elif verdict is Verdict.DUE or poll_all:
                ranked.append((self._due_at(state), position, state.key))
            elif verdict is Verdict.STOPPED:
                stopped.append(state.key)
            else:
                not_due.append(state.key)
                waits.append(self._due_at(state))
        ranked.sort(key=lambda item: item[:2])
        if cap is not None and len(ranked) > cap:
            not_due.extend(key for *_, key in ranked[cap:])
            waits.append(now)  # the ids over the cap are due already
            ranked = ranked[:cap]
        due = [key for *_, key in ranked]
        return Schedule(due, not_due, stopped, completed, min(waits, default=None))

    def _due_at(self, state: PollState[K]) -> float:
        """When it is due: minus infinity when never polled (due at once, and first)."""
        if state.last_polled_at is None:
            return -math.inf
        return self.next_poll_at(state.started_at, state.last_polled_at)
