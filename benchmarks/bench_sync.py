"""Benchmark: change-only sync, over real HTTP to a local Hindsight emulator, with a SQLite warehouse and ledger.

    python benchmarks/bench_sync.py            # the default run (make benchmark), about 6 minutes on 2 cores
    python benchmarks/bench_sync.py --quick    # a smaller run, about 2 minutes; writes no docs

Needs this package, Airflow, apache-airflow-providers-sqlite, and matplotlib for the chart. The
emulator runs in its own process (``emulator_process.py``) with no rate limit and no latency, and
``SqlToHindsightOperator`` runs in worker processes (``--worker``) that the parent drives one command
at a time, so that it can read the emulator's request count after each run, kill a worker half-way,
and take each peak-memory figure (``resource.getrusage`` max RSS) in a fresh process. The source
rows and the ledger share one SQLite file, as in the example warehouse DAG.

a) the first full run; b) a run with nothing changed; c) a run with 1 % of rows changed;
d) a run killed with SIGKILL half-way at a moderate pace, then retried: rows sent twice, against the
bound (one checkpoint window plus the requests in flight); e) peak memory with the ledger at a small
and a large size; f) run time against the fraction of rows changed, measured, and modeled at the
Enterprise plan's 1,000 requests a minute.

The default run rewrites ``docs/_generated/sync-numbers.md`` and ``docs/_static/sync-runtime.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from measure import API_KEY, HERE, EmulatorProcess, EmulatorSettings, emulator, progress

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "sync-numbers.md"
CHART = DOCS / "_static" / "sync-runtime.png"
UNPACED = 6_000_000
"""The connection's pace against the emulator with no limit: 100,000 a second, never reached."""
ENTERPRISE = 1000
"""Requests a minute of the Enterprise plan, the model in b) and f)."""
KILL_PACE = 12_000
"""d): the pace of the run that is killed, 200 requests a second."""
KILL_LATENCY = 0.05
"""d): seconds the emulator waits before each answer, so that requests are in flight when the run dies."""
MAX_WORKERS = 16
LEDGER_TABLE = "hindsight_sync_ledger"
WAREHOUSE_CONN_ID = "bench_warehouse"
CONTEXT_COLUMNS = ("title", "stage", "notes")
FRACTIONS = (0.0, 0.01, 0.05, 0.10, 0.25, 0.50, 1.0)
MAIN_SYNC_ID = "bench.enrichment"


@dataclass(frozen=True)
class Sizes:
    rows: int
    """a) to c): rows in the warehouse."""
    kill_rows: int
    """d): rows of the run that is killed half-way."""
    memory_rows: tuple[int, int]
    """e): the small and the large ledger."""
    sweep_rows: int
    """f): rows whose changed fraction varies."""


DEFAULT = Sizes(rows=100_000, kill_rows=5_000, memory_rows=(1_000, 200_000), sweep_rows=10_000)
QUICK = Sizes(rows=10_000, kill_rows=2_000, memory_rows=(1_000, 20_000), sweep_rows=2_000)


# -- the parent: the emulator, the workers, the warehouse ------------------------------------------


