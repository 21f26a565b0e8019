"""Interview requests as the API knows them: ids, the bodies of PATCH and POST, and the statuses.

The one place that validates interview ids and builds request bodies. Everything here runs before
a request is sent, so bad input fails with a message that names the field and the fix, and nothing
reaches the API. Messages about a create never quote its values: e-mail addresses and context are
personal data. No HTTP and no Airflow here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightValidationError

UPDATE_FIELDS: tuple[str, ...] = ("contact_context", "contact_name", "objective")
"""The fields ``PATCH /interviews/{id}`` accepts."""

MAX_FIELD_CHARS = 100_000
"""Client-side ceiling on one field's JSON size.

Not an API limit: a guard against sending a whole table in one field by mistake."""

MAX_INTERVIEW_REQUEST_ID = 2**63 - 1
"""Ids are database integers; anything larger is a mistake, not an interview."""

CREATE_FIELDS: tuple[str, ...] = (
    "contact_email",
    "sequence_id",
    "interview_type_id",
    "contact_name",
    "contact_context",
    "deal_id",
    "objective",
)
"""The fields ``POST /interviews`` accepts."""

STATUSES: tuple[str, ...] = ("created", "sent", "completed")
"""An interview's statuses in the order it goes through them (no failed or expired state is documented)."""

MAX_EMAIL_CHARS = 254

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DIGITS = re.compile(r"[1-9][0-9]*")
_MAX_ID_DIGITS = len(str(MAX_INTERVIEW_REQUEST_ID))


@dataclass(frozen=True)
class InterviewUpdate:
    """A validated update: the interview id, the body as a dict, and the exact JSON bytes to send."""

    interview_request_id: int
    body: dict[str, Any]
    payload: bytes

    @property
    def key(self) -> int:
        """What names this update in a bulk run's results."""
        return self.interview_request_id


def validate_interview_request_id(value: object) -> int:
    """Return ``value`` as a positive int, or raise naming ``interview_request_id`` and the fix.

    Ints and strings of digits (templates render strings) are accepted; booleans, floats, zero,
    negatives, padded or path-like strings are refused so that no request goes to a wrong URL.
    """
    if isinstance(value, Integral) and not isinstance(value, bool) and 0 < int(value) <= MAX_INTERVIEW_REQUEST_ID:
        return int(value)
    if (
        isinstance(value, str)
        and _DIGITS.fullmatch(value)
        and len(value) <= _MAX_ID_DIGITS
        and int(value) <= MAX_INTERVIEW_REQUEST_ID
    ):
        return int(value)
    if value is None:
        raise HindsightValidationError(
            "interview_request_id is missing (NULL in SQL, None in Python): every row needs the id returned "
            "by POST /interviews. Filter such rows out of the query or the upstream task.",
            field="interview_request_id",
        )
    hint = ""
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        hint = " It has surrounding whitespace: strip it (for example `{{ ... | trim }}`)."
    raise HindsightValidationError(
        f"interview_request_id must be a positive integer (the id returned by POST /interviews), "
        f"got {value!r} ({type(value).__name__}). Pass an int or a string of digits such as '4821'.{hint}",
        field="interview_request_id",
    )


