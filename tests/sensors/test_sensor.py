"""``HindsightInterviewSensor`` in real DAG runs (``dag.test()`` runs the deferred trigger inline) and alone."""

from __future__ import annotations

import datetime
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightNotFoundError,
    HindsightTransientError,
    HindsightValidationError,
)
from airflow_provider_hindsight.sensors.interview import HindsightInterviewSensor
from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.triggers.interview import HindsightInterviewTrigger
from tests.helpers import task_states, xcom_value


def gets(emulator: HindsightEmulator) -> dict[int, list[float]]:
    """When each interview was polled."""
    polls: dict[int, list[float]] = {}
    for request in emulator.requests:
        if request.method == "GET":
            polls.setdefault(int(request.path.rsplit("/", 1)[1]), []).append(request.time)
    return polls


@pytest.fixture
def emulator(hindsight_emulator: HindsightEmulator) -> Iterator[HindsightEmulator]:
    """Three interviews, each completed by a helper thread once it has been polled unfinished."""
    ids = (4821, 4822, 4823)
    for interview_id in ids:
        hindsight_emulator.add_interview(interview_id, status="created", contact_name="Ana", objective="Lost to Acme")
    stop = threading.Event()

    def complete_when_polled() -> None:
        left = set(ids)
        while left and not stop.wait(0.02):
            for interview_id in left & set(gets(hindsight_emulator)):
                hindsight_emulator.complete(interview_id)
                left.discard(interview_id)

    helper = threading.Thread(target=complete_when_polled, daemon=True)
    helper.start()
    yield hindsight_emulator
    stop.set()
    helper.join()


