"""The emulator as a test bed: a state file across restarts, the completion model, per-contact create counts."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_hindsight.testing import CompletionModel, HindsightEmulator

from .helpers import KEY, FakeClock, get, patch, post, send

if TYPE_CHECKING:
    from pathlib import Path

JANE = {"contact_email": "jane@example.com", "sequence_id": "seq_1", "contact_name": "Jane Smith"}


def test_interviews_and_contacts_outlive_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "emulator.json"
    with HindsightEmulator(api_key=KEY, state_file=state_file) as first:
        created = post(first, JANE).json
        assert patch(first, created["interview_request_id"], {"objective": "Pricing"}).status == 200
        first.complete(created["interview_request_id"])
        before = get(first, created["interview_request_id"]).json

    with HindsightEmulator(api_key=KEY, state_file=state_file) as second:
        assert get(second, created["interview_request_id"]).json == before
        assert second.interview_record(created["interview_request_id"])["survey_token"] == created["survey_token"]
        again = post(second, {**JANE, "contact_email": "JANE@example.com"}).json
        assert again["interview_request_id"] == created["interview_request_id"] + 1  # ids go on increasing
        assert again["contact_id"] == created["contact_id"]  # the same contact, upserted by e-mail
        assert second.stats()["creates_by_contact"] == {"jane@example.com": 2}  # the contact created twice
        assert len(second.created_interviews("jane@example.com")) == 2


def test_each_change_is_one_journal_line_and_a_start_folds_them_into_the_state_file(tmp_path: Path) -> None:
    state_file = tmp_path / "emulator.json"
    journal = tmp_path / "emulator.json.journal"
    with HindsightEmulator(api_key=KEY, state_file=state_file) as emulator:
        interview_id = post(emulator, JANE).json["interview_request_id"]
        assert patch(emulator, interview_id, {"objective": "Pricing"}).status == 200

        # the emulator is still running: each change is on disk already, one line each
        created, patched = (json.loads(line) for line in journal.read_text().splitlines())
        assert created["interviews"][0]["objective"] is None
        assert patched["interviews"][0]["objective"] == "Pricing"
        assert patched["contacts"][0]["email"] == "jane@example.com"

    HindsightEmulator(api_key=KEY, state_file=state_file)  # a start folds the journal into the state

    assert journal.read_text() == ""
    (interview,) = json.loads(state_file.read_text())["interviews"]
    assert (interview["interview_request_id"], interview["objective"]) == (interview_id, "Pricing")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["emulator.json", "emulator.json.journal"]


def test_a_journal_line_cut_short_by_a_kill_is_left_out(tmp_path: Path) -> None:
    state_file = tmp_path / "emulator.json"
    journal = tmp_path / "emulator.json.journal"
    with HindsightEmulator(api_key=KEY, state_file=state_file) as emulator:
        first = post(emulator, JANE).json["interview_request_id"]
        post(emulator, {**JANE, "contact_email": "tom@example.com"})
    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed while writing the second

    with HindsightEmulator(api_key=KEY, state_file=state_file) as restarted:
        assert list(restarted.interviews) == [first]
        assert restarted.stats()["creates_by_contact"] == {"jane@example.com": 1}


def test_a_state_file_that_is_not_one_is_refused_by_name(tmp_path: Path) -> None:
    state_file = tmp_path / "emulator.json"
    state_file.write_text("{not json")

    with pytest.raises(ValueError, match=r"emulator\.json.*is not JSON"):
        HindsightEmulator(api_key=KEY, state_file=state_file)


def test_an_interview_keeps_its_age_across_a_restart(tmp_path: Path) -> None:
    """``complete_after`` counts from the creation, not from the restart."""
    state_file = tmp_path / "emulator.json"
    with HindsightEmulator(api_key=KEY, state_file=state_file) as first:
        interview_id = post(first, JANE).json["interview_request_id"]
    HindsightEmulator(api_key=KEY, state_file=state_file)  # folds the journal into the state file
    saved = json.loads(state_file.read_text())
    saved["interviews"][0]["created_at"] -= 3600  # as if created an hour ago
    state_file.write_text(json.dumps(saved))

    with HindsightEmulator(api_key=KEY, state_file=state_file, complete_after=1800) as second:
        assert get(second, interview_id).json["status"] == "completed"


# --- the completion model ------------------------------------------------------------------------


def test_the_model_draws_a_share_that_never_completes_and_a_spread_around_the_median() -> None:
    model = CompletionModel(median=600.0, sigma=1.0, never_share=0.25, seed=7)
    delays = [model.answer_delay(interview_id) for interview_id in range(1, 2001)]
    answered = [delay for delay in delays if delay is not None]

    assert 0.22 < delays.count(None) / len(delays) < 0.28
    assert 540 < statistics.median(answered) < 660
    assert min(answered) < 150 and max(answered) > 2400  # a spread, not one time
    assert delays == [model.answer_delay(interview_id) for interview_id in range(1, 2001)]  # the seed decides
    other_seed = CompletionModel(median=600.0, sigma=1.0, never_share=0.25, seed=8)
    assert delays != [other_seed.answer_delay(interview_id) for interview_id in range(1, 2001)]


def test_without_a_spread_every_interview_completes_at_the_median() -> None:
    assert {CompletionModel(median=30.0).answer_delay(interview_id) for interview_id in range(1, 50)} == {30.0}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"median": -1.0}, "median"),
        ({"median": 1.0, "sigma": -0.5}, "sigma"),
        ({"median": 1.0, "never_share": 2}, "never_share"),
    ],
)
def test_the_model_refuses_nonsense_by_name(arguments: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        CompletionModel(**arguments)


def test_the_emulator_completes_each_interview_at_its_drawn_time() -> None:
    clock = FakeClock()
    model = CompletionModel(median=100.0, sigma=1.0, never_share=0.3, seed=1)
    with HindsightEmulator(api_key=KEY, completion=model, clock=clock) as emulator:
        ids = [
            post(emulator, {**JANE, "contact_email": f"c{n}@example.com"}).json["interview_request_id"]
            for n in range(40)
        ]
        delays = {interview_id: model.answer_delay(interview_id) for interview_id in ids}

        clock.advance(100.0)
        completed = {i for i in ids if get(emulator, i).json["status"] == "completed"}
        assert completed == {i for i, delay in delays.items() if delay is not None and delay <= 100.0}
        assert 0 < len(completed) < len(ids)

        clock.advance(1e9)
        never = {i for i in ids if get(emulator, i).json["status"] != "completed"}
        assert never == {i for i, delay in delays.items() if delay is None}
        assert never  # some contacts never answer

    assert emulator.completion == model


def test_complete_after_and_a_model_do_not_mix() -> None:
    with pytest.raises(ValueError, match="complete_after or completion"):
        HindsightEmulator(api_key=KEY, complete_after=1.0, completion=CompletionModel(median=1.0))


# --- methods the API does not declare ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/interviews/4821", "GET, PATCH"),
        ("TRACE", "/interviews", "POST"),
        ("BREW", "/interviews/1", "GET, PATCH"),
    ],
)
def test_an_undeclared_method_gets_405_in_the_api_envelope(
    emulator: HindsightEmulator, method: str, path: str, allow: str
) -> None:
    answer = send(emulator, path, {"objective": "x"}, method=method)

    assert answer.status == 405
    assert answer.headers["Allow"] == allow
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json == {"error": {"code": "method_not_allowed", "message": "Method not allowed"}}
    assert emulator.stats()["by_method_status"] == {method: {"405": 1}}


def test_an_undeclared_method_on_a_path_the_api_lacks_gets_404(emulator: HindsightEmulator) -> None:
    answer = send(emulator, "/deals", method="TRACE")

    assert (answer.status, answer.json["error"]["code"]) == (404, "not_found")
