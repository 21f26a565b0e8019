"""``HindsightInterviewSensor``: wait until interviews reach ``sent`` or ``completed``.

Deferrable (the default follows ``[operators] default_deferrable``): the task frees its worker slot
and :class:`~airflow_provider_hindsight.triggers.interview.HindsightInterviewTrigger` polls in the
triggerer. ``poke`` and ``reschedule`` modes poll through the sync hook. Either way each id is polled
on the polling plan (``poke_interval`` its shortest interval), at the connection's pace, and the task
returns ``{"<id>": "<status>", ...}``. In reschedule mode the watch (statuses, each id's polling
times, failures in a row) is kept between pokes by :class:`~airflow_provider_hindsight.sensors.memory.WatchMemory`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
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
from airflow_provider_hindsight.polling import DEFAULT_MAX_POLL_INTERVAL, DEFAULT_POLL_AGE_FACTOR
from airflow_provider_hindsight.resources.interviews import status_reached
from airflow_provider_hindsight.sensors.memory import WatchMemory
from airflow_provider_hindsight.times import iso
from airflow_provider_hindsight.triggers.interview import HindsightInterviewTrigger
from airflow_provider_hindsight.triggers.watch import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    MAX_WAIT_IDS,
    InterviewWatch,
    sensor_plan,
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
    :param poke_interval: the shortest time between two polls of one id (seconds, default 300): the
        interval of a young interview. See the docs' table of what polling costs.
    :param poll_age_factor: an id is polled again after this share of its age (default 0.1: a
        two-day-old interview every 4.8 hours), at least ``poke_interval``.
    :param max_poll_interval: the longest time between two polls of one id (default one day).
    :param timeout: seconds from the first try's start until the deadline (default 7 days).
    :param succeed_on_timeout: at the deadline, succeed and return the statuses seen so far (the ids
        short of the target named in the log) instead of failing with ``AirflowSensorTimeout``: most
        contacts never answer, so a campaign's sensor usually wants ``True``.
    :param max_consecutive_failures: failed rounds (pokes) in a row that fail the task retryably; a
        round fails when a poll fails transiently after the hook's retries, and the round's other due
        ids wait for the next one. Counted across reschedules too.

    Returns ``{"<id>": "<status>"}`` for every id polled. A 404 fails the task permanently naming the
    id; a 401/403 permanently naming the connection.
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
        poll_age_factor: float = DEFAULT_POLL_AGE_FACTOR,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
        succeed_on_timeout: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.interview_request_ids = interview_request_ids
        self.target_status = validate_target_status(target_status)
        self.hindsight_conn_id = hindsight_conn_id
        self.requests_per_minute = requests_per_minute
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self.plan = sensor_plan(poke_interval, poll_age_factor, max_poll_interval)
        self.succeed_on_timeout = succeed_on_timeout
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
            return self._execute_polling(context)
        deadline = self.deadline(context)
        remaining = deadline - time.time()
        if remaining <= 0:  # one look before giving up, as Airflow's sensors poke once before the timeout counts
            looked = self.poke(context)
            if looked.is_done:
                self.log.info("Every interview has reached %r.", self.target_status)
                return looked.xcom_value
            statuses = self._watch.statuses if self._watch is not None else {}
            return self.timed_out(statuses, f"The sensor's deadline ({iso(deadline)}) passed before it could defer")
        self.log.info(
            "Deferring: waiting for %d interviews to reach %r until %s.", len(ids), self.target_status, iso(deadline)
        )
        self.defer(
            trigger=self.trigger(ids, deadline),
            method_name="execute_complete",
            timeout=datetime.timedelta(seconds=remaining + DEFERRAL_GRACE_SECONDS),
        )

    def trigger(self, ids: list[int], deadline: float | None = None) -> HindsightInterviewTrigger:
        """The trigger that waits on ``ids`` in the triggerer; its watch is the one a poke uses too."""
        return HindsightInterviewTrigger(
            interview_request_ids=ids,
            target_status=self.target_status,
            hindsight_conn_id=self.hindsight_conn_id,
            poke_interval=self.plan.min_poll_interval,
            deadline=deadline,
            requests_per_minute=self.requests_per_minute,
            max_consecutive_failures=self.max_consecutive_failures,
            poll_age_factor=self.plan.poll_age_factor,
            max_poll_interval=self.plan.max_poll_interval,
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
            return self.timed_out(statuses)
        self.log.info("Last statuses: %s", statuses)
        raise error_from_event(event.get("error") or {})

    def timed_out(self, statuses: dict[str, str], why: str = "") -> dict[str, str]:
        """The deadline passed: the statuses seen (``succeed_on_timeout``), else ``AirflowSensorTimeout``.

        Either way the log names the ids short of the target and the last statuses, before the outcome.
        ``why`` defaults to the sensor's timeout.
        """
        why = why or f"The sensor timed out after {self.timeout:.0f}s"
        ids = self.ids()
        short = [key for key in ids if not status_reached(statuses.get(str(key)), self.target_status)]
        summary = f"{len(ids) - len(short)} of {len(ids)} interviews reached {self.target_status!r}"
        self.log.info("Last statuses: %s", statuses)
        if short:
            self.log.warning("Short of %r at the deadline: %s", self.target_status, ", ".join(map(str, short)))
        if self.succeed_on_timeout:
            self.log.info("%s: %s; succeeding with the statuses seen (succeed_on_timeout=True).", why, summary)
            return statuses
        raise AirflowSensorTimeout(f"{why}: {summary} (last statuses in the task log).")

    # -- poke and reschedule -----------------------------------------------------------------------

    def _execute_polling(self, context: Context) -> Any:
        """Airflow's own poke loop, with ``succeed_on_timeout`` and the reschedule-mode watch kept or forgotten."""
        memory = WatchMemory(context) if self.reschedule else None
        try:
            result = super().execute(context)
        except AirflowSensorTimeout:
            if memory is not None:
                memory.forget()
            statuses = self._watch.statuses if self._watch is not None else {}
            return self.timed_out(statuses)
        except (HindsightError, AirflowSkipException):  # an error or soft_fail ended it; a reschedule passes by
            if memory is not None:
                memory.forget()
            raise
        if memory is not None:
            memory.forget()
        return result

    def poke(self, context: Context) -> PokeReturnValue:
        """One round: poll the pending ids that are due through the sync hook; done when all reached the target.

        A transient failure (after the hook's retries) ends the round: the other due ids wait for the next poke.
        """
        memory = WatchMemory(context) if self.reschedule else None
        if self._watch is None:
            self._watch = self.trigger(self.ids()).new_watch()
            saved = memory.load() if memory is not None else None
            if saved is not None:
                self._watch.restore(saved)
        watch = self._watch
        due = watch.start_round(time.time())
        polled = 0
        for interview_request_id in due:
            if not watch.may_poll(time.time()):
                break
            try:
                outcome: dict[str, Any] | HindsightError = self.hook.get_interview(interview_request_id)
            except HindsightError as error:
                outcome = error
            polled += 1
            if (ending := watch.settle(interview_request_id, outcome, time.time())) is not None:
                raise error_from_event(ending) from None
        if (ending := watch.end_round(time.time())) is not None:
            raise error_from_event(ending) from None
        if watch.round_over:
            self.log.warning("%s", watch.round_note())
        if due:
            self.log.info("Polled %d of %d due interviews: %s.", polled, len(due), watch.progress())
        if memory is not None and not watch.done:
            memory.save(watch.to_json())
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
