"""The pacer (``hooks/pacing.py``) on fake clocks: spacing, windows, many threads, pauses, slowing down,
recovering, and what it tells ``on_change``."""

from __future__ import annotations

import bisect
import itertools
import math
import threading

import pytest

from airflow_provider_hindsight.hooks.pacing import RatePacer
from airflow_provider_hindsight.pace import (
    MIN_REQUESTS_PER_MINUTE,
    RECOVERY_AFTER_SECONDS,
    RECOVERY_SHARE,
    RECOVERY_SNAP,
    SAFETY_MARGIN,
    SLOW_DOWN_FACTOR,
    PaceChange,
    PaceSchedule,
)

from .helpers import FakeTime

PLAN_PACES = (60, 300, 1000)
PACES = (*PLAN_PACES, 1_000_000)
"""The three plans, and a pace far beyond any plan (a gap of 62 microseconds)."""


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


def starts_from_one_caller(pace: float, count: int) -> list[float]:
    fake = FakeTime()
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)
    starts = []
    for _ in range(count):
        pacer.acquire()
        starts.append(fake.clock())
    return starts


def busiest_window(starts: list[float], seconds: float) -> int:
    """The most starts in any window ``[s, s + seconds)``, as a strict sliding-window limiter counts them.

    The window is shortened by a billionth of its length so that a start landing exactly on its end
    (in exact arithmetic) is not counted through floating-point rounding.
    """
    end = seconds * (1 - 1e-9)
    return max(bisect.bisect_left(starts, start + end) - index for index, start in enumerate(starts))


def per_minute(starts: list[float]) -> float:
    """The long-run rate of sorted start times, in requests a minute."""
    return (len(starts) - 1) * 60 / (starts[-1] - starts[0])


# -- spacing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("pace", PACES)
def test_one_caller_starts_evenly_spaced(pace: int) -> None:
    """No rounding to whole requests a second: at 1,000 a minute the gap is 60 / 970 s, not 1 / (16 * 0.97) s."""
    starts = starts_from_one_caller(pace, 10)

    gap = 60 / (pace * SAFETY_MARGIN)
    assert [later - earlier for earlier, later in itertools.pairwise(starts)] == [pytest.approx(gap)] * 9


@pytest.mark.parametrize("pace", PACES)
def test_long_run_rate_is_the_safety_margin_of_the_limit(pace: int) -> None:
    starts = starts_from_one_caller(pace, 2_000)

    assert per_minute(starts) / pace == pytest.approx(SAFETY_MARGIN, rel=1e-6)


@pytest.mark.parametrize("pace", PACES)
def test_no_window_holds_more_than_the_limit_allows(pace: int) -> None:
    """Any window holds at most its share of the paced rate, rounded up to a whole request: never a burst.

    So a strict sliding-window limiter allowing exactly the limit's share of its window never answers
    429 when that share is a whole number of requests (60 in a minute, 50 in any 3 seconds at 1,000 a
    minute) or worth 34 requests or more (the 3 % margin then adds up to a whole request). "16 in any
    second" is not 1,000 a minute but a stricter 960.
    """
    shares = [1.0, 2.0, 5.0, 10.0, 1000 / 60, 34.0, 50.0, 100.0, 500.0, 999.0, float(pace)]
    shares = [share for share in shares if share <= min(pace, 1000)]
    starts = starts_from_one_caller(pace, 2 * math.ceil(max(shares)) + 10)

    for share in shares:
        busiest = busiest_window(starts, share * 60 / pace)
        assert busiest <= math.ceil(SAFETY_MARGIN * share), (share, busiest)
        if share.is_integer() or share >= 1 / (1 - SAFETY_MARGIN):
            assert busiest <= math.floor(share), (share, busiest)


def test_no_three_second_window_over_50_at_1000_a_minute_from_many_threads() -> None:
    """The Enterprise limit as a strict 3-second window: 16 threads racing, none of it over 50."""
    clocks = ThreadClocks()

    starts = starts_from_threads(paced(1000, clocks), clocks, threads=16, each=40)

    assert busiest_window(starts, 3.0) <= 50
    assert per_minute(starts) == pytest.approx(1000 * SAFETY_MARGIN, rel=1e-6)


@pytest.mark.parametrize("pace", PACES)
def test_many_threads_never_double_book_a_start(pace: int) -> None:
    clocks = ThreadClocks()

    starts = starts_from_threads(paced(pace, clocks), clocks, threads=8, each=40)

    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(set(starts)) == len(starts) == 320
    assert min(gaps) == pytest.approx(60 / (pace * SAFETY_MARGIN), rel=1e-6)
    assert per_minute(starts) == pytest.approx(pace * SAFETY_MARGIN, rel=1e-6)


