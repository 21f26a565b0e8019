"""The polling plan in virtual time: a stream of interviews, some answering, landed on a schedule.

Every landing run asks :class:`~airflow_provider_hindsight.polling.PollingPlan` (the provider's own
code, as the landing does) which interviews are due, "fetches" them, and learns whether each has
answered. Nothing sleeps: a year of hourly runs takes seconds. The same model gives today's rule
(fetch every interview not completed, every run) for comparison, counted in closed form.

What the landing knows of an interview is what its table row holds: nothing before its first fetch
(so it is due at once), then its start (``email_sent_at``) and its last fetch. Interviews found
completed, and interviews past ``stop_polling_after``, leave the simulated landing's input: the plan
never fetches them again, so leaving them out changes no count and keeps the year fast.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_provider_hindsight.polling import PollingPlan, PollState, Verdict
from airflow_provider_hindsight.testing.emulator.completion import CompletionModel

HOUR = 3600.0
DAY = 24 * HOUR
MONTH = 365.25 / 12 * DAY


@dataclass(frozen=True)
class Scenario:
    """Who is created when, who answers and after how long, and how often the landing runs."""

    creates_per_month: float = 1000.0
    creating_for: float = 12 * MONTH
    """Interviews are created evenly over this span from time 0."""
    duration: float = 12 * MONTH
    """The landing runs every ``landing_every`` from ``landing_every`` to ``duration``."""
    answer_share: float = 0.3
    median_answer: float = 36 * HOUR
    answer_sigma: float = 1.0
    """The lognormal's sigma: with the median of 36 hours, 90 % of answers within 5.4 days, 99 % within 15."""
    landing_every: float = HOUR
    seed: int = 23

    @property
    def completion(self) -> CompletionModel:
        """The emulator's completion model with these parameters: the same draws in both runs."""
        return CompletionModel(self.median_answer, self.answer_sigma, 1 - self.answer_share, self.seed)

    def starts(self) -> list[float]:
        """When each interview starts (its e-mail is sent), evenly spaced."""
        spacing = MONTH / self.creates_per_month
        return [number * spacing for number in range(int(self.creating_for / spacing))]

    def interviews(self, starts: list[float] | None = None) -> list[tuple[float, float | None]]:
        """``(started_at, answered_at or None)`` of interview ``1 + index``, in order of start."""
        model = self.completion
        out: list[tuple[float, float | None]] = []
        for index, start in enumerate(self.starts() if starts is None else starts):
            delay = model.answer_delay(index + 1)
            out.append((start, None if delay is None else start + delay))
        return out

    def runs(self) -> Iterator[float]:
        """The landing's run times."""
        number = 1
        while number * self.landing_every <= self.duration + 1e-6:
            yield number * self.landing_every
            number += 1


@dataclass
class Outcome:
    """What one rule cost and how fast it landed answers."""

    rule: str
    run_times: list[float] = field(default_factory=list)
    gets_so_far: list[int] = field(default_factory=list)
    """GETs of all runs up to and including each run."""
    landed: list[tuple[float, float]] = field(default_factory=list)
    """Per answer landed: ``(age of the interview when it answered, delay from answer to landing)``."""
    lost: int = 0
    """Answers never landed: they came after polling stopped."""
    per_interview: list[int] = field(default_factory=list)
    """GETs per interview over its whole life (interviews whose life ended within the run)."""

    def count_run(self, now: float, gets: int) -> None:
        self.run_times.append(now)
        self.gets_so_far.append((self.gets_so_far[-1] if self.gets_so_far else 0) + gets)

    def gets_between(self, start: float, end: float) -> int:
        """GETs of the runs in ``(start, end]``."""

        def upto(moment: float) -> int:
            index = bisect.bisect_right(self.run_times, moment)
            return self.gets_so_far[index - 1] if index else 0

        return upto(end) - upto(start)

    def within_target(self, slack: float = HOUR, share: float = 0.1) -> float:
        """The share of answers landed within ``slack + share x age at the answer`` (lost ones count as late)."""
        total = len(self.landed) + self.lost
        if not total:
            return 1.0
        on_time = sum(1 for age, delay in self.landed if delay <= slack + share * age)
        return on_time / total

    def delay_ratio_percentile(self, q: float, slack: float = HOUR, share: float = 0.1) -> float:
        """The ``q`` quantile of ``delay / (slack + share x age)``; lost answers are infinitely late."""
        ratios = sorted([delay / (slack + share * age) for age, delay in self.landed] + [math.inf] * self.lost)
        if not ratios:
            return 0.0
        return ratios[min(len(ratios) - 1, math.ceil(q * len(ratios)) - 1)]


