"""Benchmark: creating interviews exactly once, over real HTTP to a local Hindsight emulator, SQLite ledger.

    python benchmarks/bench_create.py                       # the default run (make benchmark), 20+ minutes
    python benchmarks/bench_create.py --creates 2000 --kills 50 --rerun-rows 20000   # smaller; says so

a) ``--creates`` creates at a strict 1,000-a-minute limiter with 20 ms latency: the share of the
limit reached, and 429s (target: >= 0.95 of the limit, 0 x 429);
b) ``--kills`` runs each killed with SIGKILL at a random moment and rerun: keys created twice at the
emulator (target 0), keys left ``unknown`` per kill (target: at most ``max_workers``), their distribution;
c) a rerun over ``--rerun-rows`` keys already created (SQLite source and ledger in one file): requests
(target 0) and time (target under 10 s at 100,000);
d) peak memory of a dry run at 1,000 and at ``--rerun-rows`` rows (target: within 50 MB).

The emulator runs in this process (the parent only waits); each operator run is a child process
(forked from a helper process that imported Airflow once), so a kill kills only the run. Writes
``docs/_generated/create-numbers.md`` and ``docs/_static/create-kills.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from measure import API_KEY, progress  # noqa: E402

# Imported here, so that the forkserver (which preloads this module) imports Airflow once for every run.
from airflow_provider_hindsight.operators.create import HindsightCreateInterviewsOperator  # noqa: E402
from airflow_provider_hindsight.testing import HindsightEmulator  # noqa: E402
from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightCreateInterviewsOperator  # noqa: E402

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "create-numbers.md"
CHART = DOCS / "_static" / "create-kills.png"
LIMIT = 1000
LATENCY = 0.02
MAX_WORKERS = 16
KILL_ROWS = 40
KILL_PACE = 6000
"""b): 100 creates a second, so a run of KILL_ROWS lasts about half a second and a kill lands mid-run."""
UNPACED = 6_000_000
INTERVIEW_TYPE = "type_bench"
CONN = "bench_warehouse"


# -- the child: one operator run -----------------------------------------------------------------------


class _XCom:
    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


def child(task: dict[str, Any], result_file: str) -> None:
    """Run one create operator as ``task`` says; write ``{"seconds", "summary", "peak_rss_kb"}`` to ``result_file``."""
    log = open(task["log"], "ab")  # noqa: SIM115 - the child's stdout and stderr, for its whole life
    os.dup2(log.fileno(), sys.stdout.fileno())
    os.dup2(log.fileno(), sys.stderr.fileno())
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
        {
            "conn_type": "hindsight",
            "host": task["base_url"],
            "password": API_KEY,
            "extra": {"requests_per_minute": task["pace"], "max_retries": 5},
        }
    )
    os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = json.dumps({"conn_type": "sqlite", "host": task["database"]})

    common = {"ledger_conn_id": CONN, "interview_type_id": INTERVIEW_TYPE, "max_workers": MAX_WORKERS}
    if task["source"] == "sql":
        operator: Any = SqlToHindsightCreateInterviewsOperator(
            task_id="bench",
            sql_conn_id=CONN,
            sql="SELECT request_key, contact_email, contact_name FROM deals ORDER BY request_key",
            dry_run=task.get("dry_run", False),
            **common,
        )
    else:
        prefix, count = task["prefix"], task["rows"]
        rows = (
            {"request_key": f"{prefix}-{n}", "contact_email": f"{prefix}-{n}@example.com", "contact_name": f"C {n}"}
            for n in range(count)
        )
        operator = HindsightCreateInterviewsOperator(task_id="bench", interviews=rows, **common)
    started = time.perf_counter()
    summary = operator.execute({"ti": _XCom()})  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    summary["failures"] = summary["failures"][:3]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(result_file).write_text(json.dumps({"seconds": seconds, "summary": summary, "peak_rss_kb": peak}))


class Runner:
    """Starts operator runs as forked children of one helper process that imported Airflow once.

    The helper (``bench_create.py --forker``) has no threads, so forking it is safe; for each run
    it forks a child, says its pid at once and its exit code when it ends. The parent may kill the
    child by its pid in between.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.count = 0
        command = [sys.executable, __file__, "--forker"]
        self._helper = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._read()  # ready

    def _read(self) -> dict[str, Any]:
        assert self._helper.stdout is not None
        line = self._helper.stdout.readline()
        if not line:
            raise RuntimeError("the forker exited")
        return dict(json.loads(line))

    def start(self, task: dict[str, Any]) -> tuple[int, Path]:
        """Start a run; returns the child's pid and where its result will be."""
        self.count += 1
        result = self.home / f"result-{self.count}.json"
        task = {"log": os.environ.get("BENCH_CREATE_LOG", str(self.home / "runs.log")), **task}
        assert self._helper.stdin is not None
        self._helper.stdin.write(json.dumps({"task": task, "result": str(result)}) + "\n")
        self._helper.stdin.flush()
        return int(self._read()["pid"]), result

    def wait(self) -> int:
        """The exit status of the run started last (negative: killed by that signal)."""
        return int(self._read()["exit"])

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        _, result = self.start(task)
        code = self.wait()
        if code != 0 or not result.exists():
            raise RuntimeError(f"run failed (exit {code}); see {self.home / 'runs.log'}")
        return dict(json.loads(result.read_text()))

    def stop(self) -> None:
        assert self._helper.stdin is not None
        self._helper.stdin.close()
        self._helper.wait(timeout=30)


