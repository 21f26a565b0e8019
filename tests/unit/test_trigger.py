"""``HindsightInterviewTrigger`` over ``httpx.MockTransport``: serialisation, polling, deadline, errors, pace, loop."""

from __future__ import annotations

import asyncio
import datetime
import gc
import importlib
import itertools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.hooks.pacing import RatePacer, SharedPacers
from airflow_provider_hindsight.pace import SAFETY_MARGIN
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.triggers.interview import HindsightInterviewTrigger, polls_in_flight

from .helpers import API_KEY, BASE_URL, FAST_RPM, TaskClocks, envelope

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """Wall-clock seconds that move only when the trigger sleeps."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Define a connection of this test's own (its own shared pacer): ``connection(**extra) -> conn_id``."""
    counter = itertools.count()

    def define(**extra: Any) -> str:
        conn_id = f"trig_{abs(hash(request.node.nodeid)) % 10**8}_{next(counter)}"
        body = {"conn_type": "hindsight", "host": BASE_URL, "password": API_KEY, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))
        return conn_id

    return define


def make_trigger(
    handler: Handler,
    *,
    clock: FakeClock | None = None,
    hook_sleeps: list[float] | None = None,
    pacers: SharedPacers | None = None,
    **kwargs: Any,
) -> HindsightInterviewTrigger:
    kwargs.setdefault("requests_per_minute", FAST_RPM)
    trigger = HindsightInterviewTrigger(**kwargs)

    def make_hook() -> HindsightAsyncHook:
        hook = HindsightInterviewTrigger.make_hook(trigger)
        hook.transport = httpx.MockTransport(handler)

        async def no_wait(seconds: float) -> None:
            if hook_sleeps is not None:
                hook_sleeps.append(seconds)

        hook.async_sleep = no_wait
        if pacers is not None:  # the test's own shared pacers: nothing carries over to the next test
            hook.pacers = pacers
        else:  # a test's 429 pause must not hold the next test, nor wait in real time
            hook.pacer = RatePacer(FAST_RPM, async_sleep=pacer_wait)
        return hook

    async def pacer_wait(seconds: float) -> None:
        pass

    trigger.make_hook = make_hook  # type: ignore[method-assign]
    if clock is not None:
        trigger.clock = clock
        trigger.sleep = clock.sleep
    return trigger


async def first_event(trigger: HindsightInterviewTrigger) -> dict[str, Any]:
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    return events[0]


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def interview(interview_id: int, status: str, email_sent_at: float | None = None) -> httpx.Response:
    transcript = {
        "document_id": "doc_1",
        "content": "**Paige:** Hi\n\n**Ana:** SECRET",
        "created_at": "2026-05-15T10:00:00Z",
    }
    return httpx.Response(
        200,
        json={
            "interview_request_id": interview_id,
            "status": status,
            "transcript": transcript if status == "completed" else None,
            "email_sent_at": None if email_sent_at is None else iso(email_sent_at),
            "created_at": None if email_sent_at is None else iso(email_sent_at - 60),
        },
    )


def test_serialize_round_trip_is_small_json_without_the_key(connection: Callable[..., str]) -> None:
    conn_id = connection()
    trigger = HindsightInterviewTrigger(
        interview_request_ids=[str(4_000_000 + n) for n in range(500)],
        target_status="sent",
        hindsight_conn_id=conn_id,
        poke_interval=600,
        deadline="2026-05-15T10:00:00Z",
    )
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))

    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["interview_request_ids"][:2] == [4_000_000, 4_000_001]
    assert kwargs["deadline"] == 1778839200.0
    assert (kwargs["poke_interval"], kwargs["poll_age_factor"], kwargs["max_poll_interval"]) == (600, 0.1, 86400)
    text = json.dumps(kwargs)
    assert len(text) < 6_000
    assert API_KEY not in text


