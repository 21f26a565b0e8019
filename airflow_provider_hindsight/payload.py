"""The rows and bodies of ``PATCH /interviews/{id}``: validation, encoding, and how each row ended.

The one place that validates interview ids and builds request bodies. Everything here runs before
a request is sent, so bad input fails with a message that names the field and the fix, and nothing
reaches the API. :class:`UpdateResult` is how one row of a bulk run ended.
"""

from __future__ import annotations

import ast
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightError, HindsightValidationError

UPDATE_FIELDS: tuple[str, ...] = ("contact_context", "contact_name", "objective")
"""The fields ``PATCH /interviews/{id}`` accepts."""

MAX_FIELD_CHARS = 100_000
"""Client-side ceiling on one field's JSON size.

Not an API limit: a guard against sending a whole table in one field by mistake."""

MAX_INTERVIEW_REQUEST_ID = 2**63 - 1
"""Ids are database integers; anything larger is a mistake, not an interview."""

_DIGITS = re.compile(r"[1-9][0-9]*")
_MAX_ID_DIGITS = len(str(MAX_INTERVIEW_REQUEST_ID))


@dataclass(frozen=True)
class InterviewUpdate:
    """A validated update: the interview id, the body as a dict, and the exact JSON bytes to send."""

    interview_request_id: int
    body: dict[str, Any]
    payload: bytes


