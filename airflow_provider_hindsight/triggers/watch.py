"""What one wait on interviews knows, shared by the trigger and the sensor's ``poke``: :class:`InterviewWatch`.

A watch holds each id's last status, when it started (its age reference, learnt from the first
answer: ``email_sent_at``, else ``created_at``) and when it was last polled, and asks the polling
plan (:mod:`airflow_provider_hindsight.polling`) which ids are due: each id is polled often while it
is young and rarely when it is old, ``poke_interval`` being its shortest interval. It also counts
transient failures in a row and says which failures end the wait. It does no I/O: the trigger and
the sensor poll, and tell it what came back. :meth:`InterviewWatch.to_json` and
:meth:`InterviewWatch.from_json` carry it across a reschedule-mode sensor's pokes.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightError,
    HindsightNotFoundError,
    HindsightRateLimitError,
    HindsightValidationError,
)
from airflow_provider_hindsight.polling import (
    PollingPlan,
    PollingPlanError,
    PollState,
    Schedule,
)
from airflow_provider_hindsight.resources.interviews import STATUSES, status_reached, validate_interview_request_id

TARGET_STATUSES: tuple[str, ...] = ("sent", "completed")
"""What a sensor can wait for: ``created`` is where every interview starts."""
MAX_WAIT_IDS = 500
"""Ids one sensor or trigger waits on: 500 ids serialise to about 4 KB in the metadata database."""
DEFAULT_MAX_CONSECUTIVE_FAILURES = 5
"""Polls in a row that failed transiently (after the hook's own retries) before the wait gives up."""


def validate_target_status(value: object) -> str:
    """``"sent"`` or ``"completed"``, or an error naming ``target_status``."""
    if isinstance(value, str) and value in TARGET_STATUSES:
        return value
    raise HindsightValidationError(
        f"target_status must be one of {', '.join(TARGET_STATUSES)} (statuses go {' < '.join(STATUSES)}), "
        f"got {value!r}.",
        field="target_status",
    )


def validate_ids(values: Iterable[object], *, field: str = "interview_request_ids") -> list[int]:
    """Each id validated as for updates, repeats dropped (order kept); 1 to :data:`MAX_WAIT_IDS` of them."""
    ids = list(dict.fromkeys(validate_interview_request_id(value) for value in values))
    if not ids:
        raise HindsightValidationError(f"{field} is empty: give at least one interview id to wait for.", field=field)
    if len(ids) > MAX_WAIT_IDS:
        raise HindsightValidationError(
            f"{field} has {len(ids):,} ids, over the {MAX_WAIT_IDS} one sensor waits on. Split them over several "
            "sensors (a mapped sensor: .expand(interview_request_ids=chunks)), or land them on a schedule with "
            "HindsightInterviewsToSqlOperator.",
            field=field,
        )
    return ids


def sensor_plan(poke_interval: object, poll_age_factor: object, max_poll_interval: object) -> PollingPlan:
    """The polling plan of a sensor or trigger: ``poke_interval`` is the shortest interval; it never stops.

    A bad value is a :class:`HindsightValidationError` naming the parameter.
    """
    try:
        return PollingPlan(
            poll_age_factor=poll_age_factor,  # type: ignore[arg-type]
            min_poll_interval=poke_interval,  # type: ignore[arg-type]
            max_poll_interval=max_poll_interval,  # type: ignore[arg-type]
            stop_polling_after=None,  # the sensor's own timeout bounds its wait
        )
    except PollingPlanError as error:
        field = "poke_interval" if error.field == "min_poll_interval" else error.field
        message = str(error).replace("min_poll_interval", "poke_interval")
        raise HindsightValidationError(message, field=field) from None


def started_at(answer: Mapping[str, Any]) -> float | None:
    """An interview's age reference from its ``GET`` answer: ``email_sent_at``, else ``created_at`` (epoch)."""
    for name in ("email_sent_at", "created_at"):
        value = answer.get(name)
        if isinstance(value, str) and value:
            try:
                moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.timezone.utc)
            return moment.timestamp()
    return None