def test_success_when_every_id_reached_the_target_each_polled_once_per_interval(
    connection: Callable[..., str],
) -> None:
    clock = FakeClock()
    polls: dict[int, list[float]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        interview_id = int(request.url.path.rsplit("/", 1)[1])
        polls.setdefault(interview_id, []).append(clock())
        done = len(polls[interview_id]) >= interview_id  # id 1 at the first poll, id 3 at the third
        return interview(interview_id, "completed" if done else "sent")

    trigger = make_trigger(
        handler, clock=clock, interview_request_ids=[1, 2, 3], hindsight_conn_id=connection(), poke_interval=300
    )
    event = asyncio.run(first_event(trigger))

    assert event == {
        "status": "success",
        "statuses": {"1": "completed", "2": "completed", "3": "completed"},
        "error": None,
    }
    assert {key: len(value) for key, value in polls.items()} == {1: 1, 2: 2, 3: 3}
    for moments in polls.values():
        assert all(b - a >= 300 for a, b in itertools.pairwise(moments))
    assert "SECRET" not in json.dumps(event)


def test_each_id_is_polled_on_the_plan_by_its_age(connection: Callable[..., str]) -> None:
    clock = FakeClock()
    sent = {1: clock() - 10 * 86400, 2: clock()}  # e-mailed ten days ago, and just now
    polls: dict[int, list[float]] = {1: [], 2: []}

    def handler(request: httpx.Request) -> httpx.Response:
        interview_id = int(request.url.path.rsplit("/", 1)[1])
        polls[interview_id].append(clock())
        return interview(interview_id, "sent", email_sent_at=sent[interview_id])

    trigger = make_trigger(
        handler,
        clock=clock,
        interview_request_ids=[1, 2],
        hindsight_conn_id=connection(),
        poke_interval=300,
        deadline=clock() + 12 * 3600,
    )
    event = asyncio.run(first_event(trigger))

    assert event["status"] == "timeout" and event["statuses"] == {"1": "sent", "2": "sent"}
    assert len(polls[1]) == 1  # ten days old: due again after a day (max_poll_interval), past the deadline
    for polled, next_polled in itertools.pairwise(polls[2]):  # young: every 300 s, then a tenth of its age ...
        planned = max(300, 0.1 * (polled - sent[2]))
        assert planned <= next_polled - polled < planned + 300  # ... at the first round due (rounds are 300 s apart)
        assert (next_polled - polls[2][0]) % 300 == pytest.approx(0)
    assert 25 < len(polls[2]) < 45  # 300 s apart for its first 3,000 s, then about 10 % further apart each time


def test_sent_is_reached_by_completed_too(connection: Callable[..., str]) -> None:
    answers = {1: "sent", 2: "completed"}
    trigger = make_trigger(
        lambda request: interview(int(request.url.path.rsplit("/", 1)[1]), answers[int(request.url.path[-1])]),
        interview_request_ids=[1, 2],
        target_status="sent",
        hindsight_conn_id=connection(),
    )
    assert asyncio.run(first_event(trigger))["status"] == "success"


def test_timeout_at_the_absolute_deadline_with_the_last_statuses(connection: Callable[..., str]) -> None:
    clock = FakeClock()
    polls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        polls.append(clock())
        return interview(int(request.url.path.rsplit("/", 1)[1]), "sent")

    trigger = make_trigger(
        handler,
        clock=clock,
        interview_request_ids=[7, 8],
        hindsight_conn_id=connection(),
        poke_interval=300,
        deadline=clock() + 1000,
    )
    event = asyncio.run(first_event(trigger))

    assert event == {"status": "timeout", "statuses": {"7": "sent", "8": "sent"}, "error": None}
    assert clock() == pytest.approx(clock.now) and clock.now - 1_800_000_000.0 == pytest.approx(1000)
    assert len(polls) == 8  # at 0, 300, 600 and 900 s, each id
    past = make_trigger(handler, clock=clock, interview_request_ids=[7], hindsight_conn_id=connection(), deadline=1.0)
    assert asyncio.run(first_event(past))["status"] == "timeout"  # a deadline already gone: no request
    assert len(polls) == 8


def test_a_404_ends_it_naming_the_id(connection: Callable[..., str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/13"):
            return httpx.Response(404, json=envelope("not_found", "Interview request not found"))
        return interview(12, "sent")

    conn_id = connection()
    trigger = make_trigger(handler, interview_request_ids=[12, 13], hindsight_conn_id=conn_id)
    event = asyncio.run(first_event(trigger))

    assert event["status"] == "error"
    assert event["statuses"] == {"12": "sent"}
    error = event["error"]
    assert (error["interview_request_id"], error["status_code"], error["code"], error["transient"]) == (
        13,
        404,
        "not_found",
        False,
    )
    assert "interview 13" in error["message"] and conn_id in error["message"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_ends_it_naming_the_connection(connection: Callable[..., str], status: int) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json=envelope("unauthorized", "bad key"))

    conn_id = connection()
    event = asyncio.run(first_event(make_trigger(handler, interview_request_ids=[1, 2, 3], hindsight_conn_id=conn_id)))

    assert event["status"] == "error" and event["error"]["status_code"] == status
    assert conn_id in event["error"]["message"] and "API key" in event["error"]["message"]
    assert len(calls) == 1


def test_a_missing_connection_is_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_TRIG_NOWHERE", raising=False)
    trigger = make_trigger(
        lambda request: interview(1, "sent"), interview_request_ids=[1], hindsight_conn_id="trig_nowhere"
    )
    event = asyncio.run(first_event(trigger))
    assert event["status"] == "error" and "trig_nowhere" in event["error"]["message"]
    assert event["error"]["transient"] is False


def test_transient_failures_are_ridden_out(connection: Callable[..., str]) -> None:
    clock = FakeClock()
    answers = iter([httpx.Response(503), httpx.Response(502), interview(5, "sent"), httpx.Response(500)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or interview(5, "completed")

    trigger = make_trigger(
        handler, clock=clock, interview_request_ids=[5], hindsight_conn_id=connection(max_retries=0), poke_interval=60
    )
    event = asyncio.run(first_event(trigger))
    assert event == {"status": "success", "statuses": {"5": "completed"}, "error": None}


def test_failures_in_a_row_end_it_retryably(connection: Callable[..., str]) -> None:
    clock = FakeClock()
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused", request=request)

    trigger = make_trigger(
        handler,
        clock=clock,
        interview_request_ids=[1, 2],
        hindsight_conn_id=connection(max_retries=1),
        poke_interval=60,
        max_consecutive_failures=3,
    )
    event = asyncio.run(first_event(trigger))

    assert event["status"] == "error"
    assert event["error"]["transient"] is True and event["error"]["code"] == "connection_error"
    assert "3 rounds of polls in a row" in event["error"]["message"]
    # Three failed rounds, each poll with one retry: the first round polls one id (a refused key costs one
    # request), the next two both ids at once (in flight together), not five failed polls.
    assert len(calls) == (1 + 2 + 2) * 2


def test_retry_after_is_honoured_by_the_hook_and_beyond_it(connection: Callable[..., str]) -> None:
    clock = FakeClock()
    hook_sleeps: list[float] = []
    polled: list[float] = []
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json=envelope("rate_limit_exceeded", "slow")),
            httpx.Response(429, headers={"Retry-After": "240"}, json=envelope("rate_limit_exceeded", "slow")),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        polled.append(clock())
        return next(answers, None) or interview(9, "completed")

    trigger = make_trigger(
        handler,
        clock=clock,
        hook_sleeps=hook_sleeps,
        interview_request_ids=[9],
        hindsight_conn_id=connection(),
        max_consecutive_failures=1,
        poke_interval=60,
    )
    event = asyncio.run(first_event(trigger))

    assert event["status"] == "success"  # 429s are not failures of the API
    assert hook_sleeps == [7.0]  # the hook's retry waited what the API asked
    assert len(polled) == 3
    assert polled[2] - polled[1] >= 240  # too long for a retry: the trigger itself waited it out, past poke_interval


def test_triggers_of_one_connection_share_one_pace(connection: Callable[..., str]) -> None:
    """Three triggers of one connection draw on one schedule: 15 starts one interval apart, on fake clocks."""
    pace = 600
    conn_id = connection(requests_per_minute=pace)
    clocks = TaskClocks()
    starts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        starts.append(clocks.now())
        return interview(int(request.url.path.rsplit("/", 1)[1]), "completed")

    pacers = SharedPacers(clock=clocks.now, async_sleep=clocks.async_sleep)
    triggers = [
        make_trigger(
            handler,
            interview_request_ids=range(10 * n + 1, 10 * n + 6),
            hindsight_conn_id=conn_id,
            requests_per_minute=None,
            pacers=pacers,
        )
        for n in range(3)
    ]

    async def together() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(trigger) for trigger in triggers))

    events = asyncio.run(together())

    assert [event["status"] for event in events] == ["success"] * 3
    interval = 60 / (pace * SAFETY_MARGIN)
    ordered = sorted(starts)  # one schedule for all three: three schedules of their own would start together
    assert [round(b - a, 9) for a, b in itertools.pairwise(ordered)] == [round(interval, 9)] * 14


def test_the_event_loop_never_stalls(connection: Callable[..., str]) -> None:
    conn_id = connection(requests_per_minute=60_000)

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.001)
        return interview(int(request.url.path.rsplit("/", 1)[1]), "completed")

    trigger = make_trigger(
        handler,
        interview_request_ids=range(1, 501),
        hindsight_conn_id=conn_id,
        requests_per_minute=None,
        pacers=SharedPacers(),
    )  # type: ignore[arg-type]

    async def measured() -> tuple[dict[str, Any], float, float]:
        # The process's first connection read imports Airflow's secrets machinery, once per triggerer
        # process and long before any trigger runs there: done here before measuring.
        await HindsightAsyncHook(conn_id).asettings()
        longest = busiest = 0.0
        running = True

        async def ticker() -> None:
            # The loop's thread CPU time between two ticks is what the trigger kept the loop busy; wall
            # time also counts the process not being scheduled at all (2 shared cores, other tests).
            nonlocal longest, busiest
            last, last_cpu = time.perf_counter(), time.thread_time()
            while running:
                await asyncio.sleep(0.005)
                now, cpu = time.perf_counter(), time.thread_time()
                longest, busiest = max(longest, now - last), max(busiest, cpu - last_cpu)
                last, last_cpu = now, cpu

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        event = await first_event(trigger)
        running = False
        await tick
        return event, longest, busiest

    # A full garbage collection of Airflow's heap stalls any event loop (the landing benchmark measures
    # it, and the docs suggest gc.freeze() in a triggerer); this test is about the trigger's own code.
    gc.collect()
    gc.disable()
    try:
        event, longest, busiest = asyncio.run(measured())
    finally:
        gc.enable()
    assert event["status"] == "success" and len(event["statuses"]) == 500
    assert busiest < 0.05
    assert longest < 0.5  # no blocking wait either (a sleep or blocking I/O costs wall time, not CPU)


def test_a_round_polls_concurrently_at_the_pace_and_warns_when_it_outlasts_poke_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    latency, pace, count = 0.3, 600, 40
    with HindsightEmulator(api_key=API_KEY, latency=latency) as emulator:
        for interview_id in range(1, count + 1):
            emulator.add_interview(interview_id, status="completed")
        conn_id = "trig_concurrent_round"
        monkeypatch.setenv(*emulator.connection_env(conn_id, requests_per_minute=pace))
        trigger = HindsightInterviewTrigger(
            interview_request_ids=range(1, count + 1), hindsight_conn_id=conn_id, poke_interval=1
        )
        with caplog.at_level(logging.INFO):
            event = asyncio.run(first_event(trigger))
        arrivals = sorted(request.time for request in emulator.requests if request.method == "GET")

    assert event["status"] == "success" and len(event["statuses"]) == count
    assert len(arrivals) == count  # each id once
    assert arrivals[1] - arrivals[0] >= latency  # the first poll goes alone (a refused key costs one request)
    gaps = list(itertools.pairwise(arrivals[1:]))
    overlapping = sum(1 for earlier, later in gaps if later - earlier < latency)
    assert overlapping >= len(gaps) * 0.9  # then each starts while earlier ones are still answered
    interval = 60 / (pace * SAFETY_MARGIN)
    for first, moment in enumerate(arrivals):  # paced, never a burst (arrivals jitter on a busy machine)
        assert sum(1 for later in arrivals[first:] if later - moment < 0.5) <= 0.5 / interval + 2
    assert polls_in_flight(pace * SAFETY_MARGIN) == 30
    assert "longer than poke_interval (1s)" in caplog.text + capsys.readouterr().out  # Airflow 2: logging; 3: stdout
