"""One rate budget per API key, shared by real processes through SQLite and a real PostgreSQL server.

Every test runs child processes (forked from a server that imported Airflow once) whose hooks send
to one emulator that enforces a strict sliding-window limit at the connection's pace. The pace is
high (3,000 a minute) and the runs short, so each test takes a few seconds.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.budget.permits import FETCH_AHEAD_SECONDS
from airflow_provider_hindsight.budget.share import ACTIVE_SECONDS, LEASE_SECONDS
from airflow_provider_hindsight.pace import SAFETY_MARGIN
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.budget.helpers import (
    API_KEY,
    connections,
    count_between,
    emulator,
    run_children,
    starts_by_process,
)

PACE = 3000
"""Requests a minute, the connection's pace and the emulator's limit."""
WINDOW = 10.0
"""The emulator's sliding window: 500 requests in any 10 seconds, so a few seconds of overshoot show as 429s,
and a request sent up to 0.3 s late (a busy machine) does not."""
PER_SECOND = PACE * SAFETY_MARGIN / 60
RETRY_AFTER = 3.0
IDS_EACH = 2000
TABLE = "hindsight_rate_budget"


@dataclass
class Store:
    """The budget's database: its Airflow connection, and how the test locks or takes it away."""

    connection: str
    lock: Callable[[], AbstractContextManager[None]]
    """Holds the budget's table locked (every lease waits) while the context is open."""
    take_away: Callable[[], None]
    """Makes the database refuse every connection, and ends those it has: the store is down."""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        path = tmp_path / "budget.db"

        @contextmanager
        def lock_sqlite() -> Iterator[None]:
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                yield
            finally:
                holder.execute("COMMIT")
                holder.close()

        def take_away_sqlite() -> None:
            holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            holder.execute("BEGIN EXCLUSIVE")  # never released: every lease gives up waiting

        return Store(json.dumps({"conn_type": "sqlite", "host": str(path)}), lock_sqlite, take_away_sqlite)

    server = request.getfixturevalue("postgres_server")
    database = request.getfixturevalue("postgres_database")

    @contextmanager
    def lock_postgres() -> Iterator[None]:
        import psycopg

        with psycopg.connect(**database.params) as holder:
            holder.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
            yield

    def take_away_postgres() -> None:
        server.execute(f'ALTER DATABASE "{database.name}" ALLOW_CONNECTIONS false')
        server.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database.name}'")

    return Store(database.airflow_connection(), lock_postgres, take_away_postgres)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def sent_by(server: HindsightEmulator, process: int) -> int:
    return len(starts_by_process(server).get(process, []))


