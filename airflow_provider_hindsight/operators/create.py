"""Operators that create Hindsight interview requests exactly once: many rows at a time, or one.

``POST /interviews`` is not idempotent: a retry after a timeout, a task retry after a killed worker
or a second DAG run can create a second request and e-mail a contact twice. These operators keep an
interview ledger (:mod:`airflow_provider_hindsight.ledgers.interviews`) in any SQL connection: one
row per ``request_key``, claimed before the POST, recorded at once after it. See
``docs/operators/create.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_hindsight.bulk.create_once import (
    EARLIER_UNKNOWN,
    OUTCOMES,
    CreateJob,
    CreateOnce,
    PlannedCreate,
    check_create_rows,
    create_job_from_row,
    outcome_of,
)
from airflow_provider_hindsight.bulk.report import RunReport
from airflow_provider_hindsight.bulk.rows import RowResult
from airflow_provider_hindsight.exceptions import HindsightError, HindsightUnknownOutcomeError, HindsightValidationError
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.inputs import check_duration, parse_flag, reject_rendered_python_literal, rows_from
from airflow_provider_hindsight.ledgers.interviews import (
    DEFAULT_INTERVIEW_TABLE,
    DEFAULT_PENDING_TIMEOUT,
    InterviewLedger,
    validate_interview_table,
)
from airflow_provider_hindsight.lineage import HindsightLineageMixin
from airflow_provider_hindsight.operators.bulk import BaseHindsightBulkOperator, task_instance_id
from airflow_provider_hindsight.resources.interviews import CREATE_FIELDS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

RESOLVE_UNKNOWN = (
    "Look each up in Hindsight: if it was created, record it as created in the ledger (see 'What to do with an "
    "unknown key' in the docs); if not, rerun with resend_unknown=True."
)
LISTED_UNKNOWN_KEYS = 50
"""How many keys unknown from earlier runs one WARNING names; the rest are counted."""


class BaseHindsightCreateOperator(BaseHindsightBulkOperator):
    """The bulk create operators' base: the interview ledger, create-once, the summary.

    :param ledger_conn_id: an Airflow SQL connection with write access holding the interview ledger.
        Required: without it a create could not be made exactly once; refused before any request.
    :param ledger_table: the ledger table (``name`` or ``schema.name``), created on first use.
    :param resend_unknown: send keys whose outcome is ``unknown`` again (after checking in Hindsight
        that they were not created). Templated: ``"{{ params.resend_unknown }}"`` is accepted.
    :param sequence_id: default for rows that name neither ``sequence_id`` nor ``interview_type_id``
        (Hindsight e-mails the contact).
    :param interview_type_id: the same default for link-only requests (no e-mail).
    :param pending_timeout: how old another task instance's ``pending`` claim must be before a run
        marks it ``unknown`` (a ``timedelta`` or seconds; default one hour). A claim of an earlier try of
        this same task instance is marked ``unknown`` at once.
    """

    def __init__(
        self,
        *,
        ledger_conn_id: str | None = None,
        ledger_table: str = DEFAULT_INTERVIEW_TABLE,
        resend_unknown: bool | str = False,
        sequence_id: str | None = None,
        interview_type_id: str | None = None,
        pending_timeout: datetime.timedelta | float = DEFAULT_PENDING_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = validate_interview_table(ledger_table)  # goes into SQL text: checked at parse time
        self.pending_timeout = check_duration("pending_timeout", pending_timeout)
        self.resend_unknown = resend_unknown
        self.sequence_id = sequence_id
        self.interview_type_id = interview_type_id

    def check_create_arguments(self) -> bool:
        """Refuse bad arguments before any query or request; returns ``resend_unknown`` parsed."""
        if not isinstance(self.ledger_conn_id, str) or not self.ledger_conn_id:
            raise HindsightValidationError(
                f"{type(self).__name__} needs ledger_conn_id: an Airflow SQL connection with write access where "
                "the interview ledger records each create, so that no interview is ever created twice (not by a "
                "retry, not by a second run). It may be the warehouse connection itself.",
                field="ledger_conn_id",
            )
        if self.sequence_id is not None and self.interview_type_id is not None:
            raise HindsightValidationError(
                "give at most one of the defaults sequence_id and interview_type_id: a create takes exactly one.",
                field="sequence_id",
            )
        return parse_flag("resend_unknown", self.resend_unknown)

    @contextlib.contextmanager
    def open_ledger(self, resend_unknown: bool, context: Context) -> Iterator[CreateOnce]:
        """Check the Hindsight connection, then the ledger (created unless a dry run), before any request."""
        _ = self.hook.settings  # a missing Hindsight connection fails before the ledger is touched
        ledger = InterviewLedger(ledger_conn_id=str(self.ledger_conn_id), table=self.ledger_table)
        try:
            ledger.prepare(create=not self.is_dry_run)
            self.log.info(
                "Create-once with the interview ledger %s on %r%s.",
                self.ledger_table,
                self.ledger_conn_id,
                ": unknown keys are sent again (resend_unknown)" if resend_unknown else "",
            )
            yield CreateOnce(
                ledger,
                self.hook,
                resend_unknown=resend_unknown,
                dry_run=self.is_dry_run,
                claimed_by=task_instance_id(self, context),
                pending_timeout=self.pending_timeout,
            )
        finally:
            ledger.close()

    def push_creates(
        self, rows: Iterable[Any], context: Context, create_once: CreateOnce, *, total: int | None = None
    ) -> dict[str, Any]:
        """Create every row once; push the summary to XCom (key ``summary``); fail past ``max_failures``."""
        report = self.new_report(
            outcomes=(*OUTCOMES, EARLIER_UNKNOWN),
            listed=("failed", "unknown"),
            key_name="request_key",
            key_label="request_key",
            total=total,
        )
        checked = create_once.sort(
            check_create_rows(rows, sequence_id=self.sequence_id, interview_type_id=self.interview_type_id)
        )
        if self.is_dry_run:
            results: Iterable[RowResult] = self._dry_run_results(checked)
        else:
            results = self.start_engine(checked, create_once.send, report)
        earlier = UnknownKeys()
        for result in results:
            outcome = outcome_of(result)
            if outcome == EARLIER_UNKNOWN:
                earlier.add(result)
            report.record(result, outcome, not_sent_because=create_once.not_sent_because(result))
        if create_once.abandoned:
            self.log.warning(
                "%d pending claims of other runs were older than pending_timeout (%s; their run died mid-create): "
                "marked unknown.",
                create_once.abandoned,
                self.pending_timeout,
            )
        earlier.warn(self.log, self.ledger_table, create_once.pending_until)
        return self.finish(report, context, own_unknown=create_once.own_unknown)

    def finish(self, report: RunReport, context: Context, own_unknown: Sequence[str] = ()) -> dict[str, Any]:
        """The summary with keys unknown from earlier runs counted in ``unknown`` (not against ``max_failures``).

        When the task fails and an earlier try of it left keys in doubt (``own_unknown``), the error names them.
        """
        stop = self._breaker.stop if self._breaker is not None else None
        summary = report.summary(stop, dry_run=self.is_dry_run)
        earlier = summary.pop(EARLIER_UNKNOWN, 0)
        summary["unknown"] += earlier
        context["ti"].xcom_push(key="summary", value=summary)
        if own_unknown:
            self.log.error(
                "%d request keys were claimed by an earlier try of this task, which was stopped mid-create before "
                "it recorded Hindsight's answer: %s. Each may have been created: now unknown, not sent. %s",
                len(own_unknown),
                _named(own_unknown),
                RESOLVE_UNKNOWN,
            )
        try:
            report.verdict(summary, max_failures=self.max_failures, stop=stop)
        except HindsightError as error:
            if not own_unknown:
                raise
            raise HindsightUnknownOutcomeError(
                f"{error.message} An earlier try of this task was stopped mid-create: request keys "
                f"{_named(own_unknown)} may have been created and are now unknown. A task retry cannot resolve "
                f"them, so none follows. {RESOLVE_UNKNOWN}"
            ) from error
        return summary

    def dry_run_key(self, job: Any) -> str:
        return job.key

    def log_dry_run(self, job: Any) -> None:
        self.log.info(
            "Dry run: would POST /interviews for request_key %s with %s.", job.key, ", ".join(job.create.body)
        )


class UnknownKeys:
    """Keys found unknown from earlier runs (or pending under another): the first few named, the rest counted."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str | None]] = []
        self.count = 0

    def add(self, result: RowResult) -> None:
        self.count += 1
        if len(self.keys) < LISTED_UNKNOWN_KEYS:
            self.keys.append((str(result.key), result.code))

    def warn(self, log: Any, table: str, pending_until: datetime.datetime | None) -> None:
        if not self.count:
            return
        named = ", ".join(
            key + (" (pending under another run)" if code == "pending_elsewhere" else "") for key, code in self.keys
        )
        more = f" and {self.count - len(self.keys)} more" if self.count > len(self.keys) else ""
        pending = (
            f" Keys pending under another run are not unknown yet: that run may still record them. If it was "
            f"killed, they turn unknown once older than pending_timeout (the first at {pending_until:%Y-%m-%d %H:%M} "
            "UTC), and resend_unknown applies to them only after that."
            if pending_until is not None
            else ""
        )
        log.warning(
            "%d request keys were not sent because their outcome is unknown from an earlier run (or another run "
            "holds their claim): %s%s. Check in Hindsight whether each was created: if it was, record it as "
            "created in %s; if not, rerun with resend_unknown=True. See 'Creating interviews exactly once' in the "
            "docs.%s",
            self.count,
            named,
            more,
            table,
            pending,
        )


