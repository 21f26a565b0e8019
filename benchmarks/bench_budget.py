"""Benchmark: four processes on one API key, with and without the shared budget (connection extra ``budget_conn_id``).

    python benchmarks/bench_budget.py                 # about 5 minutes, the budget on SQLite
    python benchmarks/bench_budget.py --store postgres  # the budget on a throw-away PostgreSQL server

The emulator runs in its own process with a strict limit of 600 requests in any 60 seconds and 20 ms
of latency. Four processes use one key at once, each a fresh Python process with its own hook (the
issue's deployment, a tenth of its sizes): a sync (300 PATCHes from 16 threads, the bulk engine's
default), a create (100 POSTs from 4 threads), a landing (200 GETs from 4 threads) and a triggerer
(10 triggers on one event loop, 20 polls each). Every process paces at the connection's 600 a minute.

1. without the budget: each process paces as if it had the key alone;
2. with the budget: one budget shared through the store;
3. one process alone with the budget, at 1,000 a minute (500 PATCHes): its rate and the store's load.

Targets: with the budget, together at least 0.95 of the limit while all four are busy, at most 0.2 % of
requests answered 429, no process below half its fair share; alone, at least 0.95 of the limit; at most 5
round trips to the store a second per process. Prints the numbers, writes them to
``docs/_generated/budget-numbers.md`` and draws ``docs/_static/budget-shares.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from measure import API_KEY, ROOT, EmulatorSettings, emulator, progress

NUMBERS = ROOT / "docs" / "_generated" / "budget-numbers.md"
PLOT = ROOT / "docs" / "_static" / "budget-shares.png"
CONN_ID = "hindsight_bench"
BUDGET_CONN_ID = "hindsight_budget"
LIMIT = 600
LATENCY = 0.02
ALONE_LIMIT = 1000
SEED = 2000
PROCESSES: dict[str, dict[str, Any]] = {
    "sync": {"kind": "update", "count": 300, "threads": 16},
    "create": {"kind": "create", "count": 100, "threads": 4},
    "landing": {"kind": "get", "count": 200, "threads": 4},
    "triggerer": {"kind": "triggers", "count": 20, "triggers": 10},
}
BIN_SECONDS = 10.0
RUNS: list[str] = []
"""The runs made so far: each creates contacts of its own."""


# -- a child: one process's requests -------------------------------------------------------------


def child(task: dict[str, Any]) -> dict[str, Any]:
    """Run one process's requests once the parent says go; return when each finished and what the store cost."""
    sys.path.insert(0, str(ROOT))
    for name in [name for name in os.environ if name.startswith("AIRFLOW_CONN_")]:
        del os.environ[name]
    os.environ.update(task["connections"])
    from airflow_provider_hindsight.exceptions import HindsightError
    from airflow_provider_hindsight.hooks.hindsight import HindsightHook
    from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook

    kind, count = task["kind"], task["count"]
    done: list[float] = []
    failed: list[str] = []
    go = Path(task["go"])
    if kind == "triggers":
        hook: Any = HindsightAsyncHook(CONN_ID, max_retry_wait=120)

        async def trigger(interview_id: int) -> None:
            for _ in range(count):
                try:
                    await hook.aget_interview(interview_id)
                    done.append(time.time())
                except HindsightError as error:
                    failed.append(type(error).__name__)

        async def triggerer() -> None:
            await hook.asettings()
            _ = hook.pacer
            await asyncio.to_thread(_wait_for_go, go, Path(task["ready"]))
            await asyncio.gather(*(trigger(interview_id) for interview_id in range(1, task["triggers"] + 1)))
            await hook.aclose()

        asyncio.run(triggerer())
    else:
        hook = HindsightHook(CONN_ID, max_retry_wait=120)
        _ = (hook.session, hook.pacer)
        pending = iter(range(1, count + 1))

        def send(number: int) -> None:
            if kind == "update":
                hook.update_interview(number, contact_name="Budget benchmark")
            elif kind == "get":
                hook.get_interview(number)
            else:
                hook.create_interview(
                    contact_email=f"contact-{task['run_index']}-{number}@example.com", sequence_id="seq"
                )

        def work() -> None:
            for number in pending:
                try:
                    send(number)
                    done.append(time.time())
                except HindsightError as error:
                    failed.append(type(error).__name__)

        _wait_for_go(go, Path(task["ready"]))
        with ThreadPoolExecutor(task["threads"]) as pool:
            for future in [pool.submit(work) for _ in range(task["threads"])]:
                future.result()
    permits = hook.pacer.permits
    return {
        "done": done,
        "failed": failed,
        "rate_limited": hook.rate_limited_count,
        "round_trips": getattr(getattr(permits, "store", None), "round_trips", 0),
        "store_failures": getattr(permits, "store_failures", 0),
    }


