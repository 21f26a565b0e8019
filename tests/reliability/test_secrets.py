"""The API key stays secret: no log line, exception, XCom or rendered template holds it.

Every path a run can take is covered: success, retries (429, 5xx) that end in success, and
failures (401, 404, the retry budget spent, an unreachable host), through DAG runs with DEBUG
logging on, and through the hook for the exceptions themselves.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import traceback
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from airflow import __version__ as airflow_version

from airflow_provider_hindsight.exceptions import HindsightError
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.testing import HindsightEmulator

from .helpers import CONNECTION_MAX_RETRIES, SECRET, ConnectTo, TruncatingServer, task_instance

ID = 4821
BUDGET = 1 + CONNECTION_MAX_RETRIES
AIRFLOW_2 = airflow_version.startswith("2.")
WIRE_LOG = '"PATCH /api/v1/interviews/'
"""How urllib3's DEBUG line for each request starts: seeing it proves DEBUG output was captured."""
DAG_TEST_MASK_TRACE = re.compile(r"Sending request\s.*msg=MaskSecret\(")
"""Airflow 3's ``dag.test()`` runs tasks with an in-process supervisor whose comms log every message
at DEBUG (``InProcessSupervisorComms.send``), the secrets sent to be masked included; a real task
process does not log them. Airflow's own connection lookup sends the key that way too, so these
lines say nothing about this provider and are left out."""


@pytest.fixture
def debug_everywhere() -> Iterator[None]:
    """On Airflow 3, structlog loggers (the hook's, the task runner's) at DEBUG too, for this test.

    ``task_logs`` sets the stdlib loggers to DEBUG; Airflow 3 sets its structlog level once per process.
    """
    if AIRFLOW_2:
        yield
        return
    import structlog
    from airflow.sdk._shared.logging.structlog import LEVEL_TO_FILTERING_LOGGER

    level = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=LEVEL_TO_FILTERING_LOGGER[logging.DEBUG])
    yield
    structlog.configure(wrapper_class=level)


@pytest.fixture
def logged(task_logs: Callable[[], str], debug_everywhere: None) -> Callable[[], list[str]]:
    """Every line logged or printed so far, with DEBUG on, less the ``dag.test()`` mask trace."""

    def read() -> list[str]:
        return [line for line in task_logs().splitlines() if not DAG_TEST_MASK_TRACE.search(line)]

    return read


def xcom_texts(dag_run: Any) -> list[str]:
    """Every XCom of the run, as stored in the metadata database."""
    from airflow.utils.session import create_session

    if AIRFLOW_2:
        from airflow.models.xcom import XCom as Model
    else:
        from airflow.models.xcom import XComModel as Model
    with create_session() as session:
        rows = session.query(Model).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return [f"{row.task_id} {row.key} {row.value!r}" for row in rows]


