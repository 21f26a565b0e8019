"""The landing run in a child process, which a test may kill (see ``test_landing_killed.py``).

The child comes from a ``forkserver`` that has imported this module, and so Airflow, once.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator
from tests.helpers import FakeTaskInstance, enter_child


def run_landing(arguments: dict[str, Any], connections: dict[str, str], log: str) -> None:
    """Run ``HindsightInterviewsToSqlOperator(**arguments)`` with exactly these ``AIRFLOW_CONN_*`` variables."""
    enter_child(connections, log)
    HindsightInterviewsToSqlOperator(**arguments).execute({"ti": FakeTaskInstance()})  # type: ignore[arg-type]
