"""Tests of the Hindsight API emulator itself, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_hindsight.testing import HindsightEmulator, RecordedRequest
from airflow_provider_hindsight.testing.__main__ import build_parser, parse_ids
from airflow_provider_hindsight.testing.pytest_plugin import (  # noqa: F401
    hindsight_emulator,
    hindsight_emulator_factory,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytest_plugins = ["pytester"]

KEY = "secret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ALL_FIELDS = ["contact_context", "contact_name", "objective"]


class Answer:
    """A finished HTTP exchange: status, headers and the parsed (or raw) body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.raw = response.read()

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def error(self) -> dict[str, Any]:
        return self.json["error"]


def send(
    emulator: HindsightEmulator,
    path: str,
    body: Any = None,
    *,
    method: str = "PATCH",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> Answer:
    """Send one request; ``path`` is relative to the API base (``/interviews/1``) or absolute (``/_...``)."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    target = path if path.startswith("/_") else "/api/v1" + path
    all_headers = {**AUTH, "Content-Type": "application/json"} if headers is None else headers
    conn.request(method, target, body=data, headers=all_headers)
    answer = Answer(conn.getresponse())
    if connection is None:
        conn.close()
    return answer


def patch(emulator: HindsightEmulator, interview_id: int | str, body: Any, **kwargs: Any) -> Answer:
    return send(emulator, f"/interviews/{interview_id}", body, **kwargs)


@pytest.fixture
def emulator() -> Iterator[HindsightEmulator]:
    with HindsightEmulator(api_key=KEY) as running:
        yield running


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- success and state ---------------------------------------------------------------------------


def test_base_url_and_properties(emulator: HindsightEmulator) -> None:
    assert emulator.base_url == f"http://127.0.0.1:{emulator.port}/api/v1"
    assert emulator.api_key == KEY
    assert emulator.port > 0


def test_update_stores_fields_and_answers_id(emulator: HindsightEmulator) -> None:
    answer = patch(emulator, 4821, {"contact_context": "Met at the POC", "contact_name": "Jane Smith"})

    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json == {"interview_request_id": 4821}
    assert emulator.interview(4821) == {
        "contact_context": "Met at the POC",
        "contact_name": "Jane Smith",
        "objective": None,
    }


def test_context_overwrites_without_merge_and_unsent_fields_stay(emulator: HindsightEmulator) -> None:
    emulator.add_interview(7, contact_context={"title": "CTO", "seat": 3}, contact_name="Jane", objective="Old")

    assert patch(emulator, 7, {"contact_context": {"notes": "pricing"}}).status == 200
    assert emulator.interview(7) == {
        "contact_context": {"notes": "pricing"},
        "contact_name": "Jane",
        "objective": "Old",
    }

    assert patch(emulator, 7, {"contact_context": "plain text", "objective": "New"}).status == 200
    assert emulator.interview(7) == {
        "contact_context": "plain text",
        "contact_name": "Jane",
        "objective": "New",
    }


def test_state_accessors_return_copies(emulator: HindsightEmulator) -> None:
    patch(emulator, 1, {"contact_context": {"a": 1}})
    emulator.interviews[1]["contact_name"] = "changed"
    emulator.interview(1)["contact_context"]["a"] = 2

    assert emulator.interviews == {1: {"contact_context": {"a": 1}, "contact_name": None, "objective": None}}
    with pytest.raises(KeyError):
        emulator.interview(2)


def test_interview_ids_restrict_which_exist() -> None:
    with HindsightEmulator(api_key=KEY, interview_ids=[1, 2]) as emulator:
        assert emulator.interviews == {
            1: dict.fromkeys(ALL_FIELDS),
            2: dict.fromkeys(ALL_FIELDS),
        }
        assert patch(emulator, 2, {"objective": "x"}).status == 200
        missing = patch(emulator, 3, {"objective": "x"})
        assert missing.status == 404
        assert missing.error == {"code": "not_found", "message": "Interview request not found"}

        emulator.add_interview(3, contact_name="Seeded")
        assert patch(emulator, 3, {"objective": "x"}).status == 200
        assert emulator.interview(3) == {"contact_context": None, "contact_name": "Seeded", "objective": "x"}


@pytest.mark.parametrize("bad_id", [0, -3, True, "7"])
def test_add_interview_refuses_non_positive_ids(emulator: HindsightEmulator, bad_id: Any) -> None:
    with pytest.raises(ValueError, match="positive integers"):
        emulator.add_interview(bad_id)


# --- error paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": f"bearer {KEY}"},
        {"Authorization": f"Bearer {KEY} "},
    ],
    ids=["missing", "wrong-key", "no-scheme", "lowercase-scheme", "trailing-space"],
)
def test_unauthorized(emulator: HindsightEmulator, headers: dict[str, str]) -> None:
    answer = patch(emulator, 1, {"objective": "x"}, headers=headers)

    assert answer.status == 401
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.error == {"code": "unauthorized", "message": "Invalid or missing API key"}
    assert emulator.interviews == {}


def test_auth_is_checked_before_the_id(emulator: HindsightEmulator) -> None:
    assert patch(emulator, "abc", {"objective": "x"}, headers={}).status == 401


@pytest.mark.parametrize("bad_id", ["0", "-1", "abc", "1.5", "%31", "", "1e3", "+1", "1%20"])
def test_invalid_id(emulator: HindsightEmulator, bad_id: str) -> None:
    answer = patch(emulator, bad_id, {"objective": "x"})

    assert answer.status == 400
    assert answer.error["code"] == "bad_request"
    assert answer.error["details"] == {"invalid_fields": {"id": "must be a positive integer"}}


def test_leading_zeros_are_a_decimal_id(emulator: HindsightEmulator) -> None:
    answer = patch(emulator, "007", {"objective": "x"})

    assert answer.json == {"interview_request_id": 7}


@pytest.mark.parametrize(
    "path", ["/interviews", "/interviews/1/extra", "/interviews/1/../2", "/deals/1", "/_emulator/other"]
)
def test_unknown_path_is_not_found(emulator: HindsightEmulator, path: str) -> None:
    answer = send(emulator, path, {"objective": "x"})

    assert answer.status == 404
    assert answer.error["code"] == "not_found"


def test_unknown_path_outside_the_api_is_not_found(emulator: HindsightEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    conn.request("GET", "/")
    assert Answer(conn.getresponse()).status == 404
    conn.close()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(emulator: HindsightEmulator, method: str) -> None:
    answer = patch(emulator, 1, {"objective": "x"}, method=method)

    assert answer.status == 405
    assert answer.headers["Allow"] == "PATCH"
    assert answer.error["code"] == "method_not_allowed"


def test_head_is_not_allowed_and_has_no_body(emulator: HindsightEmulator) -> None:
    answer = patch(emulator, 1, None, method="HEAD")

    assert answer.status == 405
    assert answer.raw == b""
    assert int(answer.headers["Content-Length"]) > 0


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"objective": NaN}', b"\xff\xfe\x00"])
def test_invalid_json(emulator: HindsightEmulator, raw: bytes) -> None:
    answer = patch(emulator, 1, None, raw=raw)

    assert answer.status == 400
    assert answer.error == {"code": "bad_request", "message": "Invalid JSON"}


@pytest.mark.parametrize("body", [[], ["objective"], "objective", 3, None])
def test_body_must_be_an_object(emulator: HindsightEmulator, body: Any) -> None:
    answer = patch(emulator, 1, None, raw=json.dumps(body).encode())

    assert answer.status == 400
    assert answer.error == {"code": "bad_request", "message": "Request body must be a JSON object"}


def test_unknown_fields(emulator: HindsightEmulator) -> None:
    answer = patch(emulator, 1, {"objective": "x", "contact_email": "a@b.c", "Objective": "y"})

    assert answer.status == 400
    assert answer.error["code"] == "bad_request"
    assert answer.error["details"] == {"unknown_fields": ["contact_email", "Objective"]}
    assert emulator.interviews == {}


def test_no_fields(emulator: HindsightEmulator) -> None:
    answer = patch(emulator, 1, {})

    assert answer.status == 400
    assert answer.error == {
        "code": "bad_request",
        "message": "No fields provided",
        "details": {"missing_fields": ALL_FIELDS},
    }


@pytest.mark.parametrize(
    ("body", "invalid"),
    [
        ({"contact_context": 5}, {"contact_context": "must be a string or a JSON object"}),
        ({"contact_context": ["a"]}, {"contact_context": "must be a string or a JSON object"}),
        ({"contact_context": None}, {"contact_context": "must be a string or a JSON object"}),
        ({"contact_name": None}, {"contact_name": "must be a string"}),
        ({"contact_name": {"first": "Jane"}}, {"contact_name": "must be a string"}),
        ({"objective": True}, {"objective": "must be a string"}),
        (
            {"contact_context": "ok", "contact_name": 1, "objective": 2.5},
            {"contact_name": "must be a string", "objective": "must be a string"},
        ),
    ],
)
def test_invalid_field_types(emulator: HindsightEmulator, body: dict[str, Any], invalid: dict[str, str]) -> None:
    answer = patch(emulator, 1, body)

    assert answer.status == 400
    assert answer.error["code"] == "bad_request"
    assert answer.error["details"] == {"invalid_fields": invalid}
    assert emulator.interviews == {}


def test_not_found_comes_before_body_validation() -> None:
    with HindsightEmulator(api_key=KEY, interview_ids=[1]) as emulator:
        assert patch(emulator, 2, None, raw=b"{").status == 404


# --- rate limiter --------------------------------------------------------------------------------


def test_rate_limiter_sliding_window() -> None:
    with HindsightEmulator(api_key=KEY, requests_per_minute=300, rate_window=1.0) as emulator:
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
        first = time.monotonic()
        for _ in range(5):
            assert patch(emulator, 1, {"objective": "x"}, connection=conn).status == 200

        limited = patch(emulator, 1, {"objective": "x"}, connection=conn)
        assert limited.status == 429
        assert limited.error["code"] == "rate_limit_exceeded"
        assert limited.headers["Retry-After"] == "1"
        reset = int(limited.headers["X-RateLimit-Reset"])
        assert time.time() <= reset <= time.time() + 2

        time.sleep(0.5)  # rejected requests must not count against the window
        assert patch(emulator, 1, {"objective": "x"}, connection=conn).status == 429
        assert patch(emulator, 1, {"objective": "x"}, headers={}, connection=conn).status == 401

        time.sleep(max(0.0, first + 1.05 - time.monotonic()))
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
    with HindsightEmulator(api_key=KEY, requests_per_minute=60, rate_window=1.0) as emulator:
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
    emulator.inject_delay(0.4)

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.patch(f"{emulator.base_url}/interviews/1", json={"objective": "late"}, headers=AUTH, timeout=0.1)
    assert time.monotonic() - started < 0.35

    # The delayed request is still handled after the delay, and its hang-up is not reported.
    wait_for(lambda: emulator.status_counts.get(200) == 1)
    assert emulator.interview(1)["objective"] == "late"
    assert requests.patch(f"{emulator.base_url}/interviews/1", json={"objective": "x"}, headers=AUTH, timeout=0.3).ok
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
    time.sleep(0.05)

    assert capfd.readouterr().err == ""
    assert patch(emulator, 1, {"objective": "x"}).status == 200


# --- recording -----------------------------------------------------------------------------------


def test_recorded_requests(emulator: HindsightEmulator) -> None:
    before = time.time()
    patch(emulator, 9, {"objective": "x"}, headers={**AUTH, "Content-Type": "application/json", "X-Trace": "t"})
    patch(emulator, 9, None, raw=b"oops")
    after = time.time()

    first, second = emulator.requests
    assert isinstance(first, RecordedRequest)
    assert first.method == "PATCH"
    assert first.path == "/api/v1/interviews/9"
    assert first.headers["Authorization"] == f"Bearer {KEY}"
    assert first.headers["X-Trace"] == "t"
    assert first.body == b'{"objective": "x"}'
    assert first.json == {"objective": "x"}
    assert first.status == 200
    assert before <= first.time <= second.time <= after
    assert (second.body, second.json, second.status) == (b"oops", None, 400)
    assert emulator.request_count == 2
    assert emulator.status_counts == {200: 1, 400: 1}

    emulator.requests.clear()
    assert len(emulator.requests) == 2
    emulator.reset_requests()
    assert (emulator.requests, emulator.request_count, emulator.status_counts) == ([], 0, {})


def test_recording_off_still_counts() -> None:
    with HindsightEmulator(api_key=KEY, record_requests=False) as emulator:
        patch(emulator, 1, {"objective": "x"})
        patch(emulator, 1, {"objective": "x"}, headers={})

        assert emulator.requests == []
        assert emulator.request_count == 2
        assert emulator.status_counts == {200: 1, 401: 1}


def test_chunked_body(emulator: HindsightEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    chunks = iter([b'{"objective":', b' "chunked"}'])
    conn.request("PATCH", "/api/v1/interviews/3", body=chunks, headers=AUTH, encode_chunked=True)

    assert Answer(conn.getresponse()).status == 200
    assert emulator.interview(3)["objective"] == "chunked"
    conn.close()


def test_keep_alive_serves_many_requests_on_one_connection(emulator: HindsightEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    conn.connect()
    sock = conn.sock

    statuses = [patch(emulator, n, {"objective": "x"}, connection=conn).status for n in range(1, 6)]
    statuses.append(patch(emulator, 1, {}, connection=conn).status)
    statuses.append(patch(emulator, 1, {"objective": "x"}, headers={}, connection=conn).status)
    statuses.append(patch(emulator, 1, {"objective": "y"}, connection=conn).status)

    assert statuses == [200, 200, 200, 200, 200, 400, 401, 200]
    assert conn.sock is sock
    conn.close()


def test_latency_is_slept_concurrently() -> None:
    with HindsightEmulator(api_key=KEY, latency=0.3) as emulator:
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda n=n: statuses.append(patch(emulator, n, {"objective": "x"}).status))
            for n in (1, 2, 3)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

        assert statuses == [200, 200, 200]
        assert 0.3 <= elapsed < 0.8


# --- introspection endpoints ---------------------------------------------------------------------


def test_emulator_endpoints(emulator: HindsightEmulator) -> None:
    patch(emulator, 12, {"contact_context": {"title": "CTO"}, "contact_name": "Jane"})

    interviews = send(emulator, "/_emulator/interviews", method="GET", headers={})
    assert interviews.status == 200
    assert interviews.json == {"12": {"contact_context": {"title": "CTO"}, "contact_name": "Jane", "objective": None}}

    recorded = send(emulator, "/_emulator/requests", method="GET", headers={})
    assert recorded.status == 200
    (only,) = recorded.json
    assert only["headers"]["Authorization"] == "Bearer ***"
    assert KEY not in recorded.raw.decode()
    assert (only["method"], only["path"], only["status"]) == ("PATCH", "/api/v1/interviews/12", 200)
    assert only["json"] == {"contact_context": {"title": "CTO"}, "contact_name": "Jane"}

    not_allowed = send(emulator, "/_emulator/requests", {}, method="POST", headers={})
    assert (not_allowed.status, not_allowed.headers["Allow"]) == (405, "GET")
    assert emulator.request_count == 1


# --- lifecycle -----------------------------------------------------------------------------------


def test_lifecycle() -> None:
    emulator = HindsightEmulator(api_key=KEY)
    with pytest.raises(RuntimeError, match="not been started"):
        emulator.base_url  # noqa: B018

    emulator.start()
    with pytest.raises(RuntimeError, match="already running"):
        emulator.start()
    idle = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=2)
    assert patch(emulator, 1, {"objective": "x"}, connection=idle).status == 200

    emulator.stop()
    emulator.stop()
    with pytest.raises(ConnectionError):  # the idle keep-alive connection is closed too
        patch(emulator, 1, {"objective": "x"}, connection=idle)
    with pytest.raises(ConnectionRefusedError):
        patch(emulator, 1, {"objective": "x"})
    idle.close()


# --- command line --------------------------------------------------------------------------------


def test_parse_ids() -> None:
    assert parse_ids("3") == [3]
    assert parse_ids("1-3, 7,10-11") == [1, 2, 3, 7, 10, 11]


@pytest.mark.parametrize("text", ["", "a", "0-2", "5-3", "1-2-3"])
def test_parse_ids_refuses_nonsense(text: str) -> None:
    from argparse import ArgumentTypeError

    with pytest.raises(ArgumentTypeError):
        parse_ids(text)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli(*args: str) -> subprocess.Popen[str]:
    """``python -m airflow_provider_hindsight.testing`` with ``args``, its output piped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])}
    command = [sys.executable, "-m", "airflow_provider_hindsight.testing", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def exported_connection(line: str) -> dict[str, Any]:
    """What a shell holds in AIRFLOW_CONN_HINDSIGHT_DEFAULT after running the printed ``export`` line."""
    assert line.startswith("export AIRFLOW_CONN_HINDSIGHT_DEFAULT=")
    shell = subprocess.run(
        ["bash", "-c", f"{line}\nprintenv AIRFLOW_CONN_HINDSIGHT_DEFAULT"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(shell.stdout))


def test_cli_defaults_stay_clear_of_airflow() -> None:
    """Airflow serves on 8080, 8793 and 8794, and its secret masker ignores values under 5 characters."""
    args = build_parser().parse_args([])

    assert args.port == 9321
    assert args.api_key == "hindsight-demo-key"
    assert "default: 9321" in build_parser().format_help()


def test_cli_serves_until_sigterm_and_prints_a_paced_connection() -> None:
    port = free_port()
    process = start_cli(
        "--port",
        str(port),
        "--api-key",
        "cli-test-key",
        "--requests-per-minute",
        "300",
        "--latency",
        "0.01",
        "--interview-ids",
        "1-5",
    )
    try:
        assert process.stdout is not None
        base_url = f"http://127.0.0.1:{port}/api/v1"
        assert process.stdout.readline() == (
            f"Hindsight emulator serving {base_url} (300 requests a minute). Point Airflow at it with:\n"
        )
        assert exported_connection(process.stdout.readline().strip()) == {
            "conn_type": "hindsight",
            "host": base_url,
            "password": "cli-test-key",
            "extra": {"requests_per_minute": 300},
        }

        headers = {"Authorization": "Bearer cli-test-key"}
        assert requests.patch(f"{base_url}/interviews/5", json={"objective": "x"}, headers=headers).status_code == 200
        assert requests.patch(f"{base_url}/interviews/6", json={"objective": "x"}, headers=headers).status_code == 404
        state = requests.get(f"http://127.0.0.1:{port}/_emulator/interviews").json()
        assert state["5"]["objective"] == "x"

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert process.stderr is not None
        assert process.stderr.read() == ""
    finally:
        process.kill()
        process.communicate()


def test_cli_without_a_limit_prints_a_connection_without_a_pace() -> None:
    port = free_port()
    process = start_cli("--port", str(port))
    try:
        assert process.stdout is not None
        base_url = f"http://127.0.0.1:{port}/api/v1"
        assert process.stdout.readline().startswith(f"Hindsight emulator serving {base_url} (no rate limit).")
        assert exported_connection(process.stdout.readline().strip()) == {
            "conn_type": "hindsight",
            "host": base_url,
            "password": "hindsight-demo-key",
        }
        headers = {"Authorization": "Bearer hindsight-demo-key"}
        assert requests.patch(f"{base_url}/interviews/7", json={"objective": "x"}, headers=headers).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=5)
        process.communicate()


def test_cli_port_in_use_names_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_cli("--port", str(port))
        _, stderr = process.communicate(timeout=30)

    assert process.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in stderr
    assert "pick another --port" in stderr


# --- pytest fixtures -----------------------------------------------------------------------------


def test_hindsight_emulator_fixture(hindsight_emulator: HindsightEmulator) -> None:  # noqa: F811
    connection = json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"])

    assert connection == {
        "conn_type": "hindsight",
        "host": hindsight_emulator.base_url,
        "password": "test-key",
        "extra": {"requests_per_minute": 60_000},  # no limit on the emulator: the hook need not pace
    }
    answer = requests.patch(
        f"{connection['host']}/interviews/1",
        json={"objective": "x"},
        headers={"Authorization": f"Bearer {connection['password']}"},
        timeout=5,
    )
    assert answer.json() == {"interview_request_id": 1}


def test_hindsight_emulator_factory_fixture(
    hindsight_emulator_factory: Callable[..., HindsightEmulator],  # noqa: F811
) -> None:
    default = hindsight_emulator_factory(requests_per_minute=60, rate_window=1.0)
    other = hindsight_emulator_factory("other-key", conn_id="hindsight_other", latency=0.01)

    assert json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"]) == {
        "conn_type": "hindsight",
        "host": default.base_url,
        "password": "test-key",
        "extra": {"requests_per_minute": 60},  # the hook paces at the emulator's limit
    }
    assert json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_OTHER"]) == {
        "conn_type": "hindsight",
        "host": other.base_url,
        "password": "other-key",
        "extra": {"requests_per_minute": 60_000},
    }
    headers = {"Authorization": "Bearer test-key"}
    statuses = [
        requests.patch(f"{default.base_url}/interviews/1", json={"objective": "x"}, headers=headers).status_code
        for _ in range(2)
    ]
    assert statuses == [200, 429]


def test_fixtures_clean_up_after_the_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", raising=False)
    pytester.makeconftest('pytest_plugins = ["airflow_provider_hindsight.testing.pytest_plugin"]')
    pytester.makepyfile(
        """
        import os, socket, pytest

        ports = []

        def test_uses_both(hindsight_emulator, hindsight_emulator_factory):
            ports.append(hindsight_emulator.port)
            ports.append(hindsight_emulator_factory(conn_id="hindsight_extra").port)
            assert "AIRFLOW_CONN_HINDSIGHT_EXTRA" in os.environ

        def test_after():
            assert "AIRFLOW_CONN_HINDSIGHT_DEFAULT" not in os.environ
            assert "AIRFLOW_CONN_HINDSIGHT_EXTRA" not in os.environ
            for port in ports:
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=1)
        """
    )

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