def test_deferrable_sensor_waits_in_the_trigger_and_returns_the_statuses(
    run_dag: Any, emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    dag_run = run_dag("sensor_deferrable", ids=[4821, "4822", 4823])

    assert task_states(dag_run) == {"wait": "success"}
    assert xcom_value(dag_run, "wait") == {"4821": "completed", "4822": "completed", "4823": "completed"}
    polls = gets(emulator)
    assert set(polls) == {4821, 4822, 4823}
    for moments in polls.values():
        assert len(moments) >= 2  # seen unfinished first: it really waited
        assert all(b - a >= 0.3 for a, b in itertools.pairwise(moments))
    logs = task_logs()
    assert "Deferring: waiting for 3 interviews" in logs
    # Ids due within the same round are polled together: as many polls of each id, one line a round, not one an id
    # (Airflow 2 writes each trigger line to the task log twice, so the rounds are counted at the emulator).
    assert len({len(moments) for moments in polls.values()}) == 1
    assert "Polled 3 of 3 due interviews" in logs and "Polled 1 of" not in logs and "Polled 2 of" not in logs
    assert "**Paige:**" not in logs  # never a transcript


def test_deferrable_sensor_times_out_at_the_deadline(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    hindsight_emulator.add_interview(7, status="sent")
    dag_run = run_dag("sensor_deferrable_timeout", ids=[7])

    assert task_states(dag_run) == {"wait": "failed"}
    assert "Short of 'completed' at the deadline: 7" in task_logs()  # timed out, waiting or (a slow start) at once
    assert gets(hindsight_emulator).keys() == {7}  # it looked at least once either way


def test_deferrable_sensor_fails_on_a_404_naming_the_id(
    run_dag: Any, emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    dag_run = run_dag("sensor_deferrable", ids=[4821, 999])

    assert task_states(dag_run) == {"wait": "failed"}
    assert "interview 999 was not found" in task_logs()


def test_poke_mode_with_ids_from_an_upstream_task(run_dag: Any, emulator: HindsightEmulator) -> None:
    dag_run = run_dag("sensor_poke", ids=[4821, 4822])

    assert task_states(dag_run) == {"ids": "success", "wait": "success"}
    assert xcom_value(dag_run, "wait") == {"4821": "completed", "4822": "completed"}
    for moments in gets(emulator).values():
        assert all(b - a >= 0.3 for a, b in itertools.pairwise(moments))


def sensor(**kwargs: Any) -> HindsightInterviewSensor:
    kwargs.setdefault("interview_request_ids", [1])
    return HindsightInterviewSensor(task_id=f"s{abs(hash(repr(kwargs)))}", **kwargs)


@pytest.mark.parametrize(
    ("value", "expected"),
    [([4821, "4822"], [4821, 4822]), ("[4821, 4822]", [4821, 4822]), ((7, 7, 8), [7, 8]), ("[]", None)],
)
def test_ids_are_a_list_or_a_json_list(value: Any, expected: list[int] | None) -> None:
    if expected is None:
        with pytest.raises(HindsightValidationError, match="empty"):
            sensor(interview_request_ids=value).ids()
    else:
        assert sensor(interview_request_ids=value).ids() == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("['4821', '4822']", "render_template_as_native_obj"),
        (4821, r"Wrap a single id in a list"),
        ("4821", "not a JSON list"),
        ([4821, "48 22"], "interview_request_id must be a positive integer"),
        (list(range(1, 502)), "501 ids, over the 500"),
    ],
)
def test_bad_ids_are_refused_before_any_request(value: Any, match: str) -> None:
    with pytest.raises(HindsightValidationError, match=match):
        sensor(interview_request_ids=value).ids()


@pytest.mark.parametrize(
    ("kwargs", "field", "match"),
    [
        ({"poke_interval": 600, "max_poll_interval": 300}, "max_poll_interval", r"at least poke_interval \(600 s\)"),
        ({"poll_age_factor": -1}, "poll_age_factor", "must be a number >= 0"),
        ({"max_poll_interval": "a day"}, "max_poll_interval", "positive number of seconds"),
    ],
)
def test_bad_polling_plan_arguments_are_refused_naming_the_argument(
    kwargs: dict[str, Any], field: str, match: str
) -> None:
    with pytest.raises(HindsightValidationError, match=match) as raised:
        sensor(**kwargs)
    assert raised.value.field == field


def test_target_status_is_sent_or_completed() -> None:
    with pytest.raises(HindsightValidationError, match="target_status"):
        sensor(target_status="created")


class FakeTi:
    def __init__(self, start: datetime.datetime) -> None:
        self.start_date = start


def test_the_deadline_is_the_first_start_plus_timeout_handed_over_absolute(
    hindsight_emulator: HindsightEmulator,
) -> None:
    hindsight_emulator.add_interview(1, status="completed")
    hindsight_emulator.add_interview(2, status="sent")
    start = datetime.datetime(2026, 5, 15, 10, 0, tzinfo=datetime.timezone.utc)
    waiting = sensor(interview_request_ids=[1, 2], timeout=3600, deferrable=True)
    with pytest.raises(AirflowSensorTimeout, match="passed before it could defer: 1 of 2 interviews reached"):
        waiting.execute({"ti": FakeTi(start)})  # type: ignore[arg-type]  # that start is long gone: one look
    assert sorted(gets(hindsight_emulator)) == [1, 2] and hindsight_emulator.request_count == 2
    assert waiting.deadline({"ti": FakeTi(start)}) == start.timestamp() + 3600  # type: ignore[arg-type]

    deferred: list[Any] = []
    waiting.defer = lambda **kwargs: deferred.append(kwargs)  # type: ignore[method-assign]
    now = datetime.datetime.now(datetime.timezone.utc)
    waiting.execute({"ti": FakeTi(now)})  # type: ignore[arg-type]
    (deferral,) = deferred
    trigger = deferral["trigger"]
    assert isinstance(trigger, HindsightInterviewTrigger)
    assert trigger.serialize()[1]["deadline"] == now.timestamp() + 3600
    assert deferral["method_name"] == "execute_complete"


def test_a_sensor_started_past_its_deadline_succeeds_when_its_one_look_finds_every_answer(
    hindsight_emulator: HindsightEmulator,
) -> None:
    for interview_id in (1, 2):
        hindsight_emulator.add_interview(interview_id, status="completed")
    late = datetime.datetime(2026, 5, 15, 10, 0, tzinfo=datetime.timezone.utc)  # a worker that started long after

    statuses = sensor(interview_request_ids=[1, 2], timeout=60, deferrable=True).execute({"ti": FakeTi(late)})  # type: ignore[arg-type]

    assert statuses == {"1": "completed", "2": "completed"}
    assert hindsight_emulator.request_count == 2


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (
            {"status_code": 404, "code": "not_found", "message": "interview 9 was not found", "transient": False},
            HindsightNotFoundError,
        ),
        (
            {"status_code": 401, "code": "unauthorized", "message": "refused the key", "transient": False},
            HindsightAuthError,
        ),
        ({"status_code": 503, "code": None, "message": "5 polls in a row", "transient": True}, HindsightTransientError),
    ],
)
def test_error_events_become_typed_failures(error: dict[str, Any], raised: type[Exception]) -> None:
    with pytest.raises(raised, match=error["message"]):
        sensor().execute_complete({}, {"status": "error", "statuses": {}, "error": error})  # type: ignore[arg-type]


def test_a_timeout_event_raises_sensor_timeout_counting_what_got_there() -> None:
    with pytest.raises(AirflowSensorTimeout, match="0 of 1 interviews"):
        sensor().execute_complete({}, {"status": "timeout", "statuses": {"1": "sent"}, "error": None})  # type: ignore[arg-type]
    event = {"status": "timeout", "statuses": {"1": "completed", "2": "created"}, "error": None}
    with pytest.raises(AirflowSensorTimeout, match="1 of 2 interviews reached 'sent'"):
        sensor(interview_request_ids=[1, 2], target_status="sent").execute_complete({}, event)  # type: ignore[arg-type]


