"""The landing run in a child process, which a test may kill (see ``test_landing_killed.py``).

The child comes from a ``forkserver`` that has imported this module, and so Airflow, once.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from tests.helpers import FakeTaskInstance


def run_landing(arguments: dict[str, Any], connections: dict[str, str], log: str) -> None:
    """Run ``HindsightInterviewsToSqlOperator(**arguments)`` with exactly these ``AIRFLOW_CONN_*`` variables."""
    with open(log, "ab") as log_file:
        os.dup2(log_file.fileno(), sys.stdout.fileno())
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    for name in [name for name in os.environ if name.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    os.environ.update(connections)
    HindsightInterviewsToSqlOperator(**arguments).execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
