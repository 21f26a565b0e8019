"""The answers watcher on a real Airflow 3 deployment: answer to DAG run, and a ``kill -9`` of the triggerer.

What the virtual clock of ``bench_answers.py`` cannot show: Airflow's own part (the triggerer storing
the event, the scheduler starting the run on the asset) and a triggerer dying mid-watch. The
deployment (api-server, scheduler, dag-processor, triggerer; SQLite metadata; the ``LocalExecutor``;
``tests/dag_files/answers_dags.py``) starts first; the answers start only once the watcher runs (the
emulator has seen it fetch every watched id). Times are compressed: ``min_poll_interval=2``,
``batch_window=1``, contacts answering a median of 20 s after their interview starts. Interviews
start in waves, so that young interviews, fetched every round, answer all along: many events before
and after the kill. Until its wave an id is unknown to the emulator (a 404, fetched again every round).

Counted from the deployment's metadata (``asset_event``, ``dagrun_asset_event``, ``dag_run``): the
ids in the events (announced, twice, lost), and per answer the time from the answer (its interview's
start plus the completion model's delay, as the emulator completes it) to its event and to the start
of the DAG run that took the event.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import shutil
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from answer_plans import percentile
from measure import API_KEY, HERE

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.emulator.completion import CompletionModel

WAVES = 18
WAVE_SIZE = 10
WAVE_EVERY = 10.0
"""Seconds between two waves of interviews starting."""
MODEL = CompletionModel(median=20.0, sigma=0.5, never_share=1 / 3, seed=23)
KILL_AFTER = 100.0
"""Seconds from the first wave to the ``kill -9`` of the triggerer."""
RESTART_AFTER = 5.0
WATCHER_TIMEOUT = 240.0
"""Seconds to wait for the watcher's first fetches after the deployment starts."""
SETTLE = 60.0
"""Seconds after the last answer to wait for every answer's event and run."""
MIN_POLL_INTERVAL = 2.0
BATCH_WINDOW = 1.0
TAKEOVER_AFTER = 10.0
"""``[triggerer] triggerer_health_check_threshold`` (Airflow's default 30 s): a triggerer whose heartbeat is
older is dead, and another takes its triggers."""


