"""Benchmark: the bulk engine against per-row alternatives, over real HTTP to a local Hindsight emulator.

    python benchmarks/bench_bulk.py            # the default run (make benchmark), about 5 minutes on 2 cores
    python benchmarks/bench_bulk.py --quick    # a smaller run, about 2 minutes

Needs this package, Airflow, apache-airflow-providers-http and -sqlite, and matplotlib for the charts.
The emulator runs in its own process (``emulator_process.py``) and every approach runs in a fresh
Python process, so that each peak-memory figure (the process's RSS high-water mark, from
``resource.getrusage``) belongs to that approach alone.

A run of every approach rewrites what ``docs/performance.md`` shows: the numbers in
``docs/_generated/performance-numbers.md`` and the charts ``docs/_static/performance-*.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from measure import API_KEY, HERE, EmulatorProcess, EmulatorSettings, emulator, progress

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "performance-numbers.md"
CHARTS = {
    "throughput": DOCS / "_static" / "performance-throughput.png",
    "memory": DOCS / "_static" / "performance-memory.png",
    "overhead": DOCS / "_static" / "performance-overhead.png",
}
APPROACH_KEYS = "abcdef"
LIMIT = 3000
"""Requests a minute the emulator allows for a) to d): 50 in any one second (``rate_window=1.0``)."""
LATENCY = 0.05
"""Seconds the emulator waits before each answer for a) to d), like a real API across the internet."""
OVERHEAD_BLOCKS = 50
"""f) alternates the hook loop and the bare loop in this many blocks each."""
UNPACED = 6_000_000
"""The connection's pace when the emulator has no limit (e and f): 100,000 a second, never reached."""
WAREHOUSE_CONN_ID = "bench_warehouse"
HTTP_CONN_ID = "bench_http"
SQL = "SELECT interview_request_id, contact_name, title, stage, amount, notes FROM deals ORDER BY interview_request_id"


# -- the parent: emulators, worker processes, the table --------------------------------------------


LIMITED = EmulatorSettings(requests_per_minute=LIMIT, rate_window=1.0, latency=LATENCY)
UNLIMITED = EmulatorSettings()


@dataclass
class Measurement:
    """One worker run: what it did, how long, how much memory, and what the emulator answered."""

    label: str
    rows: int
    seconds: float
    peak_rss_mb: float
    status_counts: dict[int, int]
    limit: float | None
    timings: dict[str, float]
    note: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def rate_of_limit(self) -> float | None:
        return None if self.limit is None else self.rate / (self.limit / 60)


