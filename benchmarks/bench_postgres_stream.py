"""Benchmark: client memory while reading a Postgres result with ``streaming_cursor`` vs the driver's plain cursor.

    python benchmarks/bench_postgres_stream.py              # 1,000 and 1,000,000 rows, about 15 seconds
    python benchmarks/bench_postgres_stream.py --rows 1000 50000

Starts a throw-away PostgreSQL server on 127.0.0.1 (the test suite's, from ``tests/support/postgres.py``),
fills one table per size with ``generate_series`` (an id, a name and 100 characters of notes per row),
then reads each table with ``fetchmany(1000)`` in a fresh Python process per (driver, cursor, size):
psycopg2 and psycopg 3, each through ``streaming_cursor`` (a server-side cursor) and through
``connection.cursor()`` (client-side: the whole result arrives on ``execute()``). The number is the
growth of the process's peak RSS while reading: the peak (``VmHWM``, reset through
``/proc/self/clear_refs`` just before ``execute()``) minus the RSS at that moment. Linux only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any

from measure import ROOT, reset_peak_memory, run_child, status_kib

BATCH = 1000
DRIVERS = ("psycopg2", "psycopg")
CURSORS = ("streaming_cursor", "plain cursor")


def measure(driver: str, cursor_kind: str, params: dict[str, Any], table: str) -> dict[str, Any]:
    """In this (fresh) process: read ``table`` with ``fetchmany(BATCH)``; rows and peak RSS growth in MiB."""
    from airflow_provider_hindsight.transfers.streaming import streaming_cursor, streaming_kind

    module = importlib.import_module(driver)
    connection = module.connect(**params)
    kind = streaming_kind(connection) if cursor_kind == "streaming_cursor" else "client-side cursor"
    reset_peak_memory()
    before = status_kib("VmRSS")
    started = time.perf_counter()
    if cursor_kind == "streaming_cursor":
        with streaming_cursor(connection) as cursor:
            rows = _drain(cursor, table)
    else:
        cursor = connection.cursor()
        rows = _drain(cursor, table)
        cursor.close()
    seconds = time.perf_counter() - started
    peak_growth = status_kib("VmHWM") - before
    connection.close()
    return {"rows": rows, "kind": kind, "peak_growth_mib": peak_growth / 1024, "seconds": seconds}


def _drain(cursor: Any, table: str) -> int:
    cursor.execute(f"SELECT interview_request_id, contact_name, notes FROM {table}")
    count = 0
    while batch := cursor.fetchmany(BATCH):
        count += len(batch)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 1_000_000], help="table sizes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        task = json.loads(arguments.child)
        print(json.dumps(measure(task["driver"], task["cursor"], task["params"], task["table"])))
        return

    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import PostgresServer

    with PostgresServer.start() as server:
        database = server.create_database("bench_stream")
        for size in arguments.rows:
            server.execute(
                f"CREATE TABLE deals_{size} AS SELECT g AS interview_request_id, 'Contact ' || g AS contact_name, "
                f"repeat(md5(g::text), 3) || 'abcd' AS notes FROM generate_series(1, {size}) AS g",
                database=database.name,
            )
        print(f"PostgreSQL on 127.0.0.1:{server.port}; fetchmany({BATCH}); peak RSS growth while reading\n")
        print(f"{'rows':>10}  {'driver':<9} {'cursor':<34} {'peak RSS growth':>16} {'seconds':>8}")
        for size in arguments.rows:
            for driver in DRIVERS:
                for cursor_kind in CURSORS:
                    table = f"deals_{size}"
                    task = {"driver": driver, "cursor": cursor_kind, "params": database.params, "table": table}
                    result = run_child(__file__, task)
                    assert result["rows"] == size, result
                    print(
                        f"{size:>10,}  {driver:<9} {result['kind']:<34} {result['peak_growth_mib']:>12.1f} MiB "
                        f"{result['seconds']:>8.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
