"""Constants and helpers shared by these tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_hindsight.testing.ports import free_port as free_port  # the tests import it from here

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.process import BaseProcess

ROOT = Path(__file__).resolve().parent.parent


# --- runs in child processes that a test kills ---------------------------------------------------


def forkserver_preloading(module: str) -> multiprocessing.context.ForkServerContext:
    """Child processes forked from a server that imported ``module`` (and so Airflow) once: quick to start."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module])
    return context


def connection_variables() -> dict[str, str]:
    """This process's ``AIRFLOW_CONN_*`` variables: the connections a child process must see."""
    return {name: value for name, value in os.environ.items() if name.startswith("AIRFLOW_CONN_")}


def enter_child(connections: dict[str, str], log: str) -> None:
    """In a child process: write stdout and stderr to ``log`` and see exactly ``connections``."""
    with open(log, "ab") as log_file:
        os.dup2(log_file.fileno(), sys.stdout.fileno())
        os.dup2(log_file.fileno(), sys.stderr.fileno())
    for name in [name for name in os.environ if name.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    os.environ.update(connections)


def start_until(child: BaseProcess, condition: Callable[[], bool], what: str, log: Path, timeout: float = 60.0) -> None:
    """Start ``child`` and wait until ``condition()`` holds; fail with its log's end if it ends or stalls first."""
    child.start()
    deadline = time.monotonic() + timeout
    while not condition():
        if not child.is_alive() or time.monotonic() > deadline:
            child.kill()
            child.join()
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"the child ended or stalled before {what}:\n{text[-3000:]}")
        time.sleep(0.005)


def kill_child(child: BaseProcess, stop_signal: int = signal.SIGKILL) -> int:
    """Send ``stop_signal`` to ``child`` and wait for it to end; its exit code."""
    assert child.pid is not None
    os.kill(child.pid, stop_signal)
    child.join(timeout=30)
    assert child.exitcode is not None
    return child.exitcode


class FakeTaskInstance:
    """Collects what an operator pushes to XCom, standing in for ``context["ti"]``."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        self.xcom[key] = value


class Executed:
    """The outcome of one ``execute()``: the return value (or the error) and the XComs pushed."""

    def __init__(self, operator: Any, context: dict[str, Any] | None = None) -> None:
        self.ti = FakeTaskInstance()
        self.error: BaseException | None = None
        self.result: Any = None
        try:
            self.result = operator.execute({"ti": self.ti, **(context or {})})
        except Exception as error:
            self.error = error

    @property
    def summary(self) -> dict[str, Any]:
        return self.ti.xcom["summary"]


def is_airflow_2() -> bool:
    from airflow import __version__

    return __version__.startswith("2.")


def task_states(dag_run: Any) -> dict[str, str]:
    """``{task_id or task_id[map_index]: state}`` of a finished run."""
    return {
        ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
        for ti in dag_run.get_task_instances()
    }


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
    """An XCom a task of ``dag_run`` pushed, read from the metadata database (Airflow 2 and 3)."""
    if is_airflow_2():
        from airflow.models.xcom import XCom

        return XCom.get_one(run_id=dag_run.run_id, dag_id=dag_run.dag_id, task_id=task_id, key=key, map_index=map_index)
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(run_id=dag_run.run_id, dag_id=dag_run.dag_id, task_id=task_id, key=key, map_index=map_index)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
