"""Benchmark: what the answers watcher costs, and how soon it announces an answer, in virtual time.

    python benchmarks/bench_answers.py            # 3 days of 1,000 interviews, about 3 minutes
    python benchmarks/bench_answers.py --quick    # 1 day; writes no docs

``HindsightAnswersTrigger`` itself (not a copy: the provider's code, its SQL on SQLite, its HTTP to
the emulator on loopback) runs on a virtual clock: its waits move the clock on at once, and the
emulator's completion model reads the same clock, so days pass in minutes while every request is
real. 1,000 interviews start at once; a third of the contacts answer, after a lognormal time of
median 6 hours (sigma 0.5: nearly all within a day), the rest never (seed 23). The plan is the
contract's (``poll_age_factor=0.1``, ``min_poll_interval=300``, ``max_poll_interval=86400``),
``batch_window=60``.

- **Cost**: GETs a day at the emulator, against ``plan_simulation.simulate_plan`` of the same
  interviews and answers with a landing every ``min_poll_interval`` (the plan's requests at that pace).
- **Latency**: from each answer (the model's time) to the event naming it (the clock when the trigger
  hands the event over), p50 and p95, for answers given under a day after the interview started.
- **Once**: every answer announced, none twice.

- **Plans**: what other polling plans would cost and how soon they would announce, from the plan's
  arithmetic (:mod:`answer_plans`), for these contacts and for ``plan_simulation``'s (median 36
  hours); its default row is checked against the measured run.

Then, on a real Airflow 3 deployment, what the virtual clock cannot show: from an answer to the
event and to the start of the DAG run on the asset, and answers announced twice or lost across a
``kill -9`` of the triggerer (:mod:`answers_deployment`, about 4 minutes).

Writes ``docs/_generated/answers-numbers.md``, ``docs/_generated/answers-plans.md`` and
``docs/_static/answers-latency.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from answer_plans import PLAN_SIMULATION_MODEL, PlanRow, percentile, plan_rows, plans_table
from answers_deployment import deployment_report, measure_deployment
from measure import API_KEY, HERE
from plan_simulation import DAY, HOUR, Scenario, simulate_plan

from airflow_provider_hindsight.polling import PollingPlan
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.emulator.completion import CompletionModel

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "answers-numbers.md"
PLANS_PAGE = DOCS / "_generated" / "answers-plans.md"
CHART = DOCS / "_static" / "answers-latency.png"
INTERVIEWS = 1000
MIN_POLL_INTERVAL = 300.0
BATCH_WINDOW = 60.0
MODEL = CompletionModel(median=6 * HOUR, sigma=0.5, never_share=2 / 3, seed=23)
ANNOUNCED_AFTER = BATCH_WINDOW
"""From the round that lands an answer to its event: the watcher reads the round's rows as the round ends
and announces them ``batch_window`` later (the measured run agrees)."""
TARGET = MIN_POLL_INTERVAL + BATCH_WINDOW + 60
"""The p95 target from an answer to its event, for answers in an interview's first day."""
WAREHOUSE_CONN_ID = "bench_answers_warehouse"


class TimeUp(BaseException):
    """The virtual span is over (a BaseException: the trigger's own error handling does not catch it)."""


class VirtualClock:
    """Wall-clock seconds from now that move only when the trigger waits, until ``span`` seconds have passed."""

    def __init__(self, span: float) -> None:
        self.start = time.time()
        self.now = self.start
        self.span = span

    def __call__(self) -> float:
        return self.now

    def elapsed(self) -> float:
        return self.now - self.start

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        if self.elapsed() >= self.span:
            raise TimeUp
        await asyncio.sleep(0)


