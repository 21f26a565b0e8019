"""``HindsightAnswersTrigger`` in asyncio against the emulator, on SQLite and a real PostgreSQL server.

The trigger's clock is virtual (its waits move it on at once), the emulator and the database are real.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Executed, is_airflow_2

if is_airflow_2():  # the module raises ImportError there: tests/unit/test_answers_import.py checks it
    pytest.skip("asset watchers need Airflow 3", allow_module_level=True)

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from airflow_provider_hindsight.triggers.answers import (
    HANDOFF_SECONDS,
    PERMANENT_RETRY_SECONDS,
    HindsightAnswersTrigger,
)
from tests.history.helpers import point_history
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "answers_warehouse"
TABLE = "hindsight_transcripts"
WAIT_SECONDS = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, CONN_ID, sync_id="-")


@pytest.fixture
def emulator(hindsight_emulator: HindsightEmulator) -> HindsightEmulator:
    """Interviews 1 to 4, sent; contact data that must never leave the table."""
    for interview_id in (1, 2, 3, 4):
        hindsight_emulator.add_interview(
            interview_id, status="sent", contact_name="Ana Secretname", contact_email=f"ana{interview_id}@x.io"
        )
    return hindsight_emulator


class Said:
    """What was logged, stdlib records (Airflow 2, the ledgers) and structlog events (Airflow 3 triggers) alike."""

    def __init__(self, caplog: pytest.LogCaptureFixture, entries: list[dict[str, Any]]) -> None:
        self.caplog = caplog
        self.entries = entries

    def at(self, level: int) -> list[str]:
        name = logging.getLevelName(level).lower()
        found = [r.getMessage() for r in self.caplog.records if r.levelno == level]
        for entry in self.entries:
            if entry.get("log_level") == name:
                arguments = entry.get("positional_args")
                found.append(str(entry["event"]) % tuple(arguments) if arguments else str(entry["event"]))
        return found

    def everything(self) -> str:
        return "\n".join([*self.at(logging.INFO), *self.at(logging.WARNING), *self.at(logging.ERROR), self.caplog.text])


@pytest.fixture
def said(caplog: pytest.LogCaptureFixture) -> Iterator[Said]:
    caplog.set_level(logging.INFO)
    entries: list[dict[str, Any]] = []
    if hasattr(__import__("airflow"), "sdk"):
        from structlog.testing import capture_logs

        with capture_logs() as entries:
            yield Said(caplog, entries)
    else:
        yield Said(caplog, entries)


class VirtualClock:
    """Wall-clock seconds that move only when the trigger waits; ``hold_handoff`` freezes the wait before a mark."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []
        self.hold_handoff = False

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.hold_handoff and seconds == HANDOFF_SECONDS:
            await asyncio.Event().wait()  # the triggerer dies here: between the event and the mark
        self.now += seconds
        await asyncio.sleep(0.005)


def watched_ids(backend: Backend, ids: list[int]) -> str:
    backend.run("CREATE TABLE IF NOT EXISTS deals (interview_request_id BIGINT)")
    for interview_id in ids:
        backend.run(f"INSERT INTO deals VALUES ({interview_id})")
    return "SELECT interview_request_id FROM deals"


def make_trigger(ids_sql: str | None, clock: VirtualClock | None = None, **kwargs: Any) -> HindsightAnswersTrigger:
    kwargs.setdefault("batch_window", 60)
    trigger = HindsightAnswersTrigger(sql_conn_id=CONN_ID, ids_sql=ids_sql, min_poll_interval=300, **kwargs)
    if clock is not None:
        trigger.clock, trigger.sleep = clock, clock.sleep

    def make_hook() -> HindsightAsyncHook:
        hook = HindsightAnswersTrigger.make_hook(trigger)

        async def short(seconds: float) -> None:  # the hook's own retries: not the trigger's subject here
            await asyncio.sleep(0)

        hook.async_sleep = short
        return hook

    trigger.make_hook = make_hook  # type: ignore[method-assign]
    return trigger


