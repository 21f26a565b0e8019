"""The transfer run in a child process, which a test may kill (see ``test_sync_interrupted.py``).

The child comes from a ``forkserver`` that has imported this module, and so Airflow, once: a fresh
interpreter per child would spend most of the test importing Airflow.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType
from typing import Any

from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator


class _TaskInstance:
    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


def run_transfer(arguments: dict[str, Any], connections: dict[str, str], log: str, summary_file: str = "") -> None:
    """Run ``SqlToHindsightOperator(**arguments)`` with exactly these ``AIRFLOW_CONN_*`` variables.

    Task logs go to ``log``; the summary, when the run ends, to ``summary_file`` as JSON. On SIGTERM
    it does what Airflow's task runner does: call ``on_kill``, then end (exit code 143).
    """
    with open(log, "ab") as log_file:
        os.dup2(log_file.fileno(), sys.stdout.fileno())
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    for name in [name for name in os.environ if name.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    os.environ.update(connections)
    operator = SqlToHindsightOperator(**arguments)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        operator.on_kill()
        os._exit(143)

    signal.signal(signal.SIGTERM, on_sigterm)
    context: Any = {"ti": _TaskInstance()}
    summary = operator.execute(context)
    if summary_file:
        with open(summary_file, "w") as summary_output:
            json.dump(summary, summary_output)
