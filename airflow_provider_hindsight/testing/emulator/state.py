"""The emulator's state: contacts (upserted by e-mail) and interview requests, with their lifecycle.

Status goes ``created`` (link only, no e-mail) or ``sent`` (e-mailed) to ``completed`` (a transcript).
``contact_context`` and ``contact_name`` belong to the contact: an update through one interview shows
in every interview of that contact, as in Hindsight. All methods are thread-safe; every view is a copy.
With a state file, every change is saved to it (``persistence``) and a new store starts from it.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_hindsight.testing.emulator import persistence
from airflow_provider_hindsight.testing.emulator.transcript import generate_transcript

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from airflow_provider_hindsight.testing.emulator.completion import CompletionModel

STATUSES = ("created", "sent", "completed")
SURVEY_URL = "https://app.usehindsight.com/survey?token={token}"
PATCH_FIELDS = ("contact_context", "contact_name", "objective")


def iso(timestamp: float) -> str:
    """ISO-8601 UTC to the second, as the API writes times: ``2026-05-15T10:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclasses.dataclass
class Contact:
    contact_id: str
    email: str | None
    name: str | None = None
    context: str | dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Seed:
    """An interview a test adds directly (``add_interview``): its fields, status and contact."""

    contact_context: str | dict[str, Any] | None = None
    contact_name: str | None = None
    objective: str | None = None
    status: str = "sent"
    contact_email: str | None = None
    deal_id: str | None = None


@dataclasses.dataclass
class Interview:
    interview_request_id: int
    contact_id: str
    created_at: float
    created_clock: float
    status: str = "sent"
    deal_id: str | None = None
    objective: str | None = None
    sequence_id: str | None = None
    interview_type_id: str | None = None
    survey_token: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(16))
    email_sent_at: float | None = None
    transcript: dict[str, Any] | None = None
    via_post: bool = False
    auto_complete: bool = True

    def saved(self) -> dict[str, Any]:
        """What a state file keeps: all but the monotonic ``created_clock`` (the age comes from ``created_at``)."""
        return {name: value for name, value in vars(self).items() if name != "created_clock"}


