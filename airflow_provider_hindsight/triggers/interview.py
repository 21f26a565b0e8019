"""``HindsightInterviewTrigger``: wait in the triggerer until interviews reach a status, without a worker slot.

The trigger polls ``GET /interviews/{id}`` for each id through
:class:`~airflow_provider_hindsight.hooks.hindsight_async.HindsightAsyncHook`: the same pace, retry
rule and error mapping as every other request, the pacer shared by every trigger of one connection
in the triggerer, ``Retry-After`` honoured, nothing blocking the event loop. Each id is polled at
most once per ``poke_interval``. It fires exactly one event, ids and statuses only (never a
transcript, never the key)::

    {"status": "success" | "timeout" | "error",
     "statuses": {"<id>": "<status>", ...},           # the last status seen of each id polled
     "error": None | {"interview_request_id", "status_code", "code", "message", "transient"}}

:class:`InterviewWatch` is the bookkeeping both the trigger and the sensor's poke mode use: which
ids are still pending, the last status of each, and what a failed poll means.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightError,
    HindsightNotFoundError,
    HindsightRateLimitError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
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


def parse_deadline(value: object) -> float:
    """An absolute deadline as UTC epoch seconds: from a number, an aware ``datetime`` or ISO-8601 text."""
    if isinstance(value, bool):
        raise HindsightValidationError(f"deadline must be a time, got {value!r}.", field="deadline")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise HindsightValidationError(
                f"deadline must be UTC epoch seconds or ISO-8601 text such as 2026-05-15T10:00:00Z, got {value!r}.",
                field="deadline",
            ) from None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    raise HindsightValidationError(f"deadline must be a time, got {value!r}.", field="deadline")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise HindsightValidationError(f"{name} must be a positive number of seconds, got {value!r}.", field=name)
    return float(value)


class InterviewWatch:
    """What is known so far about the interviews one wait is on: statuses, pending ids, failures in a row.

    ``answered`` and ``failed`` take each poll's outcome; ``failed`` returns the error that ends the
    wait (a 404 naming the id, a 401/403 naming the connection, any other permanent error, or
    ``max_consecutive_failures`` transient failures in a row), else ``None``: the wait rides it out.
    """

    def __init__(
        self,
        ids: Iterable[int],
        target_status: str,
        *,
        hindsight_conn_id: str,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        self.ids = list(ids)
        self.target_status = target_status
        self.hindsight_conn_id = hindsight_conn_id
        self.max_consecutive_failures = max_consecutive_failures
        self.statuses: dict[str, str] = {}
        self._pending = dict.fromkeys(self.ids)
        self.consecutive_failures = 0

    @property
    def pending(self) -> list[int]:
        """The ids that have not reached the target yet, in the order given."""
        return list(self._pending)

    @property
    def done(self) -> bool:
        return not self._pending

    def answered(self, interview_request_id: int, answer: Mapping[str, Any]) -> None:
        status = answer.get("status")
        self.consecutive_failures = 0
        self.statuses[str(interview_request_id)] = str(status)
        if status_reached(status, self.target_status):
            self._pending.pop(interview_request_id, None)

    def failed(self, interview_request_id: int, error: HindsightError) -> dict[str, Any] | None:
        """The event's ``error`` when this failure ends the wait, else ``None`` (counted, ridden out)."""
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
        reached = len(self.ids) - len(self._pending)
        return f"{reached} of {len(self.ids)} interviews have reached {self.target_status!r}"


