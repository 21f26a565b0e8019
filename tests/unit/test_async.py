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
from airflow_provider_hindsight.hooks.pacing import SAFETY_MARGIN, RatePacer, shared_pacer

from .helpers import API_KEY, BASE_URL, FAST_RPM, FakeTime, SetConnection, envelope


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


def test_shared_pacer_is_one_per_key() -> None:
    first = shared_pacer("unit-test|a", 300)
    assert shared_pacer("unit-test|a", 999) is first
    assert shared_pacer("unit-test|b", 300) is not first


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
