"""What a child process of the shared-budget tests and benchmark runs: one hook's requests on one key.

The child comes from a ``forkserver`` that imported this module (and so Airflow) once. It sees
exactly the ``AIRFLOW_CONN_*`` variables it is given, logs to its own file (the tests count the
budget's WARNING lines there) and writes what it did to a JSON file.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import time
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import airflow.providers.postgres.hooks.postgres  # imported once in the forkserver, not in each child
import airflow.providers.sqlite.hooks.sqlite  # noqa: F401

from airflow_provider_hindsight.exceptions import HindsightError
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.hindsight_async import HindsightAsyncHook
from tests.helpers import enter_child

CONN_ID = "hindsight_shared"
TICK_SECONDS = 0.005
TRIGGER: contextvars.ContextVar[int | None] = contextvars.ContextVar("trigger", default=None)
"""The trigger whose coroutine runs now: as the triggerer does, a line logged from it goes to that trigger's log."""


def route_trigger_lines(log: str) -> None:
    """Give each trigger its own log, ``<log>.trigger-<n>``: the lines logged from its coroutine (none from other
    threads), as Airflow's triggerer routes a trigger's lines to its deferred task's log."""

    def write(level: object, message: object) -> None:
        trigger = TRIGGER.get()
        if trigger is not None:
            with open(f"{log}.trigger-{trigger}", "a") as output:
                output.write(f"{level} {message}\n")

    try:
        import structlog
    except ImportError:  # Airflow 2: the hooks log through the standard library

        class Route(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                write(record.levelname.lower(), record.getMessage())

        route = Route()
        logging.getLogger().addHandler(route)
        hooks = logging.getLogger("airflow.task")  # Airflow 2's hooks log under it, which may not propagate
        if not hooks.propagate:
            hooks.addHandler(route)
        return

    def route(logger: object, method_name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        write(event.get("level", method_name), event.get("event"))
        return event

    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[*processors[:-1], route, processors[-1]])  # before the renderer


def _start_together(result: str) -> tuple[float, float]:
    """Say this child is ready (``<result>.ready``), wait for the parent's ``<result>.go`` (``[start_at, stop_at]``,
    wall clock) and for its start time; return both."""
    with open(f"{result}.ready", "w"):
        pass
    while not os.path.exists(f"{result}.go"):
        time.sleep(0.005)
    with open(f"{result}.go") as go:
        start_at, stop_at = json.load(go)
    if start_at > time.time():
        time.sleep(start_at - time.time())
    return float(start_at), float(stop_at)


def send_updates(
    connections: dict[str, str],
    ids: list[int],
    *,
    log: str,
    result: str,
    threads: int = 4,
    requests_per_minute: float | None = None,
) -> None:
    """PATCH ``ids`` in order from ``threads`` threads (a bulk run's workers) until they or the time run out."""
    enter_child(connections, log)
    hook = HindsightHook(CONN_ID, requests_per_minute=requests_per_minute, max_retry_wait=5)
    _ = (hook.session, hook.pacer)
    pending = iter(ids)
    outcomes: list[str] = []
    stop_at = 0.0

    def work() -> None:
        for interview_id in pending:
            if time.time() >= stop_at:
                return
            try:
                hook.update_interview(interview_id, contact_name="Shared budget")
                outcomes.append("ok")
            except HindsightError as error:
                outcomes.append(type(error).__name__)

    _, stop_at = _start_together(result)
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work) for _ in range(threads)]:
            future.result()
    permits = hook.pacer.permits
    _write(result, outcomes, hook.rate_limited_count, permits, longest_tick=0.0)


def poll_interviews(
    connections: dict[str, str],
    ids: list[int],
    *,
    log: str,
    result: str,
    triggers: int = 20,
    poll_every: float = 0.0,
    hook_each: bool = False,
) -> None:
    """``triggers`` triggers on one event loop (a triggerer), each polling one of ``ids`` every ``poll_every``
    seconds until the time runs out, with a ticker beside them that measures the longest gap between its ticks.

    ``hook_each``: each trigger has its own hook (as each deferred sensor's trigger does) and its own log
    (:func:`route_trigger_lines`)."""
    enter_child(connections, log)
    route_trigger_lines(log)
    outcomes: list[str] = []
    longest = 0.0
    stop_at = 0.0

    async def trigger(shared: HindsightAsyncHook, index: int, interview_id: int) -> None:
        TRIGGER.set(index)
        hook = HindsightAsyncHook(CONN_ID, max_retry_wait=5) if hook_each else shared
        if poll_every:  # sensors deferred at different moments poll at different moments
            await asyncio.sleep(poll_every * index / triggers)
        while time.time() < stop_at:
            try:
                await hook.aget_interview(interview_id)
                outcomes.append("ok")
            except HindsightError as error:
                outcomes.append(type(error).__name__)
            if poll_every:
                await asyncio.sleep(poll_every)
        if hook is not shared:
            await hook.aclose()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while time.time() < stop_at:
            await asyncio.sleep(TICK_SECONDS)
            now = time.perf_counter()
            longest, last = max(longest, now - last - TICK_SECONDS), now

    async def triggerer() -> HindsightAsyncHook:
        nonlocal stop_at
        hook = HindsightAsyncHook(CONN_ID, max_retry_wait=5)
        await hook.asettings()
        _ = hook.pacer
        _, stop_at = await asyncio.to_thread(_start_together, result)
        await asyncio.gather(
            ticker(), *(trigger(hook, index, interview_id) for index, interview_id in enumerate(ids[:triggers]))
        )
        await hook.aclose()
        return hook

    hook = asyncio.run(triggerer())
    _write(result, outcomes, hook.rate_limited_count, hook.pacer.permits, longest_tick=longest)


def _write(result: str, outcomes: list[str], rate_limited: int, permits: Any, *, longest_tick: float) -> None:
    store = getattr(permits, "store", None)
    summary = {
        "outcomes": {name: outcomes.count(name) for name in set(outcomes)},
        "rate_limited": rate_limited,
        "round_trips": getattr(store, "round_trips", 0),
        "store_failures": getattr(permits, "store_failures", 0),
        "longest_tick": longest_tick,
    }
    with open(result, "w") as output:
        json.dump(summary, output)