class Worker:
    """``bench_sync.py --worker`` in a fresh process: runs the commands it is sent, one a line, and answers each."""

    def __init__(self, home: Path, name: str) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW_CONN_")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])),
            }
        )
        self.log = home / f"worker-{name}.log"
        command = [sys.executable, __file__, "--worker", str(self.log)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()  # ready: Airflow is imported

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            tail = "\n".join(self.log.read_text().splitlines()[-30:]) if self.log.exists() else ""
            raise RuntimeError(f"the worker exited (code {self._process.poll()}); log {self.log}:\n{tail}")
        answer = dict(json.loads(line))
        if "error" in answer:
            raise RuntimeError(f"the worker failed: {answer['error']}; log {self.log}")
        return answer

    def send(self, **command: Any) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()

    def ask(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        return self._read()

    def answered(self) -> bool:
        """Whether an answer is waiting (a run that was to be killed ended, or failed, first)."""
        assert self._process.stdout is not None
        return bool(select.select([self._process.stdout], [], [], 0)[0])

    def read(self) -> dict[str, Any]:
        return self._read()

    def kill(self) -> None:
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def stop(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(timeout=30)


@contextmanager
def worker_process(home: Path, name: str) -> Iterator[Worker]:
    worker = Worker(home, name)
    try:
        yield worker
    finally:
        worker.stop()


def make_warehouse(path: Path, rows: int) -> None:
    """An ``enrichment`` table of ``rows`` contacts, the shape of a CRM export."""
    stages = ("Closed Won", "Closed Lost")
    with closing(sqlite3.connect(path)) as database, database:
        database.execute(
            "CREATE TABLE enrichment (interview_request_id INTEGER PRIMARY KEY, contact_name TEXT, title TEXT, "
            "stage TEXT, notes TEXT)"
        )
        database.executemany(
            "INSERT INTO enrichment VALUES (?, ?, ?, ?, ?)",
            (
                (n, f"Contact {n}", "VP Sales", stages[n % 2], f"Deal {n}: renewal discussed in Q{n % 4 + 1}.")
                for n in range(1, rows + 1)
            ),
        )


def change_rows(path: Path, ids: list[int], round_number: int) -> None:
    """A warehouse refresh: new notes for these rows."""
    with closing(sqlite3.connect(path)) as database, database:
        database.executemany(
            "UPDATE enrichment SET notes = ? WHERE interview_request_id = ?",
            [(f"Deal {n}: revised in refresh {round_number}.", n) for n in ids],
        )


def ledger_rows(path: Path, sync_id: str) -> int:
    """Interviews recorded for ``sync_id`` (not the run's lease, a row of its own with a negative id)."""
    with closing(sqlite3.connect(path)) as database:
        (count,) = database.execute(
            f"SELECT COUNT(*) FROM {LEDGER_TABLE} WHERE sync_id = ? AND interview_request_id > 0", (sync_id,)
        ).fetchone()
        return int(count)


def run_options(database: Path, base_url: str, sync_id: str, **options: Any) -> dict[str, Any]:
    return {"do": "run", "database": str(database), "base_url": base_url, "sync_id": sync_id, **options}


@dataclass
class Results:
    """What the run measured, for the printout, the numbers page and the chart."""

    sizes: Sizes
    engine: dict[str, float] = field(default_factory=dict)
    """``checkpoint_rows``, ``checkpoint_seconds`` and the pacer's ``safety_margin``, as the worker imported them."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """The table: ``{"step", "rows", "requests", "seconds", "note"}``."""
    sweep: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[tuple[str, str, bool]] = field(default_factory=list)

    def add(self, step: str, rows: int, requests: int | None, seconds: float | None, note: str = "") -> None:
        self.rows.append({"step": step, "rows": rows, "requests": requests, "seconds": seconds, "note": note})
        shown_requests = "-" if requests is None else f"{requests:,}"
        shown_seconds = "-" if seconds is None else f"{seconds:.1f} s"
        progress(f"{step}: {rows:,} rows, {shown_requests} requests, {shown_seconds}. {note}")

    def verdict(self, target: str, measured: str, met: bool) -> None:
        self.verdicts.append((target, measured, met))


def measured_run(
    worker: Worker, emulator_process: EmulatorProcess, options: dict[str, Any]
) -> tuple[dict[str, Any], int, dict[int, int]]:
    """One run in ``worker``: its answer, and the requests and answers the emulator counted."""
    emulator_process.reset()
    answer = worker.ask(**options)
    statuses = emulator_process.counts()
    requests = sum(statuses.values())
    if answer["summary"]["failed"]:
        raise RuntimeError(f"{answer['summary']['failed']} rows failed: {answer['failures']}")
    return answer, requests, statuses


def run_all(sizes: Sizes, home: Path) -> Results:
    results = Results(sizes)
    warehouse = home / "warehouse.db"
    progress(f"making a warehouse of {sizes.rows:,} rows")
    make_warehouse(warehouse, sizes.rows)
    randomness = random.Random(2026)
    with emulator(EmulatorSettings()) as fast:
        with worker_process(home, "main") as worker:
            results.engine = worker.ask(do="constants")
            main_runs(results, worker, fast, warehouse, randomness)
            sweep_runs(results, worker, fast, warehouse, randomness)
            memory_files = prefill_memory_ledgers(sizes, home, worker, fast)
        kill_run(results, sizes, home, warehouse)
        memory_runs(results, home, fast, memory_files, randomness)
    return results


def main_runs(
    results: Results, worker: Worker, fast: EmulatorProcess, warehouse: Path, randomness: random.Random
) -> None:
    """a) the first run, b) nothing changed, c) 1 % changed."""
    rows = results.sizes.rows
    options = run_options(warehouse, fast.base_url, MAIN_SYNC_ID)
    answer, requests, _ = measured_run(worker, fast, options)
    sent = answer["summary"]["succeeded"]
    results.add("a) first run, empty ledger", rows, requests, answer["seconds"], f"{sent:,} sent and recorded")

    answer, requests, _ = measured_run(worker, fast, options)
    seconds = answer["seconds"]
    resend_minutes = rows / ENTERPRISE
    cheaper = resend_minutes * 60 / seconds
    results.add(
        "b) nothing changed",
        rows,
        requests,
        seconds,
        f"{answer['summary']['unchanged']:,} unchanged; {cheaper:,.0f}x cheaper than resending every row at "
        f"{ENTERPRISE:,}/min ({resend_minutes:,.0f} min)",
    )
    results.verdict(
        f"b) nothing changed, {rows:,} rows: under 10 s, no update, one request (the check of the key)",
        f"{seconds:.1f} s, {requests} requests",
        seconds < 10 and requests == 1,
    )

    changed = sorted(randomness.sample(range(1, rows + 1), rows // 100))
    change_rows(warehouse, changed, 1)
    answer, requests, _ = measured_run(worker, fast, options)
    results.add(
        "c) 1 % of rows changed",
        rows,
        requests,
        answer["seconds"],
        f"{len(changed):,} rows changed, {answer['summary']['succeeded']:,} sent, "
        f"{answer['summary']['unchanged']:,} unchanged",
    )
    results.verdict(
        "c) requests sent == rows changed",
        f"{requests:,} requests, {len(changed):,} rows changed",
        requests == len(changed),
    )


def sweep_runs(
    results: Results, worker: Worker, fast: EmulatorProcess, warehouse: Path, randomness: random.Random
) -> None:
    """f) run time against the fraction of rows changed, on the first ``sweep_rows`` rows of the same ledger."""
    rows = results.sizes.sweep_rows
    options = run_options(warehouse, fast.base_url, MAIN_SYNC_ID, max_id=rows)
    for refresh, fraction in enumerate(FRACTIONS, start=2):
        ids = sorted(randomness.sample(range(1, rows + 1), round(rows * fraction)))
        change_rows(warehouse, ids, refresh)
        answer, requests, _ = measured_run(worker, fast, options)
        if requests != max(len(ids), 1):  # a run with nothing owed checks the key once
            raise RuntimeError(f"f) {len(ids)} rows changed but {requests} requests were sent")
        results.sweep.append(
            {
                "fraction": fraction,
                "changed": len(ids),
                "requests": requests,
                "seconds": answer["seconds"],
                "enterprise_minutes": requests / (ENTERPRISE * results.engine["safety_margin"]),
            }
        )
        progress(f"f) {fraction:.0%} of {rows:,} rows changed: {requests:,} requests, {answer['seconds']:.1f} s")


def prefill_memory_ledgers(sizes: Sizes, home: Path, worker: Worker, fast: EmulatorProcess) -> dict[int, Path]:
    """e) warehouses of each size whose ledger holds every row as a run would leave it (sent to ``fast``)."""
    files = {}
    for rows in sizes.memory_rows:
        files[rows] = home / f"memory-{rows}.db"
        make_warehouse(files[rows], rows)
        worker.ask(do="prefill", database=str(files[rows]), base_url=fast.base_url, sync_id=MAIN_SYNC_ID)
    return files


def memory_runs(
    results: Results, home: Path, fast: EmulatorProcess, files: dict[int, Path], randomness: random.Random
) -> None:
    """e) peak memory of a run with 1 % changed, in a fresh process per ledger size."""
    peaks = {}
    for rows, path in files.items():
        changed = sorted(randomness.sample(range(1, rows + 1), rows // 100))
        change_rows(path, changed, 1)
        with worker_process(home, f"memory-{rows}") as worker:
            answer, requests, _ = measured_run(worker, fast, run_options(path, fast.base_url, MAIN_SYNC_ID))
            peaks[rows] = worker.ask(do="rss")["peak_rss_kb"] / 1024
        if requests != len(changed):
            raise RuntimeError(f"e) {len(changed)} rows changed but {requests} requests were sent")
        note = f"peak RSS {peaks[rows]:.0f} MB; {answer['summary']['unchanged']:,} unchanged"
        results.add(f"e) ledger of {rows:,} rows, 1 % changed", rows, requests, answer["seconds"], note)
    small, large = sorted(peaks)
    growth = peaks[large] - peaks[small]
    results.verdict(
        f"e) peak memory with a ledger of {large:,} rows within 50 MB of {small:,}", f"{growth:+.1f} MB", growth <= 50
    )


def kill_run(results: Results, sizes: Sizes, home: Path, warehouse: Path) -> None:
    """d) SIGKILL half-way through ``kill_rows`` rows, then the retry: rows sent twice against the bound."""
    sync_id = "bench.killed"
    rows = sizes.kill_rows
    options = run_options(warehouse, "", sync_id, max_id=rows, pace=KILL_PACE)
    with emulator(EmulatorSettings(latency=KILL_LATENCY)) as slow:
        options["base_url"] = slow.base_url
        worker = Worker(home, "killed")
        worker.send(**options)
        while slow.requests() < rows // 2:
            if worker.answered():
                raise RuntimeError(f"d) the run ended before it was killed: {worker.read()}")
            time.sleep(0.02)
        worker.kill()
        time.sleep(KILL_LATENCY * 4)  # the answers the emulator was writing
        first_statuses = slow.counts()
        first = sum(first_statuses.values())
        recorded = ledger_rows(warehouse, sync_id)
        with worker_process(home, "retry") as retry:
            answer, second, second_statuses = measured_run(retry, slow, options)
    if answer["summary"]["unchanged"] != recorded:
        raise RuntimeError(f"d) the retry skipped {answer['summary']['unchanged']:,} rows, {recorded:,} were recorded")
    if set(first_statuses) | set(second_statuses) != {200}:
        raise RuntimeError(f"d) answers other than 200: {first_statuses}, {second_statuses}")
    if ledger_rows(warehouse, sync_id) != rows:
        raise RuntimeError("d) the ledger does not hold every row after the retry")
    resent = first + second - rows
    engine = results.engine
    per_second = KILL_PACE * engine["safety_margin"] / 60
    window = min(int(engine["checkpoint_rows"]), int(per_second * engine["checkpoint_seconds"]))
    bound = window + 2 * MAX_WORKERS
    results.add(
        "d) killed half-way (SIGKILL), then retried",
        rows,
        first + second,
        None,
        f"{first:,} sent before the kill, {recorded:,} recorded; the retry sent {second:,}; "
        f"{resent:,} rows sent twice (bound {bound:,} = {window:,} checkpoint window + {2 * MAX_WORKERS} in flight)",
    )
    results.verdict(
        "d) rows sent twice after a kill <= checkpoint window + in flight", f"{resent:,} <= {bound:,}", resent <= bound
    )
    results.verdict(
        "d) the retry sends exactly the rows the ledger did not hold",
        f"{second:,} sent, {rows - recorded:,} not recorded",
        second == rows - recorded,
    )


# -- the report --------------------------------------------------------------------------------------


def table(results: Results) -> str:
    lines = ["| step | rows | requests | seconds | note |", "| --- | ---: | ---: | ---: | --- |"]
    for row in results.rows:
        requests = "-" if row["requests"] is None else f"{row['requests']:,}"
        seconds = "-" if row["seconds"] is None else f"{row['seconds']:.1f}"
        lines.append(f"| {row['step']} | {row['rows']:,} | {requests} | {seconds} | {row['note']} |")
    return "\n".join(lines)


def sweep_table(results: Results) -> str:
    lines = [
        "| rows changed | requests | measured here (s) | modeled at 1,000/min (min) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for point in results.sweep:
        lines.append(
            f"| {point['fraction']:.0%} ({point['changed']:,}) | {point['requests']:,} | {point['seconds']:.1f} | "
            f"{point['enterprise_minutes']:.1f} |"
        )
    return "\n".join(lines)


def verdict_table(results: Results) -> str:
    lines = ["| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {target} | {measured} | {'yes' if met else 'NO'} |" for target, measured, met in results.verdicts]
    return "\n".join(lines)


def environment() -> str:
    from importlib.metadata import version

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"apache-airflow {version('apache-airflow')}, "
        f"airflow-provider-hindsight {version('airflow-provider-hindsight')}"
    )


def write_numbers_page(results: Results, run: dict[str, str]) -> None:
    margin = results.engine["safety_margin"]
    text = f"""<!-- Written by benchmarks/bench_sync.py (default run): do not edit by hand; run `make benchmark`. -->