class Bench:
    """Runs each approach in a fresh process with a throw-away Airflow home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.logs = home / "logs"
        self.logs.mkdir()
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW_CONN_")}
        self.env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"airflow\..*",
                # Airflow maps at most 1,024 tasks by default; c) and d) at 2,000 rows need more.
                "AIRFLOW__CORE__MAX_MAP_LENGTH": "100000",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])),
            }
        )
        self._migrated = False
        self._runs = 0

    def migrate(self) -> None:
        """Create the metadata database once; only the DAG-based approaches need it."""
        if not self._migrated:
            progress("creating the Airflow metadata database")
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._migrated = True

    def run(
        self,
        label: str,
        approach: str,
        rows: int,
        emulator_process: EmulatorProcess,
        *,
        pace: float,
        **options: Any,
    ) -> Measurement:
        """Run ``approach`` on ``rows`` rows in a fresh process and collect its measurement."""
        self._runs += 1
        emulator_process.reset()
        result_file = self.home / f"result-{self._runs}.json"
        log_file = self.logs / f"{self._runs:02d}-{approach}.log"
        request = {
            "approach": approach,
            "rows": rows,
            "base_url": emulator_process.base_url,
            "pace": pace,
            "options": options,
            "result_file": str(result_file),
        }
        progress(f"{label}: {rows:,} rows ...")
        with log_file.open("w") as log:
            finished = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(request)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if finished.returncode != 0:
            tail = log_file.read_text().splitlines()[-30:]
            raise RuntimeError(f"{label} failed (exit {finished.returncode}); log {log_file}:\n" + "\n".join(tail))
        result = json.loads(result_file.read_text())
        counts = emulator_process.counts()
        if counts.get(200, 0) < rows:
            raise RuntimeError(f"{label}: the emulator accepted {counts.get(200, 0)} of {rows} rows ({counts})")
        measurement = Measurement(
            label=label,
            rows=rows,
            seconds=result["timings"]["seconds"],
            timings=result["timings"],
            peak_rss_mb=result["peak_rss_kb"] / 1024,
            status_counts=counts,
            limit=emulator_process.settings.requests_per_minute,
        )
        progress(f"{label}: {measurement.seconds:.1f} s, {measurement.rate:,.1f} rows/s, answers {counts}")
        return measurement


def make_warehouse(path: Path, rows: int) -> None:
    """A SQLite ``deals`` table with ``rows`` rows, the shape of a CRM export."""
    stages = ("Closed Won", "Closed Lost")
    with closing(sqlite3.connect(path)) as database, database:
        database.execute(
            "CREATE TABLE deals (interview_request_id INTEGER PRIMARY KEY, contact_name TEXT, title TEXT, "
            "stage TEXT, amount NUMERIC, notes TEXT)"
        )
        database.executemany(
            "INSERT INTO deals VALUES (?, ?, ?, ?, ?, ?)",
            (
                (
                    n,
                    f"Contact {n}",
                    "VP Sales",
                    stages[n % 2],
                    1000 + n,
                    f"Deal {n}: renewal discussed in Q{n % 4 + 1}.",
                )
                for n in range(1, rows + 1)
            ),
        )


@dataclass
class Verdict:
    """One target and what this run measured against it."""

    target: str
    measured: str
    met: bool

    def __str__(self) -> str:
        return f"{self.target}: {self.measured} -> {'met' if self.met else 'NOT met'}"


def run_all(args: argparse.Namespace, home: Path) -> tuple[list[Measurement], list[Verdict]]:
    """Run the selected approaches; return the measurements and the verdicts on the targets."""
    bench = Bench(home)
    measurements: list[Measurement] = []
    verdicts: list[Verdict] = []
    only = set(args.only)

    if only & {"a", "b", "c", "d"}:
        if only & {"c", "d"}:
            bench.migrate()
        with emulator(LIMITED) as limited:
            bulk: Measurement | None = None
            if "a" in only:
                bulk = bench.run("a) bulk operator", "bulk", args.rows, limited, pace=LIMIT)
                measurements.append(bulk)
                rate = bulk.rate_of_limit or 0.0
                rejected = bulk.status_counts.get(429, 0)
                verdicts.append(
                    Verdict(
                        "a) at least 0.95 of the limit with zero 429s",
                        f"{rate:.3f} of the limit, {rejected} 429s",
                        rate >= 0.95 and rejected == 0,
                    )
                )
            if "b" in only:
                measurements.append(
                    bench.run("b) sequential hook loop", "sequential", args.sequential_rows, limited, pace=LIMIT)
                )
            for key, label, approach in (
                ("c", "c) mapped HindsightUpdateInterviewOperator", "mapped_hindsight"),
                ("d", "d) mapped HttpOperator", "mapped_http"),
            ):
                if key in only:
                    mapped = bench.run(label, approach, args.per_row_rows, limited, pace=LIMIT)
                    measurements.append(mapped)
                    if bulk is not None:
                        ratio = bulk.rate / mapped.rate
                        verdicts.append(
                            Verdict(
                                f"{key}) the bulk operator sends at least 5x the rows a second of one mapped task "
                                "per row",
                                f"{ratio:.1f}x",
                                ratio >= 5,
                            )
                        )

    if "e" in only:
        with emulator(UNLIMITED) as unlimited:
            sql_runs = []
            for rows in (args.sql_rows, 1000):
                path = home / f"warehouse-{rows}.db"
                make_warehouse(path, rows)
                run = bench.run("e) SqlToHindsightOperator", "sql", rows, unlimited, pace=UNPACED, database=str(path))
                sql_runs.append(run)
            big, small = sql_runs
            growth = big.peak_rss_mb - small.peak_rss_mb
            big.note = f"peak {growth:+.1f} MB vs {small.rows:,} rows"
            measurements.extend(sql_runs)
            verdicts.append(
                Verdict(
                    f"e) peak memory at {big.rows:,} rows within 50 MB of {small.rows:,} rows",
                    f"{growth:+.1f} MB",
                    growth <= 50,
                )
            )

    if "f" in only:
        with emulator(UNLIMITED) as unlimited:
            hook_run = bench.run(
                "f) hook.update_interview loop", "overhead", args.overhead_requests, unlimited, pace=UNPACED
            )
            bare_run = dataclasses.replace(
                hook_run, label="f) bare requests.Session loop", seconds=hook_run.timings["session_seconds"]
            )
            ratio = hook_run.seconds / bare_run.seconds
            hook_run.note = (
                f"{ratio:.2f}x the bare session; both loops in one process, in {OVERHEAD_BLOCKS} alternating blocks"
            )
            measurements.extend([hook_run, bare_run])
            verdicts.append(
                Verdict("f) the hook at most 1.2x a bare `requests.Session`", f"{ratio:.2f}x", ratio <= 1.2)
            )
    return measurements, verdicts


def table(measurements: list[Measurement]) -> str:
    """The results as a Markdown table."""
    header = "| approach | rows | seconds | rows/s | of limit | 429s | peak RSS (MB) | note |"
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for m in measurements:
        of_limit = "-" if m.rate_of_limit is None else f"{m.rate_of_limit:.3f}"
        lines.append(
            f"| {m.label} | {m.rows:,} | {m.seconds:.1f} | {m.rate:,.1f} | {of_limit} | "
            f"{m.status_counts.get(429, 0)} | {m.peak_rss_mb:.0f} | {m.note} |"
        )
    return "\n".join(lines)


def verdict_table(verdicts: list[Verdict]) -> str:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {v.target} | {v.measured} | {'yes' if v.met else '**no**'} |" for v in verdicts]
    return "\n".join(lines)


def environment() -> str:
    from importlib.metadata import version

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, apache-airflow {version('apache-airflow')}, "
        f"airflow-provider-hindsight {version('airflow-provider-hindsight')}"
    )


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def by_label(measurements: list[Measurement], prefix: str) -> list[Measurement]:
    return [m for m in measurements if m.label.startswith(prefix)]


def write_numbers_page(
    measurements: list[Measurement], verdicts: list[Verdict], args: argparse.Namespace, run: dict[str, str]
) -> None:
    """``docs/_generated/performance-numbers.md``: what ``docs/performance.md`` includes."""
    (bulk,) = by_label(measurements, "a)")
    (sequential,) = by_label(measurements, "b)")
    mapped = by_label(measurements, "c)") + by_label(measurements, "d)")
    big, small = by_label(measurements, "e)")
    hook_run, bare_run = by_label(measurements, "f)")
    hook_ms = hook_run.seconds / hook_run.rows * 1000
    bare_ms = bare_run.seconds / bare_run.rows * 1000
    kind = "quick run (`--quick`)" if args.quick else "default run"
    mapped_costs = " and ".join(
        f"{m.seconds / m.rows:.2f} s a row with {m.label.split(' mapped ')[1]} ({m.label[0]})" for m in mapped
    )
    text = f"""<!-- Written by benchmarks/bench_bulk.py ({kind}): do not edit by hand; run `make benchmark`. -->

