"""The bulk create run in a child process, which a test may pause at a chosen point and kill.

The child comes from a ``forkserver`` that has imported this module, and so Airflow, once (see
``tests/sync/killable.py``). ``pause_at`` stops every worker that reaches a point after the first
``pause_after`` rows passed it, and writes ``marker``: the parent kills the child there, at a
known moment of a create, not at a random one.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

from airflow_provider_hindsight.ledgers.interviews import InterviewLedger
from airflow_provider_hindsight.operators.create import HindsightCreateInterviewsOperator
from tests.helpers import FakeTaskInstance, enter_child

POINTS = ("before_claim", "after_claim", "after_201")


def _pause(marker: str) -> None:
    Path(marker).touch()
    threading.Event().wait()  # until the parent kills the process


def _pause_at(point: str, pause_after: int, marker: str) -> None:
    counter = itertools.count(1)
    lock = threading.Lock()

    def due() -> bool:
        with lock:
            return next(counter) > pause_after

    claim, record_created = InterviewLedger.claim, InterviewLedger.record_created

    def paused_claim(self: InterviewLedger, *args: Any, **kwargs: Any) -> Any:
        if point == "before_claim" and due():
            _pause(marker)
        result = claim(self, *args, **kwargs)
        if point == "after_claim" and due():
            _pause(marker)
        return result

    def paused_record(self: InterviewLedger, *args: Any, **kwargs: Any) -> Any:
        if point == "after_201" and due():
            _pause(marker)
        return record_created(self, *args, **kwargs)

    InterviewLedger.claim = paused_claim  # type: ignore[method-assign]
    InterviewLedger.record_created = paused_record  # type: ignore[method-assign]


def run_create(
    arguments: dict[str, Any],
    connections: dict[str, str],
    log: str,
    summary_file: str = "",
    pause_at: str = "",
    pause_after: int = 0,
    marker: str = "",
    run_id: str = "manual__first",
) -> None:
    """Run ``HindsightCreateInterviewsOperator(**arguments)`` with exactly these ``AIRFLOW_CONN_*`` variables,
    as a try of the task instance of the DAG run ``run_id``."""
    enter_child(connections, log)
    if pause_at:
        _pause_at(pause_at, pause_after, marker)
    context = {"ti": FakeTaskInstance(), "run_id": run_id}
    summary = HindsightCreateInterviewsOperator(**arguments).execute(context)  # type: ignore[arg-type]
    if summary_file:
        Path(summary_file).write_text(json.dumps(summary))
