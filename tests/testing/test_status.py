"""``GET /api/v1/interviews/{id}`` and the lifecycle: statuses, ``complete()``, ``complete_after`` and transcripts."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.emulator import DEFAULT_COMPETITOR
from airflow_provider_hindsight.testing.emulator.transcript import find_competitor

from .helpers import KEY, FakeClock, get, patch, post

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
GET_FIELDS = {
    "interview_request_id",
    "contact_id",
    "deal_id",
    "survey_url",
    "status",
    "objective",
    "email_sent_at",
    "created_at",
    "transcript",
}
TURN = re.compile(r"^\*\*(?P<name>[^*]+):\*\* \S.*$")


def create(emulator: HindsightEmulator, **fields: Any) -> dict[str, Any]:
    body = {"contact_email": "jane@example.com", "sequence_id": "seq_1", **fields}
    answer = post(emulator, body)
    assert answer.status == 201
    return dict(answer.json)


def turns(markdown: str) -> list[tuple[str, str]]:
    """The ``(name, paragraph)`` turns of a transcript; every paragraph must be one ``**Name:** message``."""
    paragraphs = markdown.strip().split("\n\n")
    matches = [TURN.match(paragraph) for paragraph in paragraphs]
    assert all(matches), paragraphs
    return [(match["name"], paragraph) for match, paragraph in zip(matches, paragraphs, strict=True) if match]


# --- GET -----------------------------------------------------------------------------------------


def test_get_shape_of_a_sent_interview(emulator: HindsightEmulator) -> None:
    before = time.time()
    created = create(emulator, deal_id="deal_1", objective="Why we lost")

    answer = get(emulator, created["interview_request_id"])

    assert answer.status == 200
    body = answer.json
    assert set(body) == GET_FIELDS  # never the survey token
    assert "survey_token" not in answer.raw.decode()
    assert {key: body[key] for key in ("interview_request_id", "contact_id", "deal_id", "survey_url", "status")} == {
        key: created[key] for key in ("interview_request_id", "contact_id", "deal_id", "survey_url", "status")
    }
    assert body["objective"] == "Why we lost"
    assert body["transcript"] is None
    assert ISO.match(body["created_at"]) and ISO.match(body["email_sent_at"])
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1)) <= body["created_at"]


def test_a_link_only_interview_has_no_email_time(emulator: HindsightEmulator) -> None:
    created = post(emulator, {"contact_email": "sam@example.com", "interview_type_id": "type_1"}).json

    body = get(emulator, created["interview_request_id"]).json
    assert (body["status"], body["email_sent_at"]) == ("created", None)


def test_added_interviews_are_gettable_and_sent_by_default(emulator: HindsightEmulator) -> None:
    emulator.add_interview(4821, objective="Pricing", contact_name="Jane")
    emulator.add_interview(4822, status="created", deal_id="deal_9")

    first, second = get(emulator, 4821).json, get(emulator, 4822).json
    assert (first["status"], first["objective"], first["deal_id"]) == ("sent", "Pricing", None)
    assert re.fullmatch(r"contact_[0-9a-f]+", first["contact_id"])
    assert first["survey_url"].startswith("https://app.usehindsight.com/survey?token=")
    assert (second["status"], second["deal_id"], second["email_sent_at"]) == ("created", "deal_9", None)


def test_unknown_ids_are_not_found_until_patched(emulator: HindsightEmulator) -> None:
    missing = get(emulator, 77)
    assert (missing.status, missing.error) == (404, {"code": "not_found", "message": "Interview request not found"})

    assert patch(emulator, 77, {"objective": "x"}).status == 200  # every id may be patched ...
    assert get(emulator, 77).json["status"] == "sent"  # ... and then exists


@pytest.mark.parametrize("bad_id", ["0", "abc", "-1", "1.5"])
def test_get_refuses_a_bad_id(emulator: HindsightEmulator, bad_id: str) -> None:
    answer = get(emulator, bad_id)

    assert answer.status == 400
    assert answer.error["details"] == {"invalid_fields": {"id": "must be a positive integer"}}


def test_get_needs_the_key(emulator: HindsightEmulator) -> None:
    emulator.add_interview(1)

    assert get(emulator, 1, headers={}).status == 401


# --- completing ----------------------------------------------------------------------------------


def test_complete_with_a_given_transcript(emulator: HindsightEmulator) -> None:
    interview_id = create(emulator)["interview_request_id"]
    markdown = "**Paige:** Hello.\n\n**Jane:** Hi."

    emulator.complete(interview_id, markdown)

    body = get(emulator, interview_id).json
    assert body["status"] == "completed"
    transcript = body["transcript"]
    assert set(transcript) == {"document_id", "content", "created_at"}
    assert re.fullmatch(r"doc_[0-9a-f]+", transcript["document_id"])
    assert transcript["content"] == markdown
    assert ISO.match(transcript["created_at"])


def test_a_generated_transcript_has_one_turn_per_paragraph_paige_first(emulator: HindsightEmulator) -> None:
    interview_id = create(emulator, contact_name="Jane Smith", objective="Understand why we lost to Competitor X.")[
        "interview_request_id"
    ]

    emulator.complete(interview_id)

    content = get(emulator, interview_id).json["transcript"]["content"]
    names = [name for name, _ in turns(content)]
    assert names[0] == "Paige"
    assert set(names) == {"Paige", "Jane Smith"}
    assert names[1] == "Jane Smith"
    assert "Competitor X" in content


def test_a_transcript_without_a_contact_name_says_contact(emulator: HindsightEmulator) -> None:
    emulator.add_interview(3)
    emulator.complete(3)

    content = emulator.interview_record(3)["transcript"]["content"]
    assert {name for name, _ in turns(content)} == {"Paige", "Contact"}
    assert DEFAULT_COMPETITOR in content


@pytest.mark.parametrize(
    ("objective", "context", "competitor"),
    [
        ("Understand why we lost to Competitor X.", None, "Competitor X"),
        (None, {"title": "CTO", "competitor": "Globex"}, "Globex"),
        (None, {"competitors": ["", "Initech", "Hooli"]}, "Initech"),
        (None, "Chose Acme Cloud for its Salesforce sync.", "Acme Cloud"),
        ("Why did they go with us?", {"notes": "Evaluated us vs Hooli"}, "Hooli"),
        ("Why Competitor Y", {"competitor": "Competitor X"}, "Competitor X"),  # the context's key wins
        ("Pricing", "Budget moved to 2027.", DEFAULT_COMPETITOR),
        (None, None, DEFAULT_COMPETITOR),
    ],
)
def test_the_transcript_names_the_competitor(objective: str | None, context: Any, competitor: str) -> None:
    assert find_competitor(objective, context) == competitor


def test_completion_shows_in_the_record_and_set_status(emulator: HindsightEmulator) -> None:
    interview_id = create(emulator, contact_context={"competitor": "Globex"})["interview_request_id"]

    emulator.set_status(interview_id, "completed")
    assert "Globex" in emulator.interview_record(interview_id)["transcript"]["content"]

    emulator.set_status(interview_id, "created")
    assert (get(emulator, interview_id).json["status"], get(emulator, interview_id).json["transcript"]) == (
        "created",
        None,
    )
    with pytest.raises(ValueError, match="status must be one of"):
        emulator.set_status(interview_id, "declined")
    with pytest.raises(KeyError):
        emulator.complete(999)
    with pytest.raises(TypeError, match="transcript"):
        emulator.complete(interview_id, {"content": "x"})  # type: ignore[arg-type]


def test_complete_after_completes_when_the_time_has_come() -> None:
    clock = FakeClock()
    with HindsightEmulator(api_key=KEY, complete_after=30, clock=clock) as emulator:
        interview_id = create(emulator, contact_name="Jane Smith")["interview_request_id"]

        clock.advance(29.5)
        assert get(emulator, interview_id).json["status"] == "sent"

        clock.advance(0.5)
        body = get(emulator, interview_id).json
        assert body["status"] == "completed"
        assert turns(body["transcript"]["content"])[0][0] == "Paige"
        assert get(emulator, interview_id).json["transcript"] == body["transcript"]  # completed once


def test_complete_after_zero_completes_at_the_first_look() -> None:
    with HindsightEmulator(api_key=KEY, complete_after=0) as emulator:
        created = create(emulator)
        emulator.add_interview(500)

        assert created["status"] == "sent"  # the create itself answers as usual
        assert get(emulator, created["interview_request_id"]).json["status"] == "completed"
        assert emulator.interview_record(500)["status"] == "completed"


def test_set_status_stops_complete_after_for_that_interview() -> None:
    with HindsightEmulator(api_key=KEY, complete_after=0) as emulator:
        interview_id = create(emulator)["interview_request_id"]

        emulator.set_status(interview_id, "sent")

        assert get(emulator, interview_id).json["status"] == "sent"


def test_complete_after_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="complete_after"):
        HindsightEmulator(complete_after=-1)
