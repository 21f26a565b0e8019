"""``HindsightInterviewTrigger``: wait in the triggerer until interviews reach a status, without a worker slot.

The trigger polls ``GET /interviews/{id}`` through
:class:`~airflow_provider_hindsight.hooks.hindsight_async.HindsightAsyncHook`: the same pace, retry
rule and error mapping as every other request, the pacer shared by every trigger of one connection
in the triggerer, ``Retry-After`` honoured, nothing blocking the event loop. Each id is polled on the
polling plan (:mod:`airflow_provider_hindsight.polling`), ``poke_interval`` being its shortest
interval, in rounds ``poke_interval`` apart: the ids due by a round are polled concurrently, as many
in flight as the connection's pace can use (:func:`polls_in_flight`), until a poll fails after the
hook's retries (the round ends there). It fires exactly one event, ids and statuses only (never a
transcript, never the key)::

    {"status": "success" | "timeout" | "error",
     "statuses": {"<id>": "<status>", ...},           # the last status seen of each id polled
     "error": None | {"interview_request_id", "status_code", "code", "message", "transient"}}

The bookkeeping (statuses, the plan, the rounds, failed rounds in a row) is
:class:`~airflow_provider_hindsight.triggers.watch.InterviewWatch`, which the sensor's poke uses too.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_hindsight.exceptions import HindsightError, HindsightValidationError
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.polling import DEFAULT_MAX_POLL_INTERVAL, DEFAULT_POLL_AGE_FACTOR
from airflow_provider_hindsight.times import iso, posix, utc_timestamp
from airflow_provider_hindsight.triggers.watch import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    InterviewWatch,
    sensor_plan,
    validate_ids,
    validate_target_status,
)

LATENCY_ALLOWANCE_SECONDS = 3.0
"""The slowest answer at which a round still runs at the full pace: polls in flight = pace x this."""
MAX_POLLS_IN_FLIGHT = 50
"""At most this many polls of one trigger at once, whatever the pace (under httpx's 100 connections)."""
DRAIN_SECONDS = 5.0
"""When an error ends the wait, how long the polls already in flight may take to add their statuses."""
Outcome = tuple[int, "dict[str, Any] | HindsightError"]


def polls_in_flight(requests_per_minute: float) -> int:
    """How many polls one trigger keeps in flight: enough for the pace at up to 3 s a request, at most 50.

    The pacer spaces the starts; this bound only keeps one trigger from reserving more than about
    :data:`LATENCY_ALLOWANCE_SECONDS` of the shared pace ahead of the other triggers of its connection.
    """
    wanted = math.ceil(requests_per_minute / 60 * LATENCY_ALLOWANCE_SECONDS)
    return max(1, min(MAX_POLLS_IN_FLIGHT, wanted))


def parse_deadline(value: object) -> float:
    """An absolute deadline as UTC epoch seconds: from a number, an aware ``datetime`` or ISO-8601 text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    moment = posix(utc_timestamp(value))
    if moment is None:
        raise HindsightValidationError(
            f"deadline must be UTC epoch seconds, an aware datetime or ISO-8601 text such as 2026-05-15T10:00:00Z, "
            f"got {value!r}.",
            field="deadline",
        )
    return moment


class HindsightInterviewTrigger(BaseTrigger):
    """Poll interviews until each has reached ``target_status``, or until ``deadline``; fire one event.

    :param interview_request_ids: the ids to wait for (1 to 500).
    :param target_status: ``"completed"`` (default) or ``"sent"``.
    :param hindsight_conn_id: the ``hindsight`` connection; its pace is shared by every trigger of it.
    :param poke_interval: the shortest time between two polls of one id (seconds).
    :param deadline: absolute time (UTC epoch seconds, an aware datetime or ISO-8601 text) at which a
        ``timeout`` event fires; a restarted triggerer keeps it.
    :param requests_per_minute: pace; wins over the connection's plan (the first trigger of a
        connection in a triggerer sets the shared pace).
    :param max_consecutive_failures: failed rounds in a row (a poll failed transiently after the
        hook's retries, ending its round) that end the wait with a retryable ``error`` event.
    :param poll_age_factor: an id is polled again after this share of its age (at least
        ``poke_interval``, at most ``max_poll_interval``).
    :param max_poll_interval: the longest time between two polls of one id (seconds).
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
        poll_age_factor: float = DEFAULT_POLL_AGE_FACTOR,
        max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL,
    ) -> None:
        super().__init__()
        self.interview_request_ids = validate_ids(interview_request_ids)
        self.target_status = validate_target_status(target_status)
        self.hindsight_conn_id = hindsight_conn_id
        self.plan = sensor_plan(poke_interval, poll_age_factor, max_poll_interval)
        self.deadline = math.inf if deadline is None else parse_deadline(deadline)
        self.requests_per_minute = requests_per_minute
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.clock: Callable[[], float] = time.time
        """Wall-clock seconds (the deadline and the interviews' ages are absolute); tests replace it."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the trigger waits between polls; tests replace it."""
        self._polls_settled = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Ids, the connection id, the target, the intervals, the deadline: JSON, no key, no transcript.

        Each id's age reference is not serialised: a trigger learns it from each id's first answer.
        """
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "interview_request_ids": list(self.interview_request_ids),
                "target_status": self.target_status,
                "hindsight_conn_id": self.hindsight_conn_id,
                "poke_interval": self.plan.min_poll_interval,
                "deadline": None if math.isinf(self.deadline) else self.deadline,
                "requests_per_minute": self.requests_per_minute,
                "max_consecutive_failures": self.max_consecutive_failures,
                "poll_age_factor": self.plan.poll_age_factor,
                "max_poll_interval": self.plan.max_poll_interval,
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
            plan=self.plan,
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
            "Waiting for %d interviews to reach %r with connection %r: each polled every %.0fs to %.0fs by its "
            "age, until %s.",
            len(watch.ids),
            self.target_status,
            self.hindsight_conn_id,
            self.plan.min_poll_interval,
            self.plan.max_poll_interval,
            "no deadline" if math.isinf(self.deadline) else iso(self.deadline),
        )
        while True:
            schedule = watch.schedule(self.clock())
            if not schedule.due:
                wake = schedule.next_due_at if schedule.next_due_at is not None else self.deadline
                if not await self._wait_until(wake):
                    self.log.info("Deadline reached: %s.", watch.progress())
                    return watch.event("timeout")
                continue
            ending = await self._round(hook, watch)
            if ending is not None:
                return ending
            if watch.done:
                self.log.info("Done: %s.", watch.progress())
                return watch.event("success")

    async def _round(self, hook: HindsightAsyncHook, watch: InterviewWatch) -> dict[str, Any] | None:
        """Poll the due ids, several at once, until a transient failure ends the round; the ending event or ``None``."""
        started = time.monotonic()
        due = watch.start_round(self.clock())
        polled = 0
        in_flight: set[asyncio.Task[Outcome]] = set()
        try:
            for interview_request_id in due:
                while len(in_flight) >= self._polls_in_flight(hook) and not watch.round_over:
                    if (ending := await self._settle(watch, in_flight)) is not None:
                        return await self._drained(watch, in_flight, ending)
                if watch.round_over:
                    break
                if not await self._wait_until(watch.resume_at):
                    self.log.info("Deadline reached: %s.", watch.progress())
                    return watch.event("timeout")
                in_flight.add(asyncio.create_task(self._poll(hook, interview_request_id)))
                polled += 1
            while in_flight and not watch.round_over:
                if (ending := await self._settle(watch, in_flight)) is not None:
                    return await self._drained(watch, in_flight, ending)
        finally:  # a round a transient failure ended: the polls still in flight are called off
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        if (ending := watch.end_round(self.clock())) is not None:
            self.log.warning("Stopped waiting: %s", ending["message"])
            return watch.event("error", ending)
        if watch.round_over:
            self.log.warning("%s", watch.round_note())
        seconds = time.monotonic() - started
        self.log.info("Polled %d of %d due interviews in %.1fs: %s.", polled, len(due), seconds, watch.progress())
        if seconds > self.plan.min_poll_interval:
            self.log.warning(
                "Polling %d interviews took %.0fs, longer than poke_interval (%.0fs), at the connection's pace of "
                "%.0f requests a minute: they are polled less often than planned. Raise poke_interval, or wait on "
                "fewer interviews per connection.",
                polled,
                seconds,
                self.plan.min_poll_interval,
                hook.pacer.effective_requests_per_minute,
            )
        return None

    def _polls_in_flight(self, hook: HindsightAsyncHook) -> int:
        """One until a first poll has come back (a refused key costs one request, not a round), then the pace's."""
        return polls_in_flight(hook.pacer.effective_requests_per_minute) if self._polls_settled else 1

    async def _poll(self, hook: HindsightAsyncHook, interview_request_id: int) -> Outcome:
        try:
            return interview_request_id, await hook.aget_interview(interview_request_id)
        except HindsightError as error:
            return interview_request_id, error

    async def _settle(self, watch: InterviewWatch, in_flight: set[asyncio.Task[Outcome]]) -> dict[str, Any] | None:
        """Wait for at least one poll in flight to finish and tell the watch; the error that ends the wait, if any."""
        finished, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        in_flight.difference_update(finished)
        self._polls_settled += len(finished)
        outcomes = sorted((task.result() for task in finished), key=lambda item: isinstance(item[1], HindsightError))
        for interview_request_id, outcome in outcomes:  # answers first: an error that ends the wait keeps them
            if (ending := watch.settle(interview_request_id, outcome, self.clock())) is not None:
                return ending
        return None

    async def _drained(
        self, watch: InterviewWatch, in_flight: set[asyncio.Task[Outcome]], ending: dict[str, Any]
    ) -> dict[str, Any]:
        """The ending event, with the statuses of the polls already in flight that answer within a few seconds."""
        finished, _ = await asyncio.wait(in_flight, timeout=DRAIN_SECONDS) if in_flight else (set(), set())
        in_flight.difference_update(finished)
        for interview_request_id, outcome in (task.result() for task in finished):
            if not isinstance(outcome, HindsightError):
                watch.settle(interview_request_id, outcome, self.clock())
        self.log.warning("Stopped waiting: %s", ending["message"])
        return watch.event("error", ending)

    async def _wait_until(self, moment: float) -> bool:
        """Sleep until ``moment`` (wall clock), cut short by the deadline; ``False`` once the deadline is reached."""
        while True:
            now = self.clock()
            if now >= self.deadline:
                return False
            if now >= moment:
                return True
            await self.sleep(min(moment, self.deadline) - now)