def forker() -> int:
    """The helper: fork one child per command line, answer its pid, then its exit status."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                child(command["task"], command["result"])
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        out.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        out.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")
    return 0


# -- the measurements ------------------------------------------------------------------------------------


def throughput(runner: Runner, creates: int, home: Path) -> dict[str, Any]:

    progress(f"a) {creates:,} creates at a strict {LIMIT:,}/min limiter, {LATENCY * 1000:.0f} ms latency")
    with HindsightEmulator(API_KEY, requests_per_minute=LIMIT, latency=LATENCY, record_requests=False) as emulator:
        database = home / "throughput.db"
        result = runner.run(
            {
                "source": "rows",
                "rows": creates,
                "prefix": "T",
                "database": str(database),
                "base_url": emulator.base_url,
                "pace": LIMIT,
            }
        )
        statuses = dict(emulator.status_counts)
    rate = result["summary"]["created"] / result["seconds"] * 60
    return {
        "creates": creates,
        "created": result["summary"]["created"],
        "seconds": result["seconds"],
        "per_minute": rate,
        "share": rate / LIMIT,
        "429": statuses.get(429, 0),
    }


def kills(runner: Runner, runs: int, home: Path, seed: int) -> dict[str, Any]:

    progress(f"b) {runs} runs of {KILL_ROWS} creates, each killed with SIGKILL at a random moment, then rerun")
    randomizer = random.Random(seed)
    unknown_per_kill: list[int] = []
    twice = 0
    unknown_created = 0
    with HindsightEmulator(API_KEY, latency=LATENCY, record_requests=False) as emulator:
        for number in range(runs):
            database = home / f"kill-{number}.db"
            task = {
                "source": "rows",
                "rows": KILL_ROWS,
                "prefix": f"K{number}",
                "database": str(database),
                "base_url": emulator.base_url,
                "pace": KILL_PACE,
            }
            pid, _ = runner.start(task)
            time.sleep(randomizer.uniform(0.0, 0.6))  # the random moment is the point: a kill, not a condition
            with contextlib.suppress(ProcessLookupError):  # the run may be over already
                os.kill(pid, signal.SIGKILL)
            runner.wait()
            rerun = runner.run(task)
            summary = rerun["summary"]
            assert summary["failed"] == 0, summary
            unknown_per_kill.append(summary["unknown"])
            emails = Counter(
                str(record["contact_email"])
                for record in emulator.created_interviews()
                if str(record["contact_email"]).startswith(f"K{number}-")
            )
            twice += sum(1 for count in emails.values() if count > 1)
            unknown_created += len(emails) - summary["created"] - summary["existing"]
            if (number + 1) % 25 == 0:
                progress(f"   {number + 1} of {runs} kill runs done")
    return {
        "runs": runs,
        "rows": KILL_ROWS,
        "created_twice": twice,
        "max_unknown": max(unknown_per_kill),
        "distribution": dict(sorted(Counter(unknown_per_kill).items())),
        "unknown_per_kill": unknown_per_kill,
        "unknown_created": unknown_created,
        "unknown_total": sum(unknown_per_kill),
    }


def fill_source(path: Path, rows: int, *, created: bool) -> None:
    """``deals`` of ``rows`` rows, and with ``created`` a ledger holding every key as created (nothing sent)."""
    with closing(sqlite3.connect(path)) as database:
        database.execute("CREATE TABLE deals (request_key TEXT PRIMARY KEY, contact_email TEXT, contact_name TEXT)")
        database.executemany(
            "INSERT INTO deals VALUES (?, ?, ?)", ((f"R-{n:06d}", f"r{n}@example.com", f"C {n}") for n in range(rows))
        )
        if created:
            from airflow_provider_hindsight.ledgers.interviews import SPEC

            database.execute(SPEC.create_sql("hindsight_interviews"))
            database.executemany(
                "INSERT INTO hindsight_interviews (request_key, state, interview_request_id, attempted_at, created_at) "
                "VALUES (?, 'created', ?, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                ((f"R-{n:06d}", n + 1) for n in range(rows)),
            )
        database.commit()


def rerun(runner: Runner, rows: int, home: Path) -> dict[str, Any]:

    progress(f"c) a rerun over {rows:,} keys already created (SQLite source and ledger in one file)")
    path = home / "rerun.db"
    fill_source(path, rows, created=True)
    with HindsightEmulator(API_KEY, record_requests=False) as emulator:
        result = runner.run({"source": "sql", "database": str(path), "base_url": emulator.base_url, "pace": UNPACED})
        requests = emulator.request_count
    return {"rows": rows, "seconds": result["seconds"], "requests": requests, "existing": result["summary"]["existing"]}


def memory(runner: Runner, sizes: list[int], home: Path) -> dict[int, float]:

    peaks = {}
    with HindsightEmulator(API_KEY, record_requests=False) as emulator:
        for rows in sizes:
            progress(f"d) peak memory of a dry run over {rows:,} rows")
            path = home / f"memory-{rows}.db"
            fill_source(path, rows, created=False)
            task = {"source": "sql", "database": str(path), "base_url": emulator.base_url, "pace": UNPACED}
            result = runner.run({**task, "dry_run": True})
            peaks[rows] = result["peak_rss_kb"] / 1024
    return peaks


# -- reporting --------------------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    a, b, c, d = results["throughput"], results["kills"], results["rerun"], results["memory"]
    small, large = min(d), max(d)
    spread = d[large] - d[small]
    return [
        (f"{a['creates']:,} creates reach >= 0.95 of {LIMIT:,}/min", f"{a['share']:.3f}", a["share"] >= 0.95),
        ("0 x 429 at the limit", f"{a['429']}", a["429"] == 0),
        (f"{b['runs']} killed runs: 0 keys created twice", f"{b['created_twice']}", b["created_twice"] == 0),
        (
            f"unknown per kill <= max_workers ({MAX_WORKERS})",
            f"at most {b['max_unknown']}",
            b["max_unknown"] <= MAX_WORKERS,
        ),
        (f"rerun over {c['rows']:,} created keys: 0 requests", f"{c['requests']}", c["requests"] == 0),
        (f"rerun over {c['rows']:,} keys under 10 s", f"{c['seconds']:.1f} s", c["seconds"] < 10),
        (f"peak memory {large:,} rows within 50 MB of {small:,}", f"{spread:+.1f} MB", spread <= 50),
    ]


def environment() -> str:
    import platform
    from importlib.metadata import version

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"apache-airflow {version('apache-airflow')}"
    )


def report(results: dict[str, Any], run: dict[str, str]) -> str:
    a, b, c, d = results["throughput"], results["kills"], results["rerun"], results["memory"]
    table = ["| target | measured | met |", "| --- | --- | --- |"]
    table += [f"| {target} | {measured} | {'yes' if met else 'NO'} |" for target, measured, met in verdicts(results)]
    distribution = ", ".join(f"{unknown} unknown: {count} runs" for unknown, count in b["distribution"].items())
    memory_lines = ", ".join(f"{rows:,} rows: {peak:,.1f} MB" for rows, peak in sorted(d.items()))
    return f"""Measured {run["date"]} ({run["minutes"]}) on {environment()}; {run["sizes"]}.
