"""A real, throw-away Airflow for the test suite: its own home, SQLite database and DAGs folder.

The DAGs folder holds links to the example DAGs in ``dags/`` and to the test DAGs in
``tests/dag_files/``: Airflow 3 runs ``dag.test()`` only for DAGs it can parse from that folder.
The environment is set before anything imports Airflow.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import ROOT, is_airflow_2

DEBUG_LOGGERS = ("", "airflow", "airflow.task", "urllib3", "requests")
"""Loggers ``task_logs`` turns to DEBUG: the root, and those Airflow configures with a level of their own."""

if "HINDSIGHT_TEST_AIRFLOW_HOME" not in os.environ:  # once per run, however often this module is imported
    _home = Path(tempfile.mkdtemp(prefix="hindsight-airflow-home-"))
    (_home / "dags").mkdir()
    for source in [*sorted((ROOT / "dags").glob("*.py")), *sorted((ROOT / "tests" / "dag_files").glob("*.py"))]:
        (_home / "dags" / source.name).symlink_to(source)
    os.environ.update(
        {
            "HINDSIGHT_TEST_AIRFLOW_HOME": str(_home),
            "AIRFLOW_HOME": str(_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(_home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_home / 'airflow.db'}",
        }
    )
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_"):
            del os.environ[name]

AIRFLOW_HOME = Path(os.environ["HINDSIGHT_TEST_AIRFLOW_HOME"])
DAGS_FOLDER = AIRFLOW_HOME / "dags"
if str(DAGS_FOLDER) not in sys.path:  # as Airflow's DAG processor and task runner do: DAGs import their helpers
    sys.path.append(str(DAGS_FOLDER))

pytest_plugins = ["airflow_provider_hindsight.testing.pytest_plugin", "tests.support.postgres"]


def pytest_configure(config: pytest.Config) -> None:
    """On Airflow 3, a deprecation warning raised from the provider's or the examples' code fails the run."""
    if not is_airflow_2():
        for category in ("DeprecationWarning", "FutureWarning"):
            for module in ("airflow_provider_hindsight", r".*example_hindsight", r".*example_warehouse"):
                config.addinivalue_line("filterwarnings", f"error::{category}:{module}")


UNIT_LAYER = ROOT / "tests" / "unit"
"""Pure unit tests: no Airflow metadata database. Every other test gets one, made once per run."""


@pytest.fixture(autouse=True)
def _database_outside_the_unit_layer(request: pytest.FixtureRequest) -> None:
    if UNIT_LAYER not in request.node.path.parents:
        request.getfixturevalue("airflow_db")


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the Airflow metadata database, once, for the tests outside the unit layer."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dag_bag() -> Any:
    """Every DAG in the test DAGs folder, parsed once."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(str(DAGS_FOLDER), include_examples=False) if is_airflow_2() else DagBag(str(DAGS_FOLDER))


@pytest.fixture
def run_dag(dag_bag: Any) -> Callable[..., Any]:
    """Run a DAG from the DAGs folder with ``dag.test()`` and return its DagRun."""

    def run(dag_id: str, **run_conf: Any) -> Any:
        dag = dag_bag.get_dag(dag_id)
        assert dag is not None, f"{dag_id} not found; import errors: {dag_bag.import_errors}"
        return dag.test(run_conf=run_conf or None)

    return run


@pytest.fixture
def task_logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Callable[[], str]:
    """Everything tasks logged so far, DEBUG included: Airflow 3 task logs go to stdout, Airflow 2's to logging."""
    for name in DEBUG_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[str] = []

    def read() -> str:
        out, err = capfd.readouterr()
        seen.extend([out, err])
        return "".join(seen) + caplog.text

    return read