def build_interview_update(
    interview_request_id: object,
    *,
    contact_context: object = None,
    contact_name: object = None,
    objective: object = None,
) -> InterviewUpdate:
    """Validate one update and encode its body: exactly the fields that are not ``None``."""
    request_id = validate_interview_request_id(interview_request_id)
    body: dict[str, Any] = {}
    if contact_context is not None:
        if not isinstance(contact_context, (str, Mapping)):
            raise HindsightValidationError(
                "contact_context must be a string or a mapping (dict), got "
                f"{type(contact_context).__name__}. Pass prose as a str or structured notes as a dict.",
                field="contact_context",
            )
        body["contact_context"] = contact_context if isinstance(contact_context, str) else dict(contact_context)
    for field, value in (("contact_name", contact_name), ("objective", objective)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise HindsightValidationError(
                f"{field} must be a string, got {type(value).__name__} ({value!r:.80}). "
                "Convert it with str() or leave it None to keep the current value.",
                field=field,
            )
        body[field] = value
    if not body:
        raise HindsightValidationError(
            f"Nothing to update for interview {request_id}: give at least one of contact_context, "
            "contact_name or objective (None means 'leave unchanged').",
        )
    return InterviewUpdate(request_id, body, encode_body(body))


@dataclass(frozen=True)
class InterviewCreate:
    """A validated create: the body as a dict and the exact JSON bytes to send."""

    body: dict[str, Any]
    payload: bytes


def build_interview_create(
    *,
    contact_email: object,
    sequence_id: object = None,
    interview_type_id: object = None,
    contact_name: object = None,
    contact_context: object = None,
    deal_id: object = None,
    objective: object = None,
) -> InterviewCreate:
    """Validate one create and encode its body; fields that are ``None`` (NULL in SQL) are left out.

    Exactly one of ``sequence_id`` (Hindsight e-mails the contact) and ``interview_type_id`` (a
    link-only request) must be given.
    """
    if not isinstance(contact_email, str) or not contact_email.strip():
        raise HindsightValidationError(
            "contact_email is missing or not a string: every create needs the contact's e-mail address.",
            field="contact_email",
        )
    if len(contact_email) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(contact_email):
        raise HindsightValidationError(
            "contact_email does not look like an e-mail address (one @, a dot in the domain, no spaces, at most "
            f"{MAX_EMAIL_CHARS} characters). Clean the column or filter such rows out.",
            field="contact_email",
        )
    body: dict[str, Any] = {"contact_email": contact_email}
    ids = {"sequence_id": sequence_id, "interview_type_id": interview_type_id}
    given = [name for name, value in ids.items() if value is not None]
    if len(given) != 1:
        raise HindsightValidationError(
            "give exactly one of sequence_id (Hindsight e-mails the contact) and interview_type_id (a link-only "
            f"request you deliver yourself), got {'both' if given else 'neither'}.",
            field="sequence_id",
        )
    (name,) = given
    value = ids[name]
    if not isinstance(value, str) or not value.strip():
        raise HindsightValidationError(
            f"{name} must be a non-empty string such as 'seq_...' or 'type_...' from the Hindsight dashboard.",
            field=name,
        )
    body[name] = value
    for field, text in (("contact_name", contact_name), ("deal_id", deal_id), ("objective", objective)):
        if text is None:
            continue
        if not isinstance(text, str):
            raise HindsightValidationError(
                f"{field} must be a string, got {type(text).__name__}. Convert it, or leave it None (NULL) to "
                "leave it out.",
                field=field,
            )
        body[field] = text
    if contact_context is not None:
        if not isinstance(contact_context, (str, Mapping)):
            raise HindsightValidationError(
                f"contact_context must be a string or a mapping (dict), got {type(contact_context).__name__}.",
                field="contact_context",
            )
        body["contact_context"] = contact_context if isinstance(contact_context, str) else dict(contact_context)
    return InterviewCreate(body, encode_body(body, quote_values=False))


def encode_body(body: Mapping[str, Any], *, quote_values: bool = True) -> bytes:
    """The exact JSON bytes of a body (compact, UTF-8, key order kept), or an error naming the field.

    ``quote_values=False`` keeps values out of the messages (a create's fields are personal data).
    """
    members = []
    for field, value in body.items():
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            reason = f" ({error})" if quote_values else ""
            raise HindsightValidationError(
                f"{field} is not JSON-serialisable{reason}. Convert dates, decimals and other objects "
                "to strings or numbers before passing them.",
                field=field,
            ) from None
        try:
            members.append(f'"{field}":{encoded}'.encode())
        except UnicodeEncodeError:
            raise HindsightValidationError(
                f"{field} holds text that is not valid Unicode (a lone surrogate, often from a bad decode). "
                "Clean it, for example with `.encode('utf-8', 'replace').decode()`.",
                field=field,
            ) from None
        if len(encoded) > MAX_FIELD_CHARS:
            raise HindsightValidationError(
                f"{field} is {len(encoded):,} characters as JSON, over the {MAX_FIELD_CHARS:,} this provider "
                "sends in one field. Summarise it, or send only the columns Paige needs.",
                field=field,
            )
    return b"{" + b",".join(members) + b"}"


def status_reached(status: object, target: str) -> bool:
    """Whether an interview in ``status`` has reached ``target`` (``created`` < ``sent`` < ``completed``)."""
    return status in STATUSES and STATUSES.index(str(status)) >= STATUSES.index(target)
