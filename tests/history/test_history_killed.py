"""A try killed with SIGKILL leaves its run ``running``; the next try of the task instance marks it ``killed``."""

from __future__ import annotations

import multiprocessing.context
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import connection_variables, forkserver_preloading, kill_child, start_until
from tests.history.killable import run_update
from tests.support.ledger_db import LedgerDatabase

from .helpers import HISTORY_CONN_ID, point_history, runs

ROWS = 2000


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.ForkServerContext:
    return forkserver_preloading("tests.history.killable")


def test_a_killed_try_turns_killed_when_the_next_try_starts(
    forkserver: multiprocessing.context.ForkServerContext,
    store: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    emulator = hindsight_emulator_factory(interview_ids=list(range(1, ROWS + 1)), requests_per_minute=3000)
    point_history(emulator, monkeypatch, history_conn_id=HISTORY_CONN_ID)
    arguments = {
        "task_id": "update",
        "updates": [{"interview_request_id": n, "objective": "Renewal"} for n in range(1, ROWS + 1)],
        "max_workers": 2,
    }
    connections = connection_variables()
    log = tmp_path / "child.log"
    child = forkserver.Process(target=run_update, args=(arguments, 1, connections, str(log)))
    start_until(
        child,
        lambda: (
            emulator.request_count >= 20
            and store.table_exists("hindsight_runs")
            and bool(store.query("SELECT 1 FROM hindsight_runs"))
        ),
        "its run row and 20 requests",
        log,
    )
    assert kill_child(child) == -signal.SIGKILL
    assert [run["state"] for run in runs(store)] == ["running"], "nothing ended it: Python never saw the kill"

    arguments["updates"] = arguments["updates"][:5]
    child = forkserver.Process(target=run_update, args=(arguments, 2, connections, str(log)))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0, log.read_text()[-3000:]

    first, second = runs(store)
    assert (first["try_number"], first["state"]) == (1, "killed")
    assert first["finished_at"] is not None
    assert (second["try_number"], second["state"], second["total"]) == (2, "succeeded", 5)
