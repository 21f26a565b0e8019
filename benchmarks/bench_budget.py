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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from measure import API_KEY, ROOT, EmulatorSettings, emulator, progress

from airflow_provider_hindsight.pace import SAFETY_MARGIN

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
BUSY_BESIDE_LIGHT: dict[str, dict[str, Any]] = {
    "sync": {"kind": "update", "count": 560, "threads": 16},
    "triggerer": {"kind": "triggers", "count": 3, "triggers": 10, "poll_every": 30.0},
}
"""One busy process beside a triggerer of 10 sensors polling every 30 s: about a minute."""
KILL_AFTER = 15.0
DOWN_SECONDS = 20.0
"""The store-killed run: the budget's database goes down this long after the start, for this long."""
EDGES_MARKER = "<!-- the budget at its edges -->"
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

        poll_every = float(task.get("poll_every", 0.0))

        async def trigger(interview_id: int) -> None:
            if poll_every:  # sensors deferred at different moments poll at different moments
                await asyncio.sleep(poll_every * interview_id / task["triggers"])
            for _ in range(count):
                try:
                    await hook.aget_interview(interview_id)
                    done.append(time.time())
                except HindsightError as error:
                    failed.append(type(error).__name__)
                if poll_every:
                    await asyncio.sleep(poll_every)

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
    during: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Start one child per process on a fresh emulator at ``limit``, all at once; collect what they report.

    ``during``: run in a thread once the children start (it takes the store away and brings it back); the
    emulator then runs in this process, recording when each request arrived (``arrivals``)."""
    settings = EmulatorSettings(requests_per_minute=limit, rate_window=60.0, latency=LATENCY, seed=SEED)
    with emulator(settings) if during is None else recording_emulator(limit) as server:
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
        action = threading.Thread(target=during) if during is not None else None
        if action is not None:
            action.start()
        results = {}
        for name, (process, _) in children.items():
            output, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"the {name} child of {title!r} failed")
            results[name] = json.loads(output.strip().splitlines()[-1])
        if action is not None:
            action.join()
        counts = server.counts()
        recorded = server.requests if isinstance(server, _RecordingEmulator) else []
        arrivals = [[request.time, request.status] for request in recorded]
    outcome = {
        "title": title,
        "limit": limit,
        "started": started,
        "results": results,
        "status_counts": counts,
        "arrivals": arrivals,
    }
    (directory / f"{title}.json").write_text(json.dumps(outcome))
    RUNS.append(title)
    for name, result in results.items():
        failures = {error: result["failed"].count(error) for error in set(result["failed"])}
        progress(f"   {name}: {len(result['done'])} answered 2xx, failed {failures or 'none'}")
    return outcome


class _RecordingEmulator:
    """The emulator in this process (the parent only waits), recording when each request arrived."""

    def __init__(self, limit: float) -> None:
        from airflow_provider_hindsight.testing import HindsightEmulator

        self.server = HindsightEmulator(
            API_KEY, requests_per_minute=limit, rate_window=60.0, latency=LATENCY, clock=time.time
        )
        for interview_id in range(1, SEED + 1):
            self.server.add_interview(interview_id, status="sent")
        self.base_url = ""

    def __enter__(self) -> _RecordingEmulator:
        self.server.__enter__()
        self.base_url = self.server.base_url
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.__exit__(*exc_info)

    def counts(self) -> dict[int, int]:
        return dict(self.server.status_counts)

    @property
    def requests(self) -> list[Any]:
        return list(self.server.requests)


def recording_emulator(limit: float) -> _RecordingEmulator:
    return _RecordingEmulator(limit)


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
    edges = NUMBERS.read_text().partition(EDGES_MARKER) if NUMBERS.exists() else ("", "", "")
    NUMBERS.write_text("\n".join(lines) + "\n" + (f"\n{edges[1]}{edges[2]}" if edges[1] else ""))


def summarize_store_killed(outcome: dict[str, Any], killed_at: float) -> dict[str, Any]:
    """Requests arriving at the emulator in each second after the store died, against the per-second pace."""
    arrivals = outcome["arrivals"]
    after = [moment for moment, _ in arrivals if moment >= killed_at]
    per_second: dict[int, int] = {}
    for moment in after:
        per_second[int(moment - killed_at)] = per_second.get(int(moment - killed_at), 0) + 1
    pace = outcome["limit"] * SAFETY_MARGIN / 60
    rate_limited = sum(status == 429 for _, status in arrivals)
    return {
        "title": outcome["title"],
        "requests": len(arrivals),
        "answered_429": rate_limited,
        "share_429": rate_limited / max(1, len(arrivals)),
        "pace_per_second": pace,
        "most_in_one_second_after": max(per_second.values(), default=0),
        "most_per_second_over_pace": max(per_second.values(), default=0) / pace,
        "store_failures": sum(result["store_failures"] for result in outcome["results"].values()),
    }


def summarize_busy_beside_light(outcome: dict[str, Any]) -> dict[str, Any]:
    """Both processes' 2xx answers while the busy one runs, against the limit."""
    busy, light = outcome["results"]["sync"]["done"], outcome["results"]["triggerer"]["done"]
    start, end = min(busy), max(busy)
    together = sum(start <= moment <= end for moment in busy + light)
    return {
        "title": outcome["title"],
        "busy_seconds": end - start,
        "light_requests": sum(start <= moment <= end for moment in light),
        "together_per_minute": together / (end - start) * 60,
        "together_share_of_limit": together / (end - start) * 60 / outcome["limit"],
        "answered_429": outcome["status_counts"].get(429, 0),
    }


