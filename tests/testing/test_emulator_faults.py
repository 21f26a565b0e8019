"""The emulator's rate limiter and injected faults, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_hindsight.testing import HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Callable

from .helpers import AUTH, KEY, FakeClock, patch, wait_for

# --- rate limiter --------------------------------------------------------------------------------


def test_rate_limiter_sliding_window() -> None:
    """Driven by a fake clock: the window's edges are exact, whatever the machine's load."""
    clock = FakeClock()
    with HindsightEmulator(api_key=KEY, requests_per_minute=300, rate_window=1.0, clock=clock) as emulator:
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        for _ in range(5):
            assert patch(emulator, 1, {"objective": "x"}, connection=conn).status == 200

        clock.advance(0.25)
        limited = patch(emulator, 1, {"objective": "x"}, connection=conn)
        assert limited.status == 429
        assert limited.error["code"] == "rate_limit_exceeded"
        assert limited.headers["Retry-After"] == "1"  # 0.75 s rounded up
        reset = int(limited.headers["X-RateLimit-Reset"])
        assert time.time() <= reset <= time.time() + 2

        clock.advance(0.5)  # rejected requests must not count against the window
        assert patch(emulator, 1, {"objective": "x"}, connection=conn).status == 429
        assert patch(emulator, 1, {"objective": "x"}, headers={}, connection=conn).status == 401

        clock.advance(0.25)  # exactly one window after the first five: they leave it
        statuses = [patch(emulator, 1, {"objective": "x"}, connection=conn).status for _ in range(6)]
        assert statuses == [200, 200, 200, 200, 200, 429]
        assert emulator.status_counts == {200: 10, 429: 3, 401: 1}
        conn.close()


def test_rate_limiter_retry_after_rounds_up() -> None:
    with HindsightEmulator(api_key=KEY, requests_per_minute=1, rate_window=90.0) as emulator:
        assert patch(emulator, 1, {"objective": "x"}).status == 200
        limited = patch(emulator, 1, {"objective": "x"})

        assert limited.status == 429
        assert limited.headers["Retry-After"] == "90"
        assert int(limited.headers["X-RateLimit-Reset"]) == pytest.approx(time.time() + 90, abs=2)


def test_rate_limit_that_allows_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="longer rate_window"):
        HindsightEmulator(requests_per_minute=30, rate_window=1.0)


# --- fault injection -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (401, "unauthorized"),
        (403, "forbidden"),
        (404, "not_found"),
        (429, "rate_limit_exceeded"),
        (500, "internal_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
        (504, "gateway_timeout"),
    ],
)
def test_inject_status(emulator: HindsightEmulator, status: int, code: str) -> None:
    emulator.inject_status(status)

    answer = patch(emulator, 1, {"objective": "x"})
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.error["code"] == code
    assert "Retry-After" not in answer.headers
    assert "X-RateLimit-Reset" not in answer.headers
    assert emulator.interviews == {}

    assert patch(emulator, 1, {"objective": "x"}).status == 200


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(2, "2"), (2.0, "2"), (1.5, "1.5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")],
)
def test_inject_status_retry_after(emulator: HindsightEmulator, retry_after: float | str, header: str) -> None:
    emulator.inject_status(429, retry_after=retry_after, ratelimit_reset=1_900_000_000.0)

    answer = patch(emulator, 1, {"objective": "x"})
    assert answer.status == 429
    assert answer.headers["Retry-After"] == header
    assert answer.headers["X-RateLimit-Reset"] == "1900000000"


def test_inject_status_html_page(emulator: HindsightEmulator) -> None:
    emulator.inject_status(502, html=True, retry_after=3)

    answer = patch(emulator, 1, {"objective": "x"})
    assert answer.status == 502
    assert answer.headers["Content-Type"] == "text/html"
    assert answer.headers["Retry-After"] == "3"
    assert b"<h1>502 Bad Gateway</h1>" in answer.raw
    with pytest.raises(json.JSONDecodeError):
        answer.json  # noqa: B018


def test_inject_status_times_and_arrival_order(emulator: HindsightEmulator) -> None:
    emulator.inject_status(500, times=2)
    emulator.inject_status(503)

    statuses = [patch(emulator, 1, {"objective": "x"}).status for _ in range(4)]
    assert statuses == [500, 500, 503, 200]


def test_fault_targets_one_interview(emulator: HindsightEmulator) -> None:
    emulator.inject_status(503, interview_request_id=2, times=2)

    assert patch(emulator, 1, {"objective": "x"}).status == 200
    assert patch(emulator, 2, {"objective": "x"}).status == 503
    assert patch(emulator, 3, {"objective": "x"}).status == 200
    assert patch(emulator, 2, {"objective": "x"}).status == 503
    assert patch(emulator, 2, {"objective": "x"}).status == 200


def test_faults_apply_only_after_auth(emulator: HindsightEmulator) -> None:
    emulator.inject_status(500)

    assert patch(emulator, 1, {"objective": "x"}, headers={}).status == 401
    assert patch(emulator, 1, {"objective": "x"}).status == 500


def test_faults_do_not_count_against_the_rate_limit() -> None:
    with HindsightEmulator(api_key=KEY, requests_per_minute=60, rate_window=1.0, clock=FakeClock()) as emulator:
        emulator.inject_status(503)
        emulator.inject_invalid_json()

        statuses = [patch(emulator, 1, {"objective": "x"}).status for _ in range(4)]
        assert statuses == [503, 200, 200, 429]


def test_clear_faults(emulator: HindsightEmulator) -> None:
    emulator.inject_status(500, times=5)
    emulator.inject_drop()
    emulator.clear_faults()

    assert patch(emulator, 1, {"objective": "x"}).status == 200


@pytest.mark.parametrize(
    "inject",
    [
        lambda e: e.inject_status(200),
        lambda e: e.inject_status(500, times=0),
        lambda e: e.inject_drop(interview_request_id=0),
        lambda e: e.inject_delay(-1),
    ],
    ids=["not-an-error-status", "zero-times", "bad-id", "negative-delay"],
)
def test_fault_arguments_are_checked(emulator: HindsightEmulator, inject: Callable[[HindsightEmulator], None]) -> None:
    with pytest.raises(ValueError, match="must"):
        inject(emulator)


def test_inject_invalid_json(emulator: HindsightEmulator) -> None:
    emulator.inject_invalid_json(interview_request_id=5)

    answer = patch(emulator, 5, {"objective": "x"})
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html"
    with pytest.raises(json.JSONDecodeError):
        answer.json  # noqa: B018
    assert emulator.interviews == {}
    assert patch(emulator, 5, {"objective": "x"}).json == {"interview_request_id": 5}


def test_inject_delay_lets_the_client_time_out(emulator: HindsightEmulator, capfd: pytest.CaptureFixture[str]) -> None:
    # The delay is twenty times the client's timeout: the margin, not a race, decides the outcome.
    emulator.inject_delay(2.0)

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.patch(f"{emulator.base_url}/interviews/1", json={"objective": "late"}, headers=AUTH, timeout=0.1)

    # The delayed request is still handled after the delay, and its hang-up is not reported.
    wait_for(lambda: emulator.status_counts.get(200) == 1)
    assert emulator.interview(1)["objective"] == "late"
    assert requests.patch(f"{emulator.base_url}/interviews/1", json={"objective": "x"}, headers=AUTH, timeout=5).ok
    wait_for(lambda: emulator.open_connections == 0)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("client", ["requests", "http.client"])
def test_inject_drop(emulator: HindsightEmulator, client: str) -> None:
    emulator.inject_drop()

    if client == "requests":
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.patch(f"{emulator.base_url}/interviews/1", json={"objective": "x"}, headers=AUTH, timeout=2)
    else:
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            patch(emulator, 1, {"objective": "x"})

    assert emulator.interviews == {}
    assert emulator.status_counts == {0: 1}
    assert emulator.requests[0].status == 0
    assert emulator.requests[0].json == {"objective": "x"}
    assert patch(emulator, 1, {"objective": "x"}).status == 200


def test_client_hanging_up_mid_request_is_quiet(emulator: HindsightEmulator, capfd: pytest.CaptureFixture[str]) -> None:
    with socket.create_connection(("127.0.0.1", emulator.port)) as sock:
        sock.sendall(
            b"PATCH /api/v1/interviews/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + KEY.encode()
            + b'\r\nContent-Length: 100\r\n\r\n{"obj'
        )
    wait_for(lambda: emulator.request_count == 1)
    wait_for(lambda: emulator.open_connections == 0)  # its handler has finished, error reporting included

    assert capfd.readouterr().err == ""
    assert patch(emulator, 1, {"objective": "x"}).status == 200
