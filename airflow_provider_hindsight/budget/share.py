"""The shared budget's arithmetic, pure: every function is told the time and touches no store.

The key's shared schedule is a :class:`~airflow_provider_hindsight.pace.PaceSchedule` kept in
the store (:class:`~airflow_provider_hindsight.pace.PaceState`): the same even spacing,
pauses, slow-downs and recovery as one process's pacer, on the wall clock every process shares. A
process takes a *grant*, a few consecutive start times of that schedule, at most about
:data:`LEASE_SECONDS` of its fair share: the pace divided by the processes that want requests.
Grants are handed out in the order they are asked for, and a process asks for its next one only
when its last start time is near, so busy processes take turns with equal grants.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from airflow_provider_hindsight.pace import SAFETY_MARGIN, PaceChange, PaceSchedule, PaceState

LEASE_SECONDS = 1.0
"""A grant holds at most this many seconds of a process's share: what a killed process strands."""
ACTIVE_SECONDS = 3.0
"""A process that took a grant this recently still wants requests, and counts in the fair share."""
FORGET_SECONDS = 600.0
"""A process's row is deleted this long after its last grant."""


def budget_name(api_key: str, base_url: str) -> str:
    """The budget's name: a SHA-256 of the base URL and the key (64 hex digits), never the key itself."""
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()


def grant_size(requests_per_minute: float, *, members: int, demand: int, cap_requests_per_minute: float) -> int:
    """How many start times one grant holds: the fair share of :data:`LEASE_SECONDS`, at most the demand.

    ``requests_per_minute`` is the shared pace in force, ``members`` the processes wanting requests
    (this one included), ``demand`` the start times this process asks for (see
    :class:`~.permits.SharedBudget`), ``cap_requests_per_minute`` its own task's pace. Never less than one.
    """
    per_grant = requests_per_minute * SAFETY_MARGIN / 60.0 * LEASE_SECONDS
    share = per_grant / max(1, members)
    cap = cap_requests_per_minute * SAFETY_MARGIN / 60.0 * LEASE_SECONDS
    return max(1, min(math.floor(share), math.floor(cap), demand))


@dataclass(frozen=True)
class Grant:
    """Start times on the wall clock, one request each, what changed the shared pace while taking them, and the
    processes sharing the key then (this one included): the share this process falls back to if the store fails."""

    starts: tuple[float, ...]
    state: PaceState
    changes: tuple[PaceChange, ...]
    members: int = 1

    @property
    def share_requests_per_minute(self) -> float:
        """The pace in force over the processes sharing it (before the safety margin)."""
        return self.state.rate / max(1, self.members)


def take_grant(
    configured_requests_per_minute: float,
    state: PaceState | None,
    now: float,
    *,
    size: int,
    pause_until: float = 0.0,
    slow_down: bool = False,
    members: int = 1,
) -> Grant:
    """``size`` start times from the key's schedule (none for ``size=0``), after a pause or slow-down
    this process saw.

    ``state`` is ``None`` for a key seen for the first time. ``pause_until`` holds every process
    until then (a ``Retry-After``); ``slow_down`` lowers the shared pace once (a 429). ``members``: the
    processes sharing the key now, this one included (the grant records it).
    """
    if state is None:
        schedule = PaceSchedule(configured_requests_per_minute, now=now)
    else:
        schedule = PaceSchedule.restore(configured_requests_per_minute, state)
    changes: list[PaceChange | None] = []
    if pause_until > now:
        changes.append(schedule.pause(pause_until - now, now))
    if slow_down:
        changes.append(schedule.slow_down(now))
    starts = []
    for _ in range(size):
        start, _generation, change = schedule.reserve(now)
        starts.append(start)
        changes.append(change)
    return Grant(tuple(starts), schedule.state(), tuple(change for change in changes if change is not None), members)