def test_poke_polls_the_due_ids_and_keeps_what_reached_the_target(hindsight_emulator: HindsightEmulator) -> None:
    for interview_id in (1, 2):
        hindsight_emulator.add_interview(interview_id, status="sent")
    waiting = sensor(interview_request_ids=[1, 2], deferrable=False, mode="poke", poke_interval=1)

    def poke_when_due() -> Any:
        watch = waiting._watch
        while watch is not None and not watch.schedule(time.time()).due:
            time.sleep(0.01)  # until the plan says an id is due
        return waiting.poke({})  # type: ignore[arg-type]

    first = poke_when_due()
    assert (first.is_done, first.xcom_value) == (False, None)
    assert waiting.poke({}).is_done is False  # type: ignore[arg-type]  # nothing due yet: no request
    assert len(gets(hindsight_emulator)[1]) == 1
    hindsight_emulator.complete(1)
    assert poke_when_due().is_done is False
    hindsight_emulator.complete(2)
    done = poke_when_due()
    assert (done.is_done, done.xcom_value) == (True, {"1": "completed", "2": "completed"})
    assert waiting.poke({}).is_done is True  # type: ignore[arg-type]
    polls = gets(hindsight_emulator)
    assert len(polls[1]) == 2  # unfinished, then completed: never polled again
    assert len(polls[2]) in (2, 3)  # polled with 1, or on its own when due later


def test_poke_waits_out_a_retry_after_longer_than_the_hook_waits(hindsight_emulator: HindsightEmulator) -> None:
    for interview_id in (1, 2):
        hindsight_emulator.add_interview(interview_id, status="sent")
    hindsight_emulator.inject_status(429, retry_after=600, method="GET")  # past the hook's longest wait (60 s)
    waiting = sensor(interview_request_ids=[1, 2], deferrable=False, mode="poke", poke_interval=1)

    assert waiting.poke({}).is_done is False  # type: ignore[arg-type]
    assert hindsight_emulator.request_count == 1  # the API asked to wait: the round asks about no more ids
    assert waiting.poke({}).is_done is False  # type: ignore[arg-type]
    assert hindsight_emulator.request_count == 1  # nor does the next poke, within the 600 s
    assert waiting._watch is not None and waiting._watch.consecutive_failures == 0  # a 429 is not a failure


