"""``bulk.engine.update_interviews`` over a hook (requests-mock): every row accounted for, lazily, the breaker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_hindsight.bulk.engine import update_interviews
from airflow_provider_hindsight.hooks import hindsight as hindsight_module
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.pacing import RatePacer
from airflow_provider_hindsight.pace import SAFETY_MARGIN

from .helpers import (
    ANY_INTERVIEW,
    FAST_RPM,
    PLAN_PACES,
    FakeTime,
    MakeHook,
    SetConnection,
    echo_id,
    envelope,
    ok,
    url,
)

# -- the bulk engine -----------------------------------------------------------------------------


def test_update_interviews_accounts_for_every_row(hook: HindsightHook, requests_mock: Any) -> None:
    requests_mock.patch(url(1), **ok(1))
    requests_mock.patch(url(3), status_code=404, json=envelope("not_found", "Interview request not found"))
    first = {"interview_request_id": 1, "objective": "first"}
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (first, {"succeeded": True}),
        ({"interview_request_id": "abc", "objective": "x"}, {"code": "invalid_input", "names": "interview_request_id"}),
        ({"interview_request_id": 1, "objective": "again"}, {"code": "duplicate_id", "id": 1}),
        ({"interview_request_id": 3, "contact_name": "x"}, {"status_code": 404, "code": "not_found", "id": 3}),
        ({"interview_request_id": 4, "objective": "x", "deal": 9}, {"code": "invalid_input", "names": "deal"}),
        ({"objective": "no id"}, {"code": "invalid_input", "names": "interview_request_id"}),
        ({"interview_request_id": 5}, {"code": "invalid_input", "names": "contact_context"}),
    ]

    results = {result.row: result for result in update_interviews(hook, (row for row, _ in cases))}

    assert sorted(results) == list(range(1, len(cases) + 1))
    for position, (row, expected) in enumerate(cases, start=1):
        result = results[position]
        assert result.succeeded is expected.get("succeeded", False)
        assert result.key == expected.get("id", row.get("interview_request_id"))
        assert result.status_code == expected.get("status_code")
        assert result.code == expected.get("code")
        assert expected.get("names", "") in (result.message or "")
    sent = [(request.path, request.json()) for request in requests_mock.request_history]
    assert sorted(sent) == [
        ("/api/v1/interviews/1", {"objective": "first"}),
        ("/api/v1/interviews/3", {"contact_name": "x"}),
    ]


@pytest.mark.parametrize("max_workers", [1, 4])
def test_update_interviews_pulls_rows_lazily(
    hindsight_connection: None, make_hook: MakeHook, requests_mock: Any, max_workers: int
) -> None:
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    count = 60
    pulled = 0

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for interview_id in range(1, count + 1):
            pulled += 1
            yield {"interview_request_id": interview_id, "objective": f"objective {interview_id}"}

    consumed = []
    hook = make_hook(requests_per_minute=FAST_RPM, max_workers=max_workers)
    for result in update_interviews(hook, rows()):
        consumed.append(result)
        assert pulled <= len(consumed) + 2 * max_workers

    assert sorted(result.row for result in consumed) == list(range(1, count + 1))
    assert all(result.succeeded for result in consumed)
    assert {result.row: result.key for result in consumed} == {n: n for n in range(1, count + 1)}


def test_pace_comes_from_the_connection(
    set_connection: SetConnection, make_hook: MakeHook, requests_mock: Any, fake_time: FakeTime
) -> None:
    """Back-to-back updates start ``60 / (pace * SAFETY_MARGIN)`` seconds apart, on the hook's clock."""
    plan, updates = "essentials", 3
    set_connection(extra={"plan": plan})
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    hook = make_hook()

    for interview_id in range(1, updates + 1):
        hook.update_interview(interview_id, objective="x")

    gap = 60 / (PLAN_PACES[plan] * SAFETY_MARGIN)
    assert fake_time.sleeps == [pytest.approx(gap)] * (updates - 1)


@pytest.mark.parametrize(
    "bad_row",
    [
        {"interview_request_id": 2, "objective": "Caf\udce9 owner"},
        {"interview_request_id": "9" * 5000, "objective": "x"},
    ],
    ids=["lone-surrogate", "5000-digit-id"],
)
def test_a_row_that_cannot_be_encoded_is_reported_not_fatal(
    hook: HindsightHook, requests_mock: Any, bad_row: dict[str, Any]
) -> None:
    requests_mock.patch(ANY_INTERVIEW, json=echo_id)
    rows = [{"interview_request_id": 1, "objective": "ok"}, bad_row, {"interview_request_id": 3, "objective": "ok"}]

    results = sorted(update_interviews(hook, rows), key=lambda result: result.row)

    assert [result.succeeded for result in results] == [True, False, True]
    assert results[1].code == "invalid_input"


def test_threads_that_ask_at_once_share_one_pacer(hook: HindsightHook, monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine warms the hook up before its threads start: the hook builds its pacer once by itself.

    Each build waits a little for a second one to begin: without the hook's own lock (Python 3.12's
    ``cached_property`` has none) a second thread would, and two pacers would double the pace.
    """
    builds: list[RatePacer] = []
    second_build = threading.Event()

    def slow_pacer(*args: Any, **kwargs: Any) -> RatePacer:
        builds.append(RatePacer(*args, **kwargs))
        if len(builds) > 1:
            second_build.set()
        second_build.wait(timeout=0.5)
        return builds[-1]

    monkeypatch.setattr(hindsight_module, "RatePacer", slow_pacer)
    threads = 8
    go = threading.Barrier(threads)
    seen: list[RatePacer] = []

    def ask() -> None:
        go.wait()
        seen.append(hook.pacer)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(builds) == 1
    assert len(seen) == threads and {id(pacer) for pacer in seen} == {id(builds[0])}