class Running:
    """A trigger's ``run()`` as a task of the test's loop, its events' payloads in a queue."""

    def __init__(self, trigger: HindsightAnswersTrigger) -> None:
        self.trigger = trigger
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.handed_over_at: list[float] = []
        """The trigger's clock as it hands over each event."""
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for event in self.trigger.run():
            self.handed_over_at.append(self.trigger.clock())
            await self.events.put(event.payload)

    async def next_event(self) -> dict[str, Any]:
        getting = asyncio.ensure_future(self.events.get())
        done, _ = await asyncio.wait({getting, self.task}, timeout=WAIT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if getting not in done:
            getting.cancel()
            if self.task in done:
                self.task.result()  # the trigger ended: its error
            raise AssertionError("no event came")
        return getting.result()

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@asynccontextmanager
async def running(trigger: HindsightAnswersTrigger) -> AsyncIterator[Running]:
    run = Running(trigger)
    try:
        yield run
    finally:
        await run.stop()


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


def announced(backend: Backend) -> dict[int, bool]:
    """Each completed row: announced or not (nothing while the table or its column is not there yet)."""
    try:
        rows = backend.query(f"SELECT interview_request_id, announced_at FROM {TABLE} WHERE status = 'completed'")
    except Exception:
        return {}
    return {int(key): at is not None for key, at in rows}


def landed(backend: Backend) -> dict[int, str]:
    try:
        return {
            int(key): str(status) for key, status in backend.query(f"SELECT interview_request_id, status FROM {TABLE}")
        }
    except Exception:
        return {}


def gets_of(emulator: HindsightEmulator, interview_id: int) -> int:
    return sum(1 for r in emulator.requests if r.method == "GET" and r.path.endswith(f"/{interview_id}"))


def ids(event: dict[str, Any]) -> list[int]:
    assert event["count"] == len(event["interview_request_ids"]) and event["table"] == TABLE
    return list(event["interview_request_ids"])


def test_each_answer_is_announced_once_a_batch_in_one_event_and_not_again_after_a_restart(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = watched_ids(backend, [1, 2, 3, 4])
    emulator.complete(1, "**Ana:** SECRET-WORDS")
    emulator.complete(2)

    async def scenario() -> None:
        async with running(make_trigger(sql, VirtualClock())) as first:
            assert ids(await first.next_event()) == [1, 2]
            await until(lambda: announced(backend) == {1: True, 2: True})
            emulator.complete(3)
            assert ids(await first.next_event()) == [3]
            await until(lambda: announced(backend) == {1: True, 2: True, 3: True})
        emulator.complete(4)
        async with running(make_trigger(sql, VirtualClock())) as restarted:
            assert ids(await restarted.next_event()) == [4]

    asyncio.run(scenario())
    rows = backend.query(f"SELECT interview_request_id, status, transcript, polls FROM {TABLE} ORDER BY 1")
    assert [(key, status) for key, status, *_ in rows] == [(k, "completed") for k in (1, 2, 3, 4)]
    assert rows[0][2] == "**Ana:** SECRET-WORDS" and all(polls >= 1 for *_, polls in rows)


def test_an_answer_a_round_finds_is_announced_one_batch_window_after_that_round(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = watched_ids(backend, [1])

    async def scenario() -> None:
        trigger = make_trigger(sql, VirtualClock(), batch_window=60)
        async with running(trigger) as watcher:
            await until(lambda: gets_of(emulator, 1) >= 1)  # a first round saw it unanswered
            emulator.complete(1)
            assert ids(await watcher.next_event()) == [1]
        assert trigger._first_round_at is not None
        since_first_round = watcher.handed_over_at[0] - trigger._first_round_at
        assert since_first_round > 300 and since_first_round % 300 == pytest.approx(60)  # rounds are 300 s apart

    asyncio.run(scenario())


def test_a_restart_announces_what_was_landed_and_not_announced_without_fetching_it_again(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = watched_ids(backend, [1, 2])
    emulator.complete(1)

    async def scenario() -> None:
        async with running(make_trigger(sql, batch_window=3600)):  # real clock: it lands, then waits an hour
            await until(lambda: announced(backend) == {1: False})
        emulator.reset_requests()
        async with running(make_trigger(sql, VirtualClock())) as restarted:
            assert ids(await restarted.next_event()) == [1]
            await until(lambda: announced(backend) == {1: True})
        assert gets_of(emulator, 1) == 0

    asyncio.run(scenario())


def test_a_crash_between_the_event_and_the_mark_announces_the_batch_again(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = watched_ids(backend, [1, 2])
    emulator.complete(1)
    clock = VirtualClock()
    clock.hold_handoff = True

    async def scenario() -> None:
        async with running(make_trigger(sql, clock)) as crashing:
            assert ids(await crashing.next_event()) == [1]
        assert announced(backend) == {1: False}
        async with running(make_trigger(sql, VirtualClock())) as restarted:
            assert ids(await restarted.next_event()) == [1]  # the documented repeat: DAGs are idempotent
            await until(lambda: announced(backend) == {1: True})

    asyncio.run(scenario())


def test_turning_it_on_over_an_existing_table_does_not_announce_its_completed_rows(
    backend: Backend, emulator: HindsightEmulator, said: Said
) -> None:
    sql = watched_ids(backend, [1, 2, 3])
    emulator.complete(1)
    emulator.complete(2)
    landing = Executed(HindsightInterviewsToSqlOperator(task_id="land", sql_conn_id=CONN_ID, ids_sql=sql))
    assert landing.error is None and landing.summary["newly_completed"] == 2

    async def scenario() -> None:
        async with running(make_trigger(sql, VirtualClock())) as watcher:
            await until(lambda: announced(backend) == {1: True, 2: True})
            emulator.complete(3)
            assert ids(await watcher.next_event()) == [3]
            await until(lambda: announced(backend) == {1: True, 2: True, 3: True})

    asyncio.run(scenario())
    assert any("Added the column announced_at" in line for line in said.at(logging.INFO))
    again = Executed(HindsightInterviewsToSqlOperator(task_id="land", sql_conn_id=CONN_ID, ids_sql=sql))
    assert again.error is None, "the landing accepts the table with announced_at"
    assert announced(backend) == {1: True, 2: True, 3: True}, "the landing leaves announced_at alone"


def test_rows_a_scheduled_landing_lands_beside_it_are_announced(backend: Backend, emulator: HindsightEmulator) -> None:
    watched = watched_ids(backend, [1])
    emulator.complete(2)

    async def scenario() -> None:
        async with running(make_trigger(watched, VirtualClock())) as watcher:
            await until(lambda: landed(backend) == {1: "sent"})
            landing = await asyncio.to_thread(
                Executed,
                HindsightInterviewsToSqlOperator(
                    task_id="land", sql_conn_id=CONN_ID, ids_sql="SELECT 2 AS interview_request_id"
                ),
            )
            assert landing.error is None
            assert ids(await watcher.next_event()) == [2]

    asyncio.run(scenario())


def test_503s_back_off_honouring_retry_after_and_the_answer_still_comes(
    backend: Backend, emulator: HindsightEmulator, said: Said
) -> None:
    sql = watched_ids(backend, [1])
    emulator.complete(1)
    emulator.inject_status(503, times=12, retry_after=120)
    clock = VirtualClock()

    async def scenario() -> None:
        async with running(make_trigger(sql, clock)) as watcher:
            assert ids(await watcher.next_event()) == [1]

    asyncio.run(scenario())
    assert [line for line in said.at(logging.WARNING) if line.startswith("Watching for answers:")]
    assert not said.at(logging.ERROR)
    assert 120 in clock.sleeps, "the back-off waits out Retry-After"


def test_a_wrong_key_is_one_error_then_a_try_every_15_minutes_until_it_is_fixed(
    backend: Backend, emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch, said: Said
) -> None:
    sql = watched_ids(backend, [1])
    emulator.complete(1)
    wrong = json.loads(emulator.connection_env()[1])
    wrong["password"] = "not-the-key"
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(wrong))
    clock = VirtualClock()

    async def scenario() -> None:
        async with running(make_trigger(sql, clock)) as watcher:
            await until(lambda: emulator.status_counts.get(401, 0) >= 3)
            monkeypatch.setenv(*emulator.connection_env())  # the key fixed: no redeploy
            assert ids(await watcher.next_event()) == [1]

    asyncio.run(scenario())
    errors = said.at(logging.ERROR)
    assert len(errors) == 1, errors
    assert "'hindsight_default'" in errors[0] and "API key" in errors[0] and "15 minutes" in errors[0]
    assert clock.sleeps.count(PERMANENT_RETRY_SECONDS) >= 2
    logged = said.everything()
    assert "not-the-key" not in logged and "Secretname" not in logged and "ana1@x.io" not in logged


def test_a_missing_ledger_is_one_error_naming_it_and_the_fix(
    backend: Backend, emulator: HindsightEmulator, said: Said
) -> None:
    clock = VirtualClock()

    async def scenario() -> None:
        async with running(make_trigger(None, clock, ledger_table="no_such_ledger")):
            await until(lambda: clock.sleeps.count(PERMANENT_RETRY_SECONDS) >= 2)

    asyncio.run(scenario())
    errors = said.at(logging.ERROR)
    assert len(errors) == 1 and "'no_such_ledger'" in errors[0] and "ids_sql" in errors[0], errors


def test_its_arguments_serialise_small_without_key_or_personal_data(hindsight_emulator: HindsightEmulator) -> None:
    classpath, kwargs = make_trigger("SELECT interview_request_id FROM deals").serialize()
    assert classpath == "airflow_provider_hindsight.triggers.answers.HindsightAnswersTrigger"
    text = json.dumps(kwargs)
    assert len(text) < 2048 and "test-key" not in text
    assert HindsightAnswersTrigger(**kwargs).serialize() == (classpath, kwargs)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"sql_conn_id": ""}, "sql_conn_id"),
        ({"table": "transcripts; DROP"}, "table"),
        ({"ledger_table": "a.b.c"}, "ledger_table"),
        ({"ids_sql": "  "}, "ids_sql"),
        ({"poll_age_factor": -0.1}, "poll_age_factor"),
        ({"max_poll_interval": 60}, "max_poll_interval"),  # below min_poll_interval
        ({"stop_polling_after": "30 days"}, "stop_polling_after"),
        ({"batch_window": 0}, "batch_window"),
        ({"refresh_interval": -5}, "refresh_interval"),
    ],
)
def test_bad_arguments_are_refused_naming_them_as_the_landing_refuses_them(
    arguments: dict[str, Any], field: str
) -> None:
    given = {"sql_conn_id": CONN_ID, "ids_sql": "SELECT 1", "min_poll_interval": 300, **arguments}
    with pytest.raises(HindsightValidationError) as raised:
        HindsightAnswersTrigger(**given)
    assert raised.value.field == field
    if field in ("batch_window", "refresh_interval", "ids_sql"):  # the trigger's own, or checked by a landing's run
        return
    with pytest.raises(HindsightValidationError) as landing:
        HindsightInterviewsToSqlOperator(task_id="land", **given)
    assert (landing.value.field, landing.value.message) == (field, raised.value.message)


