"""The shared budget at its edges, with real processes and a real PostgreSQL server: the store dying mid-run,
what each task's (and each trigger's) log says, and a light process beside a busy one.

As in ``test_shared_budget.py``, the emulator enforces a strict sliding-window limit at the connection's
pace, and every request is counted where it arrives: the emulator's request log.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

from airflow_provider_hindsight.pace import SAFETY_MARGIN
from tests.budget.helpers import connections, count_between, emulator, run_children, starts_by_process
from tests.support.postgres import PostgresDatabase, PostgresServer

PACE = 3000
WINDOW = 10.0
PER_SECOND = PACE * SAFETY_MARGIN / 60
IDS_EACH = 2000
SHARED_LINE = "Paced through the shared rate budget on budget_conn_id"
FALLBACK_LINE = "The shared rate budget on budget_conn_id"
BACK_LINE = "is in use again"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def sent_each(server: Any, processes: int) -> int:
    """The fewest requests any of ``processes`` sent so far (0 while one has sent none)."""
    starts = starts_by_process(server)
    return min(len(starts.get(process, [])) for process in range(processes))


def take_away(server: PostgresServer, database: PostgresDatabase) -> None:
    """The budget's database goes down: its sessions end and it refuses new ones."""
    server.execute(f'ALTER DATABASE "{database.name}" ALLOW_CONNECTIONS false')
    server.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database.name}'")


def bring_back(server: PostgresServer, database: PostgresDatabase) -> None:
    server.execute(f'ALTER DATABASE "{database.name}" ALLOW_CONNECTIONS true')


def lines(log: Path, text: str, level: str = "") -> int:
    content = log.read_text(errors="replace") if log.exists() else ""
    return sum(text in line and level.lower() in line.lower() for line in content.splitlines())


def test_the_store_dying_keeps_each_process_to_its_share_and_the_budget_comes_back(
    postgres_server: PostgresServer, postgres_database: PostgresDatabase, context: ForkServerContext, tmp_path: Path
) -> None:
    """Three workers and a triggerer share the key; the budget's database goes down mid-run. Each process
    paces alone at the share it last had, the requests that were waiting for a permit go out spaced, not
    together, and each goes back to the budget once the database is up again."""
    kinds: list[tuple[str, dict[str, Any]]] = [("sync", {"threads": 6})] * 3 + [("async", {"triggers": 20})]
    with emulator(4, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, postgres_database.airflow_connection())
        # 18 s: about 3 before the store dies, 4 down, and time to restart it and go back to it after
        with run_children(context, tmp_path, variables, kinds, seconds=18, ids_each=IDS_EACH) as run:
            wait_for(lambda: sent_each(server, 4) >= 40)
            take_away(postgres_server, postgres_database)
            killed_at = time.time()
            time.sleep(4.0)  # the database is down this long
            bring_back(postgres_server, postgres_database)
        arrivals = [request.time for request in server.requests]
        statuses = server.status_counts
        limited = [round(request.time - killed_at, 2) for request in server.requests if request.status == 429]

    by_second = Counter(int(moment - killed_at) for moment in arrivals if killed_at <= moment < run.stop_at)
    assert by_second, "nothing was sent after the store died"
    assert max(by_second.values()) <= 2 * PER_SECOND, sorted(by_second.items())
    assert len(limited) <= 0.01 * len(arrivals), (statuses, limited)
    for child in run.children:
        assert child.result["store_failures"] >= 1
        assert lines(child.log, FALLBACK_LINE, "WARNING") == 1, child.log.read_text()[-3000:]
        assert lines(child.log, BACK_LINE) == 1, child.log.read_text()[-3000:]


def test_each_trigger_says_in_its_own_log_why_the_budget_fell_back(
    postgres_server: PostgresServer, postgres_database: PostgresDatabase, context: ForkServerContext, tmp_path: Path
) -> None:
    """A triggerer routes a line to a deferred task's log only when the trigger's own coroutine logs it: each
    trigger affected by the store's failure says why, once, in its own log."""
    triggers = 8
    kinds: list[tuple[str, dict[str, Any]]] = [("async", {"triggers": triggers, "hook_each": True})]
    with emulator(1, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, postgres_database.airflow_connection())
        with run_children(context, tmp_path, variables, kinds, seconds=6, ids_each=IDS_EACH) as run:
            wait_for(lambda: sent_each(server, 1) >= 60)
            take_away(postgres_server, postgres_database)
    (child,) = run.children
    trigger_logs = [Path(f"{child.log}.trigger-{index}") for index in range(triggers)]

    assert child.result["store_failures"] >= 1
    for log in trigger_logs:
        assert lines(log, SHARED_LINE, "INFO") == 1, log
        assert lines(log, FALLBACK_LINE, "WARNING") == 1, log
        assert lines(log, "Fix: check that the connection's database is up and writable") == 1, log


def test_a_busy_process_uses_what_a_light_one_leaves(
    postgres_database: PostgresDatabase, context: ForkServerContext, tmp_path: Path
) -> None:
    """A triggerer with a few sensors polling now and then beside a busy worker: together they use the pace."""
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("sync", {"threads": 8}),
        ("async", {"triggers": 10, "poll_every": 1.0, "hook_each": True}),
    ]
    with emulator(2, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, postgres_database.airflow_connection())
        with run_children(context, tmp_path, variables, kinds, seconds=8, ids_each=IDS_EACH):
            pass
        starts = starts_by_process(server)
        statuses = server.status_counts

    busy, light = starts[0], starts[1]
    first, last = busy[0] + 1.0, busy[-1]
    assert last - first > 5.0
    together = count_between(busy, first, last) + count_between(light, first, last)
    assert count_between(light, first, last) >= 5 * (last - first)  # the light one polled all along
    assert together >= 0.95 * PER_SECOND * (last - first), (together, PER_SECOND * (last - first))
    assert set(statuses) == {200}


def test_a_run_says_once_that_it_is_paced_through_the_shared_budget(
    postgres_database: PostgresDatabase, context: ForkServerContext, tmp_path: Path
) -> None:
    with emulator(2, IDS_EACH, requests_per_minute=PACE, rate_window=WINDOW) as server:
        variables = connections(server, PACE, postgres_database.airflow_connection())
        with run_children(context, tmp_path, variables, [("sync", {"threads": 4})] * 2, seconds=3, ids_each=IDS_EACH):
            pass
        run_logs = [tmp_path / f"child-{index}.log" for index in range(2)]

    for log in run_logs:
        assert lines(log, SHARED_LINE, "INFO") == 1, log.read_text()[-3000:]
        assert lines(log, "requests a minute now") == 1
