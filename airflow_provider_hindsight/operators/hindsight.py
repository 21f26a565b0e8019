"""Operators that update Hindsight interview requests: one at a time, or a whole table at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, conf
from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

from airflow_provider_hindsight.exceptions import HindsightRateLimitError
from airflow_provider_hindsight.hooks.hindsight import DEFAULT_MAX_RETRY_WAIT, HindsightHook
from airflow_provider_hindsight.inputs import reject_rendered_python_literal, rows_from
from airflow_provider_hindsight.lineage import HindsightLineageMixin
from airflow_provider_hindsight.operators.bulk import BaseHindsightUpdateOperator
from airflow_provider_hindsight.resources.interviews import InterviewUpdate, build_interview_update

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

MAX_DEFERRALS = 5
"""How many times one task defers on long rate-limit waits before it fails for Airflow to retry."""


class HindsightUpdateInterviewOperator(HindsightLineageMixin, BaseOperator):
    """Update one interview request's ``contact_context``, ``contact_name`` and/or ``objective``.

    Every value may be a literal, a Jinja template or an XComArg from an upstream task; fields left
    ``None`` are not sent (the API leaves them unchanged). ``contact_context`` overwrites the
    contact's notes. Returns the API's answer, ``{"interview_request_id": ...}``.

    :param interview_request_id: the id returned by ``POST /interviews`` (int or a string of digits).
    :param contact_context: notes for Paige: prose (str) or structured (dict).
    :param contact_name: the contact's display name.
    :param objective: the goal of this interview.
    :param hindsight_conn_id: the ``hindsight`` connection.
    :param dry_run: validate and log the body that would be sent; send nothing.
    :param deferrable: when the API asks to wait longer than ``max_retry_wait``, free the worker
        slot and resume after the wait (default: Airflow's ``[operators] default_deferrable``).
    :param max_retry_wait: the longest wait slept in the worker between attempts.
    """

    template_fields: Sequence[str] = ("interview_request_id", "contact_context", "contact_name", "objective")
    template_fields_renderers = {"contact_context": "json"}
    ui_color = "#f4e3c4"

    def __init__(
        self,
        *,
        interview_request_id: int | str | Any,
        contact_context: str | Mapping[str, Any] | Any | None = None,
        contact_name: str | Any | None = None,
        objective: str | Any | None = None,
        hindsight_conn_id: str = HindsightHook.default_conn_name,
        dry_run: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.interview_request_id = interview_request_id
        self.contact_context = contact_context
        self.contact_name = contact_name
        self.objective = objective
        self.hindsight_conn_id = hindsight_conn_id
        self.is_dry_run = dry_run
        self.deferrable = deferrable
        self.max_retry_wait = max_retry_wait

    def execute(self, context: Context) -> dict[str, Any]:
        """Validate the rendered fields, then send the update (or log it, in a dry run)."""
        update = self._validated_update()
        if self.is_dry_run:
            self.log.info(
                "Dry run: would PATCH /interviews/%s with %s", update.interview_request_id, update.payload.decode()
            )
            return {"dry_run": True, "interview_request_id": update.interview_request_id, "body": update.body}
        return self._send(update, deferrals=0)

    def execute_complete(self, context: Context, event: Any = None, deferrals: int = 1) -> dict[str, Any]:
        """Resume after a deferred rate-limit wait and send the update again."""
        return self._send(self._validated_update(), deferrals=deferrals)

    def _validated_update(self) -> InterviewUpdate:
        reject_rendered_python_literal("contact_context", self.contact_context)
        return build_interview_update(
            self.interview_request_id,
            contact_context=self.contact_context,
            contact_name=self.contact_name,
            objective=self.objective,
        )

    @cached_property
    def hook(self) -> HindsightHook:
        """The hook for this task's connection (one request: the default pace slows nothing, so no hint about it)."""
        hook = HindsightHook(self.hindsight_conn_id, max_retry_wait=self.max_retry_wait)
        hook.warn_default_pace = False
        return hook

    def _send(self, update: InterviewUpdate, *, deferrals: int) -> dict[str, Any]:
        self.log.info("Updating interview %s: %s", update.interview_request_id, ", ".join(update.body))
        try:
            answer = self.hook.send_update(update)
            self.log.info("Updated interview %s.", update.interview_request_id)
            return answer
        except HindsightRateLimitError as error:
            wait_for = error.retry_after
            if self.deferrable and wait_for is not None and deferrals < MAX_DEFERRALS:
                self.log.info(
                    "Hindsight asked to wait %.0fs, longer than max_retry_wait (%.0fs): deferring.",
                    wait_for,
                    self.max_retry_wait,
                )
                self.defer(
                    trigger=TimeDeltaTrigger(timedelta(seconds=wait_for)),
                    method_name="execute_complete",
                    kwargs={"deferrals": deferrals + 1},
                )
            raise


class HindsightBulkUpdateInterviewsOperator(BaseHindsightUpdateOperator):
    """Update many interview requests in one task, at the plan's pace, reporting every row.

    ``updates`` is an iterable of mappings (a list, an XComArg, or a template rendering to one),
    each with ``interview_request_id`` and any of ``contact_context``, ``contact_name``,
    ``objective``. Returns (and pushes under the XCom key ``summary``)
    ``{"total", "succeeded", "failed", "failures": [...]}``.

    :param updates: the rows to send.
    """

    template_fields: Sequence[str] = ("updates", "full_refresh")
    ui_color = "#f4e3c4"

    def __init__(self, *, updates: Iterable[Mapping[str, Any]] | str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.updates = updates

    def execute(self, context: Context) -> dict[str, Any]:
        """Push every row of ``updates`` and return the summary."""
        with self.recorded(context, self.operation):
            rows = rows_from("updates", self.updates, single="HindsightUpdateInterviewOperator")
            with self.open_sync(context) as sync:
                return self.push_rows(rows, context, total=len(rows) if isinstance(rows, Sized) else None, sync=sync)
