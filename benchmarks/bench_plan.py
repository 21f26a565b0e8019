"""Benchmark: what the polling plan costs and how fast it lands answers, simulated and against the emulator.

    python benchmarks/bench_plan.py              # the default run (make benchmark), about 20 minutes
    python benchmarks/bench_plan.py --quick      # a smaller run, about 4 minutes; writes no docs

a) A year simulated in virtual time on the plan's own code (``plan_simulation.py``): 1,000 creates a
   month, 30 % of contacts answering after a lognormal time of median 36 hours (sigma 1: the
   emulator's completion model), 70 % never; the landing every hour with the default plan. GETs in
   month 12 against Growth's limit, and how late each answer landed against ``1 hour + 10 % of the
   interview's age when it answered``; today's rule (fetch every interview not completed, every run)
   beside it.
b) The same model against the emulator in real time, compressed ``--scale`` times (default 4,320: a
   30-day life in 10 minutes). Nothing in the landing is faked: the plan has no clock of its own, and
   every duration of the model is divided by the scale (the landing's schedule, the plan's
   ``min_poll_interval``, ``max_poll_interval`` and ``stop_polling_after``, the answer times). The
   plan's intervals are a share of the age clamped to bounds, so dividing every duration by the
   scale divides every time in the schedule by it and leaves every count the same. Interviews are
   created on whole seconds, as the API's timestamps are whole seconds. GETs counted at the emulator
   against the simulation of the same creates, answers and actual run times.
c) Three landing runs over 1,000 interviews (300 completed) back to back: the first fetches all, the
   second (soon after) nothing, the third with ``poll_all=True`` only the 700 not completed.

Writes ``docs/_generated/plan-numbers.md`` and ``docs/_static/polling-plan.png``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from measure import API_KEY, HERE, progress
from plan_simulation import (
    DAY,
    HOUR,
    MONTH,
    Scenario,
    polls_over_life,
    simulate_plan,
    simulate_poll_everything,
)

from airflow_provider_hindsight.hooks.connection_form import PLAN_REQUESTS_PER_MINUTE
from airflow_provider_hindsight.polling import PollingPlan

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "plan-numbers.md"
CHART = DOCS / "_static" / "polling-plan.png"
GROWTH = PLAN_REQUESTS_PER_MINUTE["growth"]
MINUTES_A_MONTH = MONTH / 60
WAREHOUSE_CONN_ID = "bench_warehouse"
IDS_TABLE = "created_ids"


# -- a) a year in virtual time -------------------------------------------------------------------------


def measure_year(months: int) -> dict[str, Any]:
    progress(f"a) {months} months of 1,000 creates a month, landed hourly, in virtual time")
    scenario = Scenario(creating_for=months * MONTH, duration=months * MONTH)
    started = time.monotonic()
    plan = simulate_plan(scenario, PollingPlan())
    seconds = time.monotonic() - started
    everything = simulate_poll_everything(scenario)
    last = (months - 1) * MONTH, months * MONTH
    result: dict[str, Any] = {"months": months, "simulated_in_seconds": seconds}
    for name, outcome in (("plan", plan), ("everything", everything)):
        gets = outcome.gets_between(*last)
        result[name] = {
            "gets_last_month": gets,
            "gets_a_minute": gets / MINUTES_A_MONTH,
            "share_of_growth": gets / (GROWTH * MINUTES_A_MONTH),
            "p95_delay_ratio": outcome.delay_ratio_percentile(0.95),
            "on_time": outcome.within_target(),
            "answers_landed": len(outcome.landed),
            "answers_lost": outcome.lost,
            "gets_a_minute_by_month": [
                outcome.gets_between(month * MONTH, (month + 1) * MONTH) / MINUTES_A_MONTH for month in range(months)
            ],
            "polls_per_interview": statistics.mean(outcome.per_interview) if outcome.per_interview else 0.0,
        }
    result["life"] = {
        "landing": polls_over_life(PollingPlan(), every=HOUR, until=35 * DAY),
        "sensor": polls_over_life(
            PollingPlan(min_poll_interval=300, stop_polling_after=None), every=300, until=35 * DAY
        ),
    }
    return result


# -- b) the same against the emulator, compressed --------------------------------------------------------


def connection_env(base_url: str, database: str) -> None:
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps(
        {"conn_type": "hindsight", "host": base_url, "password": API_KEY, "extra": {"requests_per_minute": 600_000}}
    )
    os.environ[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = json.dumps({"conn_type": "sqlite", "host": database})


class _Ti:
    def xcom_push(self, key: str, value: Any, **kwargs: Any) -> None:
        pass


def landing(scale: float, **kwargs: Any) -> Any:
    """The landing as a DAG would declare it, every duration of the plan divided by ``scale``."""
    from airflow_provider_hindsight.transfers.hindsight_to_sql import HindsightInterviewsToSqlOperator

    plan = PollingPlan()
    assert plan.stop_polling_after is not None
    return HindsightInterviewsToSqlOperator(
        task_id="land",
        sql_conn_id=WAREHOUSE_CONN_ID,
        ids_sql=f"SELECT interview_request_id FROM {IDS_TABLE}",
        min_poll_interval=plan.min_poll_interval / scale,
        max_poll_interval=plan.max_poll_interval / scale,
        stop_polling_after=plan.stop_polling_after / scale,
        progress_interval=3600,
        **kwargs,
    )


def gets(emulator: Any) -> int:
    return int(emulator.stats()["by_method"].get("GET", 0))


def measure_compressed(scale: float, creating_days: float, work: Path) -> dict[str, Any]:
    from airflow_provider_hindsight.testing import HindsightEmulator

    scenario = Scenario(creating_for=creating_days * DAY, duration=(creating_days + 31) * DAY)
    offsets = [math.ceil(start / scale) for start in scenario.starts()]  # whole seconds of real time
    interviews = scenario.interviews([offset * scale for offset in offsets])
    runs = list(scenario.runs())
    progress(
        f"b) {len(interviews)} interviews over {scenario.duration / DAY:.0f} days compressed {scale:,.0f} times: "
        f"{scenario.duration / scale / 60:.1f} minutes, a landing every {HOUR / scale:.2f} s"
    )
    database = work / "compressed.db"
    with closing(sqlite3.connect(database)) as db:
        db.execute(f"CREATE TABLE {IDS_TABLE} (interview_request_id INTEGER)")
        db.commit()
    with HindsightEmulator(API_KEY) as emulator:
        connection_env(emulator.base_url, str(database))
        origin = math.ceil(time.time()) + 2.0
        events: list[tuple[float, int, int]] = []  # (real time, kind, id or run): creates, answers, landings
        for number, (offset, (_, answered)) in enumerate(zip(offsets, interviews, strict=True), start=1):
            events.append((origin + offset + 0.02, 0, number))
            if answered is not None:
                events.append((origin + answered / scale, 1, number))
        events += [(origin + moment / scale, 2, run) for run, moment in enumerate(runs)]
        events.sort()
        run_starts: list[float] = []
        late: list[float] = []
        with closing(sqlite3.connect(database, isolation_level=None)) as db:
            for moment, kind, subject in events:
                time.sleep(max(0.0, moment - time.time()))
                if kind == 0:
                    emulator.add_interview(subject, status="sent")
                    db.execute(f"INSERT INTO {IDS_TABLE} VALUES (?)", (subject,))
                elif kind == 1:
                    emulator.complete(subject)
                else:
                    began = time.time()
                    run_starts.append(began)
                    landing(scale).execute({"ti": _Ti()})
                    late.append(time.time() - began)
        measured = gets(emulator)
        fetch_times = sorted(request.time for request in emulator.requests if request.method == "GET")
    # Each run decided at its start and fetched when its first GET arrived (its fetches take milliseconds).
    measured_runs = []
    for number, began in enumerate(run_starts):
        first = bisect.bisect_left(fetch_times, began)
        ends = run_starts[number + 1] if number + 1 < len(run_starts) else math.inf
        fetched = fetch_times[first] if first < len(fetch_times) and fetch_times[first] < ends else began
        measured_runs.append(((began - origin) * scale, (fetched - origin) * scale))
    plan = PollingPlan()
    appear = 0.02 * scale  # created 20 ms after the whole second its e-mail time says
    actual = simulate_plan(scenario, plan, interviews=interviews, runs=measured_runs, appear_after=appear)
    nominal = simulate_plan(scenario, plan, interviews=interviews, appear_after=appear)
    simulated = actual.gets_between(-1, math.inf)
    return {
        "scale": scale,
        "interviews": len(interviews),
        "days": scenario.duration / DAY,
        "real_minutes": scenario.duration / scale / 60,
        "runs": len(run_starts),
        "gets_at_emulator": measured,
        "gets_simulated": simulated,
        "gets_simulated_nominal": nominal.gets_between(-1, math.inf),
        "difference": (measured - simulated) / simulated,
        "longest_run_seconds": max(late),
        "run_period_seconds": HOUR / scale,
    }


# -- c) back to back -------------------------------------------------------------------------------------


def measure_back_to_back(work: Path, count: int = 1000, completed: int = 300) -> dict[str, Any]:
    from airflow_provider_hindsight.testing import HindsightEmulator

    progress(f"c) three landing runs over {count:,} interviews ({completed} completed), back to back")
    database = work / "rerun.db"
    with closing(sqlite3.connect(database)) as db:
        db.execute(f"CREATE TABLE {IDS_TABLE} (interview_request_id INTEGER)")
        db.executemany(f"INSERT INTO {IDS_TABLE} VALUES (?)", [(n,) for n in range(1, count + 1)])
        db.commit()
    result: dict[str, Any] = {"count": count, "completed": completed}
    with HindsightEmulator(API_KEY, record_requests=False) as emulator:
        for number in range(1, count + 1):
            emulator.add_interview(number, status="completed" if number <= completed else "sent")
        connection_env(emulator.base_url, str(database))
        for name, extra in (("first", {}), ("soon_after", {}), ("poll_all", {"poll_all": True})):
            before = gets(emulator)
            summary = landing(1.0, **extra).execute({"ti": _Ti()})
            summary.pop("failures")
            result[name] = {"gets": gets(emulator) - before, "summary": summary}
    return result


# -- output ----------------------------------------------------------------------------------------------


def write_numbers(results: dict[str, Any]) -> None:
    lines = ["| Measurement | Result |", "| --- | --- |"]
    a = results["year"]
    plan, everything = a["plan"], a["everything"]
    lines.append(
        f"| a) a year simulated: 1,000 creates a month, 30 % answer (lognormal, median 36 h), landing hourly "
        f"| month {a['months']}: **{plan['gets_last_month']:,} GETs** ({plan['gets_a_minute']:.1f} a minute): "
        f"**{plan['share_of_growth']:.2%}** of Growth's limit; polling everything: "
        f"{everything['gets_last_month']:,} ({everything['gets_a_minute']:.0f} a minute, "
        f"{everything['share_of_growth']:.0%} of Growth) |"
    )
    lines.append(
        f"| a) how late answers landed, against 1 h + 10 % of the interview's age at the answer "
        f"| 95th percentile: **{plan['p95_delay_ratio']:.2f}** of that bound ({plan['on_time']:.1%} within it; "
        f"{plan['answers_lost']} of {plan['answers_landed'] + plan['answers_lost']:,} answers came after 30 days "
        f"and were not landed); polling everything: {everything['p95_delay_ratio']:.2f} |"
    )
    lines.append(
        f"| a) GETs over an interview's life | plan: {plan['polls_per_interview']:.1f} on average "
        f"({len(a['life']['landing'])} for one that never answers); polling everything hourly: "
        f"{everything['polls_per_interview']:.1f} for those that answered, and 24 a day forever for the others |"
    )
    if "compressed" in results:
        b = results["compressed"]
        lines.append(
            f"| b) {b['interviews']} interviews over {b['days']:.0f} days against the emulator, "
            f"{b['scale']:,.0f} x compressed ({b['real_minutes']:.1f} minutes, {b['runs']} landing runs) "
            f"| **{b['gets_at_emulator']:,} GETs** at the emulator, simulated {b['gets_simulated']:,} "
            f"(at the nominal run times {b['gets_simulated_nominal']:,}): **{b['difference']:+.1%}**; "
            f"longest run {b['longest_run_seconds']:.2f} s of a {b['run_period_seconds']:.2f} s period |"
        )
    if "back_to_back" in results:
        c = results["back_to_back"]
        lines.append(
            f"| c) {c['count']:,} interviews ({c['completed']} completed), three runs back to back "
            f"| first: {c['first']['gets']:,} GETs; soon after: **{c['soon_after']['gets']} GETs** "
            f"({c['soon_after']['summary']['not_due']:,} not due); with `poll_all`: {c['poll_all']['gets']:,} "
            "GETs (the ones not completed) |"
        )
    NUMBERS_PAGE.write_text(
        f"Measured by `benchmarks/bench_plan.py` on {os.cpu_count()} cores (shared), {time.strftime('%Y-%m-%d')}.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    progress(f"wrote {NUMBERS_PAGE}")


def write_chart(results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = results["year"]
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    life = axes[0]
    for name, label, colour in (
        ("landing", "landing hourly, on the plan (stops at 30 days)", "#2f6f9f"),
        ("sensor", "sensor, poke_interval=300, on the plan", "#5b7f2a"),
    ):
        ages = a["life"][name]
        life.step([age / DAY for age in ages], range(1, len(ages) + 1), where="post", label=label, color=colour)
    hours = range(35 * 24 + 1)
    life.plot([hour / 24 for hour in hours], [hour + 1 for hour in hours], color="#b7791f", linestyle="--")
    life.lines[-1].set_label("polling every pending id hourly")
    life.set_title("GETs over the life of one interview that never answers")
    life.set_xlabel("age (days)")
    life.set_ylabel("GETs so far")
    life.legend(fontsize=8)

    months = range(1, a["months"] + 1)
    by_month = axes[1]
    by_month.plot(months, a["plan"]["gets_a_minute_by_month"], marker="o", color="#2f6f9f", label="the plan")
    by_month.plot(
        months, a["everything"]["gets_a_minute_by_month"], marker="o", color="#b7791f", label="polling everything"
    )
    for plan_name, limit in PLAN_REQUESTS_PER_MINUTE.items():
        by_month.axhline(limit, color="grey", linestyle=":", linewidth=1)
        by_month.text(1, limit * 1.08, f"{plan_name.capitalize()} {limit:,}/min", fontsize=8, color="grey")
    by_month.set_yscale("log")
    by_month.set_title("GETs a minute, 1,000 creates a month, landing hourly")
    by_month.set_xlabel("month")
    by_month.set_ylabel("GETs a minute (month's average)")
    by_month.legend(fontsize=8)

    # Both rules cost in proportion to the rate of creates: scale month 12 of the simulation.
    rates = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
    shares = axes[2]
    for rule, colour, style in (("plan", "#2f6f9f", "-"), ("everything", "#b7791f", "--")):
        per_create = a[rule]["gets_a_minute"] / 1000
        for plan_name, limit in PLAN_REQUESTS_PER_MINUTE.items():
            shares.plot(
                rates,
                [rate * per_create / limit for rate in rates],
                linestyle=style,
                color=colour,
                alpha={"essentials": 1.0, "growth": 0.7, "enterprise": 0.4}[plan_name],
                label=f"{'plan' if rule == 'plan' else 'everything'}, {plan_name.capitalize()}",
            )
    shares.axhline(1, color="black", linewidth=1)
    shares.set_xscale("log")
    shares.set_yscale("log")
    shares.set_title("Share of each plan's limit in month 12")
    shares.set_xlabel("creates a month")
    shares.set_ylabel("GETs a minute / limit")
    shares.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(CHART, dpi=96)
    progress(f"wrote {CHART}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--scale", type=float, default=4320.0, help="b): real time is virtual time / scale")
    parser.add_argument("--creating-days", type=float, default=10.0, help="b): days of creates (then 31 more)")
    parser.add_argument("--only", default="year,compressed,back_to_back")
    parser.add_argument("--quick", action="store_true", help="b) at 4 x the scale, 3 days of creates; no docs")
    parser.add_argument("--previous", help="an earlier run's printed JSON: its b) and c) when not measured now")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    scale, creating = (args.scale * 4, 3.0) if args.quick else (args.scale, args.creating_days)
    results: dict[str, Any] = {}
    if args.previous:
        previous = json.loads(Path(args.previous).read_text())
        results.update({key: value for key, value in previous.items() if key in ("compressed", "back_to_back")})
    results["year"] = measure_year(args.months)
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as directory:
        work = Path(directory)
        if "back_to_back" in wanted:
            results["back_to_back"] = measure_back_to_back(work)
        if "compressed" in wanted:
            results["compressed"] = measure_compressed(scale, creating, work)
    printable = {key: value for key, value in results.items() if key != "year"}
    year = {
        rule: {k: v for k, v in results["year"][rule].items() if k != "gets_a_minute_by_month"}
        for rule in ("plan", "everything")
    }
    print(json.dumps({"year": year, **printable}, indent=2))
    if not args.quick:
        write_numbers(results)
        write_chart(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
