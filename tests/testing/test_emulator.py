"""The emulator's API over real HTTP on 127.0.0.1: success, state and every error answer."""

from __future__ import annotations

import http.client
import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator

if TYPE_CHECKING:
    pass

from .helpers import ALL_FIELDS, KEY, Answer, patch, send

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


@pytest.mark.parametrize("path", ["/interviews/1/extra", "/interviews/1/../2", "/deals/1", "/_emulator/other"])
def test_unknown_path_is_not_found(emulator: HindsightEmulator, path: str) -> None:
    answer = send(emulator, path, {"objective": "x"})

    assert answer.status == 404
    assert answer.error["code"] == "not_found"


def test_unknown_path_outside_the_api_is_not_found(emulator: HindsightEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    conn.request("GET", "/")
    assert Answer(conn.getresponse()).status == 404
    conn.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(emulator: HindsightEmulator, method: str) -> None:
    answer = patch(emulator, 1, {"objective": "x"}, method=method)

    assert answer.status == 405
    assert answer.headers["Allow"] == "GET, PATCH"
    assert answer.error["code"] == "method_not_allowed"


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_the_collection_allows_only_post(emulator: HindsightEmulator, method: str) -> None:
    answer = send(emulator, "/interviews", {"objective": "x"}, method=method)

    assert answer.status == 405
    assert answer.headers["Allow"] == "POST"
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