@dataclass(frozen=True)
class UpdateResult:
    """How one row of a bulk run ended: succeeded, or failed with a reason.

    ``row`` is the row's 1-based position in the input. ``transient`` says whether the failure may
    go away on a later try (429, 5xx, network); the task's failure mode follows it. ``unchanged``
    marks a row that change-only sync did not send: Hindsight already has this exact body.
    """

    row: int
    interview_request_id: Any
    succeeded: bool
    status_code: int | None = None
    code: str | None = None
    message: str | None = None
    transient: bool = False
    unchanged: bool = False

    @classmethod
    def failed(cls, row: int, interview_request_id: Any, error: BaseException) -> UpdateResult:
        """The result of a row whose request (or validation) raised ``error``."""
        if isinstance(error, HindsightError):
            return cls(row, interview_request_id, False, error.status_code, error.code, error.message, error.transient)
        return cls(row, interview_request_id, False, None, "unexpected_error", f"{type(error).__name__}: {error}")

    def as_failure(self) -> dict[str, Any]:
        """The entry for the summary's ``failures`` list."""
        return {
            "row": self.row,
            "interview_request_id": self.interview_request_id,
            "status_code": self.status_code,
            "code": self.code,
            "message": self.message,
        }


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
    members = []
    for field, value in body.items():
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as error:
            raise HindsightValidationError(
                f"{field} is not JSON-serialisable ({error}). Convert dates, decimals and other objects "
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
    return InterviewUpdate(request_id, body, b"{" + b",".join(members) + b"}")


def interview_update_from_row(row: object) -> InterviewUpdate:
    """Validate one bulk row (``interview_request_id`` plus any of the update fields)."""
    if not isinstance(row, Mapping):
        raise HindsightValidationError(
            f"each row must be a mapping with interview_request_id and update fields, got {type(row).__name__}.",
            field="updates",
        )
    unknown = sorted(str(key) for key in row if key not in UPDATE_FIELDS and key != "interview_request_id")
    if unknown:
        raise HindsightValidationError(
            f"unknown keys {unknown}: a row takes interview_request_id and any of "
            f"{', '.join(UPDATE_FIELDS)}. "
            "Rename or drop the other keys (SqlToHindsightOperator's context_columns folds columns into "
            "contact_context).",
            field="updates",
        )
    if "interview_request_id" not in row:
        raise HindsightValidationError(
            "row has no interview_request_id: every row needs the id returned by POST /interviews.",
            field="interview_request_id",
        )
    return build_interview_update(
        row["interview_request_id"],
        contact_context=row.get("contact_context"),
        contact_name=row.get("contact_name"),
        objective=row.get("objective"),
    )


def reject_rendered_python_literal(field: str, value: object) -> None:
    """Refuse a string that is a Python dict or list rendered to text by non-native Jinja.

    ``"{{ ti.xcom_pull(...) }}"`` renders a dict as ``"{'title': 'CTO'}"``; sending that as prose
    would give Paige Python syntax instead of notes.
    """
    if not isinstance(value, str):
        return
    text = value.strip()
    if (text[:1], text[-1:]) not in (("{", "}"), ("[", "]")):
        return
    try:
        json.loads(text)
        return
    except ValueError:
        pass
    try:
        root = ast.parse(text, mode="eval").body
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return
    if isinstance(root, (ast.Dict, ast.List)):
        kind = "dict" if isinstance(root, ast.Dict) else "list"
        raise HindsightValidationError(
            f"{field} arrived as the string {text[:60]!r}..., a Python {kind} that Jinja "
            "rendered to text. Pass the upstream value as an XComArg (for example "
            "`build_context.output['contact_context']`) or set `render_template_as_native_obj=True` on the "
            "DAG so the template renders a real object.",
            field=field,
        )


def check_rows(
    rows: Iterable[Mapping[str, Any] | InterviewUpdate],
) -> Iterator[tuple[int, InterviewUpdate | UpdateResult]]:
    """Validate and de-duplicate bulk rows lazily, numbering them from 1.

    Yields ``(position, update)`` for a row to send and ``(position, failed UpdateResult)`` for a
    row that must not be sent: invalid, or an id an earlier row of this run already has.
    """
    first_rows = _FirstRows()
    try:
        for position, row in enumerate(rows, start=1):
            try:
                update = row if isinstance(row, InterviewUpdate) else interview_update_from_row(row)
            except HindsightValidationError as error:
                yield position, UpdateResult.failed(position, _row_id(row), error)
                continue
            except Exception as error:  # a row object that breaks while read must not end the whole run
                message = f"could not read this row: {type(error).__name__}: {error}"
                yield position, UpdateResult(position, _row_id(row), False, None, "invalid_row", message)
                continue
            first = first_rows.first_row(update.interview_request_id, position)
            if first != position:
                message = (
                    f"interview_request_id {update.interview_request_id} already came in row {first}, which "
                    "was sent; this row was not. Deduplicate the rows (contact_context overwrites, so only one "
                    "version can win)."
                )
                yield (
                    position,
                    UpdateResult(position, update.interview_request_id, False, None, "duplicate_id", message),
                )
                continue
            yield position, update
    finally:
        first_rows.close()


class _FirstRows:
    """The row each interview id first came in: a dict for the first ids, then a temporary SQLite file.

    A run of a million rows must not hold a million ids in memory; past :attr:`IN_MEMORY` ids the
    rest go to a private on-disk database that SQLite deletes when it is closed.
    """

    IN_MEMORY = 50_000

    def __init__(self) -> None:
        self._memory: dict[int, int] = {}
        self._disk: sqlite3.Connection | None = None

    def first_row(self, interview_request_id: int, position: int) -> int:
        """Remember ``position`` for an id seen for the first time; return the id's first position."""
        known = self._memory.get(interview_request_id)
        if known is not None:
            return known
        if self._disk is None:
            if len(self._memory) < self.IN_MEMORY:
                self._memory[interview_request_id] = position
                return position
            self._disk = sqlite3.connect("")  # "" is a temporary database on disk
            self._disk.executescript(
                "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                "CREATE TABLE first_row (id INTEGER PRIMARY KEY, row INTEGER NOT NULL);"
            )
        cursor = self._disk.execute("INSERT OR IGNORE INTO first_row VALUES (?, ?)", (interview_request_id, position))
        if cursor.rowcount:
            return position
        (first,) = self._disk.execute("SELECT row FROM first_row WHERE id = ?", (interview_request_id,)).fetchone()
        return int(first)

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()


def _row_id(row: object) -> Any:
    """The id a row claims, for reporting a row that failed validation (JSON-safe)."""
    value = row.get("interview_request_id") if isinstance(row, Mapping) else None
    return value if value is None or isinstance(value, (int, str)) else json.dumps(value, default=repr)