def _wait_for_go(go: Path, ready: Path) -> None:
    ready.touch()
    while not go.exists():
        time.sleep(0.005)


# -- the parent: runs, numbers, plot -------------------------------------------------------------


def run(
    title: str,
    processes: dict[str, dict[str, Any]],
    *,
    limit: float,
    budget: str | None,
    directory: Path,
) -> dict[str, Any]:
    """Start one child per process on a fresh emulator at ``limit``, all at once; collect what they report."""
    settings = EmulatorSettings(requests_per_minute=limit, rate_window=60.0, latency=LATENCY, seed=SEED)
    with emulator(settings) as server:
        extra: dict[str, Any] = {"requests_per_minute": limit}
        connections = {}
        if budget is not None:
            extra["budget_conn_id"] = BUDGET_CONN_ID
            connections[f"AIRFLOW_CONN_{BUDGET_CONN_ID.upper()}"] = budget
        hindsight = {"conn_type": "hindsight", "host": server.base_url, "password": API_KEY, "extra": extra}
        connections[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(hindsight)
        go = directory / f"{title}.go"
        children = {}
        for name, spec in processes.items():
            ready = directory / f"{title}-{name}.ready"
            task = {**spec, "connections": connections, "go": str(go), "ready": str(ready), "run_index": len(RUNS)}
            command = [sys.executable, __file__, "--child", json.dumps(task)]
            children[name] = (subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT), ready)
        for process, ready in children.values():
            while not ready.exists():
                if process.poll() is not None:
                    raise RuntimeError(f"a child of {title!r} exited before it was ready")
                time.sleep(0.01)
        started = time.time()
        go.touch()
        results = {}
        for name, (process, _) in children.items():
            output, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"the {name} child of {title!r} failed")
            results[name] = json.loads(output.strip().splitlines()[-1])
        counts = server.counts()
    outcome = {"title": title, "limit": limit, "started": started, "results": results, "status_counts": counts}
    (directory / f"{title}.json").write_text(json.dumps(outcome))
    RUNS.append(title)
    for name, result in results.items():
        failures = {error: result["failed"].count(error) for error in set(result["failed"])}
        progress(f"   {name}: {len(result['done'])} answered 2xx, failed {failures or 'none'}")
    return outcome


def summarize(outcome: dict[str, Any]) -> dict[str, Any]:
    """The run's numbers: together and per process while all were busy, 429s, the store's round trips."""
    results, limit, started = outcome["results"], outcome["limit"], outcome["started"]
    finished = {name: max(result["done"]) for name, result in results.items()}
    busy_from = max(min(result["done"]) for result in results.values())
    busy_until = min(finished.values())
    span = max(busy_until - busy_from, 1e-9)
    in_window = {
        name: sum(busy_from <= moment < busy_until for moment in result["done"]) for name, result in results.items()
    }
    total_in_window = sum(in_window.values())
    answered = sum(outcome["status_counts"].values())
    rate_limited = outcome["status_counts"].get(429, 0)
    sent = sum(len(result["done"]) for result in results.values())
    return {
        "title": outcome["title"],
        "limit": limit,
        "sent": sent,
        "failed": sum(len(result["failed"]) for result in results.values()),
        "seconds": max(finished.values()) - started,
        "busy_seconds": span,
        "together_per_minute": total_in_window / span * 60,
        "together_share_of_limit": total_in_window / span * 60 / limit,
        "answered_429": rate_limited,
        "share_429": rate_limited / answered if answered else 0.0,
        "per_process_per_minute": {name: count / span * 60 for name, count in in_window.items()},
        "fair_share_ratio": {
            name: count / (total_in_window / len(in_window)) if total_in_window else 0.0
            for name, count in in_window.items()
        },
        "round_trips_per_second": {
            name: result["round_trips"] / max(finished[name] - started, 1e-9) for name, result in results.items()
        },
        "store_failures": sum(result["store_failures"] for result in results.values()),
    }


