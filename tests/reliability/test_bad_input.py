"""Bad input, through the hook and through the operator in real DAG runs, against the emulator.

Every case must end in one error that names the field and says how to fix it, and the emulator
must have received nothing. In a DAG run the task fails on its first try although it has
``retries=2``: trying the same input again cannot help.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.resources.interviews import MAX_FIELD_CHARS, UPDATE_FIELDS
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.dag_files.reliability_dags import WAREHOUSE_VALUES

from .helpers import ConnectTo, task_instance

ID = 4821
OVERSIZED = "x" * (MAX_FIELD_CHARS - len('""') + 1)
"""One character more than a field may hold as JSON (a string's JSON adds two quotes)."""
FIELD_LIMIT_FIX = (f"over the {MAX_FIELD_CHARS:,}", "Summarise it")
NOTHING_TO_UPDATE = ("give at least one of contact_context, contact_name or objective",)

BAD_IDS: list[Any] = ["12/../deals", "abc", 0, -5, 1.5, True, None, "", "4821 "]


def id_fix(bad_id: Any) -> tuple[str, ...]:
    """What the error for ``bad_id`` must say: the field, what it got and the fix."""
    if bad_id is None:  # a NULL in SQL: said in the words of SQL and of Python
        return ("interview_request_id is missing", "NULL in SQL, None in Python", "Filter such rows out")
    fix = ("interview_request_id must be a positive integer", repr(bad_id), "Pass an int or a string of digits")
    return (*fix, "strip it") if isinstance(bad_id, str) and bad_id.strip().isdigit() else fix


# Values that conf (JSON) can carry: they go through the hook and through a DAG run alike.
BODY_CASES = [
    pytest.param({}, NOTHING_TO_UPDATE, id="no-field"),
    pytest.param(dict.fromkeys(UPDATE_FIELDS), NOTHING_TO_UPDATE, id="all-fields-none"),
    pytest.param({"contact_name": 123}, ("contact_name must be a string", "str()"), id="contact_name-int"),
    pytest.param({"objective": ["Pricing"]}, ("objective must be a string", "str()"), id="objective-list"),
    pytest.param(
        {"contact_context": 42},
        ("contact_context must be a string or a mapping", "Pass prose as a str"),
        id="context-int",
    ),
    pytest.param(
        {"contact_context": ["CTO", "Closed Lost"]},
        ("contact_context must be a string or a mapping", "structured notes as a dict"),
        id="context-list",
    ),
    *(
        pytest.param({field: OVERSIZED}, (f"{field} is", *FIELD_LIMIT_FIX), id=f"{field}-oversized")
        for field in UPDATE_FIELDS
    ),
    pytest.param({"contact_context": {"notes": OVERSIZED}}, ("contact_context is", *FIELD_LIMIT_FIX), id="context-big"),
]


def circular() -> dict[str, Any]:
    context: dict[str, Any] = {"title": "CTO"}
    context["self"] = context
    return context


NOT_JSON_FIX = ("contact_context is not JSON-serialisable", "Convert dates, decimals and other objects")
NOT_JSON_CONTEXTS: dict[str, Any] = {
    **WAREHOUSE_VALUES,
    "nan": {"win_rate": math.nan},
    "circular": circular(),
    "tuple-key": {("region", "segment"): "EMEA"},
}


def assert_clear(error: BaseException, *phrases: str) -> None:
    for phrase in phrases:
        assert phrase in str(error), (phrase, str(error))


# -- through the hook ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=repr)
def test_hook_refuses_a_bad_id_before_sending(hindsight_emulator: HindsightEmulator, bad_id: Any) -> None:
    with pytest.raises(HindsightValidationError) as raised:
        HindsightHook().update_interview(bad_id, objective="Pricing")

    assert raised.value.field == "interview_request_id"
    assert_clear(raised.value, *id_fix(bad_id))
    assert hindsight_emulator.request_count == 0


@pytest.mark.parametrize(("fields", "phrases"), BODY_CASES)
def test_hook_refuses_a_bad_body_before_sending(
    hindsight_emulator: HindsightEmulator, fields: dict[str, Any], phrases: tuple[str, ...]
) -> None:
    with pytest.raises(HindsightValidationError) as raised:
        HindsightHook().update_interview(ID, **fields)

    assert_clear(raised.value, *phrases)
    assert hindsight_emulator.request_count == 0


@pytest.mark.parametrize("context", NOT_JSON_CONTEXTS.values(), ids=list(NOT_JSON_CONTEXTS))
def test_hook_refuses_a_context_json_cannot_hold(hindsight_emulator: HindsightEmulator, context: Any) -> None:
    with pytest.raises(HindsightValidationError) as raised:
        HindsightHook().update_interview(ID, contact_context=context, objective="Pricing")

    assert raised.value.field == "contact_context"
    assert_clear(raised.value, *NOT_JSON_FIX)
    assert hindsight_emulator.request_count == 0


@pytest.mark.parametrize("character", ["x", "é"])
def test_a_field_exactly_at_the_limit_is_sent_and_stored_whole(
    hindsight_emulator: HindsightEmulator, character: str
) -> None:
    at_limit = character * (MAX_FIELD_CHARS - len('""'))

    HindsightHook().update_interview(ID, contact_context=at_limit)

    assert hindsight_emulator.interview(ID)["contact_context"] == at_limit


def broken_base_urls(base_url: str) -> list[str]:
    """The emulator's base URL, broken the ways a hand-typed host gets broken."""
    port = base_url.split(":")[2].split("/")[0]
    return [
        base_url.replace("http://", "http:/"),
        base_url.split("://", 1)[1],  # no scheme, so a bare host, but with a path
        base_url.replace("/api/v1", "/api v1"),
        base_url.replace("http://", "ftp://"),
        base_url.replace(f":{port}/", ":99999/"),
    ]


NO_PASSWORD = pytest.param(lambda url: [(url, None)], ("has no API key", "in its API key field"), id="no-password")
CONNECTION_CASES: list[Any] = [
    NO_PASSWORD,
    pytest.param(
        lambda url: [(broken, "test-key") for broken in broken_base_urls(url)],
        ("is not a valid base URL", "Leave it empty"),
        id="malformed-host",
    ),
    pytest.param(
        lambda url: [("http://hindsight.example.com/api/v1", "test-key")],
        ("uses plain http", "send the API key unencrypted", "allow_insecure_http"),
        id="plain-http-remote",
    ),
]


@pytest.mark.parametrize(("connections", "phrases"), CONNECTION_CASES)
def test_hook_refuses_a_bad_connection_before_sending(
    hindsight_emulator: HindsightEmulator,
    connect_to: ConnectTo,
    connections: Callable[[str], list[tuple[str, str | None]]],
    phrases: tuple[str, ...],
) -> None:
    for host, password in connections(hindsight_emulator.base_url):
        connect_to(host, password=password)
        with pytest.raises(HindsightConfigurationError) as raised:
            HindsightHook().update_interview(ID, objective="Pricing")
        assert_clear(raised.value, "hindsight_default", *phrases)
    assert hindsight_emulator.request_count == 0


# -- through the operator, in a DAG run ---------------------------------------------------------------


def assert_failed_once_sending_nothing(dag_run: Any, emulator: HindsightEmulator) -> None:
    update = task_instance(dag_run, "update")
    assert (str(update.state), update.try_number) == ("failed", 1)
    assert emulator.request_count == 0


@pytest.mark.parametrize("bad_id", [1.5, None, ""], ids=repr)  # tests/operators runs the others through a DAG
def test_operator_refuses_a_bad_id(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str], bad_id: Any
) -> None:
    dag_run = run_dag("reliability_update", interview_request_id=bad_id, objective="Pricing")

    assert_failed_once_sending_nothing(dag_run, hindsight_emulator)
    logs = task_logs()
    assert all(phrase in logs for phrase in id_fix(bad_id))


