"""Create-once: check create rows, sort them against the interview ledger, claim, POST, record.

Sits between row validation and the bulk engine, as change-only sync does for updates:

- :func:`check_create_rows` validates rows lazily (``request_key`` plus the API's create fields;
  operator defaults for ``sequence_id``/``interview_type_id``) and refuses a key twice in one run.
- :meth:`CreateOnce.sort` reads the checked rows a batch at a time, looks their keys up in the
  ledger in one query per batch (memory stays flat) and passes on only the keys to send: new keys,
  ``rejected`` ones, and ``unknown`` ones when the user said ``resend_unknown``. ``created`` keys end
  ``existing``; ``unknown`` keys and another task instance's ``pending`` claims end as unknown from
  before (a claim older than ``pending_timeout`` is marked ``unknown`` first). A ``pending`` claim
  of an earlier try of this very task instance (its worker was killed mid-POST) is marked ``unknown``
  at once and ends as this run's own unknown outcome: counted toward ``max_failures``, named in
  :attr:`CreateOnce.own_unknown`. Only the rows to send have their fields validated and their body built.
- :meth:`CreateOnce.send` runs in the engine's worker threads: it commits the claim (a ``pending``
  row) right before the POST leaves (after its turn at the pace), then records the answer for that
  row at once: ``created``, ``rejected`` (a 4xx), ``unknown`` (it may have arrived), or it deletes
  its own claim when the create cannot have reached Hindsight (a 429 or a refused connection after
  the retries, a run stopped).

:func:`outcome_of` names how each result counts in the summary.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any

from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult, check_rows
from airflow_provider_hindsight.exceptions import (
    HindsightError,
    HindsightRunStoppedError,
    HindsightUnknownOutcomeError,
    HindsightValidationError,
)
from airflow_provider_hindsight.ledgers.interviews import (
    CREATED,
    DEFAULT_PENDING_TIMEOUT,
    PENDING,
    REJECTED,
    UNKNOWN,
    Claim,
    InterviewLedger,
    LedgerEntry,
    validate_request_key,
)
from airflow_provider_hindsight.ledgers.sql import LEDGER_BATCH
from airflow_provider_hindsight.resources.interviews import CREATE_FIELDS, InterviewCreate, build_interview_create

if TYPE_CHECKING:
    from airflow_provider_hindsight.hooks.hindsight import HindsightHook

OUTCOMES = ("created", "existing", "failed", "unknown")
EARLIER_UNKNOWN = "unknown before this run"
"""The report's counter of keys found unknown (or pending under another run); folded into ``unknown``."""
LEFT_PENDING = "left pending by an earlier try, not sent"
"""Why a key this run turned ``unknown`` was not sent by it: an earlier try of the task claimed it."""
UNKNOWN_CODES = frozenset({"unknown_outcome", "ledger_write_failed"})
"""Codes of this run's own POSTs whose outcome is unknown."""
UNKNOWN_BEFORE = "unknown_before"
PENDING_ELSEWHERE = "pending_elsewhere"
ROW_KEYS = frozenset((*CREATE_FIELDS, "request_key"))


@dataclass(frozen=True)
class CreateJob:
    """A create row whose ``request_key`` and keys were checked; :meth:`build` validates its fields.

    The body is built only for a key that will be sent: a rerun over 100,000 created keys does not
    encode 100,000 bodies it will never send.
    """

    request_key: str
    row: Mapping[str, Any]
    sequence_id: str | None = None
    interview_type_id: str | None = None

    @property
    def key(self) -> str:
        return self.request_key

    def build(self) -> InterviewCreate:
        """The validated body; raises :class:`HindsightValidationError` naming the field."""
        row = self.row
        sequence, interview_type = row.get("sequence_id"), row.get("interview_type_id")
        if sequence is None and interview_type is None:
            sequence, interview_type = self.sequence_id, self.interview_type_id
        return build_interview_create(
            contact_email=row.get("contact_email"),
            sequence_id=sequence,
            interview_type_id=interview_type,
            contact_name=row.get("contact_name"),
            contact_context=row.get("contact_context"),
            deal_id=row.get("deal_id"),
            objective=row.get("objective"),
        )


@dataclass(frozen=True)
class PlannedCreate:
    """A create to send: its body, and the ledger state it replaces (``None``: a key the ledger has no row of)."""

    job: CreateJob
    replacing: str | None
    create: InterviewCreate

    @property
    def key(self) -> str:
        return self.job.request_key


