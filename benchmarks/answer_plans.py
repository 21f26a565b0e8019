"""What a polling plan costs the answers watcher, and how soon it announces first-day answers: plan
arithmetic.

The watcher fetches on the polling plan in rounds every ``min_poll_interval`` and announces what a round
found ``announced_after`` seconds later (``batch_window``, as ``bench_answers.py`` measures). In a
cohort of interviews started together (as in ``bench_answers.py``: a moment before the watcher's first
round, the API's times being whole seconds), every interview not yet answered is fetched at the same
ages: those at which :func:`plan_simulation.simulate_plan` (the provider's
:class:`~airflow_provider_hindsight.polling.PollingPlan` deciding at each round) fetches one that never
answers. An interview answering at age ``d`` is fetched at those ages up to the first at or after ``d``,
and announced ``announced_after`` seconds after that one. So a plan's row takes a fraction of a second;
``bench_answers.py`` checks the default row against the trigger's measured run.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from plan_simulation import DAY, Scenario, simulate_plan

from airflow_provider_hindsight.polling import PollingPlan
from airflow_provider_hindsight.testing.emulator.completion import CompletionModel

COHORT = 1000
STARTED_BEFORE_FIRST_ROUND = 0.5
"""Seconds: the cohort's e-mails went out this long before the watcher's first round."""
PLAN_SIMULATION_MODEL = Scenario().completion
"""``plan_simulation``'s contacts: 30 % answer, after a median of 36 hours (sigma 1)."""


@dataclass(frozen=True)
class EveryRoundThroughFirstDay(PollingPlan):
    """The plan, but every ``min_poll_interval`` while an interview is under a day old."""

    def interval(self, age: float | None) -> float:
        if age is not None and age < DAY:
            return self.min_poll_interval
        return super().interval(age)


@dataclass(frozen=True)
class PlanRow:
    """One plan's cost and reaction for a cohort of :data:`COHORT` interviews started together."""

    name: str
    first_day_gets: int
    """GETs in the cohort's first day."""
    life_gets: int
    """GETs over the cohort's life (to ``stop_polling_after``): GETs a day once 1,000 new interviews start each day."""
    first_day_latencies: list[float]
    """Seconds from each answer given in an interview's first day to its event, sorted."""
    all_latencies: list[float]
    """The same for every answer found before polling stops."""


def fetch_ages(plan: PollingPlan) -> list[float]:
    """The ages at which the watcher's rounds fetch an interview of the cohort that never answers."""
    until = (plan.stop_polling_after or 60 * DAY) + DAY
    rounds = [number * plan.min_poll_interval for number in range(math.ceil(until / plan.min_poll_interval))]
    one = simulate_plan(
        Scenario(duration=until),
        plan,
        interviews=[(-STARTED_BEFORE_FIRST_ROUND, None)],
        runs=[(moment, moment) for moment in rounds],
    )
    before = [0, *one.gets_so_far[:-1]]
    fetched = [now for now, was, gets in zip(one.run_times, before, one.gets_so_far, strict=True) if gets > was]
    return [now + STARTED_BEFORE_FIRST_ROUND for now in fetched]


def plan_row(name: str, plan: PollingPlan, model: CompletionModel, *, announced_after: float) -> PlanRow:
    """Fetch ages from the plan, answers from the model (interviews ``1..COHORT``, as the emulator draws them)."""
    ages = fetch_ages(plan)
    first_day_gets = life_gets = 0
    first_day: list[float] = []
    everyone: list[float] = []
    for key in range(1, COHORT + 1):
        delay = model.answer_delay(key)
        found = len(ages) if delay is None else bisect.bisect_left(ages, delay)
        fetches = min(found + 1, len(ages))  # the fetch that finds the answer counts too
        life_gets += fetches
        first_day_gets += min(fetches, bisect.bisect_left(ages, DAY))
        if delay is not None and found < len(ages):
            latency = ages[found] - delay + announced_after
            everyone.append(latency)
            if delay < DAY:
                first_day.append(latency)
    return PlanRow(name, first_day_gets, life_gets, sorted(first_day), sorted(everyone))


def plan_rows(model: CompletionModel, *, min_poll_interval: float, announced_after: float) -> list[PlanRow]:
    """The default plan, lower ``poll_age_factor`` values, and every round through the first day."""
    factors = (0.1, 0.05, 0.02, 0.01, min_poll_interval / DAY)
    rows = [
        plan_row(
            f"`poll_age_factor={factor:.2g}`",
            PollingPlan(poll_age_factor=factor, min_poll_interval=min_poll_interval),
            model,
            announced_after=announced_after,
        )
        for factor in factors
    ]
    rows.append(
        plan_row(
            "every `min_poll_interval` through the first day, then the default",
            EveryRoundThroughFirstDay(min_poll_interval=min_poll_interval),
            model,
            announced_after=announced_after,
        )
    )
    return rows


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def plans_table(rows: list[PlanRow]) -> str:
    """A markdown table of the rows, costs also as a multiple of the first row's."""
    base = rows[0]
    lines = [
        "| plan | GETs in the first day | x default | GETs a day, steady state | x default "
        "| first-day answers: p50 | p95 | all answers: p95 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.first_day_gets:,} | {row.first_day_gets / base.first_day_gets:.1f} "
            f"| {row.life_gets:,} | {row.life_gets / base.life_gets:.1f} "
            f"| {_minutes(percentile(row.first_day_latencies, 0.5))} "
            f"| {_minutes(percentile(row.first_day_latencies, 0.95))} "
            f"| {_minutes(percentile(row.all_latencies, 0.95))} |"
        )
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    if math.isnan(seconds):
        return "none"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 60:.0f} min" if seconds < 5 * 3600 else f"{seconds / 3600:.0f} h"