def test_2000_watched_ids_never_block_the_loop_and_come_1000_an_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hindsight_emulator: HindsightEmulator
) -> None:
    backend = sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, CONN_ID, sync_id="-")
    count = 2000
    backend.run("CREATE TABLE deals (interview_request_id BIGINT)")
    backend.run(
        "INSERT INTO deals WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
        "SELECT i FROM n"
    )
    for key in range(1, count + 1):
        hindsight_emulator.add_interview(key, status="completed")

    async def measured() -> tuple[list[list[int]], float, float]:
        await HindsightAsyncHook().asettings()  # the process's first connection read imports Airflow's secrets
        longest = busiest = 0.0
        ticking = True

        async def ticker() -> None:
            # CPU time of the loop's thread between two ticks: what the trigger kept the loop busy (wall time
            # also counts the process waiting for one of the machine's 2 shared cores)
            nonlocal longest, busiest
            last, last_cpu = time.perf_counter(), time.thread_time()
            while ticking:
                await asyncio.sleep(0.005)
                now, cpu = time.perf_counter(), time.thread_time()
                longest, busiest = max(longest, now - last), max(busiest, cpu - last_cpu)
                last, last_cpu = now, cpu

        tick = asyncio.create_task(ticker())
        async with running(make_trigger("SELECT interview_request_id FROM deals", VirtualClock())) as watcher:
            events = [ids(await watcher.next_event()), ids(await watcher.next_event())]
        ticking = False
        await tick
        return events, longest, busiest

    gc.collect()  # a full collection of Airflow's heap stalls any loop; this test is about the trigger's own code
    gc.disable()
    try:
        events, longest, busiest = asyncio.run(measured())
    finally:
        gc.enable()
    assert events == [list(range(1, 1001)), list(range(1001, 2001))]
    assert busiest < 0.2, f"the loop's thread was busy {busiest:.3f} s between two ticks"
    assert longest < 1.0, f"a tick came {longest:.3f} s late"


