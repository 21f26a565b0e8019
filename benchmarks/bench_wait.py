"""Benchmark: one round of a ``HindsightInterviewTrigger`` over real HTTP to a local Hindsight emulator.

    python benchmarks/bench_wait.py                     # the default run (make benchmark), about 4 minutes
    python benchmarks/bench_wait.py --ids 200 --no-sequential   # a shorter run

One trigger waits on ``--ids`` pending interviews (default 500) against an emulator with a strict
sliding-window limiter at ``--limit`` requests a minute (default 1,000, the Enterprise plan) and
``--latency`` seconds per answer (default 0.2). Its first round polls every id once. Measured, each
in a fresh Python process:

a) the round as the trigger polls now (several polls in flight, paced): its length against what the
   limit allows (``ids / limit`` minutes), the requests, the 429s;
b) a) after ``gc.freeze()``, as a long-running triggerer can do once its imports are done;
c) the same round one poll at a time, as the trigger polled before (``--no-sequential`` skips it).

Beside the trigger runs a copy of the triggerer's own watchdog (sleep 0.1 s, log when more than
0.2 s passed), which also reads the event loop thread's CPU time: a stretch the loop spent running
code (a trigger, or a garbage collection) tells apart from one where the process was not scheduled.

Writes ``docs/_generated/wait-numbers.md`` and ``docs/_static/wait-benchmark.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

from measure import API_KEY, HERE, EmulatorSettings, emulator, progress, run_child

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "wait-numbers.md"
CHART = DOCS / "_static" / "wait-benchmark.png"
WATCHDOG_SLEEP = 0.1
WATCHDOG_THRESHOLD = 0.2
"""The triggerer's watchdog: it sleeps 0.1 s and logs "async thread was blocked" past 0.2 s."""


# -- the child: one trigger, one round --------------------------------------------------------------


def child_round(task: dict[str, Any]) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
        {
            "conn_type": "hindsight",
            "host": task["base_url"],
            "password": API_KEY,
            "extra": {"requests_per_minute": task["limit"]},
        }
    )
    from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
    from airflow_provider_hindsight.triggers import interview
    from airflow_provider_hindsight.triggers.interview import HindsightInterviewTrigger

    if task["sequential"]:
        interview.MAX_POLLS_IN_FLIGHT = 1  # one poll at a time, as the trigger polled before
    count = task["ids"]
    starts: list[float] = []
    finishes: list[float] = []
    round_done = asyncio.Event()
    get = HindsightAsyncHook.aget_interview

    async def recorded(self: HindsightAsyncHook, interview_request_id: int | str) -> dict[str, Any]:
        starts.append(time.monotonic())
        try:
            return await get(self, interview_request_id)
        finally:
            finishes.append(time.monotonic())
            if len(finishes) >= count:
                round_done.set()

    HindsightAsyncHook.aget_interview = recorded  # type: ignore[method-assign]
    if task["gc_freeze"]:
        gc.collect()
        gc.freeze()
    full_collections: list[float] = []
    began: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info["generation"] == 2 and phase == "start":
            began.append(time.perf_counter())
        elif info["generation"] == 2 and began:
            full_collections.append((time.perf_counter() - began.pop()) * 1000)

    gc.callbacks.append(on_gc)
    trigger = HindsightInterviewTrigger(
        interview_request_ids=range(1, count + 1), poke_interval=3600, deadline=time.time() + 3600
    )
    warnings: list[tuple[float, float]] = []
    longest = [0.0, 0.0]
    """The longest watchdog interval (wall seconds), and the most loop CPU time in one."""

    async def main() -> float:
        await HindsightAsyncHook().asettings()  # a triggerer reads connections long before a trigger runs
        running = True

        async def watchdog() -> None:
            while running:
                last, last_cpu = time.monotonic(), time.thread_time()
                await asyncio.sleep(WATCHDOG_SLEEP)
                elapsed, busy = time.monotonic() - last, time.thread_time() - last_cpu
                longest[:] = max(longest[0], elapsed), max(longest[1], busy)
                if elapsed > WATCHDOG_THRESHOLD:
                    warnings.append((round(elapsed, 3), round(busy, 3)))

        async def wait() -> None:
            async for _ in trigger.run():
                return

        dog = asyncio.create_task(watchdog())
        waiting = asyncio.create_task(wait())
        started = time.monotonic()
        await round_done.wait()
        seconds = time.monotonic() - started
        waiting.cancel()
        running = False
        await asyncio.gather(waiting, dog, return_exceptions=True)
        return seconds

    seconds = asyncio.run(main())
    origin = starts[0]
    return {
        "seconds": seconds,
        "requests": len(starts),
        "watchdog_lines": len(warnings),
        "watchdog_longest_s": longest[0],
        "watchdog_longest_busy_s": longest[1],
        "gc_full_collections": len(full_collections),
        "gc_longest_full_collection_ms": max(full_collections, default=0.0),
        "finishes": [round(moment - origin, 3) for moment in sorted(finishes)],
    }


