"""Benchmark: the pacer against a strict sliding-window limiter, over real HTTP to a local Hindsight emulator.

    python benchmarks/bench_pace.py            # about 2.7 minutes
    python benchmarks/bench_pace.py --quick    # about 1 minute

Two runs of ``bulk.engine.update_interviews`` (16 threads, one shared pacer), the emulator in its own
process (``emulator_process.py``) so that it shares no GIL with the load:

1. at the limit: the connection paces at 1,000 a minute (Enterprise) and the emulator allows 50
   requests in any 3 seconds (1,000 a minute, strictly). Target: at least 0.95 of the limit, no 429.
2. a limit lower than the pace: the connection still says 1,000 a minute, the emulator allows 600
   (30 in any 3 seconds). The pacer pauses for ``Retry-After``, drops its pace, and wins back half
   the gap to the configured pace per 10 s without a 429.

Prints the numbers and draws both runs into ``docs/_static/pacing-timeline.png`` (needs matplotlib).
The pace changes come from the pacer's own ``on_change`` reports.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from measure import API_KEY, EmulatorSettings, emulator, progress

if TYPE_CHECKING:
    import requests

    from airflow_provider_hindsight.pace import PaceChange

HERE = Path(__file__).resolve().parent
PLOT = HERE.parent / "docs" / "_static" / "pacing-timeline.png"
PACE = 1000
"""The connection's ``requests_per_minute`` in both runs (the Enterprise plan)."""
LATENCY = 0.02
WINDOW = 3.0
"""The emulator's sliding window, in seconds."""
AT_THE_LIMIT = EmulatorSettings(requests_per_minute=1000, rate_window=WINDOW, latency=LATENCY)
BELOW_THE_PACE = EmulatorSettings(requests_per_minute=600, rate_window=WINDOW, latency=LATENCY)


@dataclass
class Run:
    """What one run sent and what the emulator and the pacer said, times in seconds from its start."""

    title: str
    limit: float
    rows: int
    seconds: float = 0.0
    succeeded: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    starts: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)
    rejected_at: list[float] = field(default_factory=list)
    changes: list[tuple[float, PaceChange]] = field(default_factory=list)

    @property
    def requests_per_minute(self) -> float:
        return sum(self.status_counts.values()) / self.seconds * 60

    @property
    def rows_per_minute(self) -> float:
        return self.succeeded / self.seconds * 60

    def in_window(self) -> tuple[list[float], list[int]]:
        """For each accepted start, how many accepted starts the last ``WINDOW`` seconds hold (the limiter's view).

        Times are as sent; the server sees them after the network. Rejected requests do not count, as in
        the emulator's limiter.
        """
        starts, counts, first = sorted(self.accepted), [], 0
        for last, start in enumerate(starts):
            while starts[first] <= start - WINDOW:
                first += 1
            counts.append(last - first + 1)
        return starts, counts

    def busiest_window(self) -> int:
        return max(self.in_window()[1])


def allowed(run: Run) -> int:
    """Requests the emulator's limiter allows in one ``WINDOW``."""
    return int(run.limit * WINDOW / 60)


def send(title: str, settings: EmulatorSettings, rows: int) -> Run:
    """Send ``rows`` updates through ``bulk.engine.update_interviews`` to an emulator with ``settings``."""
    from airflow_provider_hindsight.bulk.engine import update_interviews
    from airflow_provider_hindsight.hooks.hindsight import HindsightHook
    from airflow_provider_hindsight.hooks.pacing import RatePacer

    assert settings.requests_per_minute is not None
    run = Run(title, settings.requests_per_minute, rows)
    with emulator(settings) as server:
        connection = {"conn_type": "hindsight", "host": server.base_url, "password": API_KEY}
        os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(connection | {"extra": {"requests_per_minute": PACE}})
        hook = HindsightHook()
        lock, started = threading.Lock(), 0.0

        def on_change(change: PaceChange) -> None:
            with lock:
                run.changes.append((time.monotonic() - started, change))

        def on_response(response: requests.Response, *args: Any, **kwargs: Any) -> None:
            start = time.monotonic() - response.elapsed.total_seconds() - started
            with lock:
                run.starts.append(start)
                (run.rejected_at if response.status_code == 429 else run.accepted).append(start)

        # The hook's own pacer, built as the hook builds it, plus a callback that records what it tells.
        hook.pacer = RatePacer(hook.settings.requests_per_minute, on_change=on_change)
        hook.session.hooks["response"].append(on_response)
        updates = [{"interview_request_id": n, "objective": "Renewal"} for n in range(1, rows + 1)]
        progress(f"{title}: {rows} rows ...")
        started = time.monotonic()
        results = list(update_interviews(hook, updates))
        run.seconds = time.monotonic() - started
        run.succeeded = sum(result.succeeded for result in results)
        run.status_counts = server.counts()
    return run


def report(run: Run) -> None:
    print(f"\n{run.title}")
    print(f"  rows                 {run.rows:,} ({run.succeeded:,} succeeded)")
    print(f"  seconds              {run.seconds:.1f}")
    print(f"  requests a minute    {run.requests_per_minute:,.1f} ({run.rows_per_minute:,.1f} rows a minute)")
    print(f"  fraction of limit    {run.requests_per_minute / run.limit:.3f} (limit {run.limit:,.0f} a minute)")
    print(f"  429 answers          {run.status_counts.get(429, 0)}  (emulator answers: {run.status_counts})")
    print(f"  busiest {WINDOW:g} s         {run.busiest_window()} accepted starts ({allowed(run)} allowed)")
    for at, change in run.changes:
        pause = f", pause {change.pause_seconds:g} s" if change.pause_seconds else ""
        print(
            f"  {at:6.1f} s  pace {change.old_requests_per_minute:,.0f} -> {change.new_requests_per_minute:,.0f}"
            f" a minute{pause}: {change.reason}"
        )


