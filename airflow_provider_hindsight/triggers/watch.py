"""What one wait on interviews knows, shared by the trigger and the sensor's ``poke``: :class:`InterviewWatch`.

A watch holds each id's last status, when it started (its age reference, learnt from the first
answer: :func:`~airflow_provider_hindsight.polling.answer_started_at`) and when it was last polled,
and asks the polling plan (:mod:`airflow_provider_hindsight.polling`) which ids are due: each id is
polled often while it is young and rarely when it is old, ``poke_interval`` being its shortest
interval. Ids are polled in **rounds** (a sensor's poke; the trigger's wake-ups, on a grid of
``poke_interval`` from its first round): the ids due by a round are polled together. The watch
settles each poll's outcome (:meth:`InterviewWatch.settle`), says which failures end the wait, and
counts failed rounds in a row: a round that meets a transient failure (after the hook's retries)
ends there, and the rest of its ids wait for the next round. It does no I/O: the trigger and the
sensor poll, and tell it what came back. :meth:`InterviewWatch.to_json` and
:meth:`InterviewWatch.restore` carry it across a reschedule-mode sensor's pokes.
"""

from __future__ import annotations

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
    answer_started_at,
)
from airflow_provider_hindsight.resources.interviews import STATUSES, status_reached, validate_interview_request_id

TARGET_STATUSES: tuple[str, ...] = ("sent", "completed")
"""What a sensor can wait for: ``created`` is where every interview starts."""
MAX_WAIT_IDS = 500
"""Ids one sensor or trigger waits on: 500 ids serialise to about 4 KB in the metadata database."""
DEFAULT_MAX_CONSECUTIVE_FAILURES = 5
"""Rounds (pokes) in a row that met a transient failure (after the hook's own retries) before the wait gives up."""


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


