"""Redirects against the emulator's redirect fault: never followed, permanent, nothing delivered or created.

The fault's ``Location`` is the request's own path, so a client that followed a 301/302/303 would
send a GET there and ``GET /interviews/{id}`` would answer 200: the emulator's request log shows
whether any follow-up GET went out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightPermanentError
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.hooks.pacing import SharedPacers
from airflow_provider_hindsight.hooks.request import ApiRequest, create_request, get_request, update_request
from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from airflow_provider_hindsight.resources.interviews import build_interview_create, build_interview_update
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.sync.helpers import in_dag, run

from .helpers import task_instance

ID = 4821
SEEDED = {"contact_context": "seeded", "contact_name": "Ana", "objective": "seeded"}
EMAIL = "ana@example.com"
CALLS: dict[str, Callable[[HindsightHook], Any]] = {
    "PATCH": lambda hook: hook.update_interview(ID, objective="Renewal"),
    "POST": lambda hook: hook.create_interview(contact_email=EMAIL, sequence_id="seq_1"),
    "GET": lambda hook: hook.get_interview(ID),
}

API_REQUESTS: dict[str, Callable[[], ApiRequest]] = {
    "PATCH": lambda: update_request(build_interview_update(ID, objective="Renewal")),
    "POST": lambda: create_request(build_interview_create(contact_email=EMAIL, sequence_id="seq_1"), "the create"),
    "GET": lambda: get_request(ID),
}
"""The same requests for the async hook's request core (its only endpoint method is ``aget_interview``)."""


@pytest.fixture
def emulator(hindsight_emulator_factory: Callable[..., HindsightEmulator]) -> HindsightEmulator:
    emulator = hindsight_emulator_factory(interview_ids=[])
    emulator.add_interview(ID, **SEEDED)
    return emulator


def assert_nothing_followed_or_changed(emulator: HindsightEmulator, method: str, status: int) -> None:
    assert [(request.method, request.status) for request in emulator.requests] == [(method, status)]
    assert emulator.interview(ID) == SEEDED
    assert emulator.created_interviews() == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", sorted(CALLS))
def test_the_sync_hook_refuses_every_redirect(emulator: HindsightEmulator, method: str, status: int) -> None:
    emulator.inject_redirect(status, method=method)

    with pytest.raises(HindsightConfigurationError) as info:
        CALLS[method](HindsightHook())

    assert info.value.status_code == status
    path = "/api/v1/interviews" if method == "POST" else f"/api/v1/interviews/{ID}"
    assert f"redirect to {path!r}" in info.value.message
    assert_nothing_followed_or_changed(emulator, method, status)


@pytest.mark.parametrize("method", sorted(API_REQUESTS))
def test_the_async_hook_refuses_a_redirect(emulator: HindsightEmulator, method: str) -> None:
    emulator.inject_redirect(302, method=method)
    hook = HindsightAsyncHook()
    hook.pacers = SharedPacers()

    async def send() -> dict[str, Any]:
        async with hook:
            return await hook.arequest(API_REQUESTS[method]())

    with pytest.raises(HindsightConfigurationError) as info:
        asyncio.run(send())

    assert (info.value.status_code, info.value.code) == (302, "redirect")
    assert_nothing_followed_or_changed(emulator, method, 302)


def test_a_bulk_update_stops_at_the_first_redirect_and_delivers_nothing(emulator: HindsightEmulator) -> None:
    for interview_id in range(1, 31):
        emulator.add_interview(interview_id, **SEEDED)
    emulator.inject_redirect(302, method="PATCH", times=1000)
    updates = [{"interview_request_id": n, "objective": "Renewal"} for n in range(1, 31)]

    outcome = run(in_dag(HindsightBulkUpdateInterviewsOperator, updates=updates, max_workers=2))

    assert isinstance(outcome.error, HindsightPermanentError)
    assert outcome.error.code == "stopped_redirect"
    summary = outcome.summary
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (30, 0, 30)
    assert summary["stopped"]["code"] == "stopped_redirect"
    assert {failure["code"] for failure in summary["failures"]} == {"redirect"}
    sent = emulator.requests
    assert {(request.method, request.status) for request in sent} == {("PATCH", 302)}  # no follow-up GET
    assert len(sent) <= 4  # stopped at once: at most the rows in flight (2 x max_workers) went out
    assert all(emulator.interview(n) == SEEDED for n in range(1, 31))


def test_a_redirect_fails_the_task_on_its_first_try(
    run_dag: Any, dag_emulator: Callable[..., HindsightEmulator], task_logs: Callable[[], str]
) -> None:
    emulator = dag_emulator(interview_ids=[ID])
    emulator.inject_redirect(301, location="https://www.example.com/api/v1/interviews/4821", times=10)

    dag_run = run_dag("reliability_update", interview_request_id=ID, objective="Renewal")

    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("failed", 1)  # permanent: retries=2 were not used
    assert [(request.method, request.status) for request in emulator.requests] == [("PATCH", 301)]
    logs = task_logs()
    assert "HTTP 301" in logs
    assert "'https://www.example.com/api/v1/interviews/4821'" in logs


@pytest.mark.parametrize("status", [200, 299, 400])
def test_the_redirect_fault_takes_only_redirect_statuses(emulator: HindsightEmulator, status: int) -> None:
    with pytest.raises(ValueError, match="300-399"):
        emulator.inject_redirect(status)
