"""The unknown-outcome faults of creates, faults aimed at one method, and one limiter for every route."""

from __future__ import annotations

import http.client
import threading
import time

import pytest
import requests

from airflow_provider_hindsight.testing import HindsightEmulator

from .helpers import AUTH, KEY, FakeClock, get, patch, post, wait_for

JANE = {"contact_email": "jane@example.com", "sequence_id": "seq_1"}
SAM = {"contact_email": "sam@example.com", "interview_type_id": "type_1"}


# --- create, then lose the answer ----------------------------------------------------------------


def test_create_then_drop_creates_one_interview_and_the_client_sees_a_dropped_connection(
    emulator: HindsightEmulator,
) -> None:
    emulator.inject_create_then_drop()

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{emulator.base_url}/interviews", json=JANE, headers=AUTH, timeout=5)

    (created,) = emulator.created_interviews("jane@example.com")
    assert created["status"] == "sent"
    (recorded,) = emulator.create_requests("jane@example.com")
    assert (recorded.status, recorded.json) == (0, JANE)
    assert emulator.status_counts == {0: 1}

    # A retry creates a second interview for the same person: what the real API would do.
    retried = post(emulator, JANE)
    assert retried.status == 201
    assert retried.json["interview_request_id"] == created["interview_request_id"] + 1
    assert len(emulator.created_interviews("jane@example.com")) == 2
    assert get(emulator, created["interview_request_id"]).status == 200


def test_create_then_drop_over_http_client(emulator: HindsightEmulator) -> None:
    emulator.inject_create_then_drop(times=2)

    for _ in range(2):
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            post(emulator, JANE)

    assert len(emulator.created_interviews()) == 2
    assert post(emulator, JANE).status == 201


def test_create_then_delay_creates_and_answers_after_the_client_gave_up(emulator: HindsightEmulator) -> None:
    emulator.inject_create_then_delay(60)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{emulator.base_url}/interviews", json=JANE, headers=AUTH, timeout=0.2)

    # Created and recorded before the wait began: nothing to wait for.
    (created,) = emulator.created_interviews()
    assert [request.status for request in emulator.create_requests()] == [201]
    # The late answer holds only its own connection.
    assert get(emulator, created["interview_request_id"]).json["status"] == "sent"


def test_stop_cuts_an_injected_wait_short_and_answers_no_one() -> None:
    emulator = HindsightEmulator(api_key=KEY).start()
    emulator.inject_create_then_delay(300)
    outcome: list[BaseException | int] = []

    def create() -> None:
        try:
            outcome.append(post(emulator, JANE).status)
        except (http.client.HTTPException, OSError) as error:
            outcome.append(error)

    client = threading.Thread(target=create, daemon=True)
    client.start()
    wait_for(lambda: len(emulator.created_interviews()) == 1)

    started = time.monotonic()
    emulator.stop()
    client.join(timeout=60)

    assert time.monotonic() - started < 60  # far below the 300 s it was told to wait
    (result,) = outcome
    assert isinstance(result, (http.client.RemoteDisconnected, ConnectionError))


def test_create_faults_skip_refused_and_rate_limited_creates() -> None:
    clock = FakeClock()
    with HindsightEmulator(api_key=KEY, requests_per_minute=60, rate_window=1.0, clock=clock) as emulator:
        emulator.inject_create_then_drop()

        assert post(emulator, {"contact_email": "nope"}).status == 400  # counted by the limiter, nothing created
        clock.advance(1.0)
        assert post(emulator, SAM, headers={}).status == 401
        assert get(emulator, 1).status == 404  # takes the only slot of this window
        assert post(emulator, JANE).status == 429  # not created: the fault waits
        assert emulator.created_interviews() == []

        clock.advance(1.0)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            post(emulator, JANE)
        assert len(emulator.created_interviews()) == 1


def test_create_faults_can_target_one_email(emulator: HindsightEmulator) -> None:
    emulator.inject_create_then_drop(contact_email="SAM@example.com")

    assert post(emulator, JANE).status == 201
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        post(emulator, SAM)
    assert post(emulator, SAM).status == 201
    assert len(emulator.created_interviews("sam@example.com")) == 2


def test_create_fault_arguments_are_checked(emulator: HindsightEmulator) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        emulator.inject_create_then_delay(-1)
    with pytest.raises(ValueError, match="at least 1"):
        emulator.inject_create_then_drop(times=0)


# --- faults aimed at one method ------------------------------------------------------------------


def test_faults_can_target_creates_only(emulator: HindsightEmulator) -> None:
    emulator.add_interview(1)
    emulator.inject_status(503, method="post", times=2)

    assert get(emulator, 1).status == 200
    assert patch(emulator, 1, {"objective": "x"}).status == 200
    assert [post(emulator, JANE).status for _ in range(3)] == [503, 503, 201]
    assert len(emulator.created_interviews()) == 1  # an injected status creates nothing


def test_drop_and_invalid_json_can_target_polls_only(emulator: HindsightEmulator) -> None:
    interview_id = post(emulator, JANE).json["interview_request_id"]
    emulator.inject_drop(method="GET")
    emulator.inject_invalid_json(method="GET", interview_request_id=interview_id)

    assert patch(emulator, interview_id, {"objective": "x"}).status == 200
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        get(emulator, interview_id)
    assert get(emulator, interview_id).headers["Content-Type"] == "text/html"
    assert get(emulator, interview_id).json["objective"] == "x"


def test_a_delay_can_target_one_method(emulator: HindsightEmulator) -> None:
    emulator.add_interview(1)
    emulator.inject_delay(60, method="PATCH")

    assert get(emulator, 1).status == 200  # not delayed
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.patch(f"{emulator.base_url}/interviews/1", json={"objective": "x"}, headers=AUTH, timeout=0.2)


def test_fault_method_must_be_a_served_one(emulator: HindsightEmulator) -> None:
    with pytest.raises(ValueError, match="method must be one of GET, PATCH, POST"):
        emulator.inject_status(500, method="DELETE")


# --- one limiter for every route -----------------------------------------------------------------


def test_post_get_and_patch_count_on_one_limiter() -> None:
    clock = FakeClock()
    with HindsightEmulator(api_key=KEY, requests_per_minute=180, rate_window=1.0, clock=clock) as emulator:
        created = post(emulator, JANE)
        interview_id = created.json["interview_request_id"]
        statuses = [
            created.status,
            get(emulator, interview_id).status,
            patch(emulator, interview_id, {"objective": "x"}).status,
            post(emulator, SAM).status,
            get(emulator, interview_id).status,
            patch(emulator, interview_id, {"objective": "y"}).status,
        ]

        assert statuses == [201, 200, 200, 429, 429, 429]
        assert len(emulator.created_interviews()) == 1
        limited = emulator.requests[-1]
        assert limited.status == 429

        clock.advance(1.0)
        assert post(emulator, SAM).status == 201
        assert emulator.stats()["by_route"] == {
            "GET /interviews/{id}": 2,
            "PATCH /interviews/{id}": 2,
            "POST /interviews": 3,
        }
