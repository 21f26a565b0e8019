"""A local emulator of the Hindsight API (standard library only; it imports nothing else of the provider).

It exists so that the hook, the operators and users' own DAGs can be tested end to end over real
HTTP without a Hindsight account. It serves, under ``/api/v1``:

- ``POST /interviews``: create an interview request; the contact is upserted by e-mail;
  ``sequence_id`` gives status ``sent``, ``interview_type_id`` gives ``created``; 201 with a
  ``survey_url`` and ``survey_token``;
- ``GET /interviews/{id}``: status, contact, survey link, and the transcript once completed;
- ``PATCH /interviews/{id}``: update ``contact_context``, ``contact_name``, ``objective``;

with the vendor's validation, error envelope (``{"error": {"code", "message", "details"?}}``),
``Bearer`` auth and one rate limiter for all three (429 with ``Retry-After``). It keeps the state it
was sent, records every request and can inject faults (error statuses, non-JSON pages, delays,
dropped connections, and creates whose answer is lost or late).

Introspection endpoints (no key; neither counted nor recorded):

- ``GET /_emulator/interviews``: ``{"<id>": {"contact_context", "contact_name", "objective"}}``;
- ``GET /_emulator/requests``: the recorded requests (``RecordedRequest.to_dict()``, key masked);
- ``GET /_emulator/stats``: ``{"request_count", "by_status", "by_method", "by_method_status", "by_route",
  "creates_by_contact"}``;
- ``POST /_emulator/reset``: forget the recorded requests and zero the counters (state stays).

Modules: ``core`` (:class:`HindsightEmulator`), ``routes`` (the route table and shared checks),
``validation``, ``state`` (contacts and interviews), ``persistence`` (the state file),
``completion`` (:class:`CompletionModel`), ``transcript``, ``faults`` and ``injection``,
``limiter``, ``recording``, ``server`` (HTTP), ``answers``.
"""

from __future__ import annotations

from airflow_provider_hindsight.testing.emulator.completion import CompletionModel
from airflow_provider_hindsight.testing.emulator.core import UNLIMITED_PACE, HindsightEmulator
from airflow_provider_hindsight.testing.emulator.recording import RecordedRequest
from airflow_provider_hindsight.testing.emulator.routes import API_PREFIX
from airflow_provider_hindsight.testing.emulator.state import PATCH_FIELDS, STATUSES
from airflow_provider_hindsight.testing.emulator.transcript import DEFAULT_COMPETITOR

FIELDS = PATCH_FIELDS
"""The fields ``PATCH /interviews/{id}`` accepts (the old module-level name)."""

__all__ = [
    "API_PREFIX",
    "DEFAULT_COMPETITOR",
    "FIELDS",
    "STATUSES",
    "UNLIMITED_PACE",
    "CompletionModel",
    "HindsightEmulator",
    "RecordedRequest",
]