def write_edges(killed: dict[str, Any] | None, beside: dict[str, Any]) -> None:
    """The edges' table, after the main one (kept as it is when only the edges ran)."""
    kept = NUMBERS.read_text().split(EDGES_MARKER)[0].rstrip() if NUMBERS.exists() else ""
    lines = [
        kept,
        "",
        EDGES_MARKER,
        "",
        f"At the edges (limit {LIMIT:,} a minute, {LIMIT * SAFETY_MARGIN / 60:.1f} requests a second at the pace):",
        "",
    ]
    if killed is not None:
        lines.append(
            f"- the store taken away {KILL_AFTER:g} s into the run of the four processes above, for "
            f"{DOWN_SECONDS:g} s: at most {killed['most_in_one_second_after']} requests arrived in any one second "
            f"after ({killed['most_per_second_over_pace']:.2f} times the per-second pace); "
            f"{killed['answered_429']} of {killed['requests']:,} requests answered 429 "
            f"({killed['share_429']:.1%}) over the run."
        )
    lines.append(
        f"- one busy process (a sync of {BUSY_BESIDE_LIGHT['sync']['count']} PATCHes) beside a triggerer of 10 "
        f"sensors polling every 30 s: together {beside['together_per_minute']:,.0f} a minute "
        f"({beside['together_share_of_limit']:.3f} of the limit) over the {beside['busy_seconds']:.0f} s the busy "
        f"one ran, {beside['light_requests']} of them the sensors'; {beside['answered_429']} answered 429."
    )
    NUMBERS.write_text("\n".join(lines).lstrip() + "\n")


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
    parser.add_argument(
        "--edges", action="store_true", help="only the edges: the store killed mid-run (PostgreSQL) and a light sharer"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    directory = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    progress(f"raw results in {directory}")
    if args.edges:
        edges(directory)
        return
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


def edges(directory: Path) -> None:
    """The store killed mid-run (a throw-away PostgreSQL server) and one busy process beside a light one."""
    budget, server = budget_connection("postgres", directory)
    database = server.database("budget")
    killed: dict[str, float] = {}

    def take_the_store_away() -> None:
        time.sleep(KILL_AFTER)
        server.execute('ALTER DATABASE "budget" ALLOW_CONNECTIONS false')
        server.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'budget'")
        killed["at"] = time.time()
        progress(f"   the store is down ({database.name})")
        time.sleep(DOWN_SECONDS)
        server.execute('ALTER DATABASE "budget" ALLOW_CONNECTIONS true')
        progress("   the store is back")

    try:
        progress("4. four processes with the budget; its database goes down mid-run and comes back")
        store_killed = run(
            "store killed", PROCESSES, limit=LIMIT, budget=budget, directory=directory, during=take_the_store_away
        )
        progress("5. one busy process beside a triggerer of 10 sensors polling every 30 s")
        beside = run("busy beside light", BUSY_BESIDE_LIGHT, limit=LIMIT, budget=budget, directory=directory)
    finally:
        server.stop()
    killed_summary = summarize_store_killed(store_killed, killed["at"])
    beside_summary = summarize_busy_beside_light(beside)
    print(json.dumps([killed_summary, beside_summary], indent=1))
    write_edges(killed_summary, beside_summary)
    progress(f"wrote {NUMBERS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