Measured {run["date"]} ({kind}, {run["minutes"]}) on {environment()}. The machine is shared: its load
average was {run["load_start"]} at the start and {run["load_end"]} at the end.

{table(measurements)}

{verdict_table(verdicts)}

In this run:

- the bulk operator sent {bulk.rows:,} rows in {bulk.seconds:.1f} s: {bulk.rate_of_limit:.3f} of the limit, with
  {bulk.status_counts.get(429, 0)} answers of 429;
- the sequential loop reached {sequential.rate_of_limit:.3f} of the limit, one round trip at a time;
- one mapped task per row took {mapped_costs}, where the bulk operator took {bulk.seconds / bulk.rows:.3f} s a row;
- peak memory was {big.peak_rss_mb:.0f} MB with {big.rows:,} SQL rows and {small.peak_rss_mb:.0f} MB with
  {small.rows:,};
- a request through the hook took {hook_ms:.2f} ms of client time, {abs(hook_ms - bare_ms):.2f} ms
  {"more" if hook_ms >= bare_ms else "less"} than through a bare session ({bare_ms:.2f} ms).
"""
    NUMBERS_PAGE.parent.mkdir(parents=True, exist_ok=True)
    NUMBERS_PAGE.write_text(text)


def draw_charts(measurements: list[Measurement]) -> None:
    """The three charts of ``docs/performance.md``, from this run's measurements."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from airflow_provider_hindsight.pace import SAFETY_MARGIN

    plt.rcParams.update({"font.size": 11, "axes.spines.top": False, "axes.spines.right": False})

    per_row = [m for m in measurements if m.label[0] in "abcd"][::-1]
    figure, axes = plt.subplots(figsize=(9, 3.8), layout="constrained")
    rates = [m.rate for m in per_row]
    bars = axes.barh([m.label for m in per_row], rates, color=["#9aa5b1"] * (len(per_row) - 1) + ["#2f6f9f"])
    limit = LIMIT / 60
    axes.axvline(
        limit, color="#c0392b", linestyle="--", linewidth=1.5, label=f"the emulator's limit, {limit:.0f} a second"
    )
    axes.axvline(
        limit * SAFETY_MARGIN,
        color="#c0392b",
        linestyle=":",
        linewidth=1.2,
        label=f"the pacer's ceiling, {SAFETY_MARGIN:g} of the limit",
    )
    for bar, rate in zip(bars, rates, strict=True):
        inside = rate > limit * 0.6
        axes.text(
            rate - 0.8 if inside else rate + 0.8,
            bar.get_y() + bar.get_height() / 2,
            f"{rate:.1f}",
            va="center",
            ha="right" if inside else "left",
            color="white" if inside else "black",
            fontweight="bold" if inside else "normal",
        )
    axes.set_xlim(0, limit * 1.08)
    axes.set_xlabel("rows a second (higher is better)")
    axes.legend(loc="lower right", frameon=True, fontsize=10)
    figure.suptitle(
        f"Rows a second, emulator limited to {LIMIT:,} a minute with {LATENCY * 1000:.0f} ms latency",
        x=0.01,
        ha="left",
        fontsize=12,
    )
    figure.savefig(CHARTS["throughput"], dpi=110)
    plt.close(figure)

    big, small = by_label(measurements, "e)")
    figure, axes = plt.subplots(figsize=(7, 3.2), layout="constrained")
    bars = axes.barh(
        [f"{big.rows:,} rows", f"{small.rows:,} rows"], [big.peak_rss_mb, small.peak_rss_mb], color="#2f6f9f"
    )
    for bar in bars:
        axes.text(bar.get_width() + 2, bar.get_y() + bar.get_height() / 2, f"{bar.get_width():.0f} MB", va="center")
    axes.set_xlim(0, math.ceil(max(big.peak_rss_mb, small.peak_rss_mb) * 1.2 / 50) * 50)
    axes.set_xlabel("peak RSS of the whole task process, MB (Python and Airflow included)")
    axes.set_title("SqlToHindsightOperator: peak memory by table size", fontsize=11, loc="left")
    figure.savefig(CHARTS["memory"], dpi=110)
    plt.close(figure)

    hook_run, bare_run = by_label(measurements, "f)")
    figure, axes = plt.subplots(figsize=(7, 2.8), layout="constrained")
    per_request = [bare_run.seconds / bare_run.rows * 1000, hook_run.seconds / hook_run.rows * 1000]
    bars = axes.barh(
        ["bare requests.Session", "HindsightHook.update_interview"], per_request, color=["#9aa5b1", "#2f6f9f"]
    )
    for bar in bars:
        axes.text(bar.get_width() * 1.01, bar.get_y() + bar.get_height() / 2, f"{bar.get_width():.2f} ms", va="center")
    axes.set_xlim(0, max(per_request) * 1.25)
    axes.set_xlabel("client time per request, ms (no latency, no limit)")
    axes.set_title("The hook's own cost per request", fontsize=11, loc="left")
    figure.savefig(CHARTS["overhead"], dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the Hindsight bulk engine against per-row approaches.")
    parser.add_argument("--quick", action="store_true", help="smaller row counts: a run of about 2 minutes")
    parser.add_argument("--rows", type=int, help="rows for a) (default 2,000; quick 500)")
    parser.add_argument("--sequential-rows", type=int, help="rows for b) (default 400; quick 200)")
    parser.add_argument("--per-row-rows", type=int, help="rows for c) and d) (default 120; quick 30)")
    parser.add_argument("--sql-rows", type=int, help="rows for e), compared with 1,000 (default 15,000; quick 5,000)")
    parser.add_argument("--overhead-requests", type=int, help="requests per f) loop (default 5,000; quick 1,000)")
    parser.add_argument(
        "--only", type=lambda text: text.split(","), default=list(APPROACH_KEYS), help="approaches to run, e.g. a,e"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    parser.add_argument(
        "--no-docs",
        dest="docs",
        action="store_false",
        help="do not rewrite docs/_generated/performance-numbers.md and the charts (only a run of all of a-f does)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    quick = args.quick
    args.rows = args.rows or (500 if quick else 2000)
    args.sequential_rows = args.sequential_rows or (200 if quick else 400)
    args.per_row_rows = args.per_row_rows or (30 if quick else 120)
    args.sql_rows = args.sql_rows or (5000 if quick else 15_000)
    args.overhead_requests = args.overhead_requests or (1000 if quick else 5000)

    started = time.monotonic()
    run = {"date": time.strftime("%Y-%m-%d"), "load_start": load_average()}
    with tempfile.TemporaryDirectory(prefix="hindsight-bench-") as home:
        measurements, verdicts = run_all(args, Path(home))
    elapsed = time.monotonic() - started
    run.update(load_end=load_average(), minutes=f"{elapsed / 60:.1f} minutes in all")
    print()
    print(f"{run['date']}, {environment()}")
    print()
    print(table(measurements))
    print()
    for verdict in verdicts:
        print(verdict)
    print(f"\nTotal time {elapsed:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps([m.__dict__ for m in measurements], indent=2, default=str))
    if args.docs and set(args.only) == set(APPROACH_KEYS):
        write_numbers_page(measurements, verdicts, args, run)
        draw_charts(measurements)
        print(f"Wrote {NUMBERS_PAGE.relative_to(HERE.parent)} and {len(CHARTS)} charts in docs/_static/.")
    elif args.docs:
        print("Only a run of every approach (a to f) rewrites the documentation's numbers and charts.")
    return 0


# -- the worker: one approach in a fresh process --------------------------------------------------


class _XComSink:
    """Stands in for ``context["ti"]`` when an operator's ``execute()`` runs outside a DAG run."""

    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        self.last = (key, value)


def _context() -> Any:
    """The part of an Airflow context the bulk operators use."""
    return {"ti": _XComSink()}


def _rows(count: int) -> list[dict[str, Any]]:
    return [
        {"interview_request_id": n, "contact_context": {"seats": n}, "objective": "Renewal"}
        for n in range(1, count + 1)
    ]


def _check(summary: dict[str, Any], count: int) -> None:
    if summary["succeeded"] != count:
        raise RuntimeError(f"{summary['succeeded']} of {count} rows succeeded: {summary['failures'][:3]}")


def _bulk(count: int, options: dict[str, Any]) -> dict[str, float]:
    from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator

    operator = HindsightBulkUpdateInterviewsOperator(task_id="bench", updates=_rows(count))
    started = time.perf_counter()
    summary = operator.execute(_context())
    seconds = time.perf_counter() - started
    _check(summary, count)
    return {"seconds": seconds}


def _sequential(count: int, options: dict[str, Any]) -> dict[str, float]:
    from airflow_provider_hindsight.hooks.hindsight import HindsightHook

    rows = _rows(count)
    started = time.perf_counter()
    hook = HindsightHook()
    for row in rows:
        hook.update_interview(**row)
    return {"seconds": time.perf_counter() - started}


def _mapped(dag_id: str) -> Callable[[int, dict[str, Any]], dict[str, float]]:
    def run(count: int, options: dict[str, Any]) -> dict[str, float]:
        try:
            from airflow.dag_processing.dagbag import DagBag
        except ImportError:  # Airflow 2
            from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

        dag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag(dag_id)
        started = time.perf_counter()
        dag_run = dag.test(run_conf={"rows": count})
        seconds = time.perf_counter() - started
        states = [str(ti.state) for ti in dag_run.get_task_instances()]
        failed = [state for state in states if state != "success"]
        if failed or len(states) != count + 1:
            raise RuntimeError(f"{dag_id}: {len(states)} task instances, not successful: {failed[:5]}")
        return {"seconds": seconds}

    return run


def _sql(count: int, options: dict[str, Any]) -> dict[str, float]:
    from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

    os.environ[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "sqlite", "host": options["database"]}
    )
    operator = SqlToHindsightOperator(
        task_id="bench", sql_conn_id=WAREHOUSE_CONN_ID, sql=SQL, context_columns=["title", "stage", "amount", "notes"]
    )
    started = time.perf_counter()
    summary = operator.execute(_context())
    seconds = time.perf_counter() - started
    _check(summary, count)
    return {"seconds": seconds}


def _overhead(count: int, options: dict[str, Any]) -> dict[str, float]:
    """``count`` requests through the hook and ``count`` through a bare session, in alternating blocks.

    Alternating blocks in one process expose both loops to the same machine noise; the requests
    are the same (same body, same JSON check of the answer).
    """
    import requests

    from airflow_provider_hindsight.hooks.hindsight import HindsightHook

    hook = HindsightHook()
    base_url = hook.settings.base_url
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})

    def through_hook(n: int) -> None:
        hook.update_interview(n, contact_context={"seats": n}, objective="Renewal")

    def through_session(n: int) -> None:
        body = json.dumps({"contact_context": {"seats": n}, "objective": "Renewal"}).encode()
        response = session.patch(f"{base_url}/interviews/{n}", data=body, timeout=30)
        response.raise_for_status()
        response.json()

    loops = {"seconds": through_hook, "session_seconds": through_session}
    for send in loops.values():
        send(1)  # warm up: connection settings, session, first socket
    totals = dict.fromkeys(loops, 0.0)
    ids = iter(range(2, 2 * count + 2))
    for block in range(OVERHEAD_BLOCKS):
        order = list(loops) if block % 2 == 0 else list(reversed(loops))
        for name in order:
            requests_in_block = count // OVERHEAD_BLOCKS + (block < count % OVERHEAD_BLOCKS)
            started = time.perf_counter()
            for _ in range(requests_in_block):
                loops[name](next(ids))
            totals[name] += time.perf_counter() - started
    return totals


APPROACHES: dict[str, Callable[[int, dict[str, Any]], dict[str, float]]] = {
    "bulk": _bulk,
    "sequential": _sequential,
    "mapped_hindsight": _mapped("bench_mapped_hindsight"),
    "mapped_http": _mapped("bench_mapped_http"),
    "sql": _sql,
    "overhead": _overhead,
}
"""Each runs one approach on ``rows`` rows and returns the seconds of the measured part (``seconds``)."""


def worker(request: dict[str, Any]) -> int:
    """Run one approach, then write its seconds and the RSS high-water mark to the result file."""
    base_url = request["base_url"]
    hindsight: dict[str, Any] = {
        "conn_type": "hindsight",
        "host": base_url,
        "password": API_KEY,
        "extra": {"requests_per_minute": request["pace"]},
    }
    http = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": int(base_url.split(":")[2].split("/")[0]),
        "schema": "http",
        "extra": {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    }
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(hindsight)
    os.environ[f"AIRFLOW_CONN_{HTTP_CONN_ID.upper()}"] = json.dumps(http)
    timings = APPROACHES[request["approach"]](request["rows"], request["options"])
    result = {
        "timings": timings,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    Path(request["result_file"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
