"""``HindsightAnswersTrigger`` (Airflow 3): land answers in the triggerer and announce them as asset events.

Used in an ``AssetWatcher``: it watches what the landing would land (``ids_sql``, or the interview
ledger's ``created`` rows), less the rows completed or stopped in the table; it fetches the ids due
on the polling plan through the async hook (the connection's pace and shared budget, several in
flight as :mod:`.interview` does) and upserts each answer with the landing's own row
(:meth:`~airflow_provider_hindsight.ledgers.transcripts.TranscriptTable.fetched_row`). Then it
announces the rows that turned ``completed`` (whoever landed them: :mod:`.announcements`), one
event per batch ``batch_window`` after the batch's first completion, at most 1,000 ids an event::

    {"interview_request_ids": [...], "count": n, "table": "<table>"}

It never ends: a transient error is a WARNING and a back-off (``Retry-After`` honoured); a refused
key or a table or ledger it cannot use is one ERROR with the fix, then a new try every 15 minutes.
All SQL runs on one thread beside the event loop. On Airflow 2 importing this module raises an
``ImportError``: land answers on a schedule with ``HindsightInterviewsToSqlOperator`` there.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

try:
    from airflow.triggers.base import BaseEventTrigger, TriggerEvent
except ImportError:  # Airflow 2
    raise ImportError(
        "HindsightAnswersTrigger needs Airflow 3.0 or later (asset watchers, BaseEventTrigger). On Airflow 2, land "
        "answers on a schedule with airflow_provider_hindsight.transfers.hindsight_to_sql."
        "HindsightInterviewsToSqlOperator and schedule the DAGs that read them on its table's dataset."
    ) from None

from airflow_provider_hindsight.exceptions import HindsightError, HindsightNotFoundError
from airflow_provider_hindsight.history import HistoryRecorder
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.ledgers.announcements import MAX_IDS_PER_EVENT, Announcements
from airflow_provider_hindsight.ledgers.history import RunEnd
from airflow_provider_hindsight.ledgers.interviews import DEFAULT_INTERVIEW_TABLE
from airflow_provider_hindsight.ledgers.transcripts import (
    DEFAULT_TRANSCRIPTS_TABLE,
    TranscriptTable,
    poll_state,
    polls_so_far,
)
from airflow_provider_hindsight.ledgers.watched_ids import (
    ids_query,
    landing_arguments,
    polling_arguments,
    run_ids_query,
)
from airflow_provider_hindsight.polling import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFAULT_POLL_AGE_FACTOR,
    DEFAULT_STOP_POLLING_AFTER,
    PollState,
    answer_started_at,
    seconds,
)
from airflow_provider_hindsight.sql_connection.faults import classify_database_error, driver_message
from airflow_provider_hindsight.sql_connection.session import SessionThread
from airflow_provider_hindsight.triggers.interview import polls_in_flight

DEFAULT_BATCH_WINDOW = 60.0
DEFAULT_REFRESH_INTERVAL = 300.0
DEFAULT_ANSWERS_MIN_POLL_INTERVAL = 300.0
PERMANENT_RETRY_SECONDS = 900.0
"""After a refused key, or a table or ledger it cannot use: a new try at most this often (a fix needs no redeploy)."""
FIRST_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0
"""Transient errors in a row back off from 5 s, doubling, to at most this (or the ``Retry-After``)."""
LAND_BATCH = 100
"""Answers upserted together (one transaction) while a round fetches."""
HANDOFF_SECONDS = 5.0
"""Between handing an event to Airflow and marking its rows: the triggerer stores it meanwhile, so a crash in
that window repeats the batch rather than losing it."""
T = TypeVar("T")


@dataclass
class Watched:
    """The ids being watched: each one's polling state and fetches so far."""

    states: dict[int, PollState[int]] = field(default_factory=dict)
    polls: dict[int, int] = field(default_factory=dict)

    def fetched(self, key: int, answer: Mapping[str, Any], now: float) -> None:
        if answer.get("status") == "completed":
            self.drop(key)
        else:
            self.states[key] = PollState(key, answer_started_at(answer), now)
            self.polls[key] = self.polls.get(key, 0) + 1

    def drop(self, key: int) -> None:
        self.states.pop(key, None)
        self.polls.pop(key, None)


