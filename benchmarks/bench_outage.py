"""Benchmark: a 500-id sensor, deferred and in poke mode, through a 30-second outage of the API, with the defaults.

    python benchmarks/bench_outage.py                  # about 8 minutes
    python benchmarks/bench_outage.py --outage 10      # one shorter outage

A Hindsight emulator (in this process, 1,000 requests a minute, 50 ms per answer) holds ``--ids``
e-mailed interviews (default 500). A sensor waits on all of them with every default
(``poke_interval`` 300 s, ``max_consecutive_failures`` 5, the connection's 5 retries a request):
deferred (the trigger's rounds, in a fresh Python process) and in poke mode (the sensor's ``poke``
through the sync hook, in another). Once ``--outage-after`` ids (default 100) have been answered,
every ``GET`` answers 503 for ``--outage`` seconds (default 30, then again 60: longer than the
hook's retries wait, about 31 s), then the API is back.

Measured for each: the first round (its length, the ids answered, the requests answered 503, how
it ended) and the next round (run at once, its clock moved ``poke_interval`` ahead): the failed
rounds in a row, and whether the wait goes on. Target: it goes on. Prints the numbers and writes
them to ``docs/_generated/outage-numbers.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import types
from typing import Any

from measure import API_KEY, ROOT, progress, run_child

from airflow_provider_hindsight.testing import HindsightEmulator

NUMBERS_PAGE = ROOT / "docs" / "_generated" / "outage-numbers.md"
LIMIT = 1000
LATENCY = 0.05
POKE_INTERVAL = 300.0
"""The sensor's default: the next round starts this long after the first (the child moves its clock)."""


# -- the child: one sensor, two rounds ---------------------------------------------------------------


class Counted:
    """Answers and failures of one round, by wrapping the hook's ``GET``."""

    def __init__(self) -> None:
        self.answered = 0
        self.failed = 0

    def round(self) -> dict[str, int]:
        counts = {"answered": self.answered, "failed_polls": self.failed}
        self.answered = self.failed = 0
        return counts


def child(task: dict[str, Any]) -> dict[str, Any]:
    connection = {"conn_type": "hindsight", "host": task["base_url"], "password": API_KEY}
    os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"] = json.dumps({**connection, "extra": {"requests_per_minute": LIMIT}})
    from airflow_provider_hindsight.exceptions import HindsightError

    ids = list(range(1, task["ids"] + 1))
    counted = Counted()
    rounds: list[dict[str, Any]] = []
    offset = [0.0]

    def record(started: float, ending: str | None, failures_in_a_row: int) -> None:
        rounds.append(
            {
                **counted.round(),
                "seconds": round(time.monotonic() - started, 1),
                "ending": ending,
                "failed_rounds_in_a_row": failures_in_a_row,
            }
        )

    if task["mode"] == "deferred":
        from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
        from airflow_provider_hindsight.triggers.interview import HindsightInterviewTrigger

        get = HindsightAsyncHook.aget_interview

        async def counted_get(self: HindsightAsyncHook, interview_request_id: int | str) -> dict[str, Any]:
            try:
                answer = await get(self, interview_request_id)
            except HindsightError:
                counted.failed += 1
                raise
            counted.answered += 1
            return answer

        HindsightAsyncHook.aget_interview = counted_get  # type: ignore[method-assign]
        trigger = HindsightInterviewTrigger(interview_request_ids=ids)
        trigger.clock = lambda: time.time() + offset[0]

        async def main() -> None:
            hook = trigger.make_hook()
            watch = trigger.new_watch()
            await hook.asettings()
            try:
                for _ in range(2):
                    started = time.monotonic()
                    event = await trigger._round(hook, watch)
                    ending = None if event is None else event["error"]["message"]
                    record(started, ending, watch.consecutive_failures)
                    if event is not None:
                        return
                    offset[0] += POKE_INTERVAL  # the next round, poke_interval later
            finally:
                await hook.aclose()

        asyncio.run(main())
    else:
        from airflow_provider_hindsight.hooks.hindsight import HindsightHook
        from airflow_provider_hindsight.sensors import interview
        from airflow_provider_hindsight.sensors.interview import HindsightInterviewSensor

        sync_get = HindsightHook.get_interview

        def counted_sync_get(self: HindsightHook, interview_request_id: int | str, **kwargs: Any) -> dict[str, Any]:
            try:
                answer = sync_get(self, interview_request_id, **kwargs)
            except HindsightError:
                counted.failed += 1
                raise
            counted.answered += 1
            return answer

        HindsightHook.get_interview = counted_sync_get  # type: ignore[method-assign]
        interview.time = types.SimpleNamespace(time=lambda: time.time() + offset[0])  # type: ignore[assignment]
        sensor = HindsightInterviewSensor(task_id="wait", interview_request_ids=ids, deferrable=False, mode="poke")
        for _ in range(2):
            started = time.monotonic()
            try:
                sensor.poke({})  # type: ignore[arg-type]
            except HindsightError as error:
                record(started, error.message, sensor._watch.consecutive_failures if sensor._watch else 0)
                break
            record(started, None, sensor._watch.consecutive_failures if sensor._watch else 0)
            offset[0] += POKE_INTERVAL
    return {"rounds": rounds}