def test_a_caller_that_wakes_late_takes_a_new_start_time() -> None:
    """A thread held up past its start time (a busy machine) does not crowd the starts handed out after it."""
    clocks, pace = ThreadClocks(), 1000
    gap = 60 / (pace * SAFETY_MARGIN)
    lock, overslept = threading.Lock(), []

    def sleep_late_once(seconds: float) -> None:
        with lock:
            late = not overslept
            overslept.append(late)
        clocks.sleep(seconds + 2.5 * gap if late else seconds)

    pacer = RatePacer(pace, clock=clocks.now, sleep=sleep_late_once)
    starts = starts_from_threads(pacer, clocks, threads=4, each=10)

    assert len(starts) == 40
    assert min(later - earlier for earlier, later in itertools.pairwise(starts)) == pytest.approx(gap, rel=1e-6)


def test_an_idle_pacer_does_not_save_up_a_burst() -> None:
    fake, pace = FakeTime(), 600
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire()
    fake.advance(60)

    waits = [pacer.acquire() for _ in range(5)]

    assert waits == [0.0] + [pytest.approx(60 / (pace * SAFETY_MARGIN))] * 4


# -- pauses and slowing down -------------------------------------------------------------------------


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


@pytest.mark.parametrize("event", ["pause", "slow_down"])
def test_a_start_time_handed_out_before_a_429_is_void(event: str) -> None:
    """A caller waiting for its start when another thread gets a 429 does not go at the old time."""
    fake, pace, pause = FakeTime(), 600, 5.0
    pacer = RatePacer(pace, clock=fake.clock, sleep=lambda seconds: sleep_through_a_429(seconds))
    sleeps: list[float] = []

    def sleep_through_a_429(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:  # halfway through the first wait, another thread is answered 429
            fake.advance(seconds / 2)
            if event == "pause":
                pacer.pause(pause)
            else:
                pacer.slow_down()
            fake.advance(seconds / 2)
        else:
            fake.advance(seconds)

    pacer.acquire()
    started = fake.clock()
    pacer.acquire()

    first_gap = 60 / (pace * SAFETY_MARGIN)
    if event == "pause":
        assert fake.clock() == pytest.approx(started + first_gap / 2 + pause)
    else:
        assert fake.clock() == pytest.approx(started + first_gap / 2 + 60 / (pace * SLOW_DOWN_FACTOR * SAFETY_MARGIN))


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


def test_a_pace_below_the_floor_is_never_raised_by_a_429() -> None:
    fake, pace = FakeTime(), MIN_REQUESTS_PER_MINUTE / 2
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)

    pacer.slow_down()

    assert pacer.requests_per_minute == pace


def test_pace_recovers_after_a_quiet_spell() -> None:
    fake, pace = FakeTime(), 600
    pacer = RatePacer(pace, clock=fake.clock, sleep=fake.sleep)
    pacer.slow_down()
    lowered = pacer.requests_per_minute
    pacer.acquire()  # the first request after the 429 starts the quiet period

    fake.advance(RECOVERY_AFTER_SECONDS - 0.5)
    pacer.acquire()
    assert pacer.requests_per_minute == lowered

    fake.advance(0.5)
    pacer.acquire()
    assert pacer.requests_per_minute == pytest.approx(lowered + (pace - lowered) * RECOVERY_SHARE)

    paces = [pacer.requests_per_minute]
    while pacer.requests_per_minute < pace:
        fake.advance(RECOVERY_AFTER_SECONDS)
        pacer.acquire()
        paces.append(pacer.requests_per_minute)
    assert paces == sorted(paces)
    assert paces[-1] == pace
    assert len(paces) <= 5, "a 30 % drop is won back within a minute of quiet"


def test_a_deep_drop_recovers_within_a_minute_of_quiet() -> None:
    """Another task on the key finished: the survivor's pace, far below the limit, comes back fast."""
    schedule, now, pace = PaceSchedule(1000, now=0.0), 0.0, 1000
    for _ in range(4):  # four bursts of 429s: 24 % of the configured pace
        now += 1.0
        schedule.slow_down(now)
    assert schedule.rate == pytest.approx(pace * SLOW_DOWN_FACTOR**4)
    gap = 60 / (schedule.rate * SAFETY_MARGIN)
    seconds_at = {}
    while schedule.rate < pace and now < 600:
        schedule.reserve(now)
        now += gap
        for share in (0.9, 1.0 - RECOVERY_SNAP):
            if schedule.rate >= pace * share:
                seconds_at.setdefault(share, now)
    assert seconds_at[0.9] < 4 * RECOVERY_AFTER_SECONDS + 5
    assert seconds_at[1.0 - RECOVERY_SNAP] < 7 * RECOVERY_AFTER_SECONDS + 5