def test_three_processes_share_one_key_fairly_without_429(
    store: Store, context: ForkServerContext, tmp_path: Path
) -> None:
    with emulator(3, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        with run_children(
            context, tmp_path, variables, [("sync", {"threads": 4})] * 3, seconds=7, ids_each=IDS_EACH
        ) as run:
            pass
        starts = starts_by_process(server)
        statuses = server.status_counts

    # the three made the budget's table on first use at the same moment, and none failed to
    assert [child.result["store_failures"] for child in run.children] == [0, 0, 0]
    assert statuses == {200: sum(len(times) for times in starts.values())}, statuses
    # all three busy, after their first few leases (each grows to its share in a few)
    first, last = max(times[0] for times in starts.values()) + 1.0, min(times[-1] for times in starts.values())
    assert last - first > 3.0
    counts = [count_between(times, first, last) for times in starts.values()]
    assert len(counts) == 3
    assert sum(counts) >= 0.9 * PER_SECOND * (last - first)
    assert sum(counts) <= PER_SECOND * (last - first) + 10
    assert min(counts) >= 0.6 * sum(counts) / 3, counts  # on a machine this busy: the benchmark measures it calmly


def test_without_the_budget_the_same_processes_overshoot(context: ForkServerContext, tmp_path: Path) -> None:
    """The limiter above does catch processes that each pace as if they had the key alone."""
    with emulator(3, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, None)
        with run_children(context, tmp_path, variables, [("sync", {"threads": 4})] * 3, seconds=4, ids_each=IDS_EACH):
            pass
        statuses = server.status_counts

    assert statuses.get(429, 0) > 0, statuses


def test_one_process_alone_gets_the_whole_pace(store: Store, context: ForkServerContext, tmp_path: Path) -> None:
    with emulator(1, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        with run_children(context, tmp_path, variables, [("sync", {"threads": 4})], seconds=4, ids_each=IDS_EACH):
            pass
        (times,) = starts_by_process(server).values()
        statuses = server.status_counts

    assert set(statuses) == {200}
    rate = (len(times) - 1) / (times[-1] - times[0])
    assert rate >= 0.93 * PER_SECOND, rate


def test_a_task_pace_caps_it_below_its_share_and_the_other_takes_the_rest(
    store: Store, context: ForkServerContext, tmp_path: Path
) -> None:
    capped_pace = PACE / 5  # a fifth of the key's pace, below the half each would get
    with emulator(2, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        kinds: list[tuple[str, dict[str, Any]]] = [
            ("sync", {"threads": 4, "requests_per_minute": capped_pace}),
            ("sync", {"threads": 4}),
        ]
        with run_children(context, tmp_path, variables, kinds, seconds=7, ids_each=IDS_EACH):
            pass
        starts = starts_by_process(server)
        statuses = server.status_counts

    assert set(statuses) == {200}
    first, last = max(times[0] for times in starts.values()) + 1.0, min(times[-1] for times in starts.values())
    capped, other = (count_between(starts[process], first, last) / (last - first) for process in (0, 1))
    assert capped <= capped_pace * SAFETY_MARGIN / 60 * 1.1, capped
    assert other >= 0.85 * (PER_SECOND - capped), (capped, other)  # the share the capped task leaves is used


def test_a_killed_process_strands_at_most_its_lease(store: Store, context: ForkServerContext, tmp_path: Path) -> None:
    with emulator(2, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        kinds: list[tuple[str, dict[str, Any]]] = [("sync", {"threads": 4})] * 2
        with run_children(context, tmp_path, variables, kinds, seconds=9, ids_each=IDS_EACH) as run:
            wait_for(lambda: sent_by(server, 0) >= 40 and sent_by(server, 1) >= 40)
            run.children[1].process.kill()
            killed_at = time.time()
        survivor = starts_by_process(server)[0]
        statuses = server.status_counts

    assert set(statuses) == {200}
    after = [moment for moment in survivor if moment >= killed_at]
    gaps = [later - earlier for earlier, later in itertools.pairwise(after) if earlier < killed_at + 2]
    assert max(gaps) <= LEASE_SECONDS / 2 + 0.3, max(gaps)  # the dead process held half a second of the pace at most
    alone_from = killed_at + ACTIVE_SECONDS + 0.5  # once it no longer counts, the survivor has the whole pace
    assert after[-1] - alone_from > 1.5
    rate = count_between(after, alone_from, after[-1]) / (after[-1] - alone_from)
    assert rate >= 0.75 * PER_SECOND, rate  # the whole pace, not its half share (a busy machine costs it a little)


def test_the_store_failing_means_one_warning_and_the_run_goes_on(
    store: Store, context: ForkServerContext, tmp_path: Path
) -> None:
    with emulator(1, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        with run_children(
            context, tmp_path, variables, [("sync", {"threads": 4})], seconds=6, ids_each=IDS_EACH
        ) as run:
            wait_for(lambda: sent_by(server, 0) >= 50)
            store.take_away()
            taken_away_at = time.time()
        (times,) = starts_by_process(server).values()
        statuses = server.status_counts
    (child,) = run.children

    assert child.result["outcomes"] == {"ok": len(times)}
    assert child.result["store_failures"] >= 1
    assert child.budget_warnings == 1
    assert API_KEY not in child.log.read_text(errors="replace")
    paced_alone = count_between(times, taken_away_at + 3, run.stop_at)
    assert paced_alone >= 0.8 * PER_SECOND * (run.stop_at - taken_away_at - 3)  # its own pace, without the store
    assert set(statuses) == {200}


def test_the_event_loop_takes_permits_without_stalling(
    store: Store, context: ForkServerContext, tmp_path: Path
) -> None:
    """The async side asks the store in a thread: a store that keeps a lease waiting does not stop the loop."""
    with emulator(2, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        kinds: list[tuple[str, dict[str, Any]]] = [("async", {"triggers": 20}), ("sync", {"threads": 4})]
        with run_children(context, tmp_path, variables, kinds, seconds=6, ids_each=IDS_EACH) as run:
            wait_for(lambda: sent_by(server, 0) >= 50 and sent_by(server, 1) >= 50)
            with store.lock():
                time.sleep(1.0)  # the lock held this long is the stall a blocking lease would cause
            released_at = time.time()
        triggerer = starts_by_process(server)[0]
        statuses = server.status_counts
    result = run.children[0].result

    assert set(statuses) == {200}
    assert result["outcomes"] == {"ok": len(triggerer)}
    assert result["longest_tick"] < 0.3, result
    assert count_between(triggerer, released_at, run.stop_at) >= 0.2 * PER_SECOND * (run.stop_at - released_at)


def test_a_429_holds_and_slows_every_process(store: Store, context: ForkServerContext, tmp_path: Path) -> None:
    """One process is answered 429 with a Retry-After: the other stops too, after the start times it had
    already leased (about a second of its share at most), and both go on at the lowered shared pace."""
    with emulator(2, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, store.connection)
        kinds: list[tuple[str, dict[str, Any]]] = [("sync", {"threads": 4})] * 2
        with run_children(context, tmp_path, variables, kinds, seconds=10, ids_each=IDS_EACH) as run:
            wait_for(lambda: sent_by(server, 0) >= 40 and sent_by(server, 1) >= 40)
            server.inject_status(429, retry_after=RETRY_AFTER)
            wait_for(lambda: 429 in server.status_counts)
        (limited,) = [request.time for request in server.requests if request.status == 429]
        starts = starts_by_process(server)
    results = [child.result for child in run.children]

    assert sum(result["rate_limited"] for result in results) == 1
    held_from = limited + LEASE_SECONDS + FETCH_AHEAD_SECONDS + 0.2
    for times in starts.values():
        assert count_between(times, held_from, limited + RETRY_AFTER - 0.1) == 0
    resumed = limited + RETRY_AFTER + 0.3
    assert run.stop_at - resumed > 1.5
    after = [moment for times in starts.values() for moment in times if resumed <= moment < run.stop_at]
    rate = len(after) / (run.stop_at - resumed)
    assert rate <= 0.75 * PER_SECOND, rate  # the shared pace fell to 70 % for both
    assert all(count_between(times, resumed, run.stop_at) > 0 for times in starts.values())