The machine is shared: its load average was {run["load_start"]} at the start and {run["load_end"]} at the end.

{chr(10).join(table)}

- a) {a["created"]:,} creates in {a["seconds"]:.0f} s: {a["per_minute"]:,.0f} a minute against a strict limiter of
  {LIMIT:,} a minute with {LATENCY * 1000:.0f} ms latency, {a["429"]} answered 429.
- b) {b["runs"]} runs of {b["rows"]} creates ({MAX_WORKERS} workers, {KILL_PACE:,} a minute), each killed with SIGKILL
  at a random moment in its first 0.6 s, then rerun: {b["created_twice"]} keys created twice; keys the rerun
  found `unknown` (claimed, their POST on its way when the run died): {distribution}. Of those
  {b["unknown_total"]} keys, {b["unknown_created"]} had in fact been created (the 201 died with the process); the
  others never reached the emulator.
- c) a rerun over {c["rows"]:,} keys already created: {c["requests"]} requests, {c["seconds"]:.1f} s
  ({c["existing"]:,} counted `existing`).
- d) peak memory (max RSS of the task process) of a dry run: {memory_lines}.
"""


def draw_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = results["kills"]
    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    figure, axes = plt.subplots(figsize=(7, 3.5), layout="constrained")
    values = sorted(b["distribution"])
    axes.bar([str(v) for v in values], [b["distribution"][v] for v in values], color="#2f6f9f")
    axes.set_xlabel(f"keys left unknown by one SIGKILL (at most max_workers = {MAX_WORKERS})")
    axes.set_ylabel("runs")
    axes.set_title(f"{b['runs']} runs killed at a random moment: {b['created_twice']} keys created twice")
    axes.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark create-once.")
    parser.add_argument("--creates", type=int, default=10_000, help="a): creates at the limit (default 10,000)")
    parser.add_argument("--kills", type=int, default=200, help="b): killed runs (default 200)")
    parser.add_argument("--rerun-rows", type=int, default=100_000, help="c), d): rows (default 100,000)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--no-docs", action="store_true", help="print only; do not rewrite the docs' numbers")
    parser.add_argument("--forker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.forker:
        return forker()
    started = time.monotonic()
    load_start = f"{os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory(prefix="hindsight-bench-create-") as directory:
        home = Path(directory)
        runner = Runner(home)
        try:
            results = {
                "rerun": rerun(runner, args.rerun_rows, home),
                "memory": memory(runner, [1_000, args.rerun_rows], home),
                "kills": kills(runner, args.kills, home, args.seed),
                "throughput": throughput(runner, args.creates, home),
            }
        finally:
            runner.stop()
    default = (args.creates, args.kills, args.rerun_rows) == (10_000, 200, 100_000)
    sizes = (
        "the default sizes"
        if default
        else (
            f"SMALLER than the targets' sizes: {args.creates:,} creates, {args.kills} kills, "
            f"{args.rerun_rows:,} rerun rows"
        )
    )
    run = {
        "date": time.strftime("%Y-%m-%d"),
        "minutes": f"{(time.monotonic() - started) / 60:.1f} minutes in all",
        "sizes": sizes,
        "load_start": load_start,
        "load_end": f"{os.getloadavg()[0]:.1f}",
    }
    text = report(results, run)
    print(text)
    if not args.no_docs:
        header = "<!-- Written by benchmarks/bench_create.py: do not edit by hand; run `make benchmark`. -->\n\n"
        NUMBERS_PAGE.parent.mkdir(parents=True, exist_ok=True)
        NUMBERS_PAGE.write_text(header + text)
        draw_chart(results, CHART)
        print(f"Wrote {NUMBERS_PAGE.relative_to(HERE.parent)} and {CHART.relative_to(HERE.parent)}.")
    return 0 if all(met for _, _, met in verdicts(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
