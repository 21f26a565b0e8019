"""Run every example DAG on a real Airflow against the local Hindsight emulator: no key, no network.

Makes a throw-away Airflow home under ``.demo/``, starts the emulator on 127.0.0.1 (it completes each
interview a few seconds after it is created: ``complete_after``), points the ``hindsight_default``
connection at it and the warehouse connection at a SQLite file, runs each example DAG with
``airflow dags test`` (the lifecycle DAG's deferred sensor runs its trigger inline), then prints what
the emulator holds for each interview, the transcripts the lifecycle DAG landed and its analysis.

On Airflow 3 it then runs ``example_hindsight_answers`` the way it runs in production: a throw-away
deployment (api-server, scheduler, dag-processor, triggerer) whose asset watcher lands the answers
of freshly created interviews, which the emulator completes as ``ANSWERS`` has it (some contacts
answer sooner, some later, some never), and the DAG on the asset runs for them.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from airflow_provider_hindsight.testing import CompletionModel, HindsightEmulator
from airflow_provider_hindsight.testing.deployment import COMPONENTS, AirflowDeployment

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
    "example_hindsight_lifecycle",
    "example_hindsight_landing",
    "example_hindsight_history_alert",
]
COMPLETE_AFTER = 4.0
"""Seconds after its creation the emulator completes an interview (a contact answering, sped up)."""
ANSWERS = CompletionModel(median=25.0, sigma=0.35, never_share=0.25, seed=28)
"""When the watcher's interviews complete (seeded: the same in every run): late enough that answers come while
the watcher watches, spread so that they come in more than one batch, and one contact never answers."""
WATCHER_WAIT_SECONDS = 90.0
"""From the deployment's start until the triggerer runs the watcher (the dag-processor registers it first)."""
ANSWERS_WAIT_SECONDS = 150.0
"""From the deployment's start until example_hindsight_answers has run for every answer."""


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
        "HINDSIGHT_EXAMPLE_POKE_INTERVAL": "2",
        "AIRFLOW_CONN_HINDSIGHT_EXAMPLE_WAREHOUSE": json.dumps(
            {"conn_type": "sqlite", "host": str(DEMO_HOME / "warehouse.db")}
        ),
    }
    print("Setting up a throw-away Airflow in .demo/ ...", flush=True)
    if not airflow("db", "migrate", env=env, log=DEMO_HOME / "logs" / "db-migrate.log"):
        print("airflow db migrate failed: see .demo/logs/db-migrate.log")
        return 1

    with HindsightEmulator(api_key=DEMO_KEY, requests_per_minute=1000, complete_after=COMPLETE_AFTER) as emulator:
        connection = emulator.connection()  # paced at the emulator's limit: the Enterprise plan's
        del connection["conn_id"]
        connection["extra"]["history_conn_id"] = "hindsight_example_warehouse"  # every run's history, in SQL
        env["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(connection)
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
        # the lifecycle example's contacts have addresses of their own: its rows are shown further down
        created = [
            r for r in emulator.created_interviews() if not r["contact_email"].endswith("@lifecycle.example.com")
        ]

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
    print_landed(DEMO_HOME / "warehouse.db")
    print_history(DEMO_HOME / "warehouse.db")
    if not airflow_2() and not run_answers_watcher():
        failed.append("example_hindsight_answers")
    if failed:
        print(f"\n{len(failed)} DAG(s) failed; their logs are in .demo/logs/: {', '.join(failed)}")
        return 1
    print("\nAll example DAGs succeeded. Task logs: .demo/logs/")
    return 0


def airflow_2() -> bool:
    from airflow import __version__

    return __version__.startswith("2.")


def run_answers_watcher() -> bool:
    """Airflow 3: create interviews, start a deployment, and wait for example_hindsight_answers to run for them."""
    home = DEMO_HOME / "answers"
    warehouse = home / "warehouse.db"
    home.mkdir(parents=True)
    print("\nexample_hindsight_answers on a running Airflow 3 deployment ...")
    phase_started = time.monotonic()
    with HindsightEmulator(api_key=DEMO_KEY, requests_per_minute=1000, completion=ANSWERS) as emulator:
        name, value = emulator.connection_env()
        env = {  # the deployment's own home and database: nothing of the first part's Airflow
            name: value,
            "AIRFLOW_CONN_HINDSIGHT_EXAMPLE_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
            "HINDSIGHT_EXAMPLE_ANSWERS_POLL_INTERVAL": "5",
            "HINDSIGHT_EXAMPLE_ANSWERS_BATCH_WINDOW": "5",
        }
        deployment = AirflowDeployment(home, ROOT / "dags", env=env)
        try:
            deployment.migrate()
            # the lifecycle's deals and interviews (the ledger's created rows) only, in one run: the watcher does
            # the rest; the later tasks are marked successful, not run
            done = deployment.airflow(
                "dags",
                "test",
                "example_hindsight_lifecycle",
                "--mark-success-pattern",
                "(?!load_closed_deals$|create_interviews$).*",
            )
            if done.returncode != 0:
                print(f"  FAILED creating the interviews:\n{done.stdout[-2000:]}")
                return False
            created = sorted(r["interview_request_id"] for r in emulator.created_interviews())
            answered = {key: delay for key in created if (delay := ANSWERS.answer_delay(key)) is not None}
            print(
                f"  created interviews {created}; the emulator answers "
                + ", ".join(f"{key} after {delay:.0f}s" for key, delay in answered.items())
                + f", never {sorted(set(created) - set(answered))}; starting the deployment",
                flush=True,
            )
            started = time.monotonic()
            deployment.start()
            if not wait_for_watcher(deployment.database, started):
                return False
            print(f"  ok     the triggerer runs the asset's watcher, {time.monotonic() - started:.0f}s after start")
            announced = wait_for_answers_runs(deployment.database, set(answered), started)
        finally:
            deployment.stop()
            for component in COMPONENTS:
                (DEMO_HOME / "logs" / f"answers-{component}.log").write_text(deployment.log(component))
    if announced is None:
        print(
            f"  FAILED: no run of example_hindsight_answers for every answer in {ANSWERS_WAIT_SECONDS:.0f}s; see "
            ".demo/logs/answers-triggerer.log (the watcher's events) and answers-scheduler.log (the runs)"
        )
        return False
    for run_id, ids, seconds in announced:
        print(f"  ok     example_hindsight_answers ran ({run_id}) for the answers to {ids}, {seconds:.0f}s after start")
    print(f"  the answers phase took {time.monotonic() - phase_started:.0f}s")
    return True


def metadata_rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of the deployment's metadata database; none while it is busy (a component writing)."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1.0)) as metadata:
            return metadata.execute(sql).fetchall()
    except sqlite3.Error:
        return []


def wait_for_watcher(database: Path, started: float) -> bool:
    """Until the triggerer runs the asset's watcher: a DAG sync (the CLI's, the dag-processor's) registers it first."""
    while time.monotonic() - started < WATCHER_WAIT_SECONDS:
        time.sleep(1)
        if metadata_rows(
            database,
            "SELECT 1 FROM asset_watcher AS w JOIN trigger AS t ON t.id = w.trigger_id "
            "WHERE w.name = 'hindsight_answers' AND t.triggerer_id IS NOT NULL",
        ):
            return True
    registered = metadata_rows(database, "SELECT 1 FROM asset_watcher WHERE name = 'hindsight_answers'")
    paused = metadata_rows(database, "SELECT is_paused FROM dag WHERE dag_id = 'example_hindsight_answers'")
    if registered:
        print(
            f"  FAILED: the triggerer took no watcher in {WATCHER_WAIT_SECONDS:.0f}s (it is registered); "
            "see .demo/logs/answers-triggerer.log"
        )
    else:
        state = "not parsed yet" if not paused else ("paused" if paused[0][0] else "active")
        print(
            f"  FAILED: the dag-processor registered no watcher in {WATCHER_WAIT_SECONDS:.0f}s "
            f"(example_hindsight_answers: {state}; the asset of a paused DAG gets none); "
            "see .demo/logs/answers-dag-processor.log"
        )
    return False


def wait_for_answers_runs(
    database: Path, expected: set[int], started: float
) -> list[tuple[str, list[int], float]] | None:
    """The successful runs of example_hindsight_answers and their asset events' ids, once they cover ``expected``."""
    runs: list[tuple[str, list[int], float]] = []
    seen: set[str] = set()
    while time.monotonic() - started < ANSWERS_WAIT_SECONDS:
        time.sleep(1)
        rows = metadata_rows(
            database,
            "SELECT r.run_id, e.extra FROM dag_run AS r "
            "JOIN dagrun_asset_event AS l ON l.dag_run_id = r.id JOIN asset_event AS e ON e.id = l.event_id "
            "WHERE r.dag_id = 'example_hindsight_answers' AND r.state = 'success'",
        )
        for run_id, extra in rows:
            if run_id not in seen:
                seen.add(run_id)
                ids = json.loads(extra)["payload"]["interview_request_ids"]
                runs.append((run_id, ids, time.monotonic() - started))
        if {key for _, ids, _ in runs for key in ids} >= expected:
            return runs
    return None


def print_landed(warehouse: Path) -> None:
    """The rows the lifecycle DAG landed in hindsight_transcripts, and which competitors they name."""
    if not warehouse.exists():
        return
    sys.path.insert(0, str(ROOT / "dags"))  # as Airflow does for the DAGs it parses: they import example_warehouse
    from example_hindsight_lifecycle import INTERVIEWS_SQL

    with closing(sqlite3.connect(warehouse)) as database:
        try:
            rows = database.execute(
                "SELECT t.interview_request_id, t.status, t.deal_id, t.transcript_document_id, length(t.transcript), "
                "substr(replace(t.transcript, char(10), ' '), 1, 70) FROM hindsight_transcripts AS t "
                f"JOIN ({INTERVIEWS_SQL}) AS i ON i.interview_request_id = t.interview_request_id ORDER BY 1"
            ).fetchall()
        except sqlite3.Error:
            return
    print(f"\nThe lifecycle DAG landed its {len(rows)} interviews in hindsight_transcripts:\n")
    print(f"{'id':>6}  {'status':<10} {'document':<22} {'chars':>5}  transcript")
    for interview_id, status, _, document, length, start in rows:
        print(f"{interview_id:>6}  {status:<10} {document or '-':<22} {length or 0:>5}  {start or '-'}…")
    with closing(sqlite3.connect(warehouse)) as database:
        named = database.execute(
            "SELECT c.competitor, COUNT(t.interview_request_id) FROM (SELECT DISTINCT competitor FROM lifecycle_deals "
            "WHERE competitor IS NOT NULL) AS c JOIN hindsight_transcripts t ON t.status = 'completed' AND "
            f"t.transcript LIKE '%' || c.competitor || '%' JOIN ({INTERVIEWS_SQL}) AS i "
            "ON i.interview_request_id = t.interview_request_id GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    print("\nCompetitors the transcripts name: " + ", ".join(f"{name} ({count})" for name, count in named))


def print_history(warehouse: Path) -> None:
    """The run history every DAG run wrote (the connection's history_conn_id): runs by operation and state."""
    with closing(sqlite3.connect(warehouse)) as database:
        try:
            rows = database.execute(
                "SELECT operation, state, COUNT(*), SUM(requests), COUNT(error_code) FROM hindsight_runs "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            failed_rows = database.execute("SELECT COUNT(*) FROM hindsight_runs_rows").fetchone()[0]
        except sqlite3.Error:
            return
    print("\nThe run history in hindsight_runs (see docs/history.md for the SQL):\n")
    print(f"{'operation':<10} {'state':<10} {'runs':>4} {'requests':>8}")
    for operation, state, runs, requests, _ in rows:
        print(f"{operation:<10} {state:<10} {runs:>4} {requests or 0:>8}")
    print(f"and {failed_rows} rows that did not succeed in hindsight_runs_rows.")


if __name__ == "__main__":
    sys.exit(main())