# -- the parent --------------------------------------------------------------------------------------


def run(emulator: HindsightEmulator, mode: str, seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    emulator.clear_faults()
    emulator.reset_requests()
    outage: dict[str, float] = {}
    done = threading.Event()

    def break_the_api() -> None:
        while not done.wait(0.05):
            if sum(1 for r in emulator.requests if r.method == "GET" and r.status == 200) >= args.outage_after:
                break
        outage["began"] = time.monotonic()
        emulator.inject_status(503, times=10**9, method="GET")
        done.wait(seconds)
        emulator.clear_faults()
        outage["ended"] = time.monotonic()

    breaker = threading.Thread(target=break_the_api, daemon=True)
    breaker.start()
    try:
        result = run_child(__file__, {"mode": mode, "base_url": emulator.base_url, "ids": args.ids})
    finally:
        done.set()
        breaker.join()
    result["answered_503"] = sum(1 for r in emulator.requests if r.status == 503)
    result["outage_seconds"] = round(outage.get("ended", 0.0) - outage.get("began", 0.0), 1)
    return result


def write_numbers(args: argparse.Namespace, runs: dict[tuple[str, float], dict[str, Any]]) -> str:
    lines = [
        f"One sensor on {args.ids} e-mailed interviews with every default (poke_interval 300 s, "
        "max_consecutive_failures 5, 5 retries a request), against an emulator at "
        f"{LIMIT:,} requests a minute and {LATENCY * 1000:.0f} ms an answer. After {args.outage_after} answers, every "
        "GET answers 503 for the outage's length. The second round runs poke_interval later (its clock moved ahead).",
        "",
        "| mode | outage | requests answered 503 | round 1: length, answered, failed polls | round 2: answered, "
        "failed polls | failed rounds in a row (of 5) | the wait |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (mode, _), result in runs.items():
        rounds = result["rounds"]
        first = rounds[0]
        second = rounds[1] if len(rounds) > 1 else {"answered": 0, "failed_polls": 0}
        ending = next((r["ending"] for r in rounds if r["ending"]), None)
        lines.append(
            f"| {mode} | {result['outage_seconds']:.0f} s | {result['answered_503']} | {first['seconds']:.0f} s, "
            f"{first['answered']}, {first['failed_polls']} | {second['answered']}, {second['failed_polls']} | "
            f"{max(r['failed_rounds_in_a_row'] for r in rounds)} | "
            f"{'ended: ' + ending if ending else 'goes on'} |"
        )
    text = "\n".join(lines) + "\n"
    NUMBERS_PAGE.write_text(text)
    return text


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=500)
    parser.add_argument("--outage", type=float, nargs="+", default=[30.0, 60.0])
    parser.add_argument("--outage-after", type=int, default=100)
    args = parser.parse_args()
    runs: dict[tuple[str, float], dict[str, Any]] = {}
    with HindsightEmulator(API_KEY, requests_per_minute=LIMIT, latency=LATENCY) as emulator:
        for interview_id in range(1, args.ids + 1):
            emulator.add_interview(interview_id, status="sent")
        for seconds in args.outage:
            for mode in ("deferred", "poke"):
                progress(f"{mode}: {args.ids} ids through a {seconds:.0f} s outage")
                runs[mode, seconds] = run(emulator, mode, seconds, args)
    print(write_numbers(args, runs))


if __name__ == "__main__":
    main()
