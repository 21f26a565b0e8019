"""Redirects are never followed, on either transport: a 3xx is a permanent configuration error naming the
status and the ``Location``, after one request (requests-mock and ``httpx.MockTransport``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import HindsightConfigurationError
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.hooks.pacing import RatePacer
from airflow_provider_hindsight.hooks.request import ApiRequest, create_request, get_request, update_request
from airflow_provider_hindsight.resources.interviews import build_interview_create, build_interview_update

from .helpers import API_KEY, BASE_URL, FAST_RPM, url

ELSEWHERE = "https://www.example.com/api/v1/interviews/4821"
"""Where the redirects point: a GET there would answer 200 with an ``interview_request_id``."""
INTERVIEW = {"interview_request_id": 4821, "status": "sent", "survey_url": "https://x/s/t"}

REQUESTS: dict[str, Callable[[], ApiRequest]] = {
    "PATCH": lambda: update_request(build_interview_update(4821, objective="Renewal")),
    "POST": lambda: create_request(
        build_interview_create(contact_email="ana@example.com", sequence_id="seq_1"), "the create"
    ),
    "GET": lambda: get_request(4821),
}
STATUSES = (301, 302, 303, 307, 308)


def target(method: str) -> str:
    return f"{BASE_URL}/interviews" if method == "POST" else url(4821)


def assert_redirect_error(error: HindsightConfigurationError, status: int, method: str) -> None:
    assert isinstance(error, AirflowFailException)  # permanent: no Airflow retry
    assert (error.status_code, error.code, error.details) == (status, "redirect", {"location": ELSEWHERE})
    assert f"HTTP {status}" in error.message
    assert repr(ELSEWHERE) in error.message
    if method != "GET":
        assert f"(a {method} would arrive as a GET and change nothing)" in error.message
    assert "connection 'hindsight_default'" in error.message
    assert API_KEY not in str(error)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_the_sync_hook_refuses_a_redirect_without_following_it(
    hook: HindsightHook, requests_mock: Any, method: str, status: int
) -> None:
    requests_mock.register_uri(method, target(method), status_code=status, headers={"Location": ELSEWHERE})
    followed = requests_mock.get(ELSEWHERE, json=INTERVIEW)

    with pytest.raises(HindsightConfigurationError) as info:
        hook.request(REQUESTS[method]())

    assert_redirect_error(info.value, status, method)
    assert not followed.called
    (sent,) = requests_mock.request_history  # not retried either
    assert (sent.method, sent.url) == (method, target(method))


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_the_async_hook_refuses_a_redirect_without_following_it(
    hindsight_connection: None, method: str, status: int
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if str(request.url) == ELSEWHERE:
            return httpx.Response(200, json=INTERVIEW)
        return httpx.Response(status, headers={"Location": ELSEWHERE})

    hook = HindsightAsyncHook(requests_per_minute=FAST_RPM)
    hook.pacer = RatePacer(FAST_RPM)
    hook.transport = httpx.MockTransport(handler)

    async def send() -> dict[str, Any]:
        async with hook:
            return await hook.arequest(REQUESTS[method]())

    with pytest.raises(HindsightConfigurationError) as info:
        asyncio.run(send())

    assert_redirect_error(info.value, status, method)
    assert [(request.method, str(request.url)) for request in seen] == [(method, target(method))]


def test_both_transports_say_the_same_thing(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.get(url(4821), status_code=302, headers={"Location": ELSEWHERE})
    with pytest.raises(HindsightConfigurationError) as sync_error:
        hook.get_interview(4821)

    async_hook = HindsightAsyncHook(requests_per_minute=FAST_RPM)
    async_hook.pacer = RatePacer(FAST_RPM)
    async_hook.transport = httpx.MockTransport(lambda request: httpx.Response(302, headers={"Location": ELSEWHERE}))

    async def get() -> dict[str, Any]:
        async with async_hook:
            return await async_hook.aget_interview(4821)

    with pytest.raises(HindsightConfigurationError) as async_error:
        asyncio.run(get())

    assert str(async_error.value) == str(sync_error.value)


def test_a_redirect_without_location_says_so(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(1), status_code=301)

    with pytest.raises(HindsightConfigurationError) as info:
        hook.update_interview(1, objective="x")

    assert "a redirect to nowhere (no Location header)" in info.value.message
    assert info.value.details == {}
    assert "location" not in str(info.value)


def test_a_long_location_is_cut_in_the_message(hook: HindsightHook, requests_mock: Any) -> None:
    location = "https://www.example.com/" + "a" * 1000
    requests_mock.patch(url(1), status_code=302, headers={"Location": location})

    with pytest.raises(HindsightConfigurationError) as info:
        hook.update_interview(1, objective="x")

    assert info.value.details == {"location": location[:200]}
    assert location[:201] not in info.value.message
