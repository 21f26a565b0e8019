"""Create-once when runs are killed (SIGKILL at chosen points of a create) or run at once, in child processes."""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.create.killable import run_create
from tests.helpers import connection_variables, forkserver_preloading, kill_child, start_until
from tests.support.ledger_db import LedgerDatabase
from tests.sync.helpers import run

from .helpers import INTERVIEW_TYPE, counts, creator, email, point_hindsight, posts, rows, states

ROWS = 30
MAX_WORKERS = 4
PAUSE_AFTER = 10


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.ForkServerContext:
    return forkserver_preloading("tests.create.killable")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def arguments(ledger: LedgerDatabase, numbers: range, task_id: str = "create") -> dict[str, Any]:
    return {
        "task_id": task_id,
        "interviews": rows(numbers),
        "ledger_conn_id": ledger.conn_id,
        "interview_type_id": INTERVIEW_TYPE,
        "max_workers": MAX_WORKERS,
    }


def created_per_email(emulator: HindsightEmulator) -> Counter[str]:
    return Counter(str(interview["contact_email"]) for interview in emulator.created_interviews())


@pytest.mark.parametrize("point", ["before_claim", "after_claim", "mid_post", "after_201"])
def test_a_run_killed_at_any_point_of_a_create_and_rerun_creates_no_key_twice(
    point: str,
    forkserver: multiprocessing.context.ForkServerContext,
    ledger_db: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    emulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, requests_per_minute=6_000)
    marker = tmp_path / "paused"
    log = tmp_path / "child.log"
    create = (arguments(ledger_db, range(1, ROWS + 1)), connection_variables(), str(log))
    if point == "mid_post":
        emulator.inject_delay(4, method="POST")  # the first POST is in the emulator's hands when the child dies
        child = forkserver.Process(target=run_create, args=create)
        start_until(child, lambda: len(emulator.created_interviews()) >= PAUSE_AFTER, f"{PAUSE_AFTER} creates", log)
    else:
        child = forkserver.Process(target=run_create, args=(*create, "", point, PAUSE_AFTER, str(marker)))
        start_until(child, marker.exists, f"the pause {point}", log)
    assert kill_child(child) == -signal.SIGKILL
    left = states(ledger_db)

    rerun = run(creator(rows(range(1, ROWS + 1)), ledger_db, max_workers=MAX_WORKERS))

    assert rerun.error is None, rerun.error
    total, _created, _existing, failed, unknown = counts(rerun.summary)
    assert (total, failed) == (ROWS, 0)
    assert unknown <= MAX_WORKERS, f"{unknown} keys unknown after one kill"
    assert unknown == sum(state == "pending" for state in left.values())
    wait_for(lambda: emulator.request_count == len(emulator.requests), "the emulator to answer what the child sent")
    assert max(posts(emulator).values()) == 1, "a key was POSTed twice"
    assert max(created_per_email(emulator).values()) == 1
    assert set(created_per_email(emulator)) >= {
        email(n) for n in range(1, ROWS + 1) if states(ledger_db).get(f"D-{n}:C-{n}") == "created"
    }


def test_two_runs_on_the_same_keys_at_once_post_each_key_at_most_once_and_both_finish(
    forkserver: multiprocessing.context.ForkServerContext,
    ledger_db: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    emulator = hindsight_emulator_factory(latency=0.01)
    point_hindsight(monkeypatch, emulator, requests_per_minute=60_000)
    children = {}
    for name, numbers in {"first": range(1, 41), "second": range(21, 61)}.items():
        files = (str(tmp_path / f"{name}.log"), str(tmp_path / f"{name}.json"))
        children[name] = forkserver.Process(
            target=run_create,
            args=(arguments(ledger_db, numbers, f"create_{name}"), connection_variables(), *files),
        )
    for child in children.values():
        child.start()
    for child in children.values():
        child.join(timeout=120)

    for name, child in children.items():
        assert child.exitcode == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        total, _created, _existing, failed, _unknown = counts(json.loads((tmp_path / f"{name}.json").read_text()))
        assert (total, failed) == (40, 0)
    assert posts(emulator) == {email(n): 1 for n in range(1, 61)}
    assert created_per_email(emulator) == {email(n): 1 for n in range(1, 61)}
    assert set(states(ledger_db).values()) == {"created"}
