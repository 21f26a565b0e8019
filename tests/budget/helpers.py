"""Processes on one API key against one emulator, with or without a shared budget, for tests and the benchmark."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.budget import workers

API_KEY = "shared-budget-key"
BUDGET_CONN_ID = "hindsight_budget"
IDS_PER_PROCESS = 100_000
"""Process ``i`` sends to the ids ``i * IDS_PER_PROCESS + 1 ...``: the emulator's log tells them apart."""
BUDGET_WARNING = "shared rate budget on budget_conn_id"
STARTUP_SECONDS = 120.0
"""How long the children may take to be ready (the forkserver imports Airflow once, on a busy machine)."""


def forkserver() -> ForkServerContext:
    """Children forked from a server that imported the workers (and so Airflow) once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.budget.workers"])
    return context


def process_ids(process: int, count: int) -> list[int]:
    first = process * IDS_PER_PROCESS + 1
    return list(range(first, first + count))


def emulator(processes: int, ids_each: int, **arguments: Any) -> HindsightEmulator:
    """An emulator on the wall clock (the children's clock), knowing every id the processes may use."""
    ids = [interview_id for process in range(processes) for interview_id in process_ids(process, ids_each)]
    return HindsightEmulator(api_key=API_KEY, interview_ids=ids, clock=time.time, **arguments)


def connections(
    server: HindsightEmulator, pace: float, budget_connection: str | None, *, table: str | None = None
) -> dict[str, str]:
    """The ``AIRFLOW_CONN_*`` variables of the children: the Hindsight connection, and its budget's database."""
    hindsight = server.connection(workers.CONN_ID, requests_per_minute=pace)
    del hindsight["conn_id"]
    variables = {}
    if budget_connection is not None:
        hindsight["extra"]["budget_conn_id"] = BUDGET_CONN_ID
        if table:
            hindsight["extra"]["budget_table"] = table
        variables[f"AIRFLOW_CONN_{BUDGET_CONN_ID.upper()}"] = budget_connection
    variables[f"AIRFLOW_CONN_{workers.CONN_ID.upper()}"] = json.dumps(hindsight)
    return variables


@dataclass
class Child:
    """One child process: its log and the JSON it wrote when it finished."""

    process: Any
    log: Path
    result_file: Path
    index: int

    @property
    def result(self) -> dict[str, Any]:
        return dict(json.loads(self.result_file.read_text()))

    @property
    def budget_warnings(self) -> int:
        lines = self.log.read_text(errors="replace").lower().splitlines()
        return sum(BUDGET_WARNING in line and "warning" in line for line in lines)


@dataclass
class Run:
    """Children started together at ``start_at`` (wall clock) and told to stop at ``stop_at``."""

    start_at: float
    stop_at: float
    children: list[Child] = field(default_factory=list)


@contextmanager
def run_children(
    context: ForkServerContext,
    directory: Path,
    variables: dict[str, str],
    kinds: Sequence[tuple[str, dict[str, Any]]],
    *,
    seconds: float,
    ids_each: int,
    lead: float = 0.2,
) -> Iterator[Run]:
    """Start one child per ``(kind, arguments)`` (``"sync"``: :func:`~workers.send_updates`, ``"async"``:
    :func:`~workers.poll_interviews`); once all are ready, they start together ``lead`` seconds later and
    run for ``seconds``. Joined on leaving."""
    run = Run(0.0, 0.0)
    targets: dict[str, Callable[..., None]] = {"sync": workers.send_updates, "async": workers.poll_interviews}
    for index, (kind, arguments) in enumerate(kinds):
        log, result = directory / f"child-{index}.log", directory / f"child-{index}.json"
        ids = process_ids(index, ids_each)
        process = context.Process(
            target=targets[kind],
            args=(variables, ids),
            kwargs={"log": str(log), "result": str(result), **arguments},
        )
        process.start()
        run.children.append(Child(process, log, result, index))
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        for child in run.children:
            while not Path(f"{child.result_file}.ready").exists():
                if not child.process.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"child {child.index} did not start: see {child.log}")
                time.sleep(0.01)
        run.start_at = time.time() + lead
        run.stop_at = run.start_at + seconds
        for child in run.children:  # written, then renamed: a child never reads half of it
            Path(f"{child.result_file}.tmp").write_text(json.dumps([run.start_at, run.stop_at]))
            Path(f"{child.result_file}.tmp").rename(f"{child.result_file}.go")
        yield run
    finally:
        for child in run.children:
            child.process.join(timeout=seconds + 60)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()


def starts_by_process(server: HindsightEmulator) -> dict[int, list[float]]:
    """When the emulator received each process's requests (wall clock), by process index."""
    starts: dict[int, list[float]] = {}
    for request in server.requests:
        interview_id = int(request.path.rsplit("/", 1)[1])
        starts.setdefault((interview_id - 1) // IDS_PER_PROCESS, []).append(request.time)
    return starts


def count_between(times: Sequence[float], start: float, end: float) -> int:
    return sum(start <= moment < end for moment in times)
