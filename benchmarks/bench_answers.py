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

Then, on a real Airflow 3 deployment (api-server, scheduler, dag-processor, triggerer; SQLite
metadata; ``tests/dag_files/answers_dags.py``), what the virtual clock cannot show: from an event
(its asset event stored) to the start of the DAG run on the asset, with the contacts' times
compressed (``DEPLOYED`` interviews, answers after a median of 20 s, ``min_poll_interval=2``,
``batch_window=1``), and a ``kill -9`` of the triggerer in the middle: answers announced twice, lost.

Writes ``docs/_generated/answers-numbers.md`` and ``docs/_static/answers-latency.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from measure import API_KEY, HERE
from plan_simulation import DAY, HOUR, Scenario, simulate_plan

from airflow_provider_hindsight.polling import PollingPlan
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.emulator.completion import CompletionModel

DOCS = HERE.parent / "docs"
NUMBERS_PAGE = DOCS / "_generated" / "answers-numbers.md"
CHART = DOCS / "_static" / "answers-latency.png"
INTERVIEWS = 1000
MIN_POLL_INTERVAL = 300.0
BATCH_WINDOW = 60.0
MODEL = CompletionModel(median=6 * HOUR, sigma=0.5, never_share=2 / 3, seed=23)
WAREHOUSE_CONN_ID = "bench_answers_warehouse"
DEPLOYED = 100
DEPLOYED_MODEL = CompletionModel(median=20.0, sigma=0.5, never_share=2 / 3, seed=23)
KILL_AFTER = 25.0
DEPLOYED_SECONDS = 150.0


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


def deployed() -> dict[str, Any]:
    """Event to DAG run start on a real deployment, and answers announced twice or lost across a triggerer kill."""
    import shutil

    from airflow_provider_hindsight.testing.deployment import AirflowDeployment

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warehouse = root / "warehouse.db"
        with closing(sqlite3.connect(warehouse)) as database:
            database.execute("CREATE TABLE deals (interview_request_id BIGINT)")
            database.executemany("INSERT INTO deals VALUES (?)", [(key,) for key in range(1, DEPLOYED + 1)])
            database.commit()
        dags = root / "dags"
        dags.mkdir()
        shutil.copy(HERE.parent / "tests" / "dag_files" / "answers_dags.py", dags)
        with HindsightEmulator(API_KEY, completion=DEPLOYED_MODEL, interview_ids=range(1, DEPLOYED + 1)) as emulator:
            name, value = emulator.connection_env("hindsight_default")
            env = {
                name: value,
                "AIRFLOW_CONN_ANSWERS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
                "HINDSIGHT_TEST_ANSWERS_OUT": str(root / "announced.jsonl"),
                "HINDSIGHT_TEST_ANSWERS_POLL_INTERVAL": "2",
                "HINDSIGHT_TEST_ANSWERS_BATCH_WINDOW": "1",
            }
            with AirflowDeployment(root / "home", dags, env=env) as airflow:
                airflow.migrate()
                airflow.start()
                started = time.monotonic()
                time.sleep(KILL_AFTER)
                airflow.kill("triggerer")
                time.sleep(5)
                airflow.start("triggerer")
                time.sleep(max(DEPLOYED_SECONDS - (time.monotonic() - started), 0))
                with closing(sqlite3.connect(airflow.home / "airflow.db")) as metadata:
                    rows = metadata.execute(
                        "SELECT e.id, e.timestamp, e.extra, r.start_date FROM asset_event AS e "
                        "LEFT JOIN dagrun_asset_event AS l ON l.event_id = e.id "
                        "LEFT JOIN dag_run AS r ON r.id = l.dag_run_id ORDER BY e.id"
                    ).fetchall()
            answered = {
                key
                for key in range(1, DEPLOYED + 1)
                if (delay := DEPLOYED_MODEL.answer_delay(key)) is not None and delay < DEPLOYED_SECONDS - 20
            }
    to_run: dict[int, float] = {}
    announced: Counter[int] = Counter()
    for event_id, stored, extra, run_started in rows:
        if event_id not in to_run:
            announced.update(json.loads(extra)["payload"]["interview_request_ids"])
        if run_started is not None:
            seconds = (_moment(run_started) - _moment(stored)).total_seconds()
            to_run[event_id] = min(to_run.get(event_id, math.inf), seconds)
    delays = sorted(to_run.values())
    return {
        "events": len({row[0] for row in rows}),
        "runs": len(to_run),
        "event_to_run_p50": percentile(delays, 0.5),
        "event_to_run_p95": percentile(delays, 0.95),
        "answered": len(answered),
        "announced": len(announced),
        "twice": sum(1 for count in announced.values() if count > 1),
        "lost": len(answered - set(announced)),
    }