def timeline(outcome: dict[str, Any]) -> tuple[list[float], dict[str, list[float]]]:
    """Requests a minute per process in bins of ``BIN_SECONDS`` from the start of the run."""
    started = outcome["started"]
    end = max(max(result["done"]) for result in outcome["results"].values())
    bins = int((end - started) // BIN_SECONDS) + 1
    rates: dict[str, list[float]] = {}
    for name, result in outcome["results"].items():
        counts = [0] * bins
        for moment in result["done"]:
            counts[int((moment - started) // BIN_SECONDS)] += 1
        rates[name] = [count * 60 / BIN_SECONDS for count in counts]
    return [index * BIN_SECONDS for index in range(bins)], rates


def plot(without: dict[str, Any], shared: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, outcome, title in (
        (axes[0], without, "without the budget: each process paces alone"),
        (axes[1], shared, "with budget_conn_id: one budget for the key"),
    ):
        starts, rates = timeline(outcome)
        together = [sum(values) for values in zip(*rates.values(), strict=True)]
        for name, values in rates.items():
            axis.step(starts, values, where="post", label=name)
        axis.step(starts, together, where="post", color="black", linewidth=2, label="together")
        axis.axhline(outcome["limit"], color="red", linestyle="--", label=f"limit ({outcome['limit']:,.0f}/min)")
        answered = sum(outcome["status_counts"].values())
        rejected = outcome["status_counts"].get(429, 0)
        axis.set_title(f"{title}\n{rejected} of {answered} requests answered 429", fontsize=10)
        axis.set_xlabel(f"seconds from the start (bins of {BIN_SECONDS:g} s)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("requests answered 2xx a minute")
    axes[1].legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def write_numbers(summaries: list[dict[str, Any]], store: str) -> None:
    load = os.getloadavg()[0]
    lines = [
        "<!-- Written by benchmarks/bench_budget.py: do not edit by hand; run `make benchmark`. -->",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, the budget on {store}, the emulator in its own process (a strict "
        f"limit of requests in any 60 s, {LATENCY * 1000:.0f} ms latency). The machine is shared: its load "
        f"average was {load:.1f} at the end.",
        "",
        "| run | limit /min | requests | 429 | together while all busy (/min, share of the limit) "
        "| per process while all busy (/min; share of a fair share) | store round trips /s per process |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for summary in summaries:
        per_process = "; ".join(
            f"{name} {rate:,.0f} ({summary['fair_share_ratio'][name]:.2f})"
            for name, rate in summary["per_process_per_minute"].items()
        )
        trips = "; ".join(f"{name} {rate:.1f}" for name, rate in summary["round_trips_per_second"].items())
        lines.append(
            f"| {summary['title']} | {summary['limit']:,} | {summary['sent']:,} | {summary['answered_429']} "
            f"({summary['share_429']:.1%}) | {summary['together_per_minute']:,.0f} "
            f"({summary['together_share_of_limit']:.3f}) | {per_process} | {trips or '-'} |"
        )
    NUMBERS.write_text("\n".join(lines) + "\n")


def budget_connection(store: str, directory: Path) -> tuple[str, Any]:
    """The budget's Airflow connection, and the server to stop afterwards (PostgreSQL) or ``None``."""
    if store == "sqlite":
        return json.dumps({"conn_type": "sqlite", "host": str(directory / "budget.db")}), None
    sys.path.insert(0, str(ROOT))
    from tests.support.postgres import PostgresServer

    server = PostgresServer.start()
    return server.create_database("budget").airflow_connection(), server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    directory = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    progress(f"raw results in {directory}")
    budget, server = budget_connection(args.store, directory)
    try:
        progress("1. four processes on one key, each pacing alone")
        without = run("without the budget", PROCESSES, limit=LIMIT, budget=None, directory=directory)
        progress("2. the same four processes with the shared budget")
        shared = run("with the budget", PROCESSES, limit=LIMIT, budget=budget, directory=directory)
        progress("3. one process alone with the budget")
        alone_processes = {"sync alone": {"kind": "update", "count": 500, "threads": 16}}
        alone = run("alone, with the budget", alone_processes, limit=ALONE_LIMIT, budget=budget, directory=directory)
    finally:
        if server is not None:
            server.stop()
    summaries = [summarize(outcome) for outcome in (without, shared, alone)]
    for summary in summaries:
        print(json.dumps(summary, indent=1))
    write_numbers(summaries, "SQLite" if args.store == "sqlite" else "PostgreSQL")
    plot(without, shared)
    progress(f"wrote {NUMBERS.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
