"""Constants and helpers shared by these tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on (free when asked: connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
