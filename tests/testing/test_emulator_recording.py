"""What the emulator records and serves about itself, and its lifecycle."""

from __future__ import annotations

import http.client
import threading
import time
from typing import TYPE_CHECKING

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator, RecordedRequest

if TYPE_CHECKING:
    pass

from .helpers import AUTH, KEY, Answer, patch, send, wait_for

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
    """Three requests are all handled (recorded) while each one's long latency still holds its answer."""
    emulator = HindsightEmulator(api_key=KEY, latency=300).start()
    answered: list[object] = []

    def update(n: int) -> None:
        try:
            answered.append(patch(emulator, n, {"objective": "x"}).status)
        except (http.client.HTTPException, OSError) as error:
            answered.append(error)

    threads = [threading.Thread(target=update, args=(n,), daemon=True) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: emulator.status_counts == {200: 3})

    assert answered == []  # none answered yet: each waits out its latency, side by side
    emulator.stop()  # cuts the latency short; the cut connections answer no one
    for thread in threads:
        thread.join(timeout=60)
    assert len(answered) == 3
    assert not any(isinstance(result, int) for result in answered)


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


def test_stats_and_reset_endpoints(emulator: HindsightEmulator) -> None:
    patch(emulator, 1, {"objective": "x"})
    patch(emulator, 1, {"objective": "x"}, headers={})
    send(emulator, "/interviews", {"contact_email": "jane@example.com", "sequence_id": "s"}, method="POST")
    send(emulator, "/interviews/1", method="GET")
    send(emulator, "/deals", method="GET")

    stats = send(emulator, "/_emulator/stats", method="GET", headers={})
    assert stats.status == 200
    assert stats.json == {
        "request_count": 5,
        "by_status": {"200": 2, "201": 1, "401": 1, "404": 1},
        "by_method": {"GET": 2, "PATCH": 2, "POST": 1},
        "by_method_status": {"GET": {"200": 1, "404": 1}, "PATCH": {"200": 1, "401": 1}, "POST": {"201": 1}},
        "by_route": {"GET /interviews/{id}": 1, "PATCH /interviews/{id}": 2, "POST /interviews": 1, "other": 1},
        "creates_by_contact": {"jane@example.com": 1},
    }
    assert emulator.stats() == stats.json

    assert send(emulator, "/_emulator/stats", {}, method="POST", headers={}).headers["Allow"] == "GET"
    not_allowed = send(emulator, "/_emulator/reset", method="GET", headers={})
    assert (not_allowed.status, not_allowed.headers["Allow"]) == (405, "POST")

    reset = send(emulator, "/_emulator/reset", method="POST", headers={})
    assert (reset.status, reset.json) == (200, {"reset": True})
    assert emulator.stats() == {
        "request_count": 0,
        "by_status": {},
        "by_method": {},
        "by_method_status": {},
        "by_route": {},
        "creates_by_contact": {"jane@example.com": 1},  # state: the interview stays, so does its count
    }
    assert emulator.requests == []
    assert emulator.interview(1) == {"contact_context": None, "contact_name": None, "objective": "x"}  # state stays


def test_on_request_sees_method_path_and_status_only() -> None:
    seen: list[tuple[str, str, int]] = []
    with HindsightEmulator(api_key=KEY, on_request=lambda *event: seen.append(event)) as emulator:
        emulator.inject_drop()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            patch(emulator, 1, {"objective": "x"})
        send(emulator, "/interviews/1?email=jane@example.com", method="GET")
        send(emulator, "/_emulator/stats", method="GET", headers={})

    assert seen == [("PATCH", "/api/v1/interviews/1", 0), ("GET", "/api/v1/interviews/1", 404)]