def _named(keys: Sequence[str]) -> str:
    """The first :data:`LISTED_UNKNOWN_KEYS` keys, then how many more."""
    more = f" and {len(keys) - LISTED_UNKNOWN_KEYS} more" if len(keys) > LISTED_UNKNOWN_KEYS else ""
    return ", ".join(keys[:LISTED_UNKNOWN_KEYS]) + more


class HindsightCreateInterviewsOperator(BaseHindsightCreateOperator):
    """Create many interview requests in one task, each exactly once, at the plan's pace.

    ``interviews`` is an iterable of mappings (a list, an XComArg, or a template rendering to a JSON
    list), each with ``request_key``, ``contact_email`` and any of ``sequence_id``,
    ``interview_type_id``, ``contact_name``, ``contact_context``, ``deal_id``, ``objective``.
    Returns (and pushes under the XCom key ``summary``) ``{"total", "created", "existing", "failed",
    "unknown", "failures": [...]}``.

    :param interviews: the rows to create.
    """

    template_fields: Sequence[str] = ("interviews", "resend_unknown")
    ui_color = "#d9ead3"

    def __init__(self, *, interviews: Iterable[Mapping[str, Any]] | str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interviews = interviews

    def execute(self, context: Context) -> dict[str, Any]:
        """Create every row of ``interviews`` once and return the summary."""
        resend_unknown = self.check_create_arguments()
        rows = rows_from("interviews", self.interviews, single="HindsightCreateInterviewOperator")
        with self.open_ledger(resend_unknown, context) as create_once:
            total = len(rows) if isinstance(rows, Sized) else None
            return self.push_creates(rows, context, create_once, total=total)


class HindsightCreateInterviewOperator(HindsightLineageMixin, BaseOperator):
    """Create one interview request; every body field is templated. Returns the 201 body.

    With ``ledger_conn_id`` it is create-once like the bulk operators: a rerun returns the recorded
    interview instead of posting again, and a key whose outcome is ``unknown`` fails the task without
    retries (check in Hindsight, then record it or set ``resend_unknown``). Without a ledger it sends
    once per try, and an unknown outcome (a timeout after sending, a 5xx) fails the task without
    retries: a retry could e-mail the contact twice.

    :param request_key: the stable name of this interview (e.g. ``"D-1042:C-7781"``; no personal data).
        Required with a ledger.
    :param contact_email: the contact's e-mail address (upserted by Hindsight).
    :param sequence_id: enrol the contact in an outreach sequence (Hindsight e-mails them).
    :param interview_type_id: a link-only request (no e-mail; deliver ``survey_url`` yourself).
    :param contact_name: the contact's display name.
    :param contact_context: notes for Paige: prose (str) or structured (dict).
    :param deal_id: a Hindsight deal id (``deal_...``).
    :param objective: the goal of this interview.
    :param ledger_conn_id: an Airflow SQL connection with write access for the interview ledger.
    :param ledger_table: the ledger table (``name`` or ``schema.name``).
    :param resend_unknown: send the key again although its outcome is ``unknown``. Templated.
    :param pending_timeout: how old another task instance's ``pending`` claim of the key must be before
        it is marked ``unknown`` (a ``timedelta`` or seconds; default one hour).
    :param hindsight_conn_id: the ``hindsight`` connection.
    :param dry_run: validate and log which fields would be sent; send and write nothing.
    """

    template_fields: Sequence[str] = ("request_key", *CREATE_FIELDS, "resend_unknown")
    template_fields_renderers = {"contact_context": "json"}
    ui_color = "#d9ead3"

    def __init__(
        self,
        *,
        contact_email: str | Any,
        request_key: str | Any | None = None,
        sequence_id: str | Any | None = None,
        interview_type_id: str | Any | None = None,
        contact_name: str | Any | None = None,
        contact_context: str | Mapping[str, Any] | Any | None = None,
        deal_id: str | Any | None = None,
        objective: str | Any | None = None,
        ledger_conn_id: str | None = None,
        ledger_table: str = DEFAULT_INTERVIEW_TABLE,
        resend_unknown: bool | str = False,
        pending_timeout: datetime.timedelta | float = DEFAULT_PENDING_TIMEOUT,
        hindsight_conn_id: str = HindsightHook.default_conn_name,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.request_key = request_key
        self.contact_email = contact_email
        self.sequence_id = sequence_id
        self.interview_type_id = interview_type_id
        self.contact_name = contact_name
        self.contact_context = contact_context
        self.deal_id = deal_id
        self.objective = objective
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = validate_interview_table(ledger_table)  # goes into SQL text: checked at parse time
        self.resend_unknown = resend_unknown
        self.pending_timeout = check_duration("pending_timeout", pending_timeout)
        self.hindsight_conn_id = hindsight_conn_id
        self.is_dry_run = dry_run

    @cached_property
    def hook(self) -> HindsightHook:
        """The hook for this task's connection (one request: no hint about the default pace)."""
        hook = HindsightHook(self.hindsight_conn_id)
        hook.warn_default_pace = False
        return hook

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate the rendered fields, then create the interview (once, with a ledger)."""
        reject_rendered_python_literal("contact_context", self.contact_context)
        resend_unknown = parse_flag("resend_unknown", self.resend_unknown)
        fields = {
            "contact_email": self.contact_email,
            "sequence_id": self.sequence_id,
            "interview_type_id": self.interview_type_id,
            "contact_name": self.contact_name,
            "contact_context": self.contact_context,
            "deal_id": self.deal_id,
            "objective": self.objective,
        }
        if self.ledger_conn_id is None and self.request_key is None:
            job = create_job_from_row({"request_key": "-", **fields})
            key = None
        else:
            job = create_job_from_row({"request_key": self.request_key, **fields})
            key = job.request_key
        named = f"request_key {key}" if key is not None else "the interview"
        create = job.build()
        if self.is_dry_run:
            self.log.info("Dry run: would POST /interviews for %s with %s.", named, ", ".join(create.body))
            return {"dry_run": True, "request_key": key, "fields": list(create.body)}
        if self.ledger_conn_id is None:
            self.log.info("Creating %s without a ledger: sent once in this try, never retried.", named)
            answer = self.hook.send_create(create, subject=named)
            self.log.info("Created %s: interview %s.", named, answer.get("interview_request_id"))
            return answer
        return self._create_once(job, resend_unknown, task_instance_id(self, context))

    def _create_once(self, job: CreateJob, resend_unknown: bool, claimer: str) -> dict[str, Any]:
        _ = self.hook.settings  # the Hindsight connection is checked before the ledger is touched
        with InterviewLedger(ledger_conn_id=self.ledger_conn_id or "", table=self.ledger_table) as ledger:
            ledger.prepare()
            create_once = CreateOnce(
                ledger,
                self.hook,
                resend_unknown=resend_unknown,
                dry_run=False,
                claimed_by=claimer,
                pending_timeout=self.pending_timeout,
            )
            key = job.request_key
            entry = ledger.lookup([key]).get(key)
            plan = create_once.plan(1, job, entry, ledger.now())
            if isinstance(plan, PlannedCreate):
                outcome = create_once.send(1, plan, threading.Event())
                if isinstance(outcome, dict):
                    self.log.info("Created request_key %s: interview %s.", key, outcome.get("interview_request_id"))
                    return outcome
                plan = outcome
                entry = ledger.lookup([key]).get(key)
            if plan.unchanged and plan.code is None and entry is not None and entry.state == "created":
                self.log.info(
                    "request_key %s was created before (interview %s): not sent again.", key, entry.interview_request_id
                )
                return entry.as_interview()
            raise HindsightUnknownOutcomeError(
                f"request_key {key} was not sent: {plan.message or 'another run holds its claim'} If Hindsight has "
                f"no such interview, rerun with resend_unknown=True; if it has, record it as created in "
                f"{self.ledger_table}.",
            )