async def watch(days: float, warehouse: Path) -> dict[str, Any]:
    from airflow_provider_hindsight.triggers.answers import HindsightAnswersTrigger

    clock = VirtualClock(days * DAY)
    gets_by_day: Counter[int] = Counter()

    def count(method: str, path: str, status: int) -> None:
        if method == "GET":
            gets_by_day[int(clock.elapsed() // DAY)] += 1

    with HindsightEmulator(
        API_KEY, completion=MODEL, clock=clock.elapsed, record_requests=False, on_request=count
    ) as emulator:
        for key in range(1, INTERVIEWS + 1):
            emulator.add_interview(key, status="sent")
        name, value = emulator.connection_env("hindsight_default")
        os.environ[name] = value
        trigger = HindsightAnswersTrigger(
            sql_conn_id=WAREHOUSE_CONN_ID,
            ids_sql="SELECT interview_request_id FROM deals",
            min_poll_interval=MIN_POLL_INTERVAL,
            batch_window=BATCH_WINDOW,
        )
        trigger.clock, trigger.sleep = clock, clock.sleep
        announced: list[tuple[float, int]] = []
        started = time.monotonic()
        run = trigger.run()
        try:
            async for event in run:
                announced.extend((clock.elapsed(), key) for key in event.payload["interview_request_ids"])
        except TimeUp:
            pass
        seconds = time.monotonic() - started
    return {"announced": announced, "gets_by_day": dict(gets_by_day), "seconds": seconds}


def measure(days: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "warehouse.db"
        with closing(sqlite3.connect(warehouse)) as database:
            database.execute("CREATE TABLE deals (interview_request_id BIGINT)")
            database.executemany("INSERT INTO deals VALUES (?)", [(key,) for key in range(1, INTERVIEWS + 1)])
            database.commit()
        os.environ[f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"] = json.dumps(
            {"conn_type": "sqlite", "host": str(warehouse)}
        )
        watched = asyncio.run(watch(days, warehouse))
    answers = {key: MODEL.answer_delay(key) for key in range(1, INTERVIEWS + 1)}
    due = {key: delay for key, delay in answers.items() if delay is not None and delay <= days * DAY}
    times = Counter(key for _, key in watched["announced"])
    first = {}
    for moment, key in watched["announced"]:
        first.setdefault(key, moment)
    latencies = sorted(first[key] - delay for key, delay in due.items() if key in first and delay < DAY)
    settled = days * DAY - MIN_POLL_INTERVAL - BATCH_WINDOW - 60  # answers after this may still be in flight
    lost = [key for key, delay in due.items() if key not in first and delay < settled]
    plan = PollingPlan(min_poll_interval=MIN_POLL_INTERVAL)
    scenario = Scenario(duration=days * DAY, landing_every=MIN_POLL_INTERVAL)
    simulated = simulate_plan(
        scenario,
        plan,
        interviews=[(0.0, answers[key]) for key in range(1, INTERVIEWS + 1)],
        runs=[(moment, moment) for moment in scenario.runs()],
    )
    plan_by_day = [simulated.gets_between(day * DAY, (day + 1) * DAY) for day in range(int(days))]
    plan_by_day[0] += simulated.gets_between(-1.0, 0.0)
    trigger_by_day = [watched["gets_by_day"].get(day, 0) for day in range(int(days))]
    return {
        "days": days,
        "seconds": watched["seconds"],
        "answered": len(due),
        "answered_first_day": sum(1 for delay in due.values() if delay < DAY),
        "announced": len(first),
        "twice": sum(1 for count in times.values() if count > 1),
        "lost": len(lost),
        "p50": percentile(latencies, 0.5),
        "p95": percentile(latencies, 0.95),
        "latencies": latencies,
        "trigger_by_day": trigger_by_day,
        "plan_by_day": plan_by_day,
    }


def report(numbers: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| day {day + 1} | {trigger:,} | {plan:,} | {100 * (trigger - plan) / plan:+.1f} % |"
        for day, (trigger, plan) in enumerate(zip(numbers["trigger_by_day"], numbers["plan_by_day"], strict=True))
    )
    total_trigger, total_plan = sum(numbers["trigger_by_day"]), sum(numbers["plan_by_day"])
    return f"""<!-- Written by benchmarks/bench_answers.py: do not edit by hand. -->

{INTERVIEWS:,} interviews watched from their start for {numbers["days"]:g} days of virtual time
({numbers["seconds"]:.0f} s of real time); {numbers["answered"]} answered
({numbers["answered_first_day"]} within a day of their start). `min_poll_interval={MIN_POLL_INTERVAL:g}`,
`poll_age_factor=0.1`, `batch_window={BATCH_WINDOW:g}`.

| | the watcher, GETs at the emulator | the polling plan, a landing every {MIN_POLL_INTERVAL:g} s | difference |
| --- | ---: | ---: | ---: |
{rows}
| all | {total_trigger:,} | {total_plan:,} | {100 * (total_trigger - total_plan) / total_plan:+.1f} % |

From an answer to the event naming it, for answers under a day after the interview started:
**p50 {numbers["p50"] / 60:.1f} min, p95 {numbers["p95"] / 60:.1f} min** (the target,
`min_poll_interval + batch_window + 60 s`, is {TARGET / 60:.0f} min). Announced: {numbers["announced"]}
answers, {numbers["twice"]} twice, {numbers["lost"]} lost.
{deployment_report(numbers["deployed"]) if "deployed" in numbers else ""}"""


def plans() -> dict[str, list[PlanRow]]:
    """The plans' rows for the bench's contacts and for ``plan_simulation``'s."""
    return {
        "these contacts (a third answering, median 6 hours)": plan_rows(
            MODEL, min_poll_interval=MIN_POLL_INTERVAL, announced_after=ANNOUNCED_AFTER
        ),
        "plan_simulation's contacts (30 % answering, median 36 hours)": plan_rows(
            PLAN_SIMULATION_MODEL, min_poll_interval=MIN_POLL_INTERVAL, announced_after=ANNOUNCED_AFTER
        ),
    }


def plans_report(tables: dict[str, list[PlanRow]], numbers: dict[str, Any]) -> str:
    """The trade-off tables, what meeting the target costs, and the check of the arithmetic against the run."""
    sections = "\n\n".join(f"For {contacts}:\n\n{plans_table(rows)}" for contacts, rows in tables.items())
    rows = next(iter(tables.values()))
    default, first_day = rows[0], rows[-1]
    return f"""<!-- Written by benchmarks/bench_answers.py: do not edit by hand. -->

{COHORT_SENTENCE} `min_poll_interval={MIN_POLL_INTERVAL:g}`, `batch_window={BATCH_WINDOW:g}`,
`max_poll_interval` and `stop_polling_after` their defaults (a day, 30 days). "GETs a day, steady state" is
what the cohort costs over its life: the GETs a day once 1,000 new interviews start every day. Latency is
from an answer to its event.

{sections}

The target, p95 at most {TARGET / 60:.0f} minutes for first-day answers, needs a fetch every
`min_poll_interval` through the first day: for these contacts that costs
**{first_day.first_day_gets / default.first_day_gets:.1f}x the default plan's GETs in the first day and
{first_day.life_gets / default.life_gets:.1f}x at steady state** (with `poll_age_factor=0.0035`,
{rows[-2].life_gets / default.life_gets:.1f}x). The default plan keeps the polling plan's cost, with a p95 of
{percentile(default.first_day_latencies, 0.95) / 60:.0f} minutes.

The arithmetic against the watcher's measured run (the default plan, these contacts, below): in the first
day {default.first_day_gets:,} GETs, {numbers["trigger_by_day"][0]:,} measured; first-day answers p50
{percentile(default.first_day_latencies, 0.5) / 60:.1f} min, {numbers["p50"] / 60:.1f} measured; p95
{percentile(default.first_day_latencies, 0.95) / 60:.1f} min, {numbers["p95"] / 60:.1f} measured.
"""


COHORT_SENTENCE = (
    "1,000 interviews started together, fetched on each plan in rounds every `min_poll_interval`, from\n"
    "the plan's arithmetic (`benchmarks/answer_plans.py`):"
)


def draw(numbers: dict[str, Any], tables: dict[str, list[PlanRow]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.5))
    left.hist([value / 60 for value in numbers["latencies"]], bins=40, color="#4c72b0")
    left.axvline(TARGET / 60, color="#c44e52", linestyle="--", label="target")
    left.set_xlabel("minutes from an answer to its event\n(answers in an interview's first day, default plan)")
    left.set_ylabel("answers")
    left.legend()
    days = range(1, len(numbers["trigger_by_day"]) + 1)
    width = 0.4
    middle.bar([day - width / 2 for day in days], numbers["trigger_by_day"], width, label="the watcher (measured)")
    middle.bar([day + width / 2 for day in days], numbers["plan_by_day"], width, label="the polling plan (simulated)")
    middle.set_xticks(list(days))
    middle.set_xlabel("day")
    middle.set_ylabel(f"GETs for {INTERVIEWS:,} interviews")
    middle.legend()
    for (contacts, rows), marker in zip(tables.items(), ("o", "s"), strict=True):
        costs = [row.life_gets / rows[0].life_gets for row in rows]
        p95s = [percentile(row.first_day_latencies, 0.95) / 60 for row in rows]
        right.plot(costs, p95s, marker=marker, linestyle="", label=contacts.split(" (")[0])
    for row, cost, p95 in zip(rows, costs, p95s, strict=True):  # the labels once, by the last contacts' points
        label = row.name.split("=")[1].strip("`") if "poll_age_factor=" in row.name else "day 1: every round"
        right.annotate(label, (cost, p95), fontsize=8, xytext=(6, -3), textcoords="offset points", va="top")
    right.set_xlim(0, max(costs) * 1.2)
    right.axhline(TARGET / 60, color="#c44e52", linestyle="--", label="target")
    right.set_xlabel("GETs a day at steady state, x the default plan's")
    right.set_ylabel("p95 minutes, first-day answers")
    right.set_yscale("log")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(CHART, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one day; writes no docs")
    arguments = parser.parse_args()
    numbers = measure(1.0 if arguments.quick else 3.0)
    tables = plans()
    if not arguments.quick:
        numbers["deployed"] = measure_deployment()
        if not numbers["deployed"]["watcher_seen"]:
            print(f"The watcher never fetched; the triggerer's log ends:\n{numbers['deployed']['triggerer_log']}")
    text, plans_text = report(numbers), plans_report(tables, numbers)
    print(plans_text)
    print(text)
    if not arguments.quick:
        NUMBERS_PAGE.write_text(text)
        PLANS_PAGE.write_text(plans_text)
        draw(numbers, tables)
        print(
            f"Wrote {NUMBERS_PAGE.relative_to(HERE.parent)}, {PLANS_PAGE.relative_to(HERE.parent)} and "
            f"{CHART.relative_to(HERE.parent)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