DAG_BODY_CASES = [
    case
    for case in BODY_CASES
    if case.id in {"all-fields-none", "contact_name-int", "objective-list", "context-int", "objective-oversized"}
]


@pytest.mark.parametrize(("fields", "phrases"), DAG_BODY_CASES)
def test_operator_refuses_a_bad_body(
    run_dag: Any,
    hindsight_emulator: HindsightEmulator,
    task_logs: Callable[[], str],
    fields: dict[str, Any],
    phrases: tuple[str, ...],
) -> None:
    dag_run = run_dag("reliability_update", interview_request_id=ID, **fields)

    assert_failed_once_sending_nothing(dag_run, hindsight_emulator)
    logs = task_logs()
    assert all(phrase in logs for phrase in phrases)


@pytest.mark.parametrize("value", WAREHOUSE_VALUES)
def test_operator_refuses_a_warehouse_value_json_cannot_hold(
    run_dag: Any, hindsight_emulator: HindsightEmulator, task_logs: Callable[[], str], value: str
) -> None:
    dag_run = run_dag("reliability_update", interview_request_id=ID, contact_context_value=value)

    assert_failed_once_sending_nothing(dag_run, hindsight_emulator)
    logs = task_logs()
    assert all(phrase in logs for phrase in NOT_JSON_FIX)


