"""The transfer run in a child process, which a test may kill (see ``test_sync_interrupted.py``).

The child comes from a ``forkserver`` that has imported this module, and so Airflow, once: a fresh
interpreter per child would spend most of the test importing Airflow.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
from types import FrameType
from typing import Any

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator
from tests.helpers import FakeTaskInstance, enter_child
from tests.sync.helpers import DAG_ID


class _DagRun:
    def __init__(self, start_date: datetime.datetime | None) -> None:
        self.start_date = start_date


def run_transfer(
    arguments: dict[str, Any],
    connections: dict[str, str],
    log: str,
    summary_file: str = "",
    *,
    dag_run_start: str | None = None,
    on_kill_returns: bool = False,
) -> None:
    """Run ``SqlToHindsightOperator(**arguments)`` with exactly these ``AIRFLOW_CONN_*`` variables.

    Task logs go to ``log``; the summary, when the run ends, to ``summary_file`` as JSON.
    ``dag_run_start`` (ISO, UTC) is the ``start_date`` of ``context["dag_run"]``. On SIGTERM it calls
    ``on_kill``, then ends at once (exit code 143); with ``on_kill_returns`` it does what Airflow 3's
    task runner does: call ``on_kill`` and let ``execute`` go on (until the supervisor's SIGKILL).
    """
    enter_child(connections, log)
    with DAG(DAG_ID, schedule=None, start_date=datetime.datetime(2026, 1, 1)):  # a retry in the test is the same task
        operator = SqlToHindsightOperator(**arguments)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        operator.on_kill()
        if not on_kill_returns:
            os._exit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    start = datetime.datetime.fromisoformat(dag_run_start) if dag_run_start else None
    context: Any = {"ti": FakeTaskInstance(), "dag_run": _DagRun(start)}
    summary = operator.execute(context)
    if summary_file:
        with open(summary_file, "w") as summary_output:
            json.dump(summary, summary_output)
