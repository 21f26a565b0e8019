"""A bulk run's rows: checked before sending, and how each one ended.

:func:`check_rows` validates and de-duplicates rows lazily (memory stays flat: the keys seen spill
to a temporary SQLite file past :attr:`FirstRows.IN_MEMORY`); :class:`RowResult` is how one row
ended, with a named constructor for each way; :class:`RunStop` is why a run stopped sending.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightError, HindsightValidationError
from airflow_provider_hindsight.resources.interviews import UPDATE_FIELDS, InterviewUpdate, build_interview_update


@dataclass(frozen=True)
class RunStop:
    """Why a bulk run stopped sending (the circuit breaker's verdict): ``transient`` says whether a later
    run may succeed. The rows it left unsent end :meth:`RowResult.not_sent` with it."""

    reason: str
    code: str
    transient: bool


@dataclass(frozen=True)
class RowResult:
    """How one row of a bulk run ended: succeeded, or failed with a reason.

    ``row`` is the row's 1-based position in the input and ``key`` its interview id (or request key).
    ``transient`` says whether the failure may go away on a later try (429, 5xx, network); the task's
    failure mode follows it. ``unchanged`` marks a row that was not sent because Hindsight already
    has it. ``answer`` is the API's parsed answer for a row that was sent and succeeded.
    """

    row: int
    key: Any
    succeeded: bool
    status_code: int | None = None
    code: str | None = None
    message: str | None = None
    transient: bool = False
    unchanged: bool = False
    answer: dict[str, Any] | None = None

    @classmethod
    def sent(cls, row: int, key: Any, answer: dict[str, Any] | None = None) -> RowResult:
        """A row the API accepted."""
        return cls(row, key, True, answer=answer)

    @classmethod
    def failed(cls, row: int, key: Any, error: BaseException) -> RowResult:
        """A row whose request (or validation) raised ``error``."""
        if isinstance(error, HindsightError):
            return cls(row, key, False, error.status_code, error.code, error.message, error.transient)
        return cls(row, key, False, None, "unexpected_error", f"{type(error).__name__}: {error}")

    @classmethod
    def invalid(cls, row: int, key: Any, code: str, message: str) -> RowResult:
        """A row refused before sending (unreadable, a repeated key)."""
        return cls(row, key, False, None, code, message)

    @classmethod
    def not_sent(cls, row: int, key: Any, stop: RunStop) -> RowResult:
        """A row the run did not send because it stopped early."""
        return cls(
            row,
            key,
            False,
            None,
            "not_sent",
            f"not sent: the run stopped ({stop.code}) because {stop.reason}.",
            stop.transient,
        )

    @classmethod
    def skipped(cls, row: int, key: Any) -> RowResult:
        """A row not sent because Hindsight already has it (unchanged, or created before)."""
        return cls(row, key, False, unchanged=True)

    @property
    def was_sent(self) -> bool:
        """Whether a request went out for this row (it succeeded, or failed with the API's or network's answer)."""
        return not self.unchanged and self.code not in _UNSENT_CODES

    def as_failure(self, key_name: str = "interview_request_id") -> dict[str, Any]:
        """The entry for the summary's ``failures`` list."""
        return {
            "row": self.row,
            key_name: self.key,
            "status_code": self.status_code,
            "code": self.code,
            "message": self.message,
        }


_UNSENT_CODES = frozenset({"not_sent", "invalid_input", "invalid_row", "duplicate_id", "duplicate_request_key"})

CheckedRow = tuple[int, Any]
"""``(position, job)`` for a row to send, or ``(position, RowResult)`` for a row that ended before sending."""


def interview_update_from_row(row: object) -> InterviewUpdate:
    """Validate one bulk update row (``interview_request_id`` plus any of the update fields)."""
    if not isinstance(row, Mapping):
        raise HindsightValidationError(
            f"each row of updates must be a mapping with interview_request_id and update fields, got "
            f"{type(row).__name__}.",
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


def _update_duplicate(key: Any, first: int) -> tuple[str, str]:
    return (
        "duplicate_id",
        f"interview_request_id {key} already came in row {first}, which was sent; this row was not. Deduplicate "
        "the rows (contact_context overwrites, so only one version can win).",
    )


def check_rows(
    rows: Iterable[Any],
    build: Callable[[Any], Any] = interview_update_from_row,
    *,
    key_field: str = "interview_request_id",
    duplicate: Callable[[Any, int], tuple[str, str]] = _update_duplicate,
) -> Iterator[CheckedRow]:
    """Validate and de-duplicate bulk rows lazily, numbering them from 1.

    ``build`` turns a row into a job (anything with a ``key``; a job passed in is taken as it is) or
    raises :class:`HindsightValidationError`. Yields ``(position, job)`` for a row to send and
    ``(position, failed RowResult)`` for a row that must not be sent: invalid, or a key an earlier
    row of this run already has (``duplicate(key, first_row)`` gives the code and message).
    """
    first_rows = FirstRows()
    try:
        for position, row in enumerate(rows, start=1):
            try:
                job = row if hasattr(row, "key") else build(row)
            except HindsightValidationError as error:
                yield position, RowResult.failed(position, _row_key(row, key_field), error)
                continue
            except Exception as error:  # a row object that breaks while read must not end the whole run
                message = f"could not read this row: {type(error).__name__}"
                yield position, RowResult.invalid(position, _row_key(row, key_field), "invalid_row", message)
                continue
            first = first_rows.first_row(job.key, position)
            if first != position:
                yield position, RowResult.invalid(position, job.key, *duplicate(job.key, first))
                continue
            yield position, job
    finally:
        first_rows.close()


class FirstRows:
    """The row each key first came in: a dict for the first keys, then a temporary SQLite file.

    A run of a million rows must not hold a million keys in memory; past :attr:`IN_MEMORY` keys the
    rest go to a private on-disk database that SQLite deletes when it is closed.
    """

    IN_MEMORY = 50_000

    def __init__(self) -> None:
        self._memory: dict[Any, int] = {}
        self._disk: sqlite3.Connection | None = None

    def first_row(self, key: int | str, position: int) -> int:
        """Remember ``position`` for a key seen for the first time; return the key's first position."""
        known = self._memory.get(key)
        if known is not None:
            return known
        if self._disk is None:
            if len(self._memory) < self.IN_MEMORY:
                self._memory[key] = position
                return position
            self._disk = sqlite3.connect("")  # "" is a temporary database on disk
            self._disk.executescript(
                "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                "CREATE TABLE first_row (key PRIMARY KEY, row INTEGER NOT NULL);"
            )
        cursor = self._disk.execute("INSERT OR IGNORE INTO first_row VALUES (?, ?)", (key, position))
        if cursor.rowcount:
            return position
        (first,) = self._disk.execute("SELECT row FROM first_row WHERE key = ?", (key,)).fetchone()
        return int(first)

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()


def _row_key(row: object, key_field: str) -> Any:
    """The key a row claims, for reporting a row that failed validation (JSON-safe)."""
    value = row.get(key_field) if isinstance(row, Mapping) else None
    return value if value is None or isinstance(value, (int, str)) else json.dumps(value, default=repr)
