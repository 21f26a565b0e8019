"""The polling plan: intervals by age, when an interview is due, when it stops, and one run's order."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_hindsight.polling import (
    PollingPlan,
    PollingPlanError,
    PollState,
    Verdict,
    answer_started_at,
    started_at,
)

HOUR = 3600.0
DAY = 86400.0
NOW = 1_800_000_000.0  # any fixed POSIX time

plans = st.builds(
    PollingPlan,
    poll_age_factor=st.floats(0, 5),
    min_poll_interval=st.floats(1, DAY),
    max_poll_interval=st.floats(DAY, 30 * DAY),
    stop_polling_after=st.none() | st.floats(HOUR, 365 * DAY),
)
ages = st.floats(0, 400 * DAY)


def test_the_contract_s_examples_with_the_defaults() -> None:
    plan = PollingPlan()
    assert plan.interval(2 * DAY) == pytest.approx(4.8 * HOUR)
    assert plan.interval(10 * DAY) == DAY
    assert plan.interval(60 * DAY) == DAY  # the longest interval
    assert plan.interval(0) == 900  # the shortest
    assert plan.interval(None) == 900  # age unknown: the shortest
    assert plan.stop_polling_after == 30 * DAY


@given(plans, ages)
def test_interval_is_the_share_of_the_age_clamped(plan: PollingPlan, age: float) -> None:
    interval = plan.interval(age)
    assert plan.min_poll_interval <= interval <= plan.max_poll_interval
    if plan.min_poll_interval <= plan.poll_age_factor * age <= plan.max_poll_interval:
        assert interval == pytest.approx(plan.poll_age_factor * age)


@given(plans, ages, ages)
def test_older_interviews_are_polled_no_more_often(plan: PollingPlan, age: float, more: float) -> None:
    assert plan.interval(age) <= plan.interval(age + more)


@given(plans, ages, st.floats(1, DAY))
def test_due_again_exactly_one_interval_after_a_poll(plan: PollingPlan, age: float, early: float) -> None:
    started, polled = NOW - age - 10 * DAY, NOW - 10 * DAY
    at = plan.next_poll_at(started, polled)
    assert at == pytest.approx(polled + plan.interval(age))
    state = PollState(1, started_at=started, last_polled_at=polled)
    if not plan.stopped(started, at):
        assert plan.verdict(state, at) is Verdict.DUE
        if not plan.stopped(started, at - early) and at - early >= polled:
            assert plan.verdict(state, at - early) is Verdict.NOT_DUE


def test_never_polled_is_due_at_once_and_completed_never() -> None:
    plan = PollingPlan()
    assert plan.verdict(PollState(1), NOW) is Verdict.DUE
    assert plan.verdict(PollState(1, started_at=NOW), NOW) is Verdict.DUE
    assert plan.verdict(PollState(1, started_at=NOW - DAY, last_polled_at=NOW - 2 * DAY, completed=True), NOW) is (
        Verdict.COMPLETED
    )
    schedule = plan.due([PollState(1, started_at=NOW - DAY, completed=True)], NOW, poll_all=True)
    assert schedule.due == [] and schedule.completed == [1]


def test_stops_at_stop_polling_after_from_the_start() -> None:
    plan = PollingPlan(stop_polling_after=timedelta(days=30))
    started = NOW - 30 * DAY
    assert plan.stopped(started, NOW) and not plan.stopped(started, NOW - 1)
    assert plan.verdict(PollState(1, started_at=started), NOW) is Verdict.STOPPED  # even if never polled
    assert plan.verdict(PollState(1, started_at=started), NOW - 1) is Verdict.DUE
    never = PollingPlan(stop_polling_after=None)
    assert not never.stopped(NOW - 10_000 * DAY, NOW)
    assert not plan.stopped(None, NOW)  # start unknown: not stopped


def test_a_poll_before_the_start_counts_as_age_zero() -> None:
    # Clock skew between Hindsight and the worker: the interval is the shortest, never negative.
    assert PollingPlan().next_poll_at(NOW + HOUR, NOW) == NOW + 900


def test_one_run_sorts_every_id_into_one_bucket_in_order() -> None:
    plan = PollingPlan()
    states = [
        PollState(10, started_at=NOW - 5 * DAY, last_polled_at=NOW - 13 * HOUR),  # due 1 h ago
        PollState(11, started_at=NOW - 5 * DAY, last_polled_at=NOW - HOUR),  # due in 11 h
        PollState(12),  # never polled
        PollState(13, started_at=NOW - 2 * DAY, completed=True, last_polled_at=NOW - DAY),
        PollState(14, started_at=NOW - 40 * DAY, last_polled_at=NOW - 5 * DAY),  # stopped
        PollState(15, started_at=NOW - 10 * DAY, last_polled_at=NOW - 3 * DAY),  # due 2 days ago
        PollState(16, started_at=NOW - HOUR),  # never polled
    ]
    schedule = plan.due(states, NOW)
    assert schedule.due == [12, 16, 15, 10]
    assert schedule.not_due == [11]
    assert schedule.stopped == [14]
    assert schedule.completed == [13]
    assert schedule.next_due_at == pytest.approx(NOW + 11 * HOUR)

    capped = plan.due(states, NOW, max_requests=3)
    assert capped.due == [12, 16, 15]
    assert capped.not_due == [11, 10]
    assert capped.next_due_at == NOW  # one over the cap is due already

    everything = plan.due(states, NOW, poll_all=True)
    assert everything.due == [12, 16, 14, 15, 10, 11]  # by when each was due
    assert everything.not_due == [] and everything.stopped == [] and everything.completed == [13]
    assert everything.next_due_at is None


@given(
    plans,
    st.lists(
        st.tuples(st.none() | st.floats(0, 60 * DAY), st.none() | st.floats(0, 60 * DAY), st.booleans()),
        max_size=40,
    ),
    st.none() | st.integers(1, 50),
    st.booleans(),
)
def test_every_id_ends_in_exactly_one_bucket(
    plan: PollingPlan,
    rows: list[tuple[float | None, float | None, bool]],
    cap: int | None,
    poll_all: bool,
) -> None:
    states = [
        PollState(key, None if age is None else NOW - age, None if ago is None else NOW - ago, completed)
        for key, (age, ago, completed) in enumerate(rows)
    ]
    schedule = plan.due(states, NOW, max_requests=cap, poll_all=poll_all)
    buckets = [schedule.due, schedule.not_due, schedule.stopped, schedule.completed]
    assert sorted(key for bucket in buckets for key in bucket) == list(range(len(states)))
    assert cap is None or len(schedule.due) <= cap
    never = [state.key for state in states if state.last_polled_at is None and state.key in schedule.due]
    assert schedule.due[: len(never)] == never  # never polled first, in the order given
    for key in schedule.due:
        assert poll_all or plan.verdict(states[key], NOW) is Verdict.DUE
    for key in schedule.not_due:
        verdict = plan.verdict(states[key], NOW)
        assert verdict is Verdict.NOT_DUE or (cap is not None and len(schedule.due) == cap)
    if schedule.not_due:
        assert schedule.next_due_at is not None


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"poll_age_factor": -0.1}, "poll_age_factor"),
        ({"poll_age_factor": True}, "poll_age_factor"),
        ({"poll_age_factor": "0.1"}, "poll_age_factor"),
        ({"min_poll_interval": 0}, "min_poll_interval"),
        ({"min_poll_interval": float("nan")}, "min_poll_interval"),
        ({"max_poll_interval": float("inf")}, "max_poll_interval"),
        ({"max_poll_interval": 600}, "max_poll_interval"),  # below min_poll_interval
        ({"stop_polling_after": -1}, "stop_polling_after"),
        ({"stop_polling_after": "30 days"}, "stop_polling_after"),
    ],
)
def test_bad_parameters_are_refused_naming_them(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(PollingPlanError, match=field) as raised:
        PollingPlan(**arguments)  # type: ignore[arg-type]
    assert raised.value.field == field


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, "10"])
def test_a_bad_max_requests_is_refused_naming_it(cap: object) -> None:
    with pytest.raises(PollingPlanError, match="max_requests") as raised:
        PollingPlan().due([], NOW, max_requests=cap)  # type: ignore[arg-type]
    assert raised.value.field == "max_requests"


def test_durations_may_be_timedeltas() -> None:
    plan = PollingPlan(
        min_poll_interval=timedelta(minutes=5),  # type: ignore[arg-type]
        max_poll_interval=timedelta(hours=12),  # type: ignore[arg-type]
        stop_polling_after=timedelta(days=7),  # type: ignore[arg-type]
    )
    assert (plan.min_poll_interval, plan.max_poll_interval, plan.stop_polling_after) == (300, 12 * HOUR, 7 * DAY)


def test_the_plan_imports_no_airflow() -> None:
    code = "import sys, airflow_provider_hindsight.polling; sys.exit('airflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"email_sent_at": "2026-05-15T12:00:00Z", "created_at": "2026-05-14T12:00:00Z"}, "2026-05-15T12:00:00"),
        ({"email_sent_at": None, "created_at": "2026-05-14T12:00:00Z"}, "2026-05-14T12:00:00"),  # never e-mailed
        ({"email_sent_at": "not a time", "created_at": "2026-05-14T12:00:00+00:00"}, "2026-05-14T12:00:00"),
        ({"status": "created"}, None),  # no time at all: unknown, polled at the shortest interval
    ],
)
def test_an_interview_s_age_counts_from_its_e_mail_else_its_creation(
    answer: dict[str, object], expected: str | None
) -> None:
    seconds = None if expected is None else datetime.fromisoformat(expected).replace(tzinfo=timezone.utc).timestamp()
    assert answer_started_at(answer) == seconds
    assert started_at(None, None) is None and started_at(2.0, 1.0) == 2.0 and started_at(None, 1.0) == 1.0
