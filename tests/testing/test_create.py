"""``POST /api/v1/interviews`` over real HTTP: validation, the 201 body, contacts upserted by e-mail."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator

from .helpers import KEY, get, patch, post, send

JANE = {"contact_email": "jane@example.com", "sequence_id": "seq_abc123"}


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ({"sequence_id": "seq_1"}, {"missing_fields": ["contact_email"]}),
        ({}, {"missing_fields": ["contact_email"]}),
        ({"contact_email": "jane@example.com"}, {"exactly_one_of": ["sequence_id", "interview_type_id"]}),
        (
            {"contact_email": "jane@example.com", "sequence_id": "seq_1", "interview_type_id": "type_1"},
            {"exactly_one_of": ["sequence_id", "interview_type_id"]},
        ),
        ({**JANE, "contact_email": "jane"}, {"invalid_fields": {"contact_email": "must be an e-mail address"}}),
        (
            {**JANE, "contact_email": "jane@localhost"},
            {"invalid_fields": {"contact_email": "must be an e-mail address"}},
        ),
        ({**JANE, "contact_email": "a@b@c.com"}, {"invalid_fields": {"contact_email": "must be an e-mail address"}}),
        ({**JANE, "contact_email": "ja ne@x.com"}, {"invalid_fields": {"contact_email": "must be an e-mail address"}}),
        ({**JANE, "contact_email": "@example.com"}, {"invalid_fields": {"contact_email": "must be an e-mail address"}}),
        (
            {**JANE, "contact_email": "a" * 243 + "@example.com"},
            {"invalid_fields": {"contact_email": "must be an e-mail address"}},
        ),
        ({**JANE, "contact_email": 7}, {"invalid_fields": {"contact_email": "must be a string"}}),
        ({**JANE, "contact_email": None}, {"invalid_fields": {"contact_email": "must be a string"}}),
        ({**JANE, "sequence_id": ""}, {"invalid_fields": {"sequence_id": "must not be empty"}}),
        ({**JANE, "sequence_id": "  "}, {"invalid_fields": {"sequence_id": "must not be empty"}}),
        ({**JANE, "sequence_id": 12}, {"invalid_fields": {"sequence_id": "must be a string"}}),
        (
            {"contact_email": "jane@example.com", "interview_type_id": None},
            {"invalid_fields": {"interview_type_id": "must be a string"}},
        ),
        ({**JANE, "contact_name": 1}, {"invalid_fields": {"contact_name": "must be a string"}}),
        ({**JANE, "deal_id": 42}, {"invalid_fields": {"deal_id": "must be a string"}}),
        ({**JANE, "objective": ["a"]}, {"invalid_fields": {"objective": "must be a string"}}),
        ({**JANE, "contact_context": 3}, {"invalid_fields": {"contact_context": "must be a string or a JSON object"}}),
        (
            {**JANE, "contact_name": None, "deal_id": False},
            {"invalid_fields": {"contact_name": "must be a string", "deal_id": "must be a string"}},
        ),
        ({**JANE, "org_id": "o1", "Objective": "x"}, {"unknown_fields": ["org_id", "Objective"]}),
        ({"contact_email": "x", "status": "sent"}, {"unknown_fields": ["status"]}),  # unknown fields come first
    ],
)
def test_every_refusal_names_the_field(emulator: HindsightEmulator, body: dict[str, Any], details: Any) -> None:
    answer = post(emulator, body)

    assert answer.status == 400
    assert answer.error["code"] == "bad_request"
    assert answer.error["details"] == details
    for field in next(iter(details.values())):  # the message names the fields too
        assert field in answer.error["message"]
    assert emulator.created_interviews() == []
    assert emulator.contacts == {}


@pytest.mark.parametrize(("ids", "got"), [({}, "neither"), ({"sequence_id": "s", "interview_type_id": "t"}, "both")])
def test_exactly_one_of_the_two_ids(emulator: HindsightEmulator, ids: dict[str, str], got: str) -> None:
    answer = post(emulator, {"contact_email": "jane@example.com", **ids})

    assert answer.error["message"] == f"Send exactly one of sequence_id and interview_type_id (got {got})"


@pytest.mark.parametrize("raw", [b"", b"{", b'{"contact_email": NaN}'])
def test_invalid_json(emulator: HindsightEmulator, raw: bytes) -> None:
    answer = send(emulator, "/interviews", method="POST", raw=raw)

    assert (answer.status, answer.error) == (400, {"code": "bad_request", "message": "Invalid JSON"})


@pytest.mark.parametrize("body", [[], "jane@example.com", None])
def test_body_must_be_an_object(emulator: HindsightEmulator, body: Any) -> None:
    answer = post(emulator, body) if body is not None else send(emulator, "/interviews", method="POST", raw=b"null")

    assert answer.status == 400
    assert answer.error["message"] == "Request body must be a JSON object"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_a_create_needs_the_key(emulator: HindsightEmulator, headers: dict[str, str]) -> None:
    answer = post(emulator, JANE, headers=headers)

    assert answer.status == 401
    assert answer.error == {"code": "unauthorized", "message": "Invalid or missing API key"}
    assert emulator.created_interviews() == []


# --- the 201 answer ------------------------------------------------------------------------------


def test_a_sequence_create_is_sent(emulator: HindsightEmulator) -> None:
    answer = post(emulator, {**JANE, "deal_id": "deal_xyz789", "objective": "Why we lost"})

    assert answer.status == 201
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json
    assert set(body) == {"interview_request_id", "contact_id", "deal_id", "survey_url", "survey_token", "status"}
    assert isinstance(body["interview_request_id"], int)
    assert re.fullmatch(r"contact_[0-9a-f]+", body["contact_id"])
    assert body["deal_id"] == "deal_xyz789"
    assert body["status"] == "sent"
    assert body["survey_token"]
    assert body["survey_url"] == f"https://app.usehindsight.com/survey?token={body['survey_token']}"


def test_an_interview_type_create_is_created_and_not_emailed(emulator: HindsightEmulator) -> None:
    body = post(emulator, {"contact_email": "sam@example.com", "interview_type_id": "type_1"}).json

    assert body["status"] == "created"
    assert body["deal_id"] is None
    record = emulator.interview_record(body["interview_request_id"])
    assert (record["email_sent_at"], record["interview_type_id"], record["sequence_id"]) == (None, "type_1", None)


def test_ids_are_new_and_increasing_and_tokens_differ(emulator: HindsightEmulator) -> None:
    emulator.add_interview(40)
    bodies = [post(emulator, {**JANE, "contact_email": f"c{n}@example.com"}).json for n in range(3)]

    ids = [body["interview_request_id"] for body in bodies]
    assert ids == [41, 42, 43]
    assert len({body["survey_token"] for body in bodies}) == 3
    assert len({body["contact_id"] for body in bodies}) == 3


def test_contacts_are_upserted_by_email(emulator: HindsightEmulator) -> None:
    first = post(emulator, {**JANE, "contact_name": "Jane", "contact_context": "Met at the summit"}).json
    second = post(
        emulator,
        {"contact_email": "JANE@example.com", "interview_type_id": "type_1", "contact_context": {"title": "CTO"}},
    ).json

    assert second["contact_id"] == first["contact_id"]
    assert second["interview_request_id"] != first["interview_request_id"]
    assert emulator.contact("jane@EXAMPLE.com") == {
        "contact_id": first["contact_id"],
        "email": "JANE@example.com",
        "name": "Jane",  # not sent the second time: stays
        "context": {"title": "CTO"},  # sent: overwritten
    }
    # Both interviews show the contact's current fields.
    for body in (first, second):
        assert emulator.interview(body["interview_request_id"])["contact_context"] == {"title": "CTO"}
    assert len(emulator.created_interviews("jane@example.com")) == 2
    assert emulator.created_interviews("other@example.com") == []


def test_creates_are_recorded_and_counted_per_email(emulator: HindsightEmulator) -> None:
    post(emulator, JANE)
    post(emulator, {**JANE, "sequence_id": ""})  # refused, still a POST that arrived
    post(emulator, {"contact_email": "sam@example.com", "interview_type_id": "t"})

    assert [request.status for request in emulator.create_requests("Jane@Example.com")] == [201, 400]
    assert [request.json for request in emulator.create_requests("sam@example.com")] == [
        {"contact_email": "sam@example.com", "interview_type_id": "t"}
    ]
    assert len(emulator.create_requests()) == 3
    assert emulator.stats()["by_route"] == {"POST /interviews": 3}


# --- PATCH and GET on created interviews ---------------------------------------------------------


def test_patch_updates_a_created_interview_and_its_contact(emulator: HindsightEmulator) -> None:
    created = post(emulator, {**JANE, "contact_name": "Jane", "objective": "Old"}).json
    interview_id = created["interview_request_id"]

    answer = patch(emulator, interview_id, {"contact_context": {"notes": "pricing"}, "objective": "New"})

    assert answer.json == {"interview_request_id": interview_id}
    assert emulator.interview(interview_id) == {
        "contact_context": {"notes": "pricing"},
        "contact_name": "Jane",
        "objective": "New",
    }
    assert emulator.contact("jane@example.com")["context"] == {"notes": "pricing"}
    assert get(emulator, interview_id).json["objective"] == "New"


def test_created_interviews_exist_when_ids_are_restricted() -> None:
    with HindsightEmulator(api_key=KEY, interview_ids=[5]) as emulator:
        interview_id = post(emulator, JANE).json["interview_request_id"]

        assert interview_id == 6
        assert patch(emulator, interview_id, {"objective": "x"}).status == 200
        assert patch(emulator, 7, {"objective": "x"}).status == 404
