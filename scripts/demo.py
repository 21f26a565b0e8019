"""Run every example DAG on a real Airflow against the local Hindsight emulator: no key, no network.

Makes a throw-away Airflow home under ``.demo/``, starts the emulator on 127.0.0.1, points the
``hindsight_default`` connection at it and the warehouse connection at a SQLite file, runs each
example DAG with ``airflow dags test``, then prints what the emulator holds for each interview.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from airflow_provider_hindsight.testing import HindsightEmulator

ROOT = Path(__file__).resolve().parent.parent
DEMO_HOME = ROOT / ".demo"
DEMO_KEY = "demo-key"
TABLE_ROWS_PER_EXAMPLE = 4
DAG_IDS = [
    "example_hindsight_single",
    "example_hindsight_mapped",
    "example_hindsight_bulk",
    "example_warehouse_load",
    "example_hindsight_warehouse_refresh",
    "example_hindsight_create",
]


def airflow(*args: str, env: dict[str, str], log: Path) -> bool:
    """Run an ``airflow`` CLI command, its output to ``log``; True when it succeeded."""
    with log.open("w") as output:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=env, stdout=output, stderr=subprocess.STDOUT, check=False
        )
    return result.returncode == 0


def shorten(value: object, width: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> int:
    shutil.rmtree(DEMO_HOME, ignore_errors=True)
    (DEMO_HOME / "logs").mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{DEMO_HOME / 'airflow.db'}",
        "AIRFLOW_CONN_HINDSIGHT_EXAMPLE_WAREHOUSE": json.dumps(
            {"conn_type": "sqlite", "host": str(DEMO_HOME / "warehouse.db")}
        ),
    }
    print("Setting up a throw-away Airflow in .demo/ ...", flush=True)
    if not airflow("db", "migrate", env=env, log=DEMO_HOME / "logs" / "db-migrate.log"):
        print("airflow db migrate failed: see .demo/logs/db-migrate.log")
        return 1

    with HindsightEmulator(api_key=DEMO_KEY, requests_per_minute=1000) as emulator:
        env["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
            {"conn_type": "hindsight", "host": emulator.base_url, "password": DEMO_KEY, "extra": {"plan": "enterprise"}}
        )
        print(f"Hindsight emulator on {emulator.base_url} (Enterprise plan: 1,000 requests a minute)\n", flush=True)
        failed = []
        for dag_id in DAG_IDS:
            started = time.monotonic()
            ok = airflow("dags", "test", dag_id, env=env, log=DEMO_HOME / "logs" / f"{dag_id}.log")
            print(f"  {'ok    ' if ok else 'FAILED'} {dag_id:<40} {time.monotonic() - started:5.1f}s", flush=True)
            if not ok:
                failed.append(dag_id)
        interviews = emulator.interviews
        statuses = emulator.status_counts
        created = emulator.created_interviews()

    print(f"\nThe emulator received {sum(statuses.values())} requests: {dict(sorted(statuses.items()))}")
    print(f"It now holds {len(interviews)} interviews:\n")
    print(f"{'id':>6}  {'contact_name':<14}  {'objective':<42}  contact_context")
    shown = 0
    for interview_id, state in sorted(interviews.items()):
        if interview_id % 1000 > TABLE_ROWS_PER_EXAMPLE and interview_id // 1000 != 4:
            continue  # a few rows of each example DAG's block of ids is enough to see it worked
        shown += 1
        print(
            f"{interview_id:>6}  {shorten(state['contact_name'] or '-', 14):<14}  "
            f"{shorten(state['objective'] or '-', 42):<42}  {shorten(state['contact_context'] or '-', 60)}"
        )
    if len(interviews) > shown:
        print(f"   ... and {len(interviews) - shown} more")
    print(f"\nexample_hindsight_create created {len(created)} interview requests, each once:\n")
    print(f"{'id':>6}  {'contact_name':<14}  {'status':<8}  survey link")
    for record in created:
        print(
            f"{record['interview_request_id']:>6}  {shorten(record['contact_name'] or '-', 14):<14}  "
            f"{record['status']:<8}  {record['survey_url']}"
        )
    if failed:
        print(f"\n{len(failed)} DAG(s) failed; their logs are in .demo/logs/: {', '.join(failed)}")
        return 1
    print("\nAll example DAGs succeeded. Task logs: .demo/logs/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
