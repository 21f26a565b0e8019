"""Benchmark: landing interviews and waiting on them, over real HTTP to a local Hindsight emulator.

    python benchmarks/bench_land.py                  # the default run (make benchmark), about 15 minutes
    python benchmarks/bench_land.py --pending 2000 --memory 1000,20000 --triggers 5   # a smaller run

a) ``--pending`` interviews (default 10,000) landed by ``HindsightInterviewsToSqlOperator`` against an
   emulator with a strict 1,000-a-minute sliding-window limiter and 20 ms latency: the rate against the
   limit, and the 429s.
b) A rerun with ``poll_all=True`` after half of 2,000 interviews completed: requests sent for the
   completed ones (none). (A rerun without it fetches nothing at all: nothing is due yet; see
   ``bench_plan.py``.)
c) Peak memory (RSS high-water mark) of landing 1,000 and 100,000 (``--memory``) completed interviews
   with 20 KB transcripts each, each in a fresh process, from a stub server that generates them.
d) ``--triggers`` (default 20) ``HindsightInterviewTrigger`` of 500 ids each on one connection in one
   event loop, against a strict limiter at ``--trigger-limit`` a minute (default 6,000, so that the
   run takes under two minutes): the most requests in any 60 s, the 429s, and the event loop's longest
   stall measured by a ticker coroutine beside them (the loop thread's CPU time, and wall time), and
   the full garbage collections seen (their length is a property of the process's heap, Airflow's
   own, not of the triggers).
e) d) again after ``gc.freeze()``, as a long-running process can do once its imports are done.

``--previous FILE`` keeps the parts of an earlier run's printed output that are not measured now.

Each measurement runs in a fresh Python process. Writes ``docs/_generated/lifecycle-numbers.md`` and
``docs/_static/lifecycle-benchmark.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from measure import API_KEY, HERE, EmulatorSettings, emulator, progress, reset_peak_memory, run_child, status_kib

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "lifecycle-numbers.md"
CHART = DOCS / "_static" / "lifecycle-benchmark.png"
LIMIT = 1000
LATENCY = 0.02
TRANSCRIPT_BYTES = 20_000
IDS_PER_TRIGGER = 500
WAREHOUSE_CONN_ID = "bench_warehouse"


def ids_sql(count: int) -> str:
    return (
        f"WITH RECURSIVE ids(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM ids WHERE x < {count}) "
        "SELECT x AS interview_request_id FROM ids"
    )


# -- children -----------------------------------------------------------------------------------------


def connection_env(base_url: str, requests_per_minute: float, database: str) -> None:
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
        {
            "conn_type": "hindsight",
            "host": base_url,
            "password": API_KEY,
            "extra": {"requests_per_minute": requests_per_minute},
        }
    )
    os.environ[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": database})


class _Ti:
    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


def child_land(task: dict[str, Any]) -> dict[str, Any]:
    connection_env(task["base_url"], task["requests_per_minute"], task["database"])
    from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator

    operator = HindsightInterviewsToSqlOperator(
        task_id="land",
        sql_conn_id=WAREHOUSE_CONN_ID,
        ids_sql=ids_sql(task["count"]),
        progress_interval=3600,
        poll_all=task.get("poll_all", False),
    )
    _ = operator.hook.settings
    reset_peak_memory()
    started_rss = status_kib("VmRSS")
    started = time.monotonic()
    summary = operator.execute({"ti": _Ti()})  # type: ignore[arg-type]
    seconds = time.monotonic() - started
    summary.pop("failures")
    return {
        "seconds": seconds,
        "summary": summary,
        "start_rss_mb": started_rss / 1024,
        "peak_rss_mb": status_kib("VmHWM") / 1024,
        "rate_limited": operator.hook.rate_limited_count,
    }


def child_triggers(task: dict[str, Any]) -> dict[str, Any]:
    connection_env(task["base_url"], task["requests_per_minute"], ":memory:")
    from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
    from airflow_provider_hindsight.hooks.pacing import RatePacer
    from airflow_provider_hindsight.triggers.interview import HindsightInterviewTrigger

    starts: list[float] = []
    acquire = RatePacer.acquire_async

    async def recorded(self: RatePacer) -> float:
        waited = await acquire(self)
        starts.append(time.monotonic())
        return waited

    RatePacer.acquire_async = recorded  # type: ignore[method-assign]
    collections: list[float] = []
    began: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            began.append(time.perf_counter())
        elif began:
            collections.append((time.perf_counter() - began.pop()) * 1000)

    if task.get("gc_freeze"):
        gc.collect()
        gc.freeze()  # what a long-running process can do once its imports are done: old objects are not rescanned
    gc.callbacks.append(on_gc)
    count = task["triggers"]
    triggers = [
        HindsightInterviewTrigger(
            interview_request_ids=range(n * IDS_PER_TRIGGER + 1, (n + 1) * IDS_PER_TRIGGER + 1),
            poke_interval=3600,
            deadline=time.time() + 3600,
        )
        for n in range(count)
    ]

    stalls: list[tuple[float, float]] = []
    origin = time.perf_counter()

    async def main() -> tuple[list[dict[str, Any]], float, float, float]:
        # A triggerer reads connections and logs long before a trigger runs: the one-off set-up of both
        # (importing the secrets backends, configuring the log) happens here, before the ticker starts.
        await HindsightAsyncHook().asettings()
        triggers[0].log.info("Starting %d triggers.", len(triggers))
        longest = busiest = 0.0
        running = True

        async def ticker() -> None:
            # A gap between two ticks is the loop running something else (thread CPU time spent) or the
            # process not running at all (the machine is busy: 2 shared cores); both are measured.
            nonlocal longest, busiest
            last, last_cpu = time.perf_counter(), time.thread_time()
            while running:
                await asyncio.sleep(0.01)
                now, cpu = time.perf_counter(), time.thread_time()
                gap, busy = now - last - 0.01, cpu - last_cpu
                if gap > 0.02:
                    stalls.append((round(now - origin, 3), round(gap * 1000, 1), round(busy * 1000, 1)))
                longest, busiest = max(longest, gap), max(busiest, busy)
                last, last_cpu = now, cpu

        async def first(trigger: HindsightInterviewTrigger) -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("no event")

        tick = asyncio.create_task(ticker())
        started = time.monotonic()
        events = await asyncio.gather(*(first(trigger) for trigger in triggers))
        seconds = time.monotonic() - started
        running = False
        await tick
        return events, seconds, longest, busiest

    events, seconds, longest, busiest = asyncio.run(main())
    starts.sort()
    most = max((bisect.bisect_left(starts, moment + 60) - i for i, moment in enumerate(starts)), default=0)
    return {
        "seconds": seconds,
        "statuses": sorted({event["status"] for event in events}),
        "requests": len(starts),
        "most_in_60s": most,
        "longest_stall_ms": longest * 1000,
        "longest_busy_ms": busiest * 1000,
        "stalls_over_20ms": sorted(stalls, key=lambda stall: -stall[1])[:10],
        "gc_full_collections": len(collections),
        "gc_longest_full_collection_ms": max(collections, default=0.0),
        "gc_freeze": bool(task.get("gc_freeze")),
        "starts": [round(moment - starts[0], 3) for moment in starts] if starts else [],
    }


# -- the stub server for the memory runs -----------------------------------------------------------


def transcript(interview_id: int) -> str:
    turn = f"**Paige:** Question {interview_id}?\n\n**Contact:** " + "An answer about Competitor X. " * 12 + "\n\n"
    return (turn * (TRANSCRIPT_BYTES // len(turn) + 1))[:TRANSCRIPT_BYTES]


class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        interview_id = int(self.path.rsplit("/", 1)[1])
        body = json.dumps(
            {
                "interview_request_id": interview_id,
                "contact_id": f"contact_{interview_id}",
                "deal_id": f"deal_{interview_id}",
                "survey_url": f"https://app.usehindsight.com/survey?token=t{interview_id}",
                "status": "completed",
                "objective": "Why we lost",
                "email_sent_at": "2026-05-15T10:00:00Z",
                "created_at": "2026-05-14T10:00:00Z",
                "transcript": {
                    "document_id": f"doc_{interview_id}",
                    "content": transcript(interview_id),
                    "created_at": "2026-05-16T10:00:00Z",
                },
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


# -- the parent -----------------------------------------------------------------------------------------


def land(base_url: str, rpm: float, count: int, database: Path, *, poll_all: bool = False) -> dict[str, Any]:
    task = {"base_url": base_url, "requests_per_minute": rpm, "count": count, "database": str(database)}
    return run_child(__file__, {"kind": "land", **task, "poll_all": poll_all})


def measure_throughput(pending: int, work: Path) -> dict[str, Any]:
    progress(
        f"a) {pending:,} pending interviews at a strict {LIMIT:,}-a-minute limiter, {LATENCY * 1000:.0f} ms latency"
    )
    with emulator(EmulatorSettings(requests_per_minute=LIMIT, latency=LATENCY, seed=pending)) as api:
        result = land(api.base_url, LIMIT, pending, work / "throughput.db")
        counts = api.counts()
    rate = pending / result["seconds"] * 60
    return {**result, "rate_per_minute": rate, "ratio": rate / LIMIT, "status_counts": counts}


def measure_rerun(work: Path) -> dict[str, Any]:
    progress("b) a rerun with poll_all after half of 2,000 interviews completed")
    with emulator(EmulatorSettings(seed=2000, seed_completed=1000)) as api:
        first = land(api.base_url, 60_000, 2000, work / "rerun.db")
        first_requests = api.requests()
        api.reset()
        again = land(api.base_url, 60_000, 2000, work / "rerun.db", poll_all=True)
        again_requests = api.requests()
    return {
        "first": first["summary"],
        "first_requests": first_requests,
        "again": again["summary"],
        "again_requests": again_requests,
    }


def measure_memory(sizes: list[int], work: Path) -> dict[int, dict[str, Any]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    results = {}
    try:
        for size in sizes:
            progress(f"c) peak memory landing {size:,} completed interviews of {TRANSCRIPT_BYTES // 1000} KB")
            database = work / f"memory-{size}.db"
            results[size] = land(base_url, 6_000_000, size, database)
            database.unlink()
    finally:
        server.shutdown()
    return results


def measure_triggers(count: int, limit: float, *, gc_freeze: bool) -> dict[str, Any]:
    how = " (gc.freeze() first)" if gc_freeze else ""
    progress(f"d) {count} triggers of {IDS_PER_TRIGGER} ids on one connection, strict {limit:,.0f}/min limiter{how}")
    settings = EmulatorSettings(
        requests_per_minute=limit, latency=LATENCY, seed=count * IDS_PER_TRIGGER, complete_after=0
    )
    with emulator(settings) as api:
        task = {"kind": "triggers", "base_url": api.base_url, "requests_per_minute": limit, "triggers": count}
        result = run_child(__file__, {**task, "gc_freeze": gc_freeze})
        counts = api.counts()
    return {**result, "status_counts": counts, "limit": limit}


def write_numbers(results: dict[str, Any]) -> None:
    lines = ["| Measurement | Result |", "| --- | --- |"]
    if "throughput" in results:
        a = results["throughput"]
        summary = a["summary"]
        lines.append(
            f"| a) {summary['total']:,} pending interviews, strict {LIMIT:,}/min limiter, "
            f"{LATENCY * 1000:.0f} ms latency "
            f"| {a['seconds'] / 60:.1f} min: {a['rate_per_minute']:,.0f} a minute, **{a['ratio']:.3f}** of the limit; "
            f"{a['status_counts'].get(429, 0)} x 429; peak RSS {a['peak_rss_mb']:.0f} MB |"
        )
    if "rerun" in results:
        b = results["rerun"]
        lines.append(
            f"| b) 2,000 interviews, 1,000 completed: first run, then a rerun with `poll_all` "
            f"| first: {b['first_requests']:,} requests ({b['first']['newly_completed']:,} newly completed, "
            f"{b['first']['pending']:,} pending); rerun: {b['again_requests']:,} requests, "
            f"{b['again']['already_completed']:,} already completed: **{b['again_requests'] - b['again']['pending']}** "
            "requests for completed ones |"
        )
    if "memory" in results:
        memory = results["memory"]
        sizes = sorted(memory)
        cells = ", ".join(f"{size:,}: {memory[size]['peak_rss_mb']:.0f} MB" for size in sizes)
        growth = memory[sizes[-1]]["peak_rss_mb"] - memory[sizes[0]]["peak_rss_mb"]
        lines.append(
            f"| c) peak RSS landing completed interviews with {TRANSCRIPT_BYTES // 1000} KB transcripts "
            f"| {cells}: **{growth:+.0f} MB** from the smallest to the largest |"
        )
    for key in ("triggers", "triggers_frozen"):
        if key not in results:
            continue
        d = results[key]
        frozen = " after `gc.freeze()`" if d.get("gc_freeze") else ""
        lines.append(
            f"| {'e' if frozen else 'd'}) {d['requests'] // IDS_PER_TRIGGER} triggers x {IDS_PER_TRIGGER} ids, "
            "one connection, "
            f"one event loop{frozen}, "
            f"strict {d['limit']:,.0f}/min limiter | events {', '.join(d['statuses'])} in {d['seconds']:.0f} s; most "
            f"in any 60 s: **{d['most_in_60s']:,}** (pace {d['limit'] * 0.97:,.0f}); "
            f"{d['status_counts'].get(429, 0)} x 429; longest event-loop stall: "
            f"**{d['longest_busy_ms']:.1f} ms** running code, {d['longest_stall_ms']:.1f} ms of wall time "
            "(with the process not scheduled on a loaded machine); "
            f"{d['gc_full_collections']} full garbage collections{frozen}, the longest "
            f"{d['gc_longest_full_collection_ms']:.0f} ms |"
        )
    NUMBERS_PAGE.write_text(
        "Measured by `benchmarks/bench_land.py` on "
        f"{os.cpu_count()} cores (shared), {time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(lines) + "\n"
    )
    progress(f"wrote {NUMBERS_PAGE}")


def write_chart(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "triggers" in results:
        d = results["triggers"]
        starts = d["starts"]
        width = 5
        buckets = [0] * (int(starts[-1] // width) + 1 if starts else 1)
        for moment in starts:
            buckets[int(moment // width)] += 1
        axes[0].bar(
            [i * width for i in range(len(buckets))], [count * 60 / width for count in buckets], width=width * 0.9
        )
        axes[0].axhline(d["limit"], color="#b7791f", linestyle="--", label=f"limit {d['limit']:,.0f}/min")
        axes[0].set_title(f"{d['requests'] // IDS_PER_TRIGGER} triggers on one connection: requests a minute")
        axes[0].set_xlabel("seconds")
        axes[0].legend()
    if "memory" in results:
        memory = results["memory"]
        sizes = sorted(memory)
        axes[1].bar([f"{size:,}" for size in sizes], [memory[size]["peak_rss_mb"] for size in sizes], color="#2f6f9f")
        axes[1].set_title(f"Peak RSS landing interviews with {TRANSCRIPT_BYTES // 1000} KB transcripts")
        axes[1].set_ylabel("MB")
        axes[1].set_xlabel("interviews")
    figure.tight_layout()
    figure.savefig(CHART, dpi=96)
    progress(f"wrote {CHART}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        task = json.loads(sys.argv[2])
        result = child_land(task) if task["kind"] == "land" else child_triggers(task)
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--memory", default="1000,100000", help="interview counts for c), comma-separated")
    parser.add_argument("--triggers", type=int, default=20)
    parser.add_argument("--trigger-limit", type=float, default=6000)
    parser.add_argument("--only", default="throughput,rerun,memory,triggers")
    parser.add_argument("--previous", help="a JSON of an earlier run's output: its parts not measured now are kept")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {}
    if args.previous:
        results.update(json.loads(Path(args.previous).read_text()))
        if "memory" in results:
            results["memory"] = {int(size): value for size, value in results["memory"].items()}
    with tempfile.TemporaryDirectory(prefix="bench-land-") as directory:
        work = Path(directory)
        if "triggers" in wanted:
            results["triggers"] = measure_triggers(args.triggers, args.trigger_limit, gc_freeze=False)
            results["triggers_frozen"] = measure_triggers(args.triggers, args.trigger_limit, gc_freeze=True)
        if "rerun" in wanted:
            results["rerun"] = measure_rerun(work)
        if "memory" in wanted:
            results["memory"] = measure_memory([int(size) for size in args.memory.split(",")], work)
        if "throughput" in wanted:
            results["throughput"] = measure_throughput(args.pending, work)
    printable = {key: value for key, value in results.items() if not key.startswith("triggers")}
    for key in ("triggers", "triggers_frozen"):
        if key in results:
            printable[key] = {name: value for name, value in results[key].items() if name != "starts"}
    print(json.dumps(printable, indent=2, default=str))
    write_numbers(results)
    write_chart(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