def _moment(value: Any) -> Any:
    import datetime

    moment = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=None)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def report(numbers: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| day {day + 1} | {trigger:,} | {plan:,} | {100 * (trigger - plan) / plan:+.1f} % |"
        for day, (trigger, plan) in enumerate(zip(numbers["trigger_by_day"], numbers["plan_by_day"], strict=True))
    )
    total_trigger, total_plan = sum(numbers["trigger_by_day"]), sum(numbers["plan_by_day"])
    target = MIN_POLL_INTERVAL + BATCH_WINDOW + 60
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
`min_poll_interval + batch_window + 60 s`, is {target / 60:.0f} min). Announced: {numbers["announced"]}
answers, {numbers["twice"]} twice, {numbers["lost"]} lost.
{deployed_report(numbers.get("deployed"))}"""


def deployed_report(numbers: dict[str, Any] | None) -> str:
    if numbers is None:
        return ""
    return f"""
On a real Airflow 3 deployment (SQLite metadata, the `LocalExecutor`, one machine), {DEPLOYED} interviews
answering after a median of {DEPLOYED_MODEL.median:g} s, `min_poll_interval=2`, `batch_window=1`, the
triggerer killed with `kill -9` after {KILL_AFTER:g} s and started again 5 s later: {numbers["events"]} events,
{numbers["runs"]} of them with a DAG run; from an event stored to its run's start p50
{numbers["event_to_run_p50"]:.1f} s, p95 {numbers["event_to_run_p95"]:.1f} s. Of {numbers["answered"]} answers,
{numbers["announced"]} announced, {numbers["twice"]} twice, {numbers["lost"]} lost.
"""


def draw(numbers: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist([value / 60 for value in numbers["latencies"]], bins=40, color="#4c72b0")
    left.axvline((MIN_POLL_INTERVAL + BATCH_WINDOW + 60) / 60, color="#c44e52", linestyle="--", label="target")
    left.set_xlabel("minutes from an answer to its event (answers in an interview's first day)")
    left.set_ylabel("answers")
    left.legend()
    days = range(1, len(numbers["trigger_by_day"]) + 1)
    width = 0.4
    left_bars = [day - width / 2 for day in days]
    right_bars = [day + width / 2 for day in days]
    right.bar(left_bars, numbers["trigger_by_day"], width, label="the watcher (measured)", color="#4c72b0")
    right.bar(right_bars, numbers["plan_by_day"], width, label="the polling plan (simulated)", color="#dd8452")
    right.set_xticks(list(days))
    right.set_xlabel("day")
    right.set_ylabel(f"GETs for {INTERVIEWS:,} interviews")
    right.legend()
    figure.tight_layout()
    figure.savefig(CHART, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one day; writes no docs")
    arguments = parser.parse_args()
    numbers = measure(1.0 if arguments.quick else 3.0)
    if not arguments.quick:
        numbers["deployed"] = deployed()
    text = report(numbers)
    print(text)
    if not arguments.quick:
        NUMBERS_PAGE.write_text(text)
        draw(numbers)
        print(f"Wrote {NUMBERS_PAGE.relative_to(HERE.parent)} and {CHART.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
