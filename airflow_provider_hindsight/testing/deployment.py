"""A throw-away Airflow 3 deployment on this machine: api-server, scheduler, dag-processor and triggerer.

What ``airflow standalone`` runs, as separate processes so that one can be killed and started
again: a temporary ``AIRFLOW_HOME``, SQLite metadata, the ``LocalExecutor``, the API on a free
loopback port, DAGs not paused at creation. For tests, the demo and benchmarks of asset watchers::

    with AirflowDeployment(home, dags_folder, env={"AIRFLOW_CONN_...": ...}) as airflow:
        airflow.start()                  # every component
        airflow.kill("triggerer")        # kill -9 of its process group
        airflow.start("triggerer")

Each component's output goes to ``<home>/logs/<component>.log``, its metadata to ``<home>/airflow.db``
(:attr:`AirflowDeployment.database`). ``env`` adds connections and settings; it may not move the
home, the database, the DAGs folder or the API's address, which are the deployment's own: an
environment copied from another Airflow would point every component at that Airflow's database,
where its DAGs are paused and no asset watcher is ever registered. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from airflow_provider_hindsight.testing.ports import free_port

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STOP_SECONDS = 15.0
OWN_SETTINGS = (
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
)
"""What makes a deployment its own: ``env`` may not set these."""


class AirflowDeployment:
    """Airflow's components in ``home`` (made if missing), reading DAGs from ``dags_folder``; ``env`` added."""

    def __init__(
        self, home: Path, dags_folder: Path, *, env: Mapping[str, str] | None = None, python: str = sys.executable
    ) -> None:
        moved = sorted(set(env or {}) & set(OWN_SETTINGS))
        if moved:
            raise ValueError(
                f"env sets {', '.join(moved)}, which AirflowDeployment sets itself (its home, its database "
                f"<home>/airflow.db, dags_folder, its API port): pass only connections and other settings in env"
            )
        self.home = Path(home)
        self.database = self.home / "airflow.db"
        self.logs = self.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.port = free_port()
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.database}",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def airflow(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """An ``airflow`` CLI command in this deployment, its output captured."""
        return subprocess.run(
            [self.python, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def migrate(self) -> None:
        """Create the metadata database; raises with its output when it fails."""
        done = self.airflow("db", "migrate")
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def start(self, *components: str) -> None:
        """Start these components (all when none are named), each in a process group of its own."""
        for name in components or COMPONENTS:
            if name not in COMPONENTS:
                raise ValueError(f"component must be one of {', '.join(COMPONENTS)}, got {name!r}")
            with (self.logs / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    [self.python, "-m", "airflow", name],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def kill(self, name: str) -> None:
        """``kill -9`` of a component and its children (its process group), as a machine dying would."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        """SIGTERM every component, then SIGKILL what is left after a few seconds."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> AirflowDeployment:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