class Fetches:
    """When the emulator answered each watched id (from its server threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.moments: list[tuple[float, int]] = []

    def __call__(self, method: str, path: str, status: int) -> None:
        tail = path.rsplit("/", 1)[-1]
        if method == "GET" and tail.isdigit():
            with self.lock:
                self.moments.append((time.time(), int(tail)))

    def ids(self) -> set[int]:
        with self.lock:
            return {key for _, key in self.moments}

    def first_after(self, start: float) -> float:
        with self.lock:
            return min((moment for moment, _ in self.moments if moment > start), default=math.nan)


def measure_deployment() -> dict[str, Any]:
    """Run the deployment through the waves, the kill and the restart; the counts and times it saw."""
    from airflow_provider_hindsight.testing.deployment import AirflowDeployment

    ids = list(range(1, WAVES * WAVE_SIZE + 1))
    fetches = Fetches()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warehouse = root / "warehouse.db"
        with closing(sqlite3.connect(warehouse)) as database:
            database.execute("CREATE TABLE deals (interview_request_id BIGINT)")
            database.executemany("INSERT INTO deals VALUES (?)", [(key,) for key in ids])
            database.commit()
        dags = root / "dags"
        dags.mkdir()
        shutil.copy(HERE.parent / "tests" / "dag_files" / "answers_dags.py", dags)
        with HindsightEmulator(API_KEY, completion=MODEL, interview_ids=[], on_request=fetches) as emulator:
            name, value = emulator.connection_env("hindsight_default")
            env = {
                name: value,
                "AIRFLOW_CONN_ANSWERS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
                "HINDSIGHT_TEST_ANSWERS_OUT": str(root / "announced.jsonl"),
                "HINDSIGHT_TEST_ANSWERS_POLL_INTERVAL": f"{MIN_POLL_INTERVAL:g}",
                "HINDSIGHT_TEST_ANSWERS_BATCH_WINDOW": f"{BATCH_WINDOW:g}",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": f"{TAKEOVER_AFTER:g}",
            }
            with AirflowDeployment(root / "home", dags, env=env) as airflow:
                airflow.migrate()
                airflow.start()
                started = time.time()
                if not wait_for(lambda: fetches.ids() >= set(ids), WATCHER_TIMEOUT):
                    return {"watcher_seen": False, "triggerer_log": airflow.log("triggerer")[-3000:]}
                watcher_after = time.time() - started
                answered_at: dict[int, float] = {}

                def start_wave(wave: int) -> None:
                    for key in ids[wave * WAVE_SIZE : (wave + 1) * WAVE_SIZE]:
                        emulator.add_interview(key, status="sent")
                        delay = MODEL.answer_delay(key)
                        if delay is not None:
                            answered_at[key] = time.time() + delay

                first_wave = time.time()
                plan: list[tuple[float, str, Callable[[], None]]] = [
                    (first_wave + wave * WAVE_EVERY, f"wave {wave}", partial(start_wave, wave)) for wave in range(WAVES)
                ]
                plan.append((first_wave + KILL_AFTER, "kill", partial(airflow.kill, "triggerer")))
                plan.append((first_wave + KILL_AFTER + RESTART_AFTER, "restart", partial(airflow.start, "triggerer")))
                done: dict[str, float] = {}
                for moment, step, action in sorted(plan, key=lambda item: item[0]):
                    time.sleep(max(moment - time.time(), 0.0))
                    action()
                    done[step] = time.time()
                time.sleep(max(max(answered_at.values()) - time.time(), 0.0))
                metadata = airflow.home / "airflow.db"
                wait_for(lambda: _settled(metadata, set(answered_at)), SETTLE)
                rows = _events(metadata)
    return {
        "watcher_seen": True,
        "watcher_after": watcher_after,
        "back_after_kill": fetches.first_after(done["kill"]) - done["kill"],
        **_counts(rows, answered_at, done["kill"], done["restart"]),
    }


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether ``condition`` held within ``seconds`` (checked every half second)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


Event = tuple[int, float, list[int], int | None, float | None]
"""An asset event with a DAG run that took it: ``(event id, stored at, ids, run id, run started at)``."""


def _events(metadata: Path) -> list[Event]:
    """Each asset event with each DAG run that took it (a run may take several events)."""
    with closing(sqlite3.connect(metadata, timeout=10)) as database:
        rows = database.execute(
            "SELECT e.id, e.timestamp, e.extra, r.id, r.start_date FROM asset_event AS e "
            "LEFT JOIN dagrun_asset_event AS l ON l.event_id = e.id "
            "LEFT JOIN dag_run AS r ON r.id = l.dag_run_id ORDER BY e.id"
        ).fetchall()
    return [
        (event_id, _moment(stored), json.loads(extra)["payload"]["interview_request_ids"], run_id, _moment(started))
        for event_id, stored, extra, run_id, started in rows
    ]


def _settled(metadata: Path, answered: set[int]) -> bool:
    """Every answer in an event, and every event taken by a DAG run that started."""
    try:
        rows = _events(metadata)
    except sqlite3.Error:  # the metadata is being written: read again
        return False
    announced = {key for _, _, keys, _, _ in rows for key in keys}
    return answered <= announced and all(started is not None for *_, started in rows)


def _moment(value: Any) -> Any:
    """A metadata time (UTC, naive in SQLite) as POSIX seconds; ``None`` stays ``None``."""
    if value is None:
        return None
    return datetime.datetime.fromisoformat(str(value)).replace(tzinfo=datetime.timezone.utc).timestamp()


def _counts(
    rows: list[Event],
    answered_at: dict[int, float],
    killed_at: float,
    restarted_at: float,
) -> dict[str, Any]:
    stored: dict[int, float] = {}
    run_started: dict[int, float] = {}
    runs: set[int] = set()
    announced: Counter[int] = Counter()
    for event_id, stored_at, keys, run_id, started in rows:
        if event_id not in stored:
            stored[event_id] = stored_at
            announced.update(keys)
        if run_id is not None and started is not None:
            runs.add(run_id)
            run_started[event_id] = min(run_started.get(event_id, started), started)
    first_event: dict[int, int] = {}
    for event_id, _, keys, _, _ in rows:
        for key in keys:
            first_event.setdefault(key, event_id)
    to_event = sorted(stored[first_event[key]] - at for key, at in answered_at.items() if key in first_event)
    to_run = sorted(
        run_started[first_event[key]] - at
        for key, at in answered_at.items()
        if key in first_event and first_event[key] in run_started
    )
    event_to_run = sorted(run_started[event_id] - stored[event_id] for event_id in run_started)
    repeated = [stored[first_event[key]] for key, count in announced.items() if count > 1]
    moments = sorted(stored.values())
    gaps = sorted(
        later - earlier for earlier, later in itertools.pairwise(moments) if later < killed_at or earlier > restarted_at
    )
    return {
        "events": len(stored),
        "events_before_kill": sum(1 for moment in stored.values() if moment < killed_at),
        "events_after_restart": sum(1 for moment in stored.values() if moment >= restarted_at),
        "answers_before_kill": sum(1 for at in answered_at.values() if at < killed_at),
        "answers_after_kill": sum(1 for at in answered_at.values() if at >= killed_at),
        "runs": len(runs),
        "event_gap_p50": percentile(gaps, 0.5),
        "answered": len(answered_at),
        "announced": len(announced),
        "twice": len(repeated),
        "repeated_before_kill": killed_at - max(repeated, default=math.nan),
        "lost": len(set(answered_at) - set(announced)),
        "answer_to_event": _spread(to_event),
        "answer_to_run": _spread(to_run),
        "event_to_run": _spread(event_to_run),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "max": max(values, default=math.nan)}


def deployment_report(numbers: dict[str, Any]) -> str:
    """The deployment's paragraph for the numbers page."""
    setting = (
        f"On a real Airflow 3 deployment (SQLite metadata, the `LocalExecutor`, one machine), times compressed: "
        f"{WAVES * WAVE_SIZE} interviews starting in {WAVES} waves {WAVE_EVERY:g} s apart, two thirds of the contacts "
        f"answering a median of {MODEL.median:g} s after the start, `min_poll_interval={MIN_POLL_INTERVAL:g}`, "
        f"`batch_window={BATCH_WINDOW:g}`; the triggerer killed with `kill -9` {KILL_AFTER:g} s after the first wave "
        f"and started again {RESTART_AFTER:g} s later; a triggerer is taken for dead after {TAKEOVER_AFTER:g} s "
        "without a heartbeat (`triggerer_health_check_threshold`, 30 s by default)."
    )
    if not numbers["watcher_seen"]:
        return f"\n{setting} The watcher did not fetch within {WATCHER_TIMEOUT:g} s of the start: nothing measured.\n"
    rows = [
        ("the watcher's first fetches, after the deployment started", f"{numbers['watcher_after']:.0f} s"),
        ("answers before the kill / after it", f"{numbers['answers_before_kill']} / {numbers['answers_after_kill']}"),
        (
            "events before the kill / after the restart",
            f"{numbers['events_before_kill']} / {numbers['events_after_restart']}",
        ),
        ("between two events, the watcher running: p50", f"{numbers['event_gap_p50']:.1f} s"),
        ("DAG runs on the asset", f"{numbers['runs']}"),
        ("the watcher fetching again, after the kill", f"{numbers['back_after_kill']:.0f} s"),
        (
            "answers announced / twice / lost",
            f"{numbers['announced']} of {numbers['answered']} / {numbers['twice']} / {numbers['lost']}",
        ),
        (
            "a batch announced twice: first stored before the kill",
            f"{numbers['repeated_before_kill']:.1f} s" if numbers["twice"] else "none",
        ),
        ("answer to event stored: p50 / p95 / max", _seconds(numbers["answer_to_event"])),
        ("event stored to DAG run start: p50 / p95 / max", _seconds(numbers["event_to_run"])),
        ("answer to DAG run start: p50 / p95 / max", _seconds(numbers["answer_to_run"])),
    ]
    table = "\n".join(f"| {label} | {value} |" for label, value in rows)
    return f"\n{setting}\n\n| | |\n| --- | ---: |\n{table}\n"


def _seconds(spread: dict[str, float]) -> str:
    return f"{spread['p50']:.1f} / {spread['p95']:.1f} / {spread['max']:.1f} s"