def create_job_from_row(
    row: object, *, sequence_id: str | None = None, interview_type_id: str | None = None
) -> CreateJob:
    """Check one create row's keys and ``request_key``; its fields are validated by :meth:`CreateJob.build`.

    Rows naming neither ``sequence_id`` nor ``interview_type_id`` get the defaults.
    """
    if not isinstance(row, Mapping):
        raise HindsightValidationError(
            f"each row must be a mapping with request_key, contact_email and the create fields, got "
            f"{type(row).__name__}.",
            field="interviews",
        )
    unknown = sorted(str(key) for key in row if key not in ROW_KEYS)
    if unknown:
        raise HindsightValidationError(
            f"unknown keys {unknown}: a row takes request_key and any of {', '.join(CREATE_FIELDS)}. Rename or "
            "drop the other keys (SqlToHindsightCreateInterviewsOperator's context_columns folds columns into "
            "contact_context).",
            field="interviews",
        )
    key = validate_request_key(row.get("request_key"))
    return CreateJob(key, row, sequence_id, interview_type_id)


def _create_duplicate(key: Any, first: int) -> tuple[str, str]:
    return (
        "duplicate_request_key",
        f"request_key {key} already came in row {first}, which is the one created; this row was not sent. "
        "Each key names one interview: deduplicate the rows or make the keys distinct.",
    )


def check_create_rows(
    rows: Iterable[Any], *, sequence_id: str | None = None, interview_type_id: str | None = None
) -> Iterator[CheckedRow]:
    """Validate and de-duplicate create rows lazily: ``(position, CreateJob)`` or ``(position, failed RowResult)``."""
    build = partial(create_job_from_row, sequence_id=sequence_id, interview_type_id=interview_type_id)
    return check_rows(rows, build, key_field="request_key", duplicate=_create_duplicate)


def outcome_of(result: RowResult) -> str:
    """The summary counter of a create's result."""
    if result.unchanged:
        return EARLIER_UNKNOWN if result.code in (UNKNOWN_BEFORE, PENDING_ELSEWHERE) else "existing"
    if result.succeeded:
        return "created"
    return "unknown" if result.code in UNKNOWN_CODES else "failed"


def _earlier_unknown(position: int, key: str, code: str, message: str) -> RowResult:
    return RowResult(position, key, False, None, code, message, unchanged=True)