class HindsightAnswersTrigger(BaseEventTrigger):
    """Land answers as the landing does, and announce newly completed rows as asset events; never ends.

    :param sql_conn_id: the Airflow SQL connection of the warehouse (write access), as for the landing.
    :param table: the landing table, created on first use; it gains ``announced_at``.
    :param ids_sql: a query on ``sql_conn_id`` returning ``interview_request_id``; default: the
        ``created`` rows of ``ledger_table``.
    :param ledger_table: the interview ledger the create operators write.
    :param hindsight_conn_id: the ``hindsight`` connection; its pace and budget are shared.
    :param poll_age_factor, min_poll_interval, max_poll_interval, stop_polling_after: the polling
        plan, as for the landing (``min_poll_interval`` defaults to 5 minutes here).
    :param batch_window: seconds from a batch's first completion to its event.
    :param refresh_interval: seconds between two reads of the ids to watch.
    :param requests_per_minute: pace; wins over the connection's plan.
    """

    def __init__(
        self,
        *,
        sql_conn_id: str,
        table: str = DEFAULT_TRANSCRIPTS_TABLE,
        ids_sql: str | None = None,
        ledger_table: str = DEFAULT_INTERVIEW_TABLE,
        hindsight_conn_id: str = HindsightAsyncHook.default_conn_name,
        poll_age_factor: float = DEFAULT_POLL_AGE_FACTOR,
        min_poll_interval: float | datetime.timedelta = DEFAULT_ANSWERS_MIN_POLL_INTERVAL,
        max_poll_interval: float | datetime.timedelta = DEFAULT_MAX_POLL_INTERVAL,
        stop_polling_after: float | datetime.timedelta | None = DEFAULT_STOP_POLLING_AFTER,
        batch_window: float | datetime.timedelta = DEFAULT_BATCH_WINDOW,
        refresh_interval: float | datetime.timedelta = DEFAULT_REFRESH_INTERVAL,
        requests_per_minute: float | None = None,
    ) -> None:
        super().__init__()
        self.sql_conn_id, self.table, self.ledger_table, self.plan = landing_arguments(
            sql_conn_id=sql_conn_id,
            table=table,
            ledger_table=ledger_table,
            poll_age_factor=poll_age_factor,
            min_poll_interval=min_poll_interval,
            max_poll_interval=max_poll_interval,
            stop_polling_after=stop_polling_after,
        )
        self.ids_sql = ids_sql
        ids_query(ids_sql, self.ledger_table)  # a bad ids_sql fails at parse time, before the triggerer
        self.hindsight_conn_id = hindsight_conn_id
        with polling_arguments():
            self.batch_window = seconds(batch_window, name="batch_window")
            self.refresh_interval = seconds(refresh_interval, name="refresh_interval")
        self.requests_per_minute = requests_per_minute
        self.clock: Callable[[], float] = time.time
        """Wall-clock seconds (the plan's ages are absolute); tests and the benchmark replace it."""
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the trigger waits; tests and the benchmark replace it."""
        self._session = SessionThread(f"hindsight-answers-{self.table}")
        self._store: TranscriptTable | None = None
        self._history: HistoryRecorder | None = None
        """The connection's run history (``history_conn_id``): a row per event."""
        self._counted = (0, 0)
        """The hook's requests and 429s already recorded with an event."""
        self._announcements: Announcements | None = None
        self._fetched = 0
        self._first_round_at: float | None = None
        self._next_round_at = -math.inf

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Connection ids, table names, the query, the plan: a few hundred bytes, no key, no personal data."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sql_conn_id": self.sql_conn_id,
                "table": self.table,
                "ids_sql": self.ids_sql,
                "ledger_table": self.ledger_table,
                "hindsight_conn_id": self.hindsight_conn_id,
                "poll_age_factor": self.plan.poll_age_factor,
                "min_poll_interval": self.plan.min_poll_interval,
                "max_poll_interval": self.plan.max_poll_interval,
                "stop_polling_after": self.plan.stop_polling_after,
                "batch_window": self.batch_window,
                "refresh_interval": self.refresh_interval,
                "requests_per_minute": self.requests_per_minute,
            },
        )

    def make_hook(self) -> HindsightAsyncHook:
        """The async hook it fetches through (tests give it an ``httpx.MockTransport``)."""
        return HindsightAsyncHook(self.hindsight_conn_id, requests_per_minute=self.requests_per_minute)

    # -- the loop -----------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Watch, land and announce until cancelled; see the module's docstring."""
        hook: HindsightAsyncHook | None = None
        watched = Watched()
        refresh_at = -math.inf
        batch_started_at: float | None = None
        transient_in_a_row = 0
        last_error = ""
        try:
            while True:
                try:
                    now = self.clock()
                    if hook is None:
                        hook = self.make_hook()
                        settings = await hook.asettings()
                        self._counted = (0, 0)
                        if self._history is None:
                            self._history = HistoryRecorder.of(settings)
                    if self._store is None:
                        await self._sql(self._open)
                        self.log.info(
                            "Watching for answers with connection %r into %s on %r: fetched every %.0fs to %.0fs by "
                            "age, announced %.0fs after the first of a batch.",
                            self.hindsight_conn_id,
                            self.table,
                            self.sql_conn_id,
                            self.plan.min_poll_interval,
                            self.plan.max_poll_interval,
                            self.batch_window,
                        )
                    if now >= refresh_at:
                        watched = await self._sql(self._watched)
                        refresh_at = now + self.refresh_interval
                    pending = await self._sql(self._unannounced)
                    if pending and batch_started_at is None:
                        batch_started_at = now
                    if pending and batch_started_at is not None and now >= batch_started_at + self.batch_window:
                        yield self._event(pending, hook)
                        await self.sleep(HANDOFF_SECONDS)
                        await self._sql(self._mark, pending)
                        batch_started_at = batch_started_at if len(pending) >= MAX_IDS_PER_EVENT else None
                        continue
                    if now >= self._next_round_at:  # rounds on a grid, as the sensor's trigger and a landing run
                        self._first_round_at = now if self._first_round_at is None else self._first_round_at
                        await self._fetch_due(hook, watched)
                        self._next_round_at = self._round_at(now + 1e-6)
                        continue  # the round's answers start their batch's window now, not at the next read
                    transient_in_a_row, last_error = 0, ""
                    wake = self._wake_at(watched, refresh_at, batch_started_at)
                except Exception as caught:
                    await self._sql(self._close_store)  # opened again on the next try: a lost connection, a fix
                    refresh_at = -math.inf  # and the ids read again: what a failed write did not land is watched
                    message, transient, retry_after = self._described(caught)
                    if transient:
                        transient_in_a_row += 1
                        pause = min(FIRST_BACKOFF_SECONDS * 2 ** (transient_in_a_row - 1), MAX_BACKOFF_SECONDS)
                        pause = max(pause, retry_after or 0.0)
                        self.log.warning("Watching for answers: %s; trying again in %.0fs.", message, pause)
                    else:  # the next try reads the connection again: a fixed key needs no redeploy
                        if hook is not None:
                            await hook.aclose()
                        hook = None
                        pause = PERMANENT_RETRY_SECONDS
                        if message != last_error:
                            self.log.error(
                                "Watching for answers stopped: %s Trying again every %.0f minutes.", message, pause / 60
                            )
                        last_error = message
                    wake = self.clock() + pause
                await self._sleep_until(wake)
        finally:
            if hook is not None:
                await hook.aclose()
            await asyncio.to_thread(self._shut_down)

    def _described(self, error: Exception) -> tuple[str, bool, float | None]:
        """An error as (message, transient, Retry-After): the provider's own, or a database driver's."""
        if isinstance(error, HindsightError):
            return error.message, error.transient, error.retry_after
        fault = classify_database_error(error)
        transient = fault is not None and fault.transient
        where = f"the transcripts table {self.table} or the ids query on {self.sql_conn_id!r}"
        fix = "" if transient else " Fix: check ids_sql and the table on that connection."
        return f"{where}: {type(error).__name__}: {driver_message(error)}.{fix}", transient, None

    def _event(self, ids: list[int], hook: HindsightAsyncHook | None) -> TriggerEvent:
        """The one place an event is announced; with ``history_conn_id`` it is a run of the history (``watch``),
        with the requests and 429s since the last event, written on the recorder's thread."""
        self.log.info("Announcing %d newly completed interviews in %s.", len(ids), self.table)
        if self._history is not None and hook is not None:
            requests, answered_429 = hook.request_count, hook.rate_limited_count
            end = RunEnd(
                "succeeded",
                {"total": len(ids), "newly_completed": len(ids)},
                requests=requests - self._counted[0],
                answered_429=answered_429 - self._counted[1],
            )
            self._counted = (requests, answered_429)
            self._history.record_event("watch", end)
        return TriggerEvent({"interview_request_ids": ids, "count": len(ids), "table": self.table})

    def _wake_at(self, watched: Watched, refresh_at: float, batch_started_at: float | None) -> float:
        now = self.clock()
        moments = [refresh_at, now + min(self.batch_window, self.refresh_interval)]
        if batch_started_at is not None:
            moments.append(batch_started_at + self.batch_window)
        next_due_at = self.plan.due(watched.states.values(), now).next_due_at
        if next_due_at is not None:
            moments.append(max(self._round_at(next_due_at), self._next_round_at))
        return min(moments)

    def _round_at(self, moment: float) -> float:
        """The first round at or after ``moment`` on the grid of ``min_poll_interval`` from the first round: the
        ids due by a round are fetched together, as a landing run every ``min_poll_interval`` would."""
        if self._first_round_at is None:
            return moment
        step = self.plan.min_poll_interval
        return self._first_round_at + max(math.ceil((moment - self._first_round_at) / step), 0) * step

    async def _sleep_until(self, moment: float) -> None:
        while (left := moment - self.clock()) > 0:
            await self.sleep(left)

    # -- fetching -----------------------------------------------------------------------------------

    async def _fetch_due(self, hook: HindsightAsyncHook, watched: Watched) -> None:
        """Fetch the due ids, several at once at the connection's pace, and land each batch that comes back.

        A transient failure (after the hook's retries) or a refused key ends the round and is raised; a
        404 is one WARNING, and the id is fetched again on the plan.
        """
        schedule = self.plan.due(watched.states.values(), self.clock())
        if schedule.stopped:
            await self._sql(self._stopped, schedule.stopped)
            for key in schedule.stopped:
                watched.drop(key)
        due = iter(schedule.due)
        in_flight: set[asyncio.Task[tuple[int, dict[str, Any] | HindsightError]]] = set()
        answers: list[tuple[dict[str, Any], int, float]] = []
        failure: HindsightError | None = None
        try:
            while failure is None:
                limit = polls_in_flight(hook.pacer.effective_requests_per_minute) if self._fetched else 1
                while len(in_flight) < limit and (next_key := next(due, None)) is not None:
                    in_flight.add(asyncio.create_task(self._fetch(hook, next_key)))
                if not in_flight:
                    break
                finished, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                self._fetched += len(finished)
                for task in finished:
                    key, outcome = task.result()
                    if isinstance(outcome, HindsightNotFoundError):
                        watched.states[key] = PollState(key, watched.states[key].started_at, self.clock())
                        self.log.warning(
                            "Interview %d was not found (HTTP 404) with connection %r; fetched again on the plan. "
                            "Remove it from what ids_sql returns.",
                            key,
                            self.hindsight_conn_id,
                        )
                    elif isinstance(outcome, HindsightError):
                        failure = failure or outcome
                    else:
                        now = self.clock()
                        answers.append((outcome, watched.polls.get(key, 0) + 1, now))
                        watched.fetched(key, outcome, now)
                if len(answers) >= LAND_BATCH:
                    await self._sql(self._land, answers)
                    answers = []
        finally:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            if answers:  # what was fetched is kept, even when the round failed
                await self._sql(self._land, answers)
        if failure is not None:
            raise failure

    @staticmethod
    async def _fetch(hook: HindsightAsyncHook, key: int) -> tuple[int, dict[str, Any] | HindsightError]:
        try:
            return key, await hook.aget_interview(key)
        except HindsightError as error:
            return key, error

    # -- SQL, on the session thread -----------------------------------------------------------------

    async def _sql(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)`` on the trigger's one SQL thread, awaited: the event loop never blocks on the database."""
        return await asyncio.wrap_future(self._session.submit(call, *args))

    def _open(self) -> None:
        store = TranscriptTable(sql_conn_id=self.sql_conn_id, table=self.table)
        store.prepare(create=True)
        announcements = Announcements(store)
        if announcements.prepare():
            self.log.info(
                "Added the column announced_at to %s on %r; its completed rows count as announced.",
                self.table,
                self.sql_conn_id,
            )
        self._store, self._announcements = store, announcements

    def _watched(self) -> Watched:
        """The ids to watch: what the landing would land, less the rows completed or stopped."""
        store = self._require_store()
        sql = ids_query(self.ids_sql, self.ledger_table)

        def read(cursor: Any) -> list[int]:
            position = run_ids_query(
                cursor, sql, ids_sql=self.ids_sql, ledger_table=self.ledger_table, sql_conn_id=self.sql_conn_id
            )
            return [int(row[position]) for row in cursor.fetchall() if row[position] is not None]

        ids = list(dict.fromkeys(store.sql.read(read)))
        landed = store.landed(ids)
        watched = Watched()
        for key in ids:
            row = landed.get(key)
            if row is not None and (row.status == "completed" or row.polling_stopped_at is not None):
                continue
            watched.states[key] = poll_state(key, row)
            watched.polls[key] = polls_so_far(row)
        return watched

    def _unannounced(self) -> list[int]:
        assert self._announcements is not None
        return self._announcements.unannounced(MAX_IDS_PER_EVENT)

    def _mark(self, ids: list[int]) -> int:
        assert self._announcements is not None
        return self._announcements.mark(ids)

    def _land(self, answers: list[tuple[dict[str, Any], int, float]]) -> int:
        store = self._require_store()
        rows = (store.fetched_row(answer, polls=polls, plan=self.plan, fetched_at=at) for answer, polls, at in answers)
        return store.land(rows)

    def _stopped(self, ids: list[int]) -> int:
        return self._require_store().mark_stopped(ids)

    def _require_store(self) -> TranscriptTable:
        if self._store is None:
            raise RuntimeError("the transcripts table is not open")
        return self._store

    def _close_store(self) -> None:
        store, self._store, self._announcements = self._store, None, None
        if store is not None:
            try:
                store.close()
            except Exception as error:  # a connection already gone: the error that broke it was reported
                self.log.debug("Closing the transcripts table failed: %s", error)

    def _shut_down(self) -> None:
        self._session.run(self._close_store)
        self._session.shutdown()
        if self._history is not None:
            self._history.close()