@pytest.mark.parametrize(
    ("dag_id", "connections", "phrases"),
    [
        *(pytest.param("reliability_update", *case.values, id=f"update-{case.id}") for case in CONNECTION_CASES),
        pytest.param("reliability_bulk_strict", *NO_PASSWORD.values, id=f"bulk-{NO_PASSWORD.id}"),
    ],
)
def test_operators_refuse_a_bad_connection(
    run_dag: Any,
    hindsight_emulator: HindsightEmulator,
    connect_to: ConnectTo,
    task_logs: Callable[[], str],
    connections: Callable[[str], list[tuple[str, str | None]]],
    phrases: tuple[str, ...],
    dag_id: str,
) -> None:
    host, password = connections(hindsight_emulator.base_url)[0]
    connect_to(host, password=password)

    dag_run = run_dag(
        dag_id,
        interview_request_id=ID,
        objective="Pricing",
        rows=[{"interview_request_id": ID, "objective": "Pricing"}],
    )

    assert_failed_once_sending_nothing(dag_run, hindsight_emulator)
    logs = task_logs()
    assert all(phrase in logs for phrase in phrases)


# -- valid input, end to end ----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
UPDATES = st.fixed_dictionaries(
    {
        "contact_context": st.none() | st.text() | st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4),
        "contact_name": st.none() | st.text(),
        "objective": st.none() | st.text(),
    }
).filter(lambda update: any(value is not None for value in update.values()))
IDS = itertools.count(1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(updates=st.lists(UPDATES, min_size=1, max_size=4))
def test_valid_updates_land_exactly_and_leave_unsent_fields_alone(
    hindsight_emulator: HindsightEmulator, updates: list[dict[str, Any]]
) -> None:
    """Any valid sequence of partial updates: the API ends holding exactly what was sent, field by field.

    Unicode, nested objects, numbers and empty strings survive the trip; a field left ``None`` is not
    sent, so the value from an earlier update stays.
    """
    interview_id = next(IDS)
    prior = {"contact_context": "Prior notes", "contact_name": "Prior name", "objective": "Prior objective"}
    hindsight_emulator.add_interview(interview_id, **prior)
    hook = HindsightHook()
    expected = dict(prior)

    for update in updates:
        assert hook.update_interview(interview_id, **update) == {"interview_request_id": interview_id}
        expected.update({field: value for field, value in update.items() if value is not None})

    assert hindsight_emulator.interview(interview_id) == expected