def test_quiet_time_counts_from_the_first_request_after_a_pause() -> None:
    """A long Retry-After pause is not quiet time: the pace is raised only after requests have tested it."""
    schedule = PaceSchedule(1000, now=0.0)
    schedule.pause(3 * RECOVERY_AFTER_SECONDS, now=1.0)
    schedule.slow_down(now=1.0)
    lowered = schedule.rate

    start, _, change = schedule.reserve(now=2.0)  # its start time is the end of the pause
    assert start == pytest.approx(1.0 + 3 * RECOVERY_AFTER_SECONDS)
    assert change is None
    _, _, change = schedule.reserve(now=start + RECOVERY_AFTER_SECONDS - 0.1)
    assert change is None and schedule.rate == lowered, "no recovery before a quiet period of requests"
    _, _, change = schedule.reserve(now=start + RECOVERY_AFTER_SECONDS)
    assert change is not None and schedule.rate > lowered


def test_a_pause_without_a_request_after_it_never_raises_the_pace() -> None:
    schedule = PaceSchedule(1000, now=0.0)
    schedule.slow_down(now=0.0)
    schedule.pause(5.0, now=0.0)
    lowered = schedule.rate

    _, _, change = schedule.reserve(now=100.0)  # 100 s idle after the pause: no request tested the pace
    assert change is None and schedule.rate == lowered


@pytest.mark.parametrize("pace", [0, -60])
def test_pace_must_be_positive(pace: float) -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        RatePacer(pace)


# -- what the pacer tells ----------------------------------------------------------------------------


def recording(pace: float) -> tuple[RatePacer, FakeTime, list[PaceChange]]:
    fake, changes = FakeTime(), []
    return RatePacer(pace, clock=fake.clock, sleep=fake.sleep, on_change=changes.append), fake, changes


@pytest.mark.parametrize("pace", PLAN_PACES)
def test_effective_pace_is_the_pace_after_the_safety_margin(pace: int) -> None:
    pacer, _, _ = recording(pace)
    assert pacer.effective_requests_per_minute == pytest.approx(pace * SAFETY_MARGIN)

    pacer.slow_down()
    assert pacer.effective_requests_per_minute == pytest.approx(pace * SLOW_DOWN_FACTOR * SAFETY_MARGIN)


def test_a_drop_is_told_once_per_burst_with_the_old_and_new_pace() -> None:
    pacer, fake, changes = recording(1000)

    for _ in range(5):
        pacer.slow_down()
        fake.advance(0.1)

    assert changes == [PaceChange(pytest.approx(970), pytest.approx(679), 0.0, "the API answered 429")]


def test_a_pause_is_told_when_it_starts_with_its_length() -> None:
    pacer, fake, changes = recording(1000)

    pacer.pause(4.0)
    fake.advance(1.0)
    pacer.pause(4.0)  # another thread's 429 during the pause extends it without a second line
    fake.advance(10.0)
    pacer.pause(2.0)
    pacer.pause(0.0)

    reason = "the API asked to wait (Retry-After)"
    assert changes == [
        PaceChange(pytest.approx(970), pytest.approx(970), 4.0, reason),
        PaceChange(pytest.approx(970), pytest.approx(970), 2.0, reason),
    ]


def test_a_recovery_is_told_with_the_old_and_new_pace() -> None:
    pacer, fake, changes = recording(1000)
    pacer.slow_down()
    pacer.acquire()

    fake.advance(RECOVERY_AFTER_SECONDS)
    pacer.acquire()

    assert changes[1:] == [PaceChange(pytest.approx(679), pytest.approx(824.5), 0.0, "no 429 for 10s")]


def test_nothing_is_told_at_the_floor_or_without_a_change() -> None:
    pacer, fake, changes = recording(MIN_REQUESTS_PER_MINUTE)

    for _ in range(3):
        pacer.slow_down()
        fake.advance(RECOVERY_AFTER_SECONDS)
        pacer.acquire()

    assert changes == []


def test_the_callback_runs_outside_the_lock() -> None:
    """A callback may use the pacer (here: take a start time); inside the lock it would deadlock."""
    fake, told = FakeTime(), threading.Event()
    pacer = RatePacer(1000, clock=fake.clock, sleep=fake.sleep, on_change=lambda change: uses_the_pacer())

    def uses_the_pacer() -> None:
        pacer.acquire()
        told.set()

    for event in (pacer.slow_down, lambda: pacer.pause(1.0)):
        told.clear()
        caller = threading.Thread(target=event, daemon=True)
        caller.start()
        caller.join(timeout=5)
        assert not caller.is_alive()
        assert told.is_set()