def plot(at_limit: Run, below: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from airflow_provider_hindsight.pace import SAFETY_MARGIN

    figure, (top, window, bottom) = plt.subplots(
        3, 1, figsize=(11, 12), height_ratios=(3, 1.6, 3.4), constrained_layout=True
    )
    figure.suptitle(f"Request starts from one HindsightHook: 16 threads, pace set to {PACE:,} a minute", fontsize=14)

    for axes, run in ((top, at_limit), (bottom, below)):
        starts = sorted(run.starts)
        axes.step(starts, range(1, len(starts) + 1), where="post", color="tab:blue", label="requests started")
        end = max(starts[-1], run.seconds)
        axes.plot(
            [0, end],
            [0, end * run.limit / 60],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"server limit: {run.limit:,.0f} a minute ({allowed(run)} in any {WINDOW:g} s)",
        )
        axes.set_xlabel("seconds since the first request")
        axes.set_ylabel("requests started (cumulative)")
        axes.set_xlim(0, end)
        axes.set_ylim(0, None)
        axes.grid(alpha=0.3)

    fraction = at_limit.requests_per_minute / at_limit.limit
    top.set_title(
        f"Run 1, server limit = pace: {at_limit.requests_per_minute:,.0f} requests a minute "
        f"({fraction:.3f} of the limit), {at_limit.status_counts.get(429, 0)} x 429"
    )
    top.legend(loc="upper left")

    starts, counts = at_limit.in_window()
    window.step(starts, counts, where="post", color="tab:blue", label=f"accepted requests in the last {WINDOW:g} s")
    window.axhline(allowed(at_limit), color="black", linestyle="--", linewidth=1, label="what the server allows")
    window.set_title(
        f"Run 1 as the server's limiter counts them (at send time): the busiest {WINDOW:g} s held "
        f"{at_limit.busiest_window()} of the {allowed(at_limit)} allowed"
    )
    window.set_xlabel("seconds since the first request")
    window.set_ylabel(f"requests in {WINDOW:g} s")
    window.set_xlim(0, at_limit.seconds)
    window.set_ylim(0, allowed(at_limit) * 1.25)
    window.grid(alpha=0.3)
    window.legend(loc="lower right")

    bottom.set_title(
        f"Run 2, the server allows only {below.limit:,.0f} a minute: {below.status_counts.get(429, 0)} x 429, "
        f"{below.requests_per_minute:,.0f} requests a minute ({below.requests_per_minute / below.limit:.3f} of it)"
    )
    starts = sorted(below.starts)
    rejected = [bisect.bisect_right(starts, at) for at in below.rejected_at]
    bottom.scatter(below.rejected_at, rejected, marker="x", color="tab:red", s=50, zorder=3, label="answered 429")
    paused = False
    for at, change in below.changes:
        if change.pause_seconds:
            bottom.axvspan(
                at,
                at + change.pause_seconds,
                color="tab:orange",
                alpha=0.3,
                label=None if paused else "Retry-After pause (every thread)",
            )
            paused = True
    pace = bottom.twinx()
    drops_and_recoveries = [(at, change) for at, change in below.changes if not change.pause_seconds]
    times = [0.0] + [at for at, _ in drops_and_recoveries] + [below.seconds]
    paces = [PACE * SAFETY_MARGIN] + [change.new_requests_per_minute for _, change in drops_and_recoveries]
    pace.step(times, [*paces, paces[-1]], where="post", color="tab:green", linewidth=2, label="pace in force")
    pace.set_ylabel("pace in force (requests a minute)", color="tab:green")
    pace.set_ylim(0, PACE * 1.1)
    handles, labels = bottom.get_legend_handles_labels()
    more_handles, more_labels = pace.get_legend_handles_labels()
    bottom.legend(handles + more_handles, labels + more_labels, loc="lower right")

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the pacer against a strict sliding-window limiter.")
    parser.add_argument("--quick", action="store_true", help="fewer rows: a run of about 1 minute")
    parser.add_argument("--plot", type=Path, default=PLOT, help=f"where to save the timeline (default {PLOT})")
    args = parser.parse_args(argv)
    at_limit_rows, below_rows = (250, 250) if args.quick else (700, 800)

    with tempfile.TemporaryDirectory(prefix="hindsight-bench-pace-") as home:
        os.environ.update({"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
        started = time.monotonic()
        at_limit = send("1. at the limit (pace 1,000 a minute, server 1,000)", AT_THE_LIMIT, at_limit_rows)
        below = send("2. limit lower than the pace (pace 1,000 a minute, server 600)", BELOW_THE_PACE, below_rows)
    for run in (at_limit, below):
        report(run)
    fraction, rejected = at_limit.requests_per_minute / at_limit.limit, at_limit.status_counts.get(429, 0)
    met = fraction >= 0.95 and rejected == 0
    print(
        f"\nTarget, run 1: >= 0.95 of the limit and 0 x 429: {fraction:.3f}, {rejected} x 429 -> "
        f"{'met' if met else 'NOT met'}"
    )
    plot(at_limit, below, args.plot)
    print(f"Timeline saved to {args.plot}. Total time {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