def simulate_plan(
    scenario: Scenario,
    plan: PollingPlan,
    *,
    interviews: list[tuple[float, float | None]] | None = None,
    runs: list[tuple[float, float]] | None = None,
    appear_after: float = 0.0,
) -> Outcome:
    """Landing runs every ``landing_every`` that fetch what ``plan`` says is due.

    ``runs`` replaces the schedule with measured runs: ``(decided_at, fetched_at)``, when a run asked
    the plan and when its fetches happened. An interview is in the landing's input from
    ``appear_after`` seconds after its start.
    """
    interviews = scenario.interviews() if interviews is None else interviews
    outcome = Outcome("plan")
    active: dict[int, PollState[int]] = {}
    polls: dict[int, int] = {}
    created = 0
    for now, fetched_at in [(moment, moment) for moment in scenario.runs()] if runs is None else runs:
        while created < len(interviews) and interviews[created][0] + appear_after <= now:
            active[created] = PollState(created)
            polls[created] = 0
            created += 1
        schedule = plan.due(list(active.values()), now)
        outcome.count_run(now, len(schedule.due))
        for key in schedule.due:
            started, answered = interviews[key]
            polls[key] += 1
            if answered is not None and answered <= fetched_at:
                outcome.landed.append((answered - started, fetched_at - answered))
                outcome.per_interview.append(polls.pop(key))
                del active[key]
            else:
                active[key] = PollState(key, started_at=started, last_polled_at=fetched_at)
        for key in schedule.stopped:
            started, answered = interviews[key]
            if answered is not None and answered <= scenario.duration:
                outcome.lost += 1
            outcome.per_interview.append(polls.pop(key))
            del active[key]
    # Answers still to come or not yet landed at the end are neither landed nor lost: leave them out.
    return outcome


def simulate_poll_everything(scenario: Scenario) -> Outcome:
    """Today's rule: every run fetches every interview not found completed by an earlier run."""
    interviews = scenario.interviews()
    runs = list(scenario.runs())
    outcome = Outcome("poll everything")
    # An interview is fetched at every run from the first at or after its start to the first at or after
    # its answer (included): that run finds it completed.
    first_run = [max(math.ceil(started / scenario.landing_every - 1e-9), 1) for started, _ in interviews]
    last_run = [
        len(runs) if answered is None else math.ceil(answered / scenario.landing_every - 1e-9)
        for _, answered in interviews
    ]
    starting = [0] * (len(runs) + 2)
    for first, last in zip(first_run, last_run, strict=True):
        if first <= len(runs):
            starting[first] += 1
            starting[min(last, len(runs)) + 1] -= 1
    fetching = 0
    for number, now in enumerate(runs, start=1):
        fetching += starting[number]
        outcome.count_run(now, fetching)
    for (started, answered), first, last in zip(interviews, first_run, last_run, strict=True):
        if answered is not None and last <= len(runs):
            outcome.landed.append((answered - started, last * scenario.landing_every - answered))
            outcome.per_interview.append(last - first + 1)
    return outcome


def polls_over_life(plan: PollingPlan, *, every: float, until: float) -> list[float]:
    """The ages at which one interview that never answers is fetched by runs every ``every`` seconds."""
    state: PollState[int] = PollState(0)
    ages = []
    now = 0.0
    while now <= until:
        verdict = plan.verdict(state, now)
        if verdict is Verdict.STOPPED:
            break
        if verdict is Verdict.DUE:
            ages.append(now)
            state = PollState(0, started_at=0.0, last_polled_at=now)
        now += every
    return ages