class InterviewWatch:
    """What is known so far about the interviews one wait is on: statuses, polling states, failed rounds.

    A round: :meth:`start_round` gives the ids due now; :meth:`settle` takes each poll's outcome and
    returns the error that ends the wait (a 404 naming the id, a 401/403 naming the connection, any
    other permanent error), else ``None``; once :attr:`round_over` (a transient failure), poll no
    more of the round's ids; :meth:`end_round` counts a failed round and returns the error that ends
    the wait after ``max_consecutive_failures`` of them in a row.
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
        """Rounds in a row that met a transient failure; an answer resets it."""
        self.resume_at = -math.inf
        """No poll before this (wall clock): a ``Retry-After``, or the next round after a failed one."""
        self._first_round_at: float | None = None
        self._round_failure: tuple[int, HindsightError] | None = None

    @property
    def pending(self) -> list[int]:
        """The ids that have not reached the target yet, in the order given."""
        return list(self._states)

    @property
    def done(self) -> bool:
        return not self._states

    def schedule(self, now: float) -> Schedule[int]:
        """The pending ids due at ``now`` (never polled first, then the most overdue) and the next round's time.

        None is due before :attr:`resume_at`; ``next_due_at`` falls on the round grid, so the ids due
        by the same round are polled together.
        """
        at = max(now, self.resume_at)
        schedule = self.plan.due(self._states.values(), at)
        if at > now:  # waiting out resume_at: nothing is due yet
            next_due_at = at if schedule.due else schedule.next_due_at
            schedule = Schedule(not_due=[*schedule.due, *schedule.not_due], next_due_at=next_due_at)
        if schedule.next_due_at is None:
            return schedule
        return Schedule(schedule.due, schedule.not_due, next_due_at=self._round_at(schedule.next_due_at))

    def start_round(self, now: float) -> list[int]:
        """A round begins at ``now``: the ids to poll in it, in order (none before :attr:`resume_at`)."""
        if self._first_round_at is None:
            self._first_round_at = now
        self._round_failure = None
        return self.schedule(now).due

    @property
    def round_over(self) -> bool:
        """A transient failure ended this round: its other ids wait for the next one."""
        return self._round_failure is not None

    def may_poll(self, now: float) -> bool:
        """Whether the round may poll another id at ``now``: not over, and no ``Retry-After`` to wait out."""
        return not self.round_over and now >= self.resume_at

    def settle(
        self, interview_request_id: int, outcome: Mapping[str, Any] | HindsightError, now: float
    ) -> dict[str, Any] | None:
        """Take one poll's outcome (the answer, or the hook's error): the event's ``error`` when it ends the wait."""
        if isinstance(outcome, HindsightError):
            return self._failed(interview_request_id, outcome, now)
        status = outcome.get("status")
        self.consecutive_failures = 0
        self.statuses[str(interview_request_id)] = str(status)
        if status_reached(status, self.target_status):
            self._states.pop(interview_request_id, None)
        elif interview_request_id in self._states:
            self._states[interview_request_id] = PollState(interview_request_id, answer_started_at(outcome), now)
        return None

    def end_round(self, now: float) -> dict[str, Any] | None:
        """Close the round: a failed one counts, the next waits ``poke_interval``; the error that ends the wait."""
        if self._round_failure is None:
            return None
        interview_request_id, error = self._round_failure
        self.consecutive_failures += 1
        self.resume_at = max(self.resume_at, now + self.plan.min_poll_interval)
        if self.consecutive_failures < self.max_consecutive_failures:
            return None
        message = (
            f"{self.consecutive_failures} rounds of polls in a row failed after the hook's retries (last: interview "
            f"{interview_request_id}: {error.message}). The API or the network is down; Airflow's task retries apply."
        )
        return self.error(interview_request_id, error, message)

    def round_note(self) -> str:
        """The log line of a failed round: which poll failed, and how many rounds in a row."""
        if self._round_failure is None:
            return ""
        interview_request_id, error = self._round_failure
        return (
            f"Polling interview {interview_request_id} failed after the hook's retries ({self.consecutive_failures} of "
            f"{self.max_consecutive_failures} failed rounds in a row); the other due interviews wait for the next "
            f"round: {error}"
        )

    def _failed(self, interview_request_id: int, error: HindsightError, now: float) -> dict[str, Any] | None:
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
        if error.retry_after is not None:
            self.resume_at = max(self.resume_at, now + error.retry_after)
        if not isinstance(error, HindsightRateLimitError) and self._round_failure is None:
            self._round_failure = (interview_request_id, error)  # a 429 is the API up, asking us to wait
        return None

    def _round_at(self, moment: float) -> float:
        """The first round on the grid (``poke_interval`` apart from the first round) at or after ``moment``."""
        if self._first_round_at is None:
            return moment
        step = self.plan.min_poll_interval
        rounds = math.ceil((moment - self._first_round_at) / step)
        return max(moment, self._first_round_at + max(rounds, 0) * step)

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
        """What a later poke needs, as JSON (about 40 bytes an id): statuses, failed rounds, each pending id's times."""
        return {
            "statuses": dict(self.statuses),
            "consecutive_failures": self.consecutive_failures,
            "resume_at": None if math.isinf(self.resume_at) else self.resume_at,
            "pending": {str(key): [state.started_at, state.last_polled_at] for key, state in self._states.items()},
        }

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Take back what :meth:`to_json` saved for these ids (ids it does not know are ignored)."""
        self.statuses.update({key: str(value) for key, value in dict(saved.get("statuses") or {}).items()})
        self.consecutive_failures = int(saved.get("consecutive_failures") or 0)
        resume_at = _number(saved.get("resume_at"))
        self.resume_at = -math.inf if resume_at is None else resume_at
        pending = dict(saved.get("pending") or {})
        for key in list(self._states):
            times = pending.get(str(key))
            if times is None and status_reached(self.statuses.get(str(key)), self.target_status):
                del self._states[key]
            elif times is not None:
                self._states[key] = PollState(key, _number(times[0]), _number(times[1]))


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