class Store:
    """Contacts and interviews. ``clock`` is monotonic seconds; ``completion`` (None: never) says
    when each interview completes by itself, checked when it is read. ``state_file`` (None: none)
    is read at the start when it exists, and every change is saved to it.
    """

    def __init__(
        self, clock: Callable[[], float], completion: CompletionModel | None, state_file: Path | None = None
    ) -> None:
        self._clock = clock
        self._completion = completion
        self._state = None if state_file is None else persistence.StateFile(state_file)
        self._lock = threading.RLock()
        self._contacts: dict[str, Contact] = {}
        self._by_email: dict[str, str] = {}
        self._interviews: dict[int, Interview] = {}
        self._last_id = 0
        if self._state is not None:
            for change in self._state.load():
                self._apply(change)
            self._state.compact(self._whole())

    # --- writing ---------------------------------------------------------------------------------

    def add(self, interview_request_id: int, seed: Seed) -> None:
        """Create or replace an interview; with ``contact_email`` its contact is upserted, else it gets its own."""
        if seed.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {seed.status!r}")
        with self._lock:
            dropped = self._drop_orphan(self._interviews.pop(interview_request_id, None))
            if seed.contact_email is None:
                contact = self._new_contact(None)
                contact.name, contact.context = seed.contact_name, copy.deepcopy(seed.contact_context)
            else:
                contact = self._upsert_contact(seed.contact_email, seed.contact_name, seed.contact_context)
            interview = self._new_interview(interview_request_id, contact, seed.status, seed.deal_id, seed.objective)
            if seed.status == "completed":
                self._complete(interview, None)
            self._save(interview, dropped)

    def ensure(self, interview_request_id: int) -> None:
        """Make an id exist (``interview_ids=None``: every id a PATCH names exists), with empty fields."""
        with self._lock:
            if interview_request_id not in self._interviews:
                self._save(self._new_interview(interview_request_id, self._new_contact(None), "sent", None, None))

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /interviews`` with a validated body; returns the 201 body."""
        with self._lock:
            contact = self._upsert_contact(body["contact_email"], body.get("contact_name"), body.get("contact_context"))
            status = "sent" if "sequence_id" in body else "created"
            interview = self._new_interview(
                self._last_id + 1, contact, status, body.get("deal_id"), body.get("objective")
            )
            interview.sequence_id = body.get("sequence_id")
            interview.interview_type_id = body.get("interview_type_id")
            interview.via_post = True
            self._save(interview)
            return {**_summary(interview), "survey_token": interview.survey_token}

    def update(self, interview_request_id: int, fields: dict[str, Any]) -> None:
        """``PATCH /interviews/{id}`` with validated fields: the objective on the interview, the rest on the contact."""
        with self._lock:
            interview = self._interviews[interview_request_id]
            contact = self._contacts[interview.contact_id]
            if "objective" in fields:
                interview.objective = fields["objective"]
            if "contact_name" in fields:
                contact.name = fields["contact_name"]
            if "contact_context" in fields:
                contact.context = copy.deepcopy(fields["contact_context"])
            self._save(interview)

    def complete(self, interview_request_id: int, transcript: str | None) -> None:
        with self._lock:
            interview = self._interviews[interview_request_id]
            interview.auto_complete = False
            self._complete(interview, transcript)
            self._save(interview)

    def set_status(self, interview_request_id: int, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self._lock:
            interview = self._interviews[interview_request_id]
            interview.auto_complete = False
            if status == "completed":
                if interview.status != "completed":
                    self._complete(interview, None)
            else:
                interview.status, interview.transcript = status, None
                if status == "sent" and interview.email_sent_at is None:
                    interview.email_sent_at = time.time()
            self._save(interview)

    # --- reading ---------------------------------------------------------------------------------

    def exists(self, interview_request_id: int) -> bool:
        with self._lock:
            return interview_request_id in self._interviews

    def fields(self, interview_request_id: int) -> dict[str, Any]:
        """The three PATCH fields as they stand: ``{"contact_context", "contact_name", "objective"}``."""
        with self._lock:
            interview = self._interviews[interview_request_id]
            contact = self._contacts[interview.contact_id]
            return copy.deepcopy(
                {"contact_context": contact.context, "contact_name": contact.name, "objective": interview.objective}
            )

    def all_fields(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {interview_id: self.fields(interview_id) for interview_id in sorted(self._interviews)}

    def public(self, interview_request_id: int) -> dict[str, Any] | None:
        """The ``GET /interviews/{id}`` body (never the survey token), or None for an unknown id."""
        with self._lock:
            interview = self._interviews.get(interview_request_id)
            if interview is None:
                return None
            self._complete_if_due(interview)
            return {
                **_summary(interview),
                "objective": interview.objective,
                "email_sent_at": None if interview.email_sent_at is None else iso(interview.email_sent_at),
                "created_at": iso(interview.created_at),
                "transcript": copy.deepcopy(interview.transcript),
            }

    def record(self, interview_request_id: int) -> dict[str, Any]:
        """Everything about one interview: the GET body plus its token, ids and contact."""
        with self._lock:
            interview = self._interviews[interview_request_id]
            body = self.public(interview_request_id)
            assert body is not None
            contact = self._contacts[interview.contact_id]
            return {
                **body,
                "survey_token": interview.survey_token,
                "sequence_id": interview.sequence_id,
                "interview_type_id": interview.interview_type_id,
                "contact_email": contact.email,
                "contact_name": contact.name,
                "contact_context": copy.deepcopy(contact.context),
            }

    def created(self, contact_email: str | None) -> list[dict[str, Any]]:
        """Records of the interviews ``POST /interviews`` created, oldest first, optionally of one e-mail."""
        with self._lock:
            wanted = None if contact_email is None else self._by_email.get(contact_email.lower(), "")
            return [
                self.record(interview.interview_request_id)
                for interview in sorted(self._interviews.values(), key=lambda i: i.interview_request_id)
                if interview.via_post and wanted in (None, interview.contact_id)
            ]

    def creates_by_contact(self) -> dict[str, int]:
        """How many interviews ``POST /interviews`` created for each contact e-mail (lower case)."""
        with self._lock:
            counts: dict[str, int] = {}
            for interview in self._interviews.values():
                email = self._contacts[interview.contact_id].email
                if interview.via_post and email is not None:
                    counts[email.lower()] = counts.get(email.lower(), 0) + 1
            return dict(sorted(counts.items()))

    def contacts(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {contact_id: copy.deepcopy(dataclasses.asdict(c)) for contact_id, c in self._contacts.items()}

    def contact(self, email: str) -> dict[str, Any]:
        """One contact by e-mail (any case); ``KeyError`` if no create named it."""
        with self._lock:
            return copy.deepcopy(dataclasses.asdict(self._contacts[self._by_email[email.lower()]]))

    # --- internals (hold the lock) ---------------------------------------------------------------

    def _new_contact(self, email: str | None) -> Contact:
        contact_id = f"contact_{secrets.token_hex(6)}"
        while contact_id in self._contacts:
            contact_id = f"contact_{secrets.token_hex(6)}"
        contact = self._contacts[contact_id] = Contact(contact_id, email)
        if email is not None:
            self._by_email[email.lower()] = contact_id
        return contact

    def _upsert_contact(self, email: str, name: str | None, context: str | dict[str, Any] | None) -> Contact:
        contact_id = self._by_email.get(email.lower())
        contact = self._new_contact(email) if contact_id is None else self._contacts[contact_id]
        contact.email = email
        if name is not None:
            contact.name = name
        if context is not None:
            contact.context = copy.deepcopy(context)
        return contact

    def _new_interview(
        self, interview_request_id: int, contact: Contact, status: str, deal_id: str | None, objective: str | None
    ) -> Interview:
        now = time.time()
        interview = Interview(interview_request_id, contact.contact_id, now, self._clock(), status, deal_id, objective)
        if status != "created":
            interview.email_sent_at = now
        self._interviews[interview_request_id] = interview
        self._last_id = max(self._last_id, interview_request_id)
        return interview

    def _drop_orphan(self, replaced: Interview | None) -> str | None:
        """Forget the anonymous contact of a replaced interview when no other interview uses it; its id."""
        if replaced is None:
            return None
        contact = self._contacts[replaced.contact_id]
        in_use = any(i.contact_id == contact.contact_id for i in self._interviews.values())
        if contact.email is not None or in_use:
            return None
        del self._contacts[contact.contact_id]
        return contact.contact_id

    def _complete_if_due(self, interview: Interview) -> None:
        if self._completion is None or not interview.auto_complete or interview.status == "completed":
            return
        after = self._completion.answer_delay(interview.interview_request_id)
        if after is not None and self._clock() - interview.created_clock >= after:
            self._complete(interview, None, at=interview.created_at + after)
            self._save(interview)

    def _complete(self, interview: Interview, transcript: str | None, at: float | None = None) -> None:
        if transcript is None:
            contact = self._contacts[interview.contact_id]
            transcript = generate_transcript(contact.name, interview.objective, contact.context)
        interview.status = "completed"
        interview.transcript = {
            "document_id": f"doc_{secrets.token_hex(8)}",
            "content": transcript,
            "created_at": iso(time.time() if at is None else at),
        }

    def _save(self, interview: Interview, dropped_contact: str | None = None) -> None:
        """Save a change to ``interview`` (and its contact) to the state file, if there is one."""
        if self._state is None:
            return
        change: dict[str, Any] = {
            "last_id": self._last_id,
            "contacts": [vars(self._contacts[interview.contact_id])],
            "interviews": [interview.saved()],
        }
        if dropped_contact is not None:
            change["dropped_contacts"] = [dropped_contact]
        self._state.append(change)

    def _whole(self) -> dict[str, Any]:
        """The whole state, in the form of a change that sets everything."""
        return {
            "last_id": self._last_id,
            "contacts": [vars(contact) for contact in self._contacts.values()],
            "interviews": [interview.saved() for interview in self._interviews.values()],
        }

    def _apply(self, change: dict[str, Any]) -> None:
        """Apply a saved state or change; each interview keeps its age (wall time since ``created_at``)."""
        now, clock = time.time(), self._clock()
        for contact_id in change.get("dropped_contacts", ()):
            self._contacts.pop(contact_id, None)
        for fields in change.get("contacts", ()):
            contact = self._contacts[fields["contact_id"]] = Contact(**fields)
            if contact.email is not None:
                self._by_email[contact.email.lower()] = contact.contact_id
        for fields in change.get("interviews", ()):
            age = max(0.0, now - fields["created_at"])
            interview = Interview(**fields, created_clock=clock - age)
            self._interviews[interview.interview_request_id] = interview
        self._last_id = max(self._last_id, change.get("last_id", 0))


def _summary(interview: Interview) -> dict[str, Any]:
    """What the create's answer and the GET body both say of an interview."""
    return {
        "interview_request_id": interview.interview_request_id,
        "contact_id": interview.contact_id,
        "deal_id": interview.deal_id,
        "survey_url": SURVEY_URL.format(token=interview.survey_token),
        "status": interview.status,
    }
