"""``HindsightInterviewSensor``: wait until interviews reach ``sent`` or ``completed``.

Deferrable (the default follows ``[operators] default_deferrable``): the task frees its worker slot
and :class:`~airflow_provider_hindsight.triggers.interview.HindsightInterviewTrigger` polls in the
triggerer. ``poke`` and ``reschedule`` modes poll through the sync hook. Either way each id is polled
at most once per ``poke_interval``, at the connection's pace, and the task returns
``{"<id>": "<status>", ...}``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightError,
    HindsightNotFoundError,
    HindsightPermanentError,
    HindsightTransientError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.inputs import rendered_list
from airflow_provider_hindsight.resources.interviews import status_reached
from airflow_provider_hindsight.triggers.interview import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    MAX_WAIT_IDS,
    HindsightInterviewTrigger,
    InterviewWatch,
    validate_ids,
    validate_target_status,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

DEFAULT_TIMEOUT = 7 * 24 * 3600
DEFERRAL_GRACE_SECONDS = 600
"""How long past the deadline Airflow's own deferral timeout waits for the trigger's timeout event."""


class HindsightInterviewSensor(BaseSensorOperator):
    """Wait until every interview in ``interview_request_ids`` has reached ``target_status``.

    :param interview_request_ids: up to 500 ids: a list, an XComArg, or a template rendering a JSON
        list. Each is validated as for updates; repeats count once.
    :param target_status: ``"completed"`` (default: the contact finished, the transcript exists) or
        ``"sent"`` (Hindsight e-mailed the contact).
    :param hindsight_conn_id: the ``hindsight`` connection.
    :param requests_per_minute: pace; wins over the connection's plan.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between two polls of one id (default 300). 500 ids every 300 s
        take 100 requests a minute of the plan's limit: see the docs' table.
    :param timeout: seconds from the first try's start until the sensor fails with
        ``AirflowSensorTimeout`` (default 7 days).
    :param max_consecutive_failures: transient poll failures in a row (after the hook's retries)
        that fail the task retryably.

    Returns ``{"<id>": "<status>"}`` for every id. A 404 fails the task permanently naming the id; a
    401/403 permanently naming the connection.
    """

    template_fields: Sequence[str] = ("interview_request_ids",)
    ui_color = "#e8f0f4"

    def __init__(
        self,
        *,
        interview_request_ids: Any,
        target_status: str = "completed",
        hindsight_conn_id: str = HindsightHook.default_conn_name,
        requests_per_minute: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 300,
        timeout: float = DEFAULT_TIMEOUT,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.interview_request_ids = interview_request_ids
        self.target_status = validate_target_status(target_status)
        self.hindsight_conn_id = hindsight_conn_id
        self.requests_per_minute = requests_per_minute
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self._watch: InterviewWatch | None = None

    @cached_property
    def hook(self) -> HindsightHook:
        hook = HindsightHook(self.hindsight_conn_id, requests_per_minute=self.requests_per_minute)
        hook.warn_default_pace = False
        return hook

    def ids(self) -> list[int]:
        """The rendered ``interview_request_ids``, validated (templates render after ``__init__``)."""
        value = rendered_list("interview_request_ids", self.interview_request_ids, of="ids", example="[4821, 4822]")
        if isinstance(value, (int, bytes, dict)) or not hasattr(value, "__iter__"):
            raise HindsightValidationError(
                f"interview_request_ids must be a list of up to {MAX_WAIT_IDS} ids, got {type(value).__name__}. "
                "Wrap a single id in a list: [4821].",
                field="interview_request_ids",
            )
        return validate_ids(value)

    # -- deferrable --------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        ids = self.ids()
        if not self.deferrable:
            return super().execute(context)
        deadline = self.deadline(context)
        remaining = deadline - time.time()
        if remaining <= 0:
            raise AirflowSensorTimeout(f"The sensor's deadline ({_iso(deadline)}) passed before it could wait.")
        self.log.info(
            "Deferring: waiting for %d interviews to reach %r until %s.", len(ids), self.target_status, _iso(deadline)
        )
        self.defer(
            trigger=HindsightInterviewTrigger(
                interview_request_ids=ids,
                target_status=self.target_status,
                hindsight_conn_id=self.hindsight_conn_id,
                poke_interval=self.poke_interval,
                deadline=deadline,
                requests_per_minute=self.requests_per_minute,
                max_consecutive_failures=self.max_consecutive_failures,
            ),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=remaining + DEFERRAL_GRACE_SECONDS),
        )

    def deadline(self, context: Context) -> float:
        """The first try's start plus ``timeout``, as UTC epoch seconds (handed to the trigger as is).

        The start is the task instance's ``start_date`` (kept across deferrals and resumptions), or the
        first reschedule of the first try in reschedule mode, as Airflow's own sensors count it.
        """
        start: datetime.datetime | None = None
        ti = context.get("ti")
        first_reschedule = getattr(ti, "get_first_reschedule_date", None)
        if self.reschedule and callable(first_reschedule):
            start = first_reschedule(context)
        start = start or getattr(ti, "start_date", None)
        started = start.timestamp() if isinstance(start, datetime.datetime) else time.time()
        return started + float(self.timeout)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, str]:
        """Turn the trigger's one event into the task's outcome."""
        status = event.get("status")
        statuses = dict(event.get("statuses") or {})
        if status == "success":
            self.log.info("Every interview has reached %r.", self.target_status)
            return statuses
        if status == "timeout":
            reached = [key for key, value in statuses.items() if status_reached(value, self.target_status)]
            raise AirflowSensorTimeout(
                f"The sensor timed out after {self.timeout:.0f}s: {len(reached)} of "
                f"{len(self.ids())} interviews reached {self.target_status!r} (last statuses in the task log)."
            )
        self.log.info("Last statuses: %s", statuses)
        raise error_from_event(event.get("error") or {})

    # -- poke and reschedule -----------------------------------------------------------------------

    def poke(self, context: Context) -> PokeReturnValue:
        """Poll each pending id once through the sync hook; done when all reached the target."""
        if self._watch is None:
            self._watch = InterviewWatch(
                self.ids(),
                self.target_status,
                hindsight_conn_id=self.hindsight_conn_id,
                max_consecutive_failures=self.max_consecutive_failures,
            )
        watch = self._watch
        for interview_request_id in watch.pending:
            try:
                answer = self.hook.get_interview(interview_request_id)
            except HindsightError as error:
                ending = watch.failed(interview_request_id, error)
                if ending is not None:
                    raise error_from_event(ending) from None
                self.log.warning("Polling interview %d failed; trying it again later: %s", interview_request_id, error)
                continue
            watch.answered(interview_request_id, answer)
        self.log.info("%s.", watch.progress())
        return PokeReturnValue(is_done=watch.done, xcom_value=watch.statuses if watch.done else None)


def error_from_event(error: dict[str, Any]) -> HindsightError:
    """The typed error for an ``error`` event: retryable only when its cause was transient."""
    message = str(error.get("message") or "the wait ended with an error")
    fields = {"status_code": error.get("status_code"), "code": error.get("code")}
    if error.get("transient"):
        return HindsightTransientError(message, **fields)
    if error.get("status_code") == 404:
        return HindsightNotFoundError(message, **fields)
    if error.get("status_code") in (401, 403):
        return HindsightAuthError(message, **fields)
    return HindsightPermanentError(message, **fields)


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds")
