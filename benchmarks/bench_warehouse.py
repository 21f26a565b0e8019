"""Benchmark: a real warehouse through ``SqlToHindsightOperator``, and runs that cannot succeed.

    python benchmarks/bench_warehouse.py            # about 3 minutes
    python benchmarks/bench_warehouse.py --quick    # smaller sizes, about a minute

1. Memory: a throw-away PostgreSQL server (the test suite's, ``tests/support/postgres.py``) holds
   1,000 and 1,000,000 rows; ``SqlToHindsightOperator`` reads each with ``dry_run=True`` (the whole
   read path: cursor, column mapping, row checks, duplicate detection, summary) in a fresh process,
   and the growth of that process's peak RSS is printed.
2. Stopping early, 50,000 rows through ``HindsightBulkUpdateInterviewsOperator`` against the emulator
   (in its own process): with a wrong API key (20 ms latency, 16 workers), and with the API
   unreachable (a closed port; the connection's default retries). Printed: seconds until the task
   failed, requests sent, and how many rows ended ``not_sent``.

Writes the numbers to ``docs/_generated/warehouse-numbers.md``. Linux only (reads ``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

from measure import ROOT, EmulatorSettings, emulator, reset_peak_memory, run_child, status_kib

from airflow_provider_hindsight.testing.ports import free_port

OUTPUT = ROOT / "docs" / "_generated" / "warehouse-numbers.md"
KEY = "bench-warehouse-key"


def measure_transfer(connection: str, table: str) -> dict[str, Any]:
    """In this fresh process: a dry run of the transfer over ``table``; rows and peak RSS growth in MiB."""
    os.environ["AIRFLOW_CONN_BENCH_WAREHOUSE"] = connection
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
        {"conn_type": "hindsight", "host": "http://127.0.0.1:9/api/v1", "password": KEY}
    )
    from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

    operator = SqlToHindsightOperator(
        task_id="bench",
        sql_conn_id="bench_warehouse",
        sql=f"SELECT interview_request_id, contact_name, title, notes FROM {table}",
        context_columns=["title", "notes"],
        dry_run=True,
        progress_interval=3600,
    )
    operator.db_hook.get_conn().close()  # import the driver and connect once before measuring
    reset_peak_memory()
    before = status_kib("VmRSS")
    started = time.perf_counter()
    summary = operator.execute({"ti": _TaskInstance()})
    seconds = time.perf_counter() - started
    return {"rows": summary["total"], "peak_growth_mib": (status_kib("VmHWM") - before) / 1024, "seconds": seconds}


def measure_stop(base_url: str, password: str, rows: int, extra: dict[str, Any]) -> dict[str, Any]:
    """In this process: a bulk run that cannot succeed; how long until the task failed, and how it ended."""
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
        {"conn_type": "hindsight", "host": base_url, "password": password, "extra": extra}
    )
    from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator

    updates = ({"interview_request_id": n, "objective": "Renewal"} for n in range(1, rows + 1))
    operator = HindsightBulkUpdateInterviewsOperator(task_id="bench", updates=updates, progress_interval=3600)
    task_instance = _TaskInstance()
    started = time.perf_counter()
    try:
        operator.execute({"ti": task_instance})
        error = "none"
    except Exception as raised:
        error = f"{type(raised).__name__} ({getattr(raised, 'code', '')})"
    seconds = time.perf_counter() - started
    summary = task_instance.xcom["summary"]
    not_sent = summary.get("stopped", {}).get("not_sent", 0)
    return {"seconds": seconds, "error": error, "total": summary["total"], "not_sent": not_sent}


class _TaskInstance:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        self.xcom[key] = value


def _child(task: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "AIRFLOW_HOME": task["airflow_home"], "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    return run_child(__file__, task, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000; 10,000 to stop")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        task = json.loads(arguments.child)
        if task["kind"] == "transfer":
            print(json.dumps(measure_transfer(task["connection"], task["table"])))
        else:
            print(json.dumps(measure_stop(task["base_url"], task["password"], task["rows"], task["extra"])))
        return

    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import PostgresServer

    large = 100_000 if arguments.quick else 1_000_000
    stop_rows = 10_000 if arguments.quick else 50_000
    home = tempfile.mkdtemp(prefix="bench-warehouse-airflow-")
    lines = ["| what | rows | result |", "| --- | ---: | --- |"]

    print("1. SqlToHindsightOperator reading PostgreSQL (dry run: the whole read path, nothing sent)\n")
    with PostgresServer.start() as server:
        database = server.create_database("bench_warehouse")
        growth: dict[int, float] = {}
        for size in (1_000, large):
            server.execute(
                f"CREATE TABLE deals_{size} AS SELECT g AS interview_request_id, 'Contact ' || g AS contact_name, "
                f"'VP Sales' AS title, repeat(md5(g::text), 3) AS notes FROM generate_series(1, {size}) AS g",
                database=database.name,
            )
            task = {"kind": "transfer", "connection": database.airflow_connection(), "table": f"deals_{size}"}
            result = _child({**task, "airflow_home": home})
            assert result["rows"] == size, result
            growth[size] = result["peak_growth_mib"]
            print(
                f"   {size:>10,} rows: peak RSS growth {result['peak_growth_mib']:6.1f} MiB in {result['seconds']:.1f}s"
            )
            lines.append(
                f"| transfer from PostgreSQL, dry run | {size:,} | peak memory +{result['peak_growth_mib']:.1f} MiB, "
                f"{result['seconds']:.1f} s |"
            )
        print(f"   difference: {growth[large] - growth[1_000]:.1f} MiB (target: within 50 MB)\n")

    print(f"2. A bulk run of {stop_rows:,} rows that cannot succeed (16 workers)\n")
    with emulator(EmulatorSettings(latency=0.02)) as server:
        result = _child(
            {
                "kind": "stop",
                "base_url": server.base_url,
                "password": "a-wrong-key",
                "rows": stop_rows,
                "extra": {"requests_per_minute": 60_000},
                "airflow_home": home,
            }
        )
        sent = server.requests()
    print(
        f"   wrong key:       failed in {result['seconds']:5.1f}s with {result['error']}; {sent} requests sent "
        f"(16 workers); {result['not_sent']:,} rows not sent"
    )
    lines.append(
        f"| wrong API key, 20 ms latency | {stop_rows:,} | task failed in {result['seconds']:.1f} s, {sent} requests "
        f"sent, {result['not_sent']:,} rows `not_sent` |"
    )
    result = _child(
        {
            "kind": "stop",
            "base_url": f"http://127.0.0.1:{free_port()}/api/v1",
            "password": KEY,
            "rows": stop_rows,
            "extra": {"plan": "enterprise"},
            "airflow_home": home,
        }
    )
    print(
        f"   API unreachable: failed in {result['seconds']:5.1f}s with {result['error']}; "
        f"{result['not_sent']:,} rows not sent"
    )
    lines.append(
        f"| API unreachable (refused), Enterprise pace, 5 retries a row | {stop_rows:,} | task failed in "
        f"{result['seconds']:.1f} s, {result['not_sent']:,} rows `not_sent` |"
    )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(
        "<!-- Written by benchmarks/bench_warehouse.py: do not edit by hand. -->\n\n" + "\n".join(lines) + "\n"
    )
    print(f"\nWrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