class InterviewWatch:
    """What is known so far about the interviews one wait is on: statuses, polling states, failures in a row.

    :meth:`schedule` says which pending ids are due now; :meth:`answered` and :meth:`failed` take each
    poll's outcome. ``failed`` returns the error that ends the wait (a 404 naming the id, a 401/403
    naming the connection, any other permanent error, or ``max_consecutive_failures`` transient
    failures in a row), else ``None``: the wait rides it out, and the id waits its interval.
    """

    def __init__(
        self,
        ids: Iterable[int],
        target_status: str,
        *,
        hindsight_conn_id: str,
        plan: PollingPlan,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        self.ids = list(ids)
        self.target_status = target_status
        self.hindsight_conn_id = hindsight_conn_id
        self.plan = plan
        self.max_consecutive_failures = max_consecutive_failures
        self.statuses: dict[str, str] = {}
        self._states: dict[int, PollState[int]] = {key: PollState(key) for key in self.ids}
        """The ids not at the target yet, in the order given, with their age reference and last poll."""
        self.consecutive_failures = 0

    @property
    def pending(self) -> list[int]:
        """The ids that have not reached the target yet, in the order given."""
        return list(self._states)

    @property
    def done(self) -> bool:
        return not self._states

    def schedule(self, now: float) -> Schedule[int]:
        """The pending ids due at ``now`` (never polled first, then the most overdue) and the next wake-up."""
        return self.plan.due(self._states.values(), now)

    def answered(self, interview_request_id: int, answer: Mapping[str, Any], now: float) -> None:
        status = answer.get("status")
        self.consecutive_failures = 0
        self.statuses[str(interview_request_id)] = str(status)
        if status_reached(status, self.target_status):
            self._states.pop(interview_request_id, None)
        elif interview_request_id in self._states:
            self._states[interview_request_id] = PollState(interview_request_id, started_at(answer), now)

    def failed(self, interview_request_id: int, error: HindsightError, now: float) -> dict[str, Any] | None:
        """The event's ``error`` when this failure ends the wait, else ``None`` (counted, ridden out)."""
        state = self._states.get(interview_request_id)
        if state is not None:
            self._states[interview_request_id] = PollState(interview_request_id, state.started_at, now)
        if isinstance(error, HindsightNotFoundError):
            message = (
                f"interview {interview_request_id} was not found (HTTP 404) with connection "
                f"{self.hindsight_conn_id!r}: it does not exist or belongs to another organisation. Check the id "
                "is one POST /interviews returned, and remove it from interview_request_ids."
            )
            return self.error(interview_request_id, error, message)
        if isinstance(error, HindsightAuthError):
            message = (
                f"the API refused the key of connection {self.hindsight_conn_id!r} (HTTP {error.status_code}) for "
                "every interview. Check the API key in the connection's API key (Password) field."
            )
            return self.error(interview_request_id, error, message)
        if not error.transient:
            return self.error(interview_request_id, error, f"interview {interview_request_id}: {error.message}")
        if isinstance(error, HindsightRateLimitError):
            return None  # the API is up and asked us to wait: not a failure
        self.consecutive_failures += 1
        if self.consecutive_failures < self.max_consecutive_failures:
            return None
        message = (
            f"{self.consecutive_failures} polls in a row failed after their retries (last: interview "
            f"{interview_request_id}: {error.message}). The API or the network is down; Airflow's task retries apply."
        )
        return self.error(interview_request_id, error, message)

    @staticmethod
    def error(interview_request_id: int | None, error: HindsightError, message: str) -> dict[str, Any]:
        return {
            "interview_request_id": interview_request_id,
            "status_code": error.status_code,
            "code": error.code,
            "message": message,
            "transient": error.transient,
        }

    def event(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"status": status, "statuses": dict(self.statuses), "error": error}

    def progress(self) -> str:
        reached = len(self.ids) - len(self._states)
        return f"{reached} of {len(self.ids)} interviews have reached {self.target_status!r}"

    def to_json(self) -> dict[str, Any]:
        """What a later poke needs, as JSON (about 40 bytes an id): statuses, failures, each pending id's times."""
        return {
            "statuses": dict(self.statuses),
            "consecutive_failures": self.consecutive_failures,
            "pending": {str(key): [state.started_at, state.last_polled_at] for key, state in self._states.items()},
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Take back what :meth:`to_json` saved for these ids (ids it does not know are ignored)."""
        self.statuses.update({key: str(value) for key, value in dict(saved.get("statuses") or {}).items()})
        self.consecutive_failures = int(saved.get("consecutive_failures") or 0)
        pending = dict(saved.get("pending") or {})
        for key in list(self._states):
            times = pending.get(str(key))
            if times is None and status_reached(self.statuses.get(str(key)), self.target_status):
                del self._states[key]
            elif times is not None:
                self._states[key] = PollState(key, _number(times[0]), _number(times[1]))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