def test_poke_fails_permanently_on_a_refused_key_naming_the_connection(
    hindsight_emulator_factory: Callable[..., HindsightEmulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = hindsight_emulator_factory(api_key="right-key")
    emulator.add_interview(1, status="sent")
    connection = json.loads(emulator.connection_env()[1])
    connection["password"] = "wrong-key"
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    with pytest.raises(HindsightAuthError, match="connection 'hindsight_default'"):
        sensor(interview_request_ids=[1], deferrable=False).poke({})  # type: ignore[arg-type]


def test_deferred_and_rescheduled_sensors_poll_on_the_plan_and_succeed_on_timeout(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    for interview_id in (7, 17):
        hindsight_emulator.add_interview(interview_id, status="sent")  # never answers
    for interview_id in (8, 18):
        hindsight_emulator.add_interview(interview_id, status="completed")
    dag_run = run_dag("sensor_succeed_on_timeout", deferrable=[7, 8], reschedule=[17, 18])

    assert task_states(dag_run) == {
        "wait_deferrable": "success",
        "report_deferrable": "success",
        "wait_reschedule": "success",
        "report_reschedule": "success",
    }
    for name, (pending, done) in {"deferrable": (7, 8), "reschedule": (17, 18)}.items():
        statuses = {str(pending): "sent", str(done): "completed"}
        assert xcom_value(dag_run, f"wait_{name}") == statuses
        assert xcom_value(dag_run, f"report_{name}") == statuses  # downstream gets what came back
    logs = task_logs()
    assert "Short of 'completed' at the deadline: 7" in logs and "Short of 'completed' at the deadline: 17" in logs
    assert "1 of 2 interviews reached 'completed'; succeeding with the statuses seen" in logs
    polls = gets(hindsight_emulator)
    assert len(polls[8]) == len(polls[18]) == 1  # completed at its first poll: never polled again
    for pending in (7, 17):
        gaps = [later - earlier for earlier, later in itertools.pairwise(polls[pending])]
        assert all(gap >= 0.3 for gap in gaps)  # poke_interval is the shortest interval
        assert max(gaps) >= 1.5  # then the interval grows with the interview's age (a flat 0.3 s would not)
        assert len(polls[pending]) <= 12  # 8 s at a flat 0.3 s would be about 26 polls


def test_timeout_logs_the_last_statuses_before_it_fails(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    hindsight_emulator.add_interview(7, status="sent")
    dag_run = run_dag("sensor_deferrable_timeout", ids=[7])

    assert task_states(dag_run) == {"wait": "failed"}
    logs = task_logs()
    assert logs.index("Last statuses: {'7': 'sent'}") < logs.index("0 of 1 interviews reached 'completed'")


def test_reschedule_mode_keeps_its_watch_between_pokes(run_dag: Any, hindsight_emulator: HindsightEmulator) -> None:
    hindsight_emulator.add_interview(4821, status="completed")
    hindsight_emulator.add_interview(4822, status="sent")
    stop = threading.Event()

    def complete_after_three_polls() -> None:
        while not stop.wait(0.02):
            if len(gets(hindsight_emulator).get(4822, [])) >= 3:
                hindsight_emulator.complete(4822)
                return

    helper = threading.Thread(target=complete_after_three_polls, daemon=True)
    helper.start()
    try:
        dag_run = run_dag("sensor_reschedule", ids=[4821, 4822])
    finally:
        stop.set()
        helper.join()

    assert task_states(dag_run) == {"wait": "success"}
    assert xcom_value(dag_run, "wait") == {"4821": "completed", "4822": "completed"}
    polls = gets(hindsight_emulator)
    assert len(polls[4821]) == 1  # completed at the first poke: the later pokes (new processes) know it
    assert len(polls[4822]) >= 4  # three unfinished, then completed
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(polls[4822]))  # the plan's times survive reschedules


MODES = ("deferrable", "poke", "reschedule")
MANY_IDS = list(range(101, 141))


@pytest.fixture
def outage_emulator(hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch) -> HindsightEmulator:
    """Forty interviews e-mailed (``sent``) and the connection ``hindsight_sensor_outage`` without hook retries."""
    for interview_id in MANY_IDS:
        hindsight_emulator.add_interview(interview_id, status="sent")
    connection = hindsight_emulator.connection("hindsight_sensor_outage")
    connection["extra"]["max_retries"] = 0
    del connection["conn_id"]
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_SENSOR_OUTAGE", json.dumps(connection))
    return hindsight_emulator


def failed_gets(emulator: HindsightEmulator) -> list[float]:
    return [request.time for request in emulator.requests if request.method == "GET" and request.status == 503]


@pytest.mark.parametrize("mode", MODES)
def test_an_outage_in_the_middle_of_a_many_id_wait_does_not_fail_the_sensor(
    mode: str, run_dag: Any, outage_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    """The API goes down after every id was polled once, for two rounds (pokes) of the sensor, then comes back."""
    stop = threading.Event()

    def outage() -> None:
        while not stop.wait(0.02) and set(gets(outage_emulator)) != set(MANY_IDS):
            pass  # until the first round has polled every id
        outage_emulator.inject_status(503, times=100_000, method="GET")
        while not stop.wait(0.02):
            failed = failed_gets(outage_emulator)
            if any(later - earlier > 0.5 for earlier, later in itertools.pairwise(failed)):
                # two rounds failed: rounds are a second apart, the polls of one round go out together
                outage_emulator.clear_faults()
                for interview_id in MANY_IDS:
                    outage_emulator.complete(interview_id)
                return

    helper = threading.Thread(target=outage, daemon=True)
    helper.start()
    try:
        dag_run = run_dag(f"sensor_outage_{mode}", ids=MANY_IDS)
    finally:
        stop.set()
        helper.join()

    assert task_states(dag_run) == {"wait": "success"}
    assert xcom_value(dag_run, "wait") == {str(interview_id): "completed" for interview_id in MANY_IDS}
    assert failed_gets(outage_emulator)  # the outage did hit the wait
    logs = task_logs()
    assert "(1 of 3 failed rounds in a row)" in logs and "(2 of 3 failed rounds in a row)" in logs
    assert "3 rounds of polls in a row failed" not in logs


@pytest.mark.parametrize("mode", MODES)
def test_max_consecutive_failures_failed_rounds_in_a_row_fail_the_sensor_retryably(
    mode: str, run_dag: Any, outage_emulator: HindsightEmulator, task_logs: Callable[[], str]
) -> None:
    outage_emulator.inject_status(503, times=100_000, method="GET")

    dag_run = run_dag(f"sensor_outage_{mode}", ids=MANY_IDS)

    assert task_states(dag_run) == {"wait": "failed"}
    logs = task_logs()
    assert "3 rounds of polls in a row failed after the hook's retries" in logs
    assert "(2 of 3 failed rounds in a row)" in logs
    if mode != "deferrable":  # a failed poll ends its poke: one request a round, not forty
        assert len(failed_gets(outage_emulator)) == 3