def test_an_interview_is_fetched_on_the_plan_across_reads_of_the_watched_ids(
    backend: Backend, emulator: HindsightEmulator
) -> None:
    sql = watched_ids(backend, [1])
    clock = VirtualClock()
    started = clock.now
    trigger = make_trigger(sql, clock, refresh_interval=60, poll_age_factor=0)  # a fetch every 300 s, a read every 60 s

    async def scenario() -> None:
        async with running(trigger):
            await until(lambda: clock.now - started > 3000)

    asyncio.run(scenario())
    assert gets_of(emulator, 1) <= 3000 // 300 + 2, "each read of the ids must not make the interview due again"


def test_each_event_is_a_run_of_the_history_with_its_requests(
    backend: Backend, emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With history_conn_id, an event writes a ``watch`` run: its count and the requests since the last event."""
    point_history(emulator, monkeypatch, history_conn_id=CONN_ID)
    sql = watched_ids(backend, [1, 2, 3, 4])
    emulator.complete(1)
    emulator.complete(2)

    def watch_runs() -> list[tuple[Any, ...]]:
        try:
            return backend.query(
                "SELECT operation, state, newly_completed, requests, answered_429, dag_id FROM hindsight_runs "
                "WHERE state = 'succeeded' ORDER BY started_at"
            )
        except Exception:
            return []

    async def scenario() -> None:
        async with running(make_trigger(sql, VirtualClock())) as watching:
            assert ids(await watching.next_event()) == [1, 2]
            await until(lambda: len(watch_runs()) == 1)

    asyncio.run(scenario())
    # before the event: the first round's GET of each of the 4 watched ids (the next round is due 300 s later)
    assert watch_runs() == [("watch", "succeeded", 2, 4, 0, None)]
