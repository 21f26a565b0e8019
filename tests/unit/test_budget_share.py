"""The shared budget's arithmetic: its name, the size of a lease, and leases taken from one shared schedule."""

from __future__ import annotations

import hashlib

import pytest

from airflow_provider_hindsight.budget.share import budget_name, grant_size, take_grant
from airflow_provider_hindsight.pace import SAFETY_MARGIN, SLOW_DOWN_FACTOR

NOW = 1_800_000_000.0
PACE = 600.0
INTERVAL = 60 / (PACE * SAFETY_MARGIN)


def test_the_budget_is_named_by_a_sha256_of_base_url_and_key_never_the_key() -> None:
    name = budget_name("secret-key-123", "https://app.usehindsight.com/api/v1/")

    assert name == hashlib.sha256(b"https://app.usehindsight.com/api/v1\nsecret-key-123").hexdigest()
    assert "secret" not in name and len(name) == 64
    assert budget_name("secret-key-123", "https://other.example/api/v1") != name
    assert budget_name("another-key", "https://app.usehindsight.com/api/v1") != name


@pytest.mark.parametrize(
    ("members", "demand", "cap", "expected"),
    [
        (1, 100, 1000, 9),  # alone: a second of the whole pace (600 x 0.97 / 60 = 9.7)
        (3, 100, 1000, 3),  # three busy processes: a third each
        (3, 2, 1000, 2),  # a process that wants two requests takes two
        (1, 100, 120, 1),  # the task's own pace caps it (120 x 0.97 / 60 = 1.9)
        (20, 100, 1000, 1),  # never less than one
    ],
)
def test_grant_size_is_the_fair_share_of_a_second(members: int, demand: int, cap: float, expected: int) -> None:
    assert grant_size(PACE, members=members, demand=demand, cap_requests_per_minute=cap) == expected


def test_leases_follow_one_another_on_one_evenly_spaced_schedule() -> None:
    first = take_grant(PACE, None, NOW, size=3)
    second = take_grant(PACE, first.state, NOW + 0.01, size=2)  # another process, just after

    starts = [*first.starts, *second.starts]
    assert starts[0] == NOW
    assert starts == pytest.approx([NOW + i * INTERVAL for i in range(5)])


def test_a_pause_holds_every_lease_taken_after_it_and_a_429_lowers_the_shared_pace() -> None:
    first = take_grant(PACE, None, NOW, size=1)
    reported = take_grant(PACE, first.state, NOW + 0.1, size=0, pause_until=NOW + 5, slow_down=True)
    later = take_grant(PACE, reported.state, NOW + 0.2, size=2)

    assert reported.starts == ()
    assert [change.pause_seconds for change in reported.changes] == pytest.approx([4.9, 0.0])
    assert later.state.rate == PACE * SLOW_DOWN_FACTOR
    assert later.starts[0] >= NOW + 5
    assert later.starts[1] - later.starts[0] == pytest.approx(60 / (PACE * SLOW_DOWN_FACTOR * SAFETY_MARGIN))


def test_the_shared_pace_recovers_after_a_quiet_period_and_never_exceeds_the_configured_one() -> None:
    slowed = take_grant(PACE, None, NOW, size=1, slow_down=True)
    tested = take_grant(PACE, slowed.state, NOW + 1, size=1)  # the first request after the 429 starts the count
    recovered = take_grant(PACE, tested.state, NOW + 12, size=1)

    assert PACE * SLOW_DOWN_FACTOR < recovered.state.rate < PACE
    assert take_grant(300.0, recovered.state, NOW + 13, size=1).state.rate <= 300.0
