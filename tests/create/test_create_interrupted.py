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
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import HindsightUnknownOutcomeError
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.create.killable import run_create
from tests.helpers import FakeTaskInstance, connection_variables, forkserver_preloading, kill_child, start_until
from tests.support.ledger_db import LedgerDatabase
from tests.sync.helpers import Outcome

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


def run_in(operator: Any, run_id: str) -> Outcome:
    """Run ``operator`` as a try of its task instance in the DAG run ``run_id``."""
    ti = FakeTaskInstance()
    try:
        operator.execute({"ti": ti, "run_id": run_id})
    except Exception as error:
        return Outcome(ti.xcom.get("summary"), error)
    return Outcome(ti.xcom["summary"], None)


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

    # The next DAG run (another task instance): a claim the killed run left pending is not its own.
    rerun = run_in(creator(rows(range(1, ROWS + 1)), ledger_db, max_workers=MAX_WORKERS), "manual__second")

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


def test_the_retry_of_a_create_killed_mid_post_fails_naming_its_keys_in_doubt(
    forkserver: multiprocessing.context.ForkServerContext,
    ledger_db: LedgerDatabase,
    hindsight_emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    task_logs: Callable[[], str],
) -> None:
    """Killed mid-POST: another task instance waits for the claims; the killed task's retry turns them unknown."""
    emulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, requests_per_minute=6_000)
    emulator.inject_delay(4, method="POST")  # the first POST is in the emulator's hands when the child dies
    log = tmp_path / "child.log"
    child = forkserver.Process(
        target=run_create, args=(arguments(ledger_db, range(1, ROWS + 1)), connection_variables(), str(log))
    )
    start_until(child, lambda: len(emulator.created_interviews()) >= PAUSE_AFTER, f"{PAUSE_AFTER} creates", log)
    assert kill_child(child) == -signal.SIGKILL
    in_doubt = sorted(request_key for request_key, state in states(ledger_db).items() if state == "pending")
    assert 1 <= len(in_doubt) <= MAX_WORKERS, "the delayed POST's claim, at least, is left pending"
    numbers = [int(request_key.split(":")[0][2:]) for request_key in in_doubt]
    wait_for(lambda: emulator.request_count == len(emulator.requests), "the emulator to answer what the child sent")
    task_logs()

    # Another task instance (another DAG run) over those keys: their writer may still be running.
    other = run_in(creator(rows(numbers), ledger_db, max_workers=MAX_WORKERS), "manual__other")

    assert other.error is None, other.error
    assert counts(other.summary) == (len(in_doubt), 0, 0, 0, len(in_doubt))
    assert {states(ledger_db)[request_key] for request_key in in_doubt} == {"pending"}
    warning = task_logs()
    assert all(f"{request_key} (pending under another run)" in warning for request_key in in_doubt)
    assert "they turn unknown once older than pending_timeout (the first at " in warning
    assert "resend_unknown applies to them only after that" in warning

    # The killed task's retry (same DAG, task, DAG run and map index): the claims are its own.
    posted_before = sum(posts(emulator).values())
    retry = run_in(creator(rows(range(1, ROWS + 1)), ledger_db, max_workers=MAX_WORKERS), "manual__first")
    sent_by_retry = sum(posts(emulator).values()) - posted_before

    assert isinstance(retry.error, HindsightUnknownOutcomeError), retry.error
    assert isinstance(retry.error, AirflowFailException), "no task retry: it cannot resolve them"
    message = str(retry.error)
    assert all(request_key in message for request_key in in_doubt)
    assert "A task retry cannot resolve them" in message and "resend_unknown=True" in message
    total, created, existing, failed, unknown = counts(retry.summary)
    assert (total, failed, unknown) == (ROWS, 0, len(in_doubt))
    assert created + existing == ROWS - len(in_doubt), "every other row was sent (or was created before)"
    assert sorted(failure["request_key"] for failure in retry.summary["failures"]) == in_doubt
    assert {failure["code"] for failure in retry.summary["failures"]} == {"unknown_outcome"}
    left = states(ledger_db)
    assert {left[request_key] for request_key in in_doubt} == {"unknown"}
    assert {state for request_key, state in left.items() if request_key not in in_doubt} == {"created"}
    logs = task_logs()
    assert "claimed by an earlier try of this task" in logs
    finished = [line for line in logs.splitlines() if f"Finished: {ROWS} rows done" in line]
    assert finished  # once, or twice where Airflow 2's task log and the captured log both hold it
    for line in finished:
        assert f" {sent_by_retry} sent ({sent_by_retry} accepted)" in line  # the keys in doubt were not sent
        assert f"{len(in_doubt)} unknown (left pending by an earlier try, not sent)" in line
    assert max(posts(emulator).values()) == 1, "a key was POSTed twice"
    assert max(created_per_email(emulator).values()) == 1
