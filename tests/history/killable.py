"""A bulk update with run history in a child process, which a test may kill (see ``test_history_killed.py``).

The child comes from a ``forkserver`` that has imported this module, and so Airflow, once.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator
from tests.helpers import enter_child
from tests.history.helpers import Tried


def run_update(arguments: dict[str, Any], try_number: int, connections: dict[str, str], log: str) -> None:
    """One try of ``HindsightBulkUpdateInterviewsOperator(**arguments)`` with exactly these ``AIRFLOW_CONN_*``."""
    enter_child(connections, log)
    tried = Tried(HindsightBulkUpdateInterviewsOperator(**arguments), try_number=try_number)
    if tried.error is not None:
        raise tried.error