class CreateOnce:
    """One run's use of the interview ledger: which keys to send, the claim, and the record of each answer.

    :param ledger: a prepared ledger (``prepare(create=not dry_run)``).
    :param hook: the hook whose ``send_create`` posts (unused in a dry run).
    :param resend_unknown: send ``unknown`` keys again (the user checked they were not created).
    :param dry_run: look up only; nothing is claimed or written.
    :param claimed_by: this task instance (``<dag_id>/<task_id>/<run_id>/<map_index>``), written with
        each claim; ``None`` when not known (then no claim is recognised as this task's own).
    :param pending_timeout: how old another task instance's ``pending`` claim must be to be marked ``unknown``.
    """

    def __init__(
        self,
        ledger: InterviewLedger,
        hook: HindsightHook | None,
        *,
        resend_unknown: bool,
        dry_run: bool,
        claimed_by: str | None = None,
        pending_timeout: datetime.timedelta = DEFAULT_PENDING_TIMEOUT,
    ):
        self.ledger = ledger
        self.hook = hook
        self.resend_unknown = resend_unknown
        self.dry_run = dry_run
        self.claimed_by = claimed_by
        self.pending_timeout = pending_timeout
        self.abandoned = 0
        """Stale ``pending`` claims of other task instances this run turned into ``unknown``."""
        self.own_unknown: list[str] = []
        """Keys an earlier try of this task instance claimed and never recorded, turned ``unknown`` by this run."""
        self.pending_until: datetime.datetime | None = None
        """When the first ``pending`` claim of another task instance found by this run turns ``unknown`` (naive UTC)."""

    def sort(self, checked: Iterable[CheckedRow]) -> Iterator[CheckedRow]:
        """Pass on rows to send (as :class:`PlannedCreate`) and finished rows; one ledger query per batch."""
        rows = iter(checked)
        while batch := list(islice(rows, LEDGER_BATCH)):
            keys = [item.request_key for _, item in batch if isinstance(item, CreateJob)]
            known = self.ledger.lookup(keys) if keys else {}
            now = self.ledger.now()
            for position, item in batch:
                if not isinstance(item, CreateJob):
                    yield position, item
                    continue
                yield position, self.plan(position, item, known.get(item.request_key), now)

    def plan(self, position: int, job: CreateJob, entry: LedgerEntry | None, now: Any) -> PlannedCreate | RowResult:
        """What to do with one checked row, given its ledger entry (``None``: not in the ledger)."""
        key = job.request_key
        if entry is None:
            return self._to_send(position, job, None)
        if entry.state == CREATED:
            return RowResult.skipped(position, key)
        if entry.state == REJECTED:
            return self._to_send(position, job, REJECTED)
        state = entry.state
        if state == PENDING and self.claimed_by is not None and entry.claimed_by == self.claimed_by:
            return self._own_claim(position, entry)
        if entry.is_stale(now, self.pending_timeout):
            if not self.dry_run and self.ledger.mark_abandoned(entry):
                self.abandoned += 1
            state = UNKNOWN
        if state == UNKNOWN:
            if self.resend_unknown:
                return self._to_send(position, job, UNKNOWN)
            return _earlier_unknown(
                position,
                key,
                UNKNOWN_BEFORE,
                "unknown from an earlier run: it may have been created. Not sent; check in Hindsight, then record "
                "it or set resend_unknown.",
            )
        until = (entry.attempted_at or now) + self.pending_timeout
        self.pending_until = until if self.pending_until is None else min(self.pending_until, until)
        return _earlier_unknown(
            position,
            key,
            PENDING_ELSEWHERE,
            f"claimed by another run that has not recorded its answer yet (or was killed). Not sent; if that run is "
            f"gone, it turns unknown at {until:%Y-%m-%d %H:%M} UTC (pending_timeout), and resend_unknown applies only "
            "after that.",
        )

    def _own_claim(self, position: int, entry: LedgerEntry) -> RowResult:
        """A claim an earlier try of this task instance left ``pending``: its POST may have arrived. Now unknown."""
        if not self.dry_run:
            self.ledger.mark_abandoned(entry, by="an earlier try of this task")
        self.own_unknown.append(entry.request_key)
        return RowResult(
            position,
            entry.request_key,
            False,
            None,
            "unknown_outcome",
            "claimed by an earlier try of this task, which was stopped before it recorded Hindsight's answer: it "
            "may have been created. Not sent, now unknown.",
        )

    def not_sent_because(self, result: RowResult) -> str:
        """Why this run did not send a row whose result reads as sent (:data:`LEFT_PENDING`), else ``""``."""
        return LEFT_PENDING if result.code == "unknown_outcome" and result.key in self.own_unknown else ""

    @staticmethod
    def _to_send(position: int, job: CreateJob, replacing: str | None) -> PlannedCreate | RowResult:
        try:
            return PlannedCreate(job, replacing, job.build())
        except HindsightValidationError as error:
            return RowResult.failed(position, job.request_key, error)

    def send(self, position: int, planned: PlannedCreate, stopped: threading.Event) -> dict[str, Any] | RowResult:
        """Claim the key (committed), POST once, record the answer for this row at once (in a worker thread).

        The claim is made after the row's turn at the pace, right before the POST leaves (the hook's
        ``before_send``), so a run killed while waiting for its turn leaves no claim of that row.
        """
        assert self.hook is not None
        key = planned.key
        body = planned.create.body
        claims: list[Claim] = []

        def claim() -> None:
            try:
                made = self.ledger.claim(
                    key,
                    contact_email=body["contact_email"],
                    deal_id=body.get("deal_id"),
                    replacing=planned.replacing,
                    claimed_by=self.claimed_by,
                )
            except Exception as error:
                raise _ClaimFailed(self.ledger.describe(error)) from None
            if made is None:
                raise _ClaimLost
            claims.append(made)

        try:
            answer = self.hook.send_create(
                planned.create, subject=f"request_key {key}", stopped=stopped, before_send=claim
            )
        except _ClaimLost:  # another run claimed (or created) it between the look-up and now
            return RowResult.skipped(position, key)
        except _ClaimFailed as error:
            return _ledger_failure(position, key, "ledger_error", f"not sent: the ledger claim failed: {error}")
        except HindsightRunStoppedError:
            if claims:
                self.ledger.release(claims[0])
            raise
        except HindsightUnknownOutcomeError as error:
            self.ledger.record_failure(key, UNKNOWN, error.code, error.message)
            raise
        except HindsightError as error:
            status = error.status_code
            if status is not None and 400 <= status < 500 and status != 429:
                self.ledger.record_failure(key, REJECTED, error.code, error.message)
            elif claims:  # a 429 or a connection never made, after the retries: nothing reached Hindsight
                self.ledger.release(claims[0])
            raise
        except BaseException as error:  # not the hook's: whether it was sent is not known
            if claims:
                self.ledger.record_failure(key, UNKNOWN, "unknown_outcome", f"{type(error).__name__} while sending")
            raise HindsightUnknownOutcomeError(
                f"the create of request_key {key} ended in {type(error).__name__}: it may have been created."
            ) from error
        try:
            self.ledger.record_created(key, answer)
        except Exception as error:
            return _ledger_failure(
                position,
                key,
                "ledger_write_failed",
                f"created as interview {answer.get('interview_request_id')}, but the ledger could not record it; "
                "its claim stays pending, so no run sends it again. Record it by running "
                f"{self.ledger.record_created_sql(key, answer)} (the ledger's error: {self.ledger.describe(error)})",
                status_code=201,
            )
        return answer


class _ClaimLost(Exception):
    """Another run's row holds the key: not sent."""


class _ClaimFailed(Exception):
    """The ledger could not write the claim: not sent."""


def _ledger_failure(position: int, key: str, code: str, message: str, status_code: int | None = None) -> RowResult:
    return RowResult(position, key, False, status_code, code, message[:1000])