class HindsightInterviewTrigger(BaseTrigger):
    """Poll interviews until each has reached ``target_status``, or until ``deadline``; fire one event.

    :param interview_request_ids: the ids to wait for (1 to 500).
    :param target_status: ``"completed"`` (default) or ``"sent"``.
    :param hindsight_conn_id: the ``hindsight`` connection; its pace is shared by every trigger of it.
    :param poke_interval: seconds between two polls of one id (at least).
    :param deadline: absolute time (UTC epoch seconds, an aware datetime or ISO-8601 text) at which a
        ``timeout`` event fires; a restarted triggerer keeps it.
    :param requests_per_minute: pace; wins over the connection's plan (the first trigger of a
        connection in a triggerer sets the shared pace).
    :param max_consecutive_failures: transient poll failures in a row (after the hook's retries)
        that end the wait with a retryable ``error`` event.
    """

    def __init__(
        self,
        interview_request_ids: Iterable[int | str],
        target_status: str = "completed",
        hindsight_conn_id: str = HindsightAsyncHook.default_conn_name,
        poke_interval: float = 300.0,
        deadline: float | str | datetime.datetime | None = None,
        requests_per_minute: float | None = None,
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        super().__init__()
        self.interview_request_ids = validate_ids(interview_request_ids)
        self.target_status = validate_target_status(target_status)
        self.hindsight_conn_id = hindsight_conn_id
        self.poke_interval = _positive("poke_interval", poke_interval)
        self.deadline = math.inf if deadline is None else parse_deadline(deadline)
        self.requests_per_minute = requests_per_minute
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.clock: Callable[[], float] = time.time
        """Wall-clock seconds (the deadline is absolute); tests replace it."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the trigger waits between polls; tests replace it."""

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Ids, the connection id, the target, the interval, the deadline: JSON, no key, no transcript."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "interview_request_ids": list(self.interview_request_ids),
                "target_status": self.target_status,
                "hindsight_conn_id": self.hindsight_conn_id,
                "poke_interval": self.poke_interval,
                "deadline": None if math.isinf(self.deadline) else self.deadline,
                "requests_per_minute": self.requests_per_minute,
                "max_consecutive_failures": self.max_consecutive_failures,
            },
        )

    def make_hook(self) -> HindsightAsyncHook:
        """The async hook this trigger polls through (tests give it an ``httpx.MockTransport``)."""
        return HindsightAsyncHook(self.hindsight_conn_id, requests_per_minute=self.requests_per_minute)

    def new_watch(self) -> InterviewWatch:
        return InterviewWatch(
            self.interview_request_ids,
            self.target_status,
            hindsight_conn_id=self.hindsight_conn_id,
            max_consecutive_failures=self.max_consecutive_failures,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until done, the deadline, or an error that ends the wait; yield exactly one event."""
        watch = self.new_watch()
        hook = self.make_hook()
        try:
            event = await self._wait(hook, watch)
        finally:
            await hook.aclose()
        yield TriggerEvent(event)

    async def _wait(self, hook: HindsightAsyncHook, watch: InterviewWatch) -> dict[str, Any]:
        try:
            await hook.asettings()  # a missing or malformed connection ends the wait at once
        except HindsightError as error:
            return watch.event("error", watch.error(None, error, error.message))
        self.log.info(
            "Waiting for %d interviews to reach %r with connection %r: each polled every %.0fs at most, until %s.",
            len(watch.ids),
            self.target_status,
            self.hindsight_conn_id,
            self.poke_interval,
            "no deadline" if math.isinf(self.deadline) else _iso(self.deadline),
        )
        last_poll: dict[int, float] = {}
        while True:
            for interview_request_id in watch.pending:
                due = last_poll.get(interview_request_id, -math.inf) + self.poke_interval
                if not await self._wait_until(due):
                    self.log.info("Deadline reached: %s.", watch.progress())
                    return watch.event("timeout")
                try:
                    answer = await hook.aget_interview(interview_request_id)
                except HindsightError as error:
                    last_poll[interview_request_id] = self.clock()
                    ending = watch.failed(interview_request_id, error)
                    if ending is not None:
                        self.log.warning("Stopped waiting: %s", ending["message"])
                        return watch.event("error", ending)
                    self.log.warning(
                        "Polling interview %d failed; trying it again later: %s", interview_request_id, error
                    )
                    if error.retry_after is not None and not await self._wait_until(self.clock() + error.retry_after):
                        return watch.event("timeout")
                    continue
                last_poll[interview_request_id] = self.clock()
                watch.answered(interview_request_id, answer)
                if watch.done:
                    self.log.info("Done: %s.", watch.progress())
                    return watch.event("success")
            self.log.info("Polled every pending interview: %s.", watch.progress())

    async def _wait_until(self, moment: float) -> bool:
        """Sleep until ``moment`` (wall clock), cut short by the deadline; ``False`` once the deadline is reached."""
        while True:
            now = self.clock()
            if now >= self.deadline:
                return False
            if now >= moment:
                return True
            await self.sleep(min(moment, self.deadline) - now)


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds")