Measured {run["date"]} ({run["minutes"]}) on {environment()}, with the emulator in its own process (no rate
limit, no latency except in d), 50 ms) and the rows and the ledger in one SQLite file. The machine is shared:
its load average was {run["load_start"]} at the start and {run["load_end"]} at the end.

{table(results)}

Run time against the fraction of {results.sizes.sweep_rows:,} rows changed (f): measured here with the
emulator answering as fast as it can, and modeled at the Enterprise plan's limit, where every request
costs 1/{ENTERPRISE * margin:,.0f} of a minute (the provider paces at {margin:g} of the limit):

{sweep_table(results)}

{verdict_table(results)}
"""
    NUMBERS_PAGE.parent.mkdir(parents=True, exist_ok=True)
    NUMBERS_PAGE.write_text(text)


def draw_chart(results: Results, path: Path) -> None:
    """Run time against the fraction of rows changed: measured (left) and modeled at 1,000/min (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    percent = [point["fraction"] * 100 for point in results.sweep]
    rows = results.sizes.sweep_rows
    pace = ENTERPRISE * results.engine["safety_margin"]
    figure, (measured, modeled) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    figure.suptitle(f"Run time of a sync of {rows:,} rows against the rows changed since the last run")
    measured.plot(percent, [point["seconds"] for point in results.sweep], marker="o", color="#2f6f9f")
    measured.set_title("MEASURED here: local emulator, no rate limit", fontsize=10)
    measured.set_ylabel("seconds")
    full_minutes = rows / pace
    modeled.plot(
        percent,
        [point["enterprise_minutes"] for point in results.sweep],
        marker="o",
        color="#c0392b",
        label=f"change-only sync: requests sent ÷ {pace:,.0f} a minute",
    )
    modeled.axhline(
        full_minutes, color="#7f8c8d", linestyle="--", label=f"without a ledger: every row, {full_minutes:.1f} min"
    )
    modeled.set_title(f"MODELED at the Enterprise limit, {ENTERPRISE:,} requests a minute", fontsize=10)
    modeled.set_ylabel("minutes")
    modeled.set_ylim(0, full_minutes * 1.35)
    modeled.legend(frameon=False, loc="upper left")
    measured.set_ylim(bottom=0)
    for axes in (measured, modeled):
        axes.set_xlabel(f"rows changed since the last run (% of {rows:,})")
        axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark change-only sync.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 2 minutes; writes no docs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(Path(args.worker))
    sizes = QUICK if args.quick else DEFAULT
    started = time.monotonic()
    load_start = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory(prefix="hindsight-bench-sync-") as home:
        results = run_all(sizes, Path(home))
    minutes = (time.monotonic() - started) / 60
    print()
    print(f"{time.strftime('%Y-%m-%d')}, {environment()}")
    print()
    print(table(results))
    print()
    print(sweep_table(results))
    print()
    print(verdict_table(results))
    print(f"\nTotal time {minutes:.1f} minutes.")
    if not args.quick:
        run = {
            "date": time.strftime("%Y-%m-%d"),
            "minutes": f"{minutes:.1f} minutes in all",
            "load_start": load_start,
            "load_end": f"{os.getloadavg()[0]:.1f}",
        }
        write_numbers_page(results, run)
        draw_chart(results, CHART)
        print(f"Wrote {NUMBERS_PAGE.relative_to(HERE.parent)} and {CHART.relative_to(HERE.parent)}.")
    return 0


# -- the worker: runs the transfer on command, in its own process ------------------------------------


class _XComSink:
    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


def worker(log: Path) -> int:
    """Answer commands from stdin, one JSON line each; the task logs go to ``log``, the answers to stdout."""
    answers: IO[str] = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    with log.open("ab") as output:
        os.dup2(output.fileno(), sys.stdout.fileno())
        os.dup2(output.fileno(), sys.stderr.fileno())
    from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator  # noqa: F401

    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["do"] == "run":
                answer = _run(command)
            elif command["do"] == "prefill":
                answer = _prefill(command)
            elif command["do"] == "constants":
                answer = _constants()
            else:
                answer = {"peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
        except Exception as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        answers.write(json.dumps(answer) + "\n")
    return 0


def _constants() -> dict[str, float]:
    from airflow_provider_hindsight.bulk.changes import CHECKPOINT_ROWS, CHECKPOINT_SECONDS
    from airflow_provider_hindsight.pace import SAFETY_MARGIN

    return {
        "checkpoint_rows": CHECKPOINT_ROWS,
        "checkpoint_seconds": CHECKPOINT_SECONDS,
        "safety_margin": SAFETY_MARGIN,
    }


def _connections(command: dict[str, Any]) -> None:
    hindsight = {
        "conn_type": "hindsight",
        "host": command["base_url"],
        "password": API_KEY,
        "extra": {"requests_per_minute": command.get("pace", UNPACED)},
    }
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(hindsight)
    os.environ[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "sqlite", "host": command["database"]}
    )


def _sql(max_id: int | None) -> str:
    where = "" if max_id is None else f"WHERE interview_request_id <= {int(max_id)} "
    return f"SELECT interview_request_id, contact_name, title, stage, notes FROM enrichment {where}ORDER BY 1"


def _run(command: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

    _connections(command)
    operator = SqlToHindsightOperator(
        task_id="bench",
        sql_conn_id=WAREHOUSE_CONN_ID,
        sql=_sql(command.get("max_id")),
        context_columns=list(CONTEXT_COLUMNS),
        ledger_conn_id=WAREHOUSE_CONN_ID,
        sync_id=command["sync_id"],
        max_workers=MAX_WORKERS,
    )
    context: Any = {"ti": _XComSink()}
    started = time.perf_counter()
    summary = operator.execute(context)
    seconds = time.perf_counter() - started
    failures = summary.pop("failures")
    return {"seconds": seconds, "summary": summary, "failures": failures[:3]}


def _prefill(command: dict[str, Any]) -> dict[str, Any]:
    """Record every row of the warehouse in its ledger with the hash a run would record (nothing is sent)."""
    from airflow_provider_hindsight.ledgers.sync import SyncLedger, body_sha256
    from airflow_provider_hindsight.resources.interviews import build_interview_update

    _connections(command)
    base_url = command["base_url"]
    with closing(sqlite3.connect(command["database"])) as database:
        rows = database.execute(_sql(None)).fetchall()
    with SyncLedger(ledger_conn_id=WAREHOUSE_CONN_ID, table=LEDGER_TABLE, sync_id=command["sync_id"]) as ledger:
        ledger.prepare(create=True)
        recorded = ledger.record(
            (
                interview_id,
                body_sha256(
                    base_url,
                    build_interview_update(
                        interview_id,
                        contact_name=name,
                        contact_context=dict(zip(CONTEXT_COLUMNS, context, strict=True)),
                    ).payload,
                ),
            )
            for interview_id, name, *context in rows
        )
    return {"recorded": recorded}


if __name__ == "__main__":
    sys.exit(main())
