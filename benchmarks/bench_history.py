"""Benchmark: a bulk run at the plan's limit with run history on, beside the same run without it.

    python benchmarks/bench_history.py            # the default run (make benchmark), about 2 minutes
    python benchmarks/bench_history.py --quick    # a smaller run, about 1 minute

The emulator runs in its own process (``emulator_process.py``) at a rate limit (50 requests in any
one second) and 50 ms of latency; 5 % of the rows are malformed (they fail before any request), so
that history runs write rows that did not succeed too. Runs without and with history alternate in this
one process, so that a change of the machine's load hits both alike; each run's time is its whole
``execute()``, the history's final wait for its writes included. The history store is a SQLite
file. Rewrites ``docs/_generated/history-numbers.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from measure import API_KEY, HERE, EmulatorSettings, emulator, progress

NUMBERS_PAGE = HERE.parent / "docs" / "_generated" / "history-numbers.md"
LIMIT = 3000
"""Requests a minute the emulator allows (50 in any one second): the plan's limit of this benchmark."""
LATENCY = 0.05
FAILING_SHARE = 0.05
TARGET_PERCENT = 2.0


class _XComSink:
    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


def one_run(conn_id: str, rows: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator

    operator = HindsightBulkUpdateInterviewsOperator(
        task_id="bench", hindsight_conn_id=conn_id, updates=rows, max_failures=1.0, max_workers=8
    )
    started = time.perf_counter()
    summary = operator.execute({"ti": _XComSink(), "run_id": f"bench_{time.time_ns()}"})  # type: ignore[arg-type]
    return time.perf_counter() - started, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows_per_run, pairs = (300, 3) if args.quick else (600, 4)
    home = Path(tempfile.mkdtemp(prefix="bench-history-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW_CONN_BENCH_HISTORY_STORE": json.dumps({"conn_type": "sqlite", "host": str(home / "history.db")}),
        }
    )
    malformed = int(rows_per_run * FAILING_SHARE)
    rows: list[dict[str, Any]] = [
        {"interview_request_id": n, "objective": f"Renewal {n}"} for n in range(1, rows_per_run - malformed + 1)
    ]
    rows += [{"interview_request_id": f"deal-{n}"} for n in range(malformed)]
    load_start = os.getloadavg()[0]
    began = time.monotonic()
    timings: dict[str, list[float]] = {"without": [], "with": []}
    settings = EmulatorSettings(requests_per_minute=LIMIT, rate_window=1.0, latency=LATENCY)
    with emulator(settings) as api:
        for name, extra in (("without", {}), ("with", {"history_conn_id": "bench_history_store"})):
            connection = {"conn_type": "hindsight", "host": api.base_url, "password": API_KEY}
            connection["extra"] = {"requests_per_minute": LIMIT, **extra}
            os.environ[f"AIRFLOW_CONN_BENCH_{name.upper()}"] = json.dumps(connection)
        for pair in range(pairs):
            order = ("without", "with") if pair % 2 == 0 else ("with", "without")
            for name in order:
                seconds, summary = one_run(f"bench_{name}", rows)
                assert summary["total"] == rows_per_run and summary["failed"] == malformed, summary
                timings[name].append(seconds)
                progress(f"pair {pair + 1}/{pairs}, {name} history: {seconds:.2f} s")
    without, with_history = statistics.median(timings["without"]), statistics.median(timings["with"])
    difference = (with_history - without) / without * 100
    recorded = _recorded(home / "history.db")
    write_numbers_page(
        rows_per_run,
        pairs,
        timings,
        difference,
        recorded,
        {
            "date": time.strftime("%Y-%m-%d"),
            "minutes": (time.monotonic() - began) / 60,
            "load_start": load_start,
            "load_end": os.getloadavg()[0],
            "quick": args.quick,
        },
    )
    print(f"without {without:.2f} s, with {with_history:.2f} s: {difference:+.1f} %; wrote {NUMBERS_PAGE.name}")
    return 0


def _recorded(path: Path) -> tuple[int, int]:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(path)) as database:
        runs = database.execute("SELECT COUNT(*) FROM hindsight_runs WHERE state = 'succeeded'").fetchone()[0]
        rows = database.execute("SELECT COUNT(*) FROM hindsight_runs_rows").fetchone()[0]
    return int(runs), int(rows)


def write_numbers_page(
    rows: int,
    pairs: int,
    timings: dict[str, list[float]],
    difference: float,
    recorded: tuple[int, int],
    run: dict[str, Any],
) -> None:
    from airflow import __version__ as airflow_version

    from airflow_provider_hindsight import __version__

    def cells(values: list[float]) -> str:
        return ", ".join(f"{value:.2f}" for value in values)

    lines = [
        f"<!-- Written by benchmarks/bench_history.py ({'quick' if run['quick'] else 'default'} run): do not edit by "
        "hand; run `make benchmark`. -->",
        "",
        f"Measured {run['date']} ({run['minutes']:.1f} minutes in all) on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, apache-airflow {airflow_version}, "
        f"airflow-provider-hindsight {__version__}: {pairs} runs of {rows:,} rows each way, alternating, against the "
        f"emulator in its own process at {LIMIT:,} requests a minute (50 in any one second) with "
        f"{LATENCY * 1000:.0f} ms of latency; {FAILING_SHARE:.0%} of the rows are malformed (they fail before any "
        "request). The history store is a SQLite file. The machine is shared: its load average was "
        f"{run['load_start']:.1f} at the start and {run['load_end']:.1f} at the end.",
        "",
        "| run | seconds, each run | median |",
        "| --- | --- | ---: |",
        f"| without history | {cells(timings['without'])} | {statistics.median(timings['without']):.2f} |",
        f"| with history | {cells(timings['with'])} | {statistics.median(timings['with']):.2f} |",
        "",
        f"The history wrote {recorded[0]} runs (`succeeded`) and {recorded[1]:,} rows that did not succeed.",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
        f"| a run at the plan's limit with history within {TARGET_PERCENT:g} % of the same run without it "
        f"| {difference:+.1f} % | {'yes' if difference <= TARGET_PERCENT else 'no'} |",
        "",
    ]
    NUMBERS_PAGE.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