# -- the parent --------------------------------------------------------------------------------------


def measure(base: dict[str, Any], emu: Any, **changes: Any) -> dict[str, Any]:
    emu.reset()
    result = run_child(__file__, {**base, **changes})
    result["rate_limited"] = emu.counts().get(429, 0)
    return result


def write_numbers(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> str:
    allowed = args.ids / args.limit * 60
    lines = [
        f"One trigger, {args.ids} pending interviews, {args.latency * 1000:.0f} ms per answer, a strict limiter at "
        f"{args.limit:,} requests a minute: the limit allows a round in {allowed:.0f} s.",
        "",
        "| run | round | x what the limit allows | requests | 429s | watchdog lines (> 0.2 s) | "
        "longest watchdog interval | most loop CPU in one | full GCs (longest) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    names = {
        "concurrent": "a) polls in flight, paced",
        "frozen": "b) a) after gc.freeze()",
        "sequential": "c) one poll at a time (for comparison)",
    }
    for key, run in runs.items():
        lines.append(
            f"| {names[key]} | {run['seconds']:.1f} s | {run['seconds'] / allowed:.2f} | {run['requests']} | "
            f"{run['rate_limited']} | {run['watchdog_lines']} | {run['watchdog_longest_s']:.2f} s | "
            f"{run['watchdog_longest_busy_s'] * 1000:.0f} ms | {run['gc_full_collections']} "
            f"({run['gc_longest_full_collection_ms']:.0f} ms) |"
        )
    text = "\n".join(lines) + "\n"
    NUMBERS_PAGE.write_text(text)
    return text


def plot(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    allowed = args.ids / args.limit * 60
    axes.plot([0, allowed], [0, args.ids], linestyle="--", color="grey", label=f"the limit ({args.limit:,}/min)")
    labels = {"concurrent": "polls in flight, paced", "sequential": "one poll at a time (for comparison)"}
    for key, label in labels.items():
        if key in runs:
            finishes = runs[key]["finishes"]
            axes.plot(finishes, range(1, len(finishes) + 1), label=f"{label}: {runs[key]['seconds']:.0f} s")
    axes.set_xlabel("seconds since the round started")
    axes.set_ylabel("interviews polled")
    axes.set_title(f"One trigger's round: {args.ids} ids, {args.latency * 1000:.0f} ms latency")
    axes.legend()
    figure.tight_layout()
    figure.savefig(CHART, dpi=110)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child_round(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--limit", type=float, default=1000)
    parser.add_argument("--no-sequential", dest="sequential", action="store_false")
    args = parser.parse_args()
    settings = EmulatorSettings(requests_per_minute=args.limit, latency=args.latency, seed=args.ids)
    runs: dict[str, dict[str, Any]] = {}
    with emulator(settings) as emu:
        base = {"base_url": emu.base_url, "limit": args.limit, "ids": args.ids, "sequential": False}
        progress("a) one round, polls in flight")
        runs["concurrent"] = measure(base, emu, gc_freeze=False)
        progress("b) the same after gc.freeze()")
        runs["frozen"] = measure(base, emu, gc_freeze=True)
        if args.sequential:
            progress("c) one poll at a time")
            runs["sequential"] = measure(base, emu, gc_freeze=False, sequential=True)
    print(write_numbers(args, runs))
    plot(args, runs)


if __name__ == "__main__":
    main()
