"""The event-loop side of the request core: the pacer's awaiting waiter and ``HindsightAsyncHook``
over ``httpx.MockTransport``: the same pace, retry rule and error mapping as the sync hook."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

import httpx
import pytest

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightConfigurationError,
    HindsightConnectionError,
    HindsightNotFoundError,
)
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.hooks.pacing import RatePacer, SharedPacers
from airflow_provider_hindsight.pace import SAFETY_MARGIN, PaceChange

from .helpers import API_KEY, BASE_URL, FAST_RPM, FakeTime, SetConnection, TaskClocks, envelope


class FakeLoopTime(FakeTime):
    """:class:`FakeTime` whose sleep is awaitable, for the event-loop waiter."""

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.mark.parametrize("pace", [60, 300, 1000])
def test_the_awaiting_waiter_spaces_starts_like_the_blocking_one(pace: int) -> None:
    fake = FakeLoopTime()
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep, async_sleep=fake.async_sleep)

    async def starts() -> list[float]:
        moments = []
        for _ in range(20):
            await pacer.acquire_async()
            moments.append(fake.clock())
        return moments

    moments = asyncio.run(starts())
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(moments)}
    assert gaps == {round(60 / (pace * SAFETY_MARGIN), 9)}


def test_threads_and_coroutines_draw_on_one_schedule() -> None:
    fake = FakeLoopTime()
    pacer = RatePacer(600, clock=fake.clock, sleep=fake.sleep, async_sleep=fake.async_sleep)
    starts: list[float] = []
    lock = threading.Lock()

    def thread_side() -> None:
        for _ in range(10):
            pacer.acquire()
            with lock:
                starts.append(fake.clock())

    async def loop_side() -> None:
        for _ in range(10):
            await pacer.acquire_async()
            with lock:
                starts.append(fake.clock())

    worker = threading.Thread(target=thread_side)
    worker.start()
    asyncio.run(loop_side())
    worker.join()
    # One fake clock moved by both waiters: 20 starts took 20 intervals, not 10 (two budgets would take 10).
    assert fake.clock() - 1_000.0 == pytest.approx(
        20 * 60 / (600 * SAFETY_MARGIN) - 60 / (600 * SAFETY_MARGIN), abs=0.2
    )


def test_shared_pacers_are_one_per_connection_base_url_and_pace() -> None:
    pacers = SharedPacers()
    first = pacers.get("hindsight_default", BASE_URL, 300)

    assert pacers.get("hindsight_default", BASE_URL, 300.0) is first
    assert pacers.get("hindsight_default", BASE_URL, 60).configured_requests_per_minute == 60  # not the first's
    assert pacers.get("other", BASE_URL, 300) is not first
    assert pacers.get("hindsight_default", "http://127.0.0.1:1/api/v1", 300) is not first
    pacers.reset()
    assert pacers.get("hindsight_default", BASE_URL, 300) is not first


def test_shared_pacers_run_on_the_clock_they_are_given() -> None:
    """Two hooks' tasks on one shared pacer start exactly one interval apart, on an injected clock."""
    pace = 600
    clocks = TaskClocks()
    pacers = SharedPacers(clock=clocks.now, async_sleep=clocks.async_sleep)
    starts: list[float] = []

    async def one_hook(count: int) -> None:
        pacer = pacers.get("hindsight_default", BASE_URL, pace)
        for _ in range(count):
            await pacer.acquire_async()
            starts.append(clocks.now())

    async def both() -> None:
        await asyncio.gather(one_hook(10), one_hook(10))

    asyncio.run(both())

    interval = 60 / (pace * SAFETY_MARGIN)
    ordered = sorted(starts)
    assert ordered[0] == 1_000.0
    assert [round(b - a, 9) for a, b in itertools.pairwise(ordered)] == [round(interval, 9)] * 19


