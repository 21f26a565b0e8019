"""Request-body validation for ``PATCH /interviews/{id}`` and ``POST /interviews``.

Each function returns ``None`` for a valid body, or the 400 answer naming the offending fields in
``details`` (``unknown_fields``, ``missing_fields``, ``invalid_fields`` or ``exactly_one_of``).
The emulator refuses unknown fields: the vendor does not say what the API does with them, and a
typo should fail a test rather than be dropped.
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_hindsight.testing.emulator.answers import Answer, error
from airflow_provider_hindsight.testing.emulator.state import PATCH_FIELDS

CREATE_FIELDS = (
    "contact_email",
    "sequence_id",
    "interview_type_id",
    "contact_name",
    "contact_context",
    "deal_id",
    "objective",
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_EMAIL = 254


def _unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> Answer | None:
    unknown = [name for name in body if name not in allowed]
    if unknown:
        return error(400, "bad_request", f"Unknown fields: {', '.join(unknown)}", {"unknown_fields": unknown})
    return None


def _invalid(fields: dict[str, str]) -> Answer:
    return error(400, "bad_request", f"Invalid fields: {', '.join(fields)}", {"invalid_fields": fields})


def _type_errors(body: dict[str, Any], strings: tuple[str, ...]) -> dict[str, str]:
    errors = {}
    if "contact_context" in body and not isinstance(body["contact_context"], (str, dict)):
        errors["contact_context"] = "must be a string or a JSON object"
    for name in strings:
        if name in body and not isinstance(body[name], str):
            errors[name] = "must be a string"
    return errors


def check_update(body: dict[str, Any]) -> Answer | None:
    """``PATCH``: only the three fields, at least one, each of its type."""
    unknown = _unknown(body, PATCH_FIELDS)
    if unknown is not None:
        return unknown
    if not body:
        return error(400, "bad_request", "No fields provided", {"missing_fields": list(PATCH_FIELDS)})
    invalid = _type_errors(body, ("contact_name", "objective"))
    return _invalid(invalid) if invalid else None


def check_create(body: dict[str, Any]) -> Answer | None:
    """``POST``: a plausible ``contact_email`` and exactly one of ``sequence_id`` / ``interview_type_id``.

    What the real API does when both ids are sent is not documented; the emulator refuses it (400,
    ``details.exactly_one_of``), as it refuses neither, so that a test does not rely on a guess.
    """
    unknown = _unknown(body, CREATE_FIELDS)
    if unknown is not None:
        return unknown
    if "contact_email" not in body:
        return error(
            400, "bad_request", "Missing required fields: contact_email", {"missing_fields": ["contact_email"]}
        )
    ids = [name for name in ("sequence_id", "interview_type_id") if name in body]
    if len(ids) != 1:
        got = "both" if ids else "neither"
        return error(
            400,
            "bad_request",
            f"Send exactly one of sequence_id and interview_type_id (got {got})",
            {"exactly_one_of": ["sequence_id", "interview_type_id"]},
        )
    invalid = _type_errors(
        body, ("contact_email", "sequence_id", "interview_type_id", "contact_name", "deal_id", "objective")
    )
    email = body["contact_email"]
    if "contact_email" not in invalid and (len(email) > _MAX_EMAIL or not _EMAIL.match(email)):
        invalid["contact_email"] = "must be an e-mail address"
    if ids[0] not in invalid and not body[ids[0]].strip():
        invalid[ids[0]] = "must not be empty"
    return _invalid(invalid) if invalid else None