def rendered_texts(dag_run: Any) -> dict[str, str]:
    """The rendered template fields Airflow stored for each task of the run."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return {row.task_id: json.dumps(row.rendered_fields, default=repr) for row in rows}


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def assert_no_key_in_error(error: BaseException) -> None:
    for link in chain(error):
        assert SECRET not in str(link)
        assert SECRET not in repr(link)
        assert SECRET not in repr(link.args)
    assert SECRET not in "".join(traceback.format_exception(error))
    assert SECRET.encode() not in pickle.dumps(error)  # how Airflow ships it between processes


# -- DAG runs --------------------------------------------------------------------------------------

Inject = Callable[[HindsightEmulator], None] | None

PATHS: dict[str, tuple[dict[str, Any], Inject, str]] = {
    # name: (emulator arguments, fault to inject, final state of the single-update task)
    "success": ({}, None, "success"),
    "429-then-success": ({}, lambda e: e.inject_status(429, retry_after=0, times=CONNECTION_MAX_RETRIES), "success"),
    "503-then-success": ({}, lambda e: e.inject_status(503, times=CONNECTION_MAX_RETRIES), "success"),
    "401": ({"api_key": "another-key"}, None, "failed"),  # the API knows another key than the connection's
    "404": ({"interview_ids": []}, None, "failed"),
    "retry-budget-spent": ({}, lambda e: e.inject_status(503, times=100), "failed"),
    "connection-refused": ({}, None, "failed"),  # the connection points at a closed port
}


@pytest.mark.parametrize(
    ("path", "dag_id"),
    [
        *((path, "reliability_update") for path in PATHS),
        *((path, "reliability_bulk_tolerant") for path in ("401", "retry-budget-spent")),  # failures in the summary
    ],
)
def test_the_key_stays_out_of_logs_xcom_and_rendered_fields(
    run_dag: Any,
    dag_emulator: Callable[..., HindsightEmulator],
    connect_to: ConnectTo,
    closed_port_url: str,
    logged: Callable[[], list[str]],
    path: str,
    dag_id: str,
) -> None:
    arguments, inject, final_state = PATHS[path]
    emulator = dag_emulator(**{"api_key": SECRET, **arguments}, password=SECRET)
    if inject:
        inject(emulator)
    if path == "connection-refused":
        connect_to(closed_port_url, password=SECRET, max_retries=CONNECTION_MAX_RETRIES)
    rows = [{"interview_request_id": ID, "objective": "Pricing"}, {"interview_request_id": ID + 1, "contact_name": "J"}]

    dag_run = run_dag(dag_id, interview_request_id=ID, contact_context={"title": "CTO"}, rows=rows)

    if dag_id == "reliability_bulk_tolerant" and path != "401":  # tolerated failed rows: the summary reports them
        final_state = "success"  # (a 401 stops a bulk run and fails it: the key is wrong for every row)
    assert str(task_instance(dag_run, "update").state) == final_state
    lines = logged()
    if path != "connection-refused":
        assert any(WIRE_LOG in line for line in lines)
        assert emulator.request_count > 0
    assert not [line for line in lines if SECRET in line]
    xcoms = xcom_texts(dag_run)
    assert xcoms
    assert not [xcom for xcom in xcoms if SECRET in xcom]
    rendered = rendered_texts(dag_run)
    assert "update" in rendered
    assert not [task_id for task_id, fields in rendered.items() if SECRET in fields]


# -- exceptions raised by the hook ----------------------------------------------------------------


HOOK_FAULTS: dict[str, Callable[[HindsightEmulator], None]] = {
    # name: a fault that outlasts two retries, injected into an emulator that knows SECRET
    "401": lambda e: e.inject_status(401),
    "404": lambda e: e.inject_status(404),
    "429": lambda e: e.inject_status(429, retry_after=0, times=3),
    "503": lambda e: e.inject_status(503, times=3),
    "502-html": lambda e: e.inject_status(502, html=True, times=3),
    "200-not-json": lambda e: e.inject_invalid_json(times=3),
    "timeout": lambda e: e.inject_delay(0.5, times=3),
    "dropped": lambda e: e.inject_drop(times=3),
}


@pytest.mark.parametrize("fault", HOOK_FAULTS)
def test_the_key_stays_out_of_every_error_the_hook_raises(
    hindsight_emulator_factory: Callable[..., HindsightEmulator],
    connect_to: ConnectTo,
    logged: Callable[[], list[str]],
    fault: str,
) -> None:
    emulator = hindsight_emulator_factory(SECRET)
    connect_to(emulator.base_url, password=SECRET)
    HOOK_FAULTS[fault](emulator)

    with pytest.raises(HindsightError) as raised:
        HindsightHook(max_retries=2, max_retry_wait=0.01, timeout=0.2).update_interview(ID, objective="Pricing")

    assert_no_key_in_error(raised.value)
    assert not [line for line in logged() if SECRET in line]


def test_the_key_stays_out_of_network_errors(
    closed_port_url: str,
    truncating_server: Callable[[int], TruncatingServer],
    connect_to: ConnectTo,
    logged: Callable[[], list[str]],
) -> None:
    """Refused, and broken mid-answer: failures where requests, not the API, raises the first error."""
    for url in (closed_port_url, truncating_server(3).base_url):
        connect_to(url, password=SECRET)
        with pytest.raises(HindsightError) as raised:
            HindsightHook(max_retries=2, max_retry_wait=0.01).update_interview(ID, objective="Pricing")
        assert_no_key_in_error(raised.value)
    assert not [line for line in logged() if SECRET in line]


# -- Airflow's secrets masker ----------------------------------------------------------------------


def redact(value: str) -> Any:
    if AIRFLOW_2:
        from airflow.utils.log.secrets_masker import redact as airflow_redact
    else:
        from airflow.sdk.log import redact as airflow_redact
    return airflow_redact(value)


def test_the_hook_registers_the_key_with_airflows_secrets_masker(
    hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow masks a connection's password when it loads it; the hook masks the key it uses anyway.

    The connection here is handed to the hook directly, so that only the hook can have registered
    the key. Airflow's log handlers (Airflow 2) and task-log processors (Airflow 3) apply this same
    ``redact`` to every task log line.
    """
    key = f"sk-live-{uuid.uuid4().hex}"
    connection = types.SimpleNamespace(
        conn_type="hindsight",
        host=hindsight_emulator.base_url,
        port=None,
        schema=None,
        password=key,
        extra="{}",
        extra_dejson={},
    )
    monkeypatch.setattr(HindsightHook, "get_connection", classmethod(lambda cls, conn_id: connection))
    assert redact(f"Bearer {key}") == f"Bearer {key}"

    hook = HindsightHook()
    settings = hook.settings

    assert settings.api_key == key
    assert redact(f"Bearer {key}") == "Bearer ***"
    assert key not in repr(settings)
    assert key not in str(settings)
    assert key not in repr(hook)