def test_a_change_of_pace_is_told_to_the_caller_that_met_it() -> None:
    """A pacer shared by two hooks: each hook's log hears of what its own requests met, not the first's."""
    fake = FakeTime()
    mine: list[PaceChange] = []
    theirs: list[PaceChange] = []
    pacer = RatePacer(600, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire(theirs.append)

    pacer.pause(3.0, mine.append)
    pacer.slow_down(mine.append)

    assert [(change.pause_seconds, change.reason) for change in mine] == [
        (3.0, "the API asked to wait (Retry-After)"),
        (0.0, "the API answered 429"),
    ]
    assert mine[1].new_requests_per_minute == pytest.approx(600 * 0.7 * SAFETY_MARGIN)
    assert theirs == []


class FakePermits:
    """A permit source that answers the waits it was given, in turn, and counts the permits taken."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.taken = 0

    def take(self) -> float:
        self.taken += 1
        return self.waits.pop(0)

    async def atake(self) -> float:
        return self.take()


def test_the_pacer_waits_what_its_permit_source_says_after_its_own_turn() -> None:
    fake = FakeLoopTime()
    permits = FakePermits([0.0, 2.5, 0.0])
    pacer = RatePacer(60, clock=fake.clock, sleep=fake.sleep, async_sleep=fake.async_sleep, permits=permits)
    interval = 60 / (60 * SAFETY_MARGIN)

    assert pacer.acquire() == 0.0
    assert pacer.acquire() == pytest.approx(interval + 2.5)  # its own turn, then the budget's wait

    async def on_the_loop() -> float:
        return await pacer.acquire_async()

    assert asyncio.run(on_the_loop()) == 0.0  # the budget's wait was longer than the pacer's own gap
    assert permits.taken == 3
    assert fake.sleeps == [pytest.approx(interval), 2.5]


def make_hook(handler: Any, **kwargs: Any) -> tuple[HindsightAsyncHook, list[float]]:
    waits: list[float] = []

    async def record_wait(seconds: float) -> None:
        waits.append(seconds)

    hook = HindsightAsyncHook(requests_per_minute=FAST_RPM, **kwargs)
    # Not the process-wide pacer: a test's 429 pause must not reach the next test.
    hook.pacer = RatePacer(FAST_RPM, async_sleep=record_wait)
    hook.transport = httpx.MockTransport(handler)
    hook.async_sleep = record_wait
    return hook, waits


async def get(hook: HindsightAsyncHook, interview_id: Any) -> dict[str, Any]:
    async with hook:
        return await hook.aget_interview(interview_id)


def test_aget_interview_sends_the_get_with_auth(hindsight_connection: None) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"interview_request_id": 4821, "status": "sent"})

    hook, _ = make_hook(handler)
    assert asyncio.run(get(hook, "4821")) == {"interview_request_id": 4821, "status": "sent"}
    (request,) = seen
    assert (request.method, str(request.url)) == ("GET", f"{BASE_URL}/interviews/4821")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


def test_a_429_waits_what_retry_after_says_then_retries(hindsight_connection: None) -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json=envelope("rate_limit_exceeded", "slow")),
            httpx.Response(200, json={"interview_request_id": 1, "status": "completed"}),
        ]
    )
    hook, waits = make_hook(lambda request: next(answers))

    assert asyncio.run(get(hook, 1))["status"] == "completed"
    retry_wait, pause = waits  # the retry's wait, and the pacer holding every caller back
    assert retry_wait == 7.0
    assert pause == pytest.approx(7.0, abs=0.5)
    assert hook.rate_limited_count == 1


def test_transient_failures_are_retried_and_bounded(hindsight_connection: None) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow", request=request)

    hook, waits = make_hook(handler, max_retries=3)
    with pytest.raises(HindsightConnectionError, match=r"read timed out on 127\.0\.0\.1:8089"):
        asyncio.run(get(hook, 1))
    assert len(calls) == 4
    assert len(waits) == 3


@pytest.mark.parametrize(
    ("status", "error_class"), [(401, HindsightAuthError), (403, HindsightAuthError), (404, HindsightNotFoundError)]
)
def test_permanent_answers_are_typed_and_not_retried(
    hindsight_connection: None, status: int, error_class: type[Exception]
) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json=envelope("no", "no"))

    hook, _ = make_hook(handler)
    with pytest.raises(error_class):
        asyncio.run(get(hook, 1))
    assert len(calls) == 1


def test_a_missing_connection_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HINDSIGHT_NOWHERE", raising=False)
    hook, _ = make_hook(lambda request: httpx.Response(200), hindsight_conn_id="hindsight_nowhere")
    with pytest.raises(HindsightConfigurationError, match="hindsight_nowhere"):
        asyncio.run(get(hook, 1))


def test_the_async_hook_reads_the_same_connection(set_connection: SetConnection) -> None:
    set_connection(extra={"plan": "growth", "timeout": 12})
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(200, content=json.dumps({"interview_request_id": 2, "status": "created"}).encode())

    hook = HindsightAsyncHook()
    hook.transport = httpx.MockTransport(handler)
    assert asyncio.run(get(hook, 2))["status"] == "created"
    assert hook.settings.requests_per_minute == 300
    assert hook.settings.timeout == 12
    assert bodies == [b""]
