"""The pacer (``hooks/pacing.py``) on fake clocks: spacing, many threads, pauses, slowing down and recovering."""

from __future__ import annotations

import itertools
import math
import threading

import pytest

from airflow_provider_hindsight.hooks.pacing import (
    MIN_REQUESTS_PER_MINUTE,
    RECOVERY_AFTER_SECONDS,
    RECOVERY_FACTOR,
    SAFETY_MARGIN,
    SLOW_DOWN_FACTOR,
    RatePacer,
)

from .helpers import FakeTime

PLAN_PACES = (60, 300, 1000)


class ThreadClocks:
    """Fake monotonic time kept per thread: every thread starts at the same moment, and sleeping moves
    only the sleeper's clock.

    Threads thus ask the pacer for start times as fast as they can (the race it must win), and a
    thread's clock when ``acquire()`` returns is the moment it was told to start.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self._start = start
        self._local = threading.local()

    def now(self) -> float:
        return float(getattr(self._local, "now", self._start))

    def sleep(self, seconds: float) -> None:
        self._local.now = self.now() + seconds


def paced(pace: float, clocks: ThreadClocks) -> RatePacer:
    return RatePacer(pace, clock=clocks.now, sleep=clocks.sleep)


def starts_from_threads(pacer: RatePacer, clocks: ThreadClocks, threads: int, each: int) -> list[float]:
    starts: list[float] = []
    lock = threading.Lock()
    go = threading.Barrier(threads)

    def work() -> None:
        go.wait()
        for _ in range(each):
            pacer.acquire()
            with lock:
                starts.append(clocks.now())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sorted(starts)


def busiest_second(starts: list[float]) -> int:
    """The most starts in any one-second window ``[s, s + 1)``."""
    return max(sum(1 for other in starts if start <= other < start + 1.0) for start in starts)


@pytest.mark.parametrize(
    ("pace", "gap"),
    [
        (60, 60 / (60 * SAFETY_MARGIN)),
        (300, 60 / (300 * SAFETY_MARGIN)),
        (1000, 1 / (16 * SAFETY_MARGIN)),  # 1000 / 60 = 16.7 a second: whole starts cap it at 16
    ],
)
def test_one_caller_starts_evenly_spaced(pace: int, gap: float) -> None:
    fake = FakeTime()
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(10):
        pacer.acquire()
        starts.append(fake.clock())

    assert [later - earlier for earlier, later in itertools.pairwise(starts)] == [pytest.approx(gap)] * 9


@pytest.mark.parametrize("pace", PLAN_PACES)
def test_many_threads_never_exceed_the_per_second_limit(pace: int) -> None:
    clocks = ThreadClocks()

    starts = starts_from_threads(paced(pace, clocks), clocks, threads=8, each=math.ceil(pace / 60) * 2)

    assert busiest_second(starts) <= pace / 60


@pytest.mark.parametrize("pace", PLAN_PACES)
def test_many_threads_use_the_whole_allowance(pace: int) -> None:
    clocks = ThreadClocks()

    starts = starts_from_threads(paced(pace, clocks), clocks, threads=8, each=math.ceil(pace / 60) * 2)

    assert busiest_second(starts) == math.floor(pace / 60)


def test_pause_holds_every_thread() -> None:
    clocks, pause = ThreadClocks(), 5.0
    pacer = paced(600, clocks)
    pacer.acquire()
    pacer.pause(pause)

    starts = starts_from_threads(pacer, clocks, threads=4, each=3)

    assert starts[0] == clocks.now() + pause


def test_pause_makes_the_next_caller_wait_that_long() -> None:
    fake, pause = FakeTime(), 3.0
    pacer = RatePacer(600, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire()
    fake.advance(60)

    pacer.pause(pause)

    assert pacer.acquire() == pytest.approx(pause)


def test_slow_down_lowers_the_pace_once_per_burst() -> None:
    fake, pace = FakeTime(), 600
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)

    for _ in range(5):  # five threads see the same burst of 429s within a fraction of a second
        pacer.slow_down()
        fake.advance(0.1)
    assert pacer.requests_per_minute == pytest.approx(pace * SLOW_DOWN_FACTOR)

    fake.advance(1.0)
    pacer.slow_down()
    assert pacer.requests_per_minute == pytest.approx(pace * SLOW_DOWN_FACTOR**2)


def test_slowed_pace_spaces_starts_further_apart() -> None:
    fake, pace = FakeTime(), 600
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)
    pacer.slow_down()

    pacer.acquire()
    waited = pacer.acquire()

    assert waited == pytest.approx(60 / (pace * SLOW_DOWN_FACTOR * SAFETY_MARGIN))


def test_sustained_429s_keep_lowering_the_pace() -> None:
    fake, pace = FakeTime(), 600
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)

    for _ in range(20):  # a 429 every half second for ten seconds
        pacer.slow_down()
        fake.advance(0.5)

    assert pacer.requests_per_minute < pace * SLOW_DOWN_FACTOR


def test_slow_down_has_a_floor() -> None:
    fake = FakeTime()
    pacer = RatePacer(60, clock=fake.clock, sleep=fake.sleep)

    for _ in range(50):
        pacer.slow_down()
        fake.advance(1.0)

    assert pacer.requests_per_minute == MIN_REQUESTS_PER_MINUTE


def test_pace_recovers_after_a_quiet_spell() -> None:
    fake, pace = FakeTime(), 600
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)
    pacer.slow_down()
    lowered = pacer.requests_per_minute

    fake.advance(RECOVERY_AFTER_SECONDS - 0.5)
    pacer.acquire()
    assert pacer.requests_per_minute == lowered

    fake.advance(0.5)
    pacer.acquire()
    assert pacer.requests_per_minute == pytest.approx(lowered * RECOVERY_FACTOR)

    steps = math.ceil(math.log(pace / lowered) / math.log(RECOVERY_FACTOR))
    paces = []
    for _ in range(steps):
        fake.advance(RECOVERY_AFTER_SECONDS)
        pacer.acquire()
        paces.append(pacer.requests_per_minute)
    assert paces == sorted(paces)
    assert paces[-1] == pace


@pytest.mark.parametrize("pace", [0, -60])
def test_pace_must_be_positive(pace: float) -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        RatePacer(pace)
