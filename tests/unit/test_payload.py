"""Ids and request bodies (``payload.py``): what is accepted, what is refused, and the exact bytes sent."""

from __future__ import annotations

import json
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from airflow_provider_hindsight.bulk.rows import interview_update_from_row
from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.inputs import reject_rendered_python_literal
from airflow_provider_hindsight.resources.interviews import (
    MAX_FIELD_CHARS,
    MAX_INTERVIEW_REQUEST_ID,
    UPDATE_FIELDS,
    build_interview_update,
    validate_interview_request_id,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
contexts = st.none() | st.text() | st.dictionaries(st.text(max_size=10), json_values, max_size=5)
texts = st.none() | st.text()


def is_canonical_positive_decimal(text: str) -> bool:
    """``text`` is how Python writes some positive int: ASCII digits, no sign, padding or leading zero."""
    return text.isascii() and text.isdigit() and int(text) > 0 and str(int(text)) == text


# -- interview ids -------------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=MAX_INTERVIEW_REQUEST_ID))
def test_any_positive_int_and_its_decimal_string_round_trip(number: int) -> None:
    assert validate_interview_request_id(number) == number
    assert validate_interview_request_id(str(number)) == number


@given(st.integers(min_value=MAX_INTERVIEW_REQUEST_ID + 1))
def test_ids_beyond_a_database_integer_are_refused(number: int) -> None:
    for value in (number, str(number)):
        with pytest.raises(HindsightValidationError, match="interview_request_id"):
            validate_interview_request_id(value)


@given(st.text() | st.from_regex(r"[ +-]?0*[0-9]{1,6}(\.[0-9])?[ \n]?", fullmatch=True))
def test_text_that_is_not_a_canonical_positive_decimal_is_refused(text: str) -> None:
    assume(not is_canonical_positive_decimal(text))
    with pytest.raises(HindsightValidationError, match="interview_request_id"):
        validate_interview_request_id(text)


@given(st.integers(max_value=0) | st.booleans() | st.floats() | st.none() | st.lists(st.integers(min_value=1)))
def test_non_positive_and_non_int_values_are_refused(value: object) -> None:
    with pytest.raises(HindsightValidationError, match="interview_request_id"):
        validate_interview_request_id(value)


def test_padded_id_refusal_says_to_strip_it() -> None:
    with pytest.raises(HindsightValidationError, match="whitespace"):
        validate_interview_request_id(" 4821\n")


# -- bodies --------------------------------------------------------------------------------------


@settings(deadline=None)
@given(contact_context=contexts, contact_name=texts, objective=texts)
def test_payload_holds_exactly_the_fields_given(contact_context: Any, contact_name: Any, objective: Any) -> None:
    fields = {"contact_context": contact_context, "contact_name": contact_name, "objective": objective}
    expected = {field: value for field, value in fields.items() if value is not None}
    assume(expected)

    update = build_interview_update(4821, **fields)

    assert update.interview_request_id == 4821
    assert json.loads(update.payload.decode("utf-8")) == expected
    assert update.body == expected


@pytest.mark.parametrize(
    "mapping",
    [OrderedDict(title="CTO"), MappingProxyType({"title": "CTO"})],
    ids=["OrderedDict", "MappingProxyType"],
)
def test_any_mapping_is_sent_as_a_json_object(mapping: Any) -> None:
    update = build_interview_update(1, contact_context=mapping)
    assert json.loads(update.payload) == {"contact_context": dict(mapping)}


def test_prose_with_braces_is_sent_as_a_json_string() -> None:
    prose = "Met at {conference}; prefers {email} over calls."
    assert json.loads(build_interview_update(1, contact_context=prose).payload) == {"contact_context": prose}


@pytest.mark.parametrize("character", ["x", "é"])
def test_field_size_limit_is_counted_in_json_characters(character: str) -> None:
    at_limit = character * (MAX_FIELD_CHARS - len('""'))
    assert json.loads(build_interview_update(1, objective=at_limit).payload) == {"objective": at_limit}

    with pytest.raises(HindsightValidationError, match="objective"):
        build_interview_update(1, objective=at_limit + character)


def test_circular_context_is_refused() -> None:
    context: dict[str, Any] = {"title": "CTO"}
    context["self"] = context
    with pytest.raises(HindsightValidationError, match="contact_context"):
        build_interview_update(1, contact_context=context)


@pytest.mark.parametrize("field", ["contact_name", "objective"])
def test_text_that_is_not_valid_unicode_is_refused_naming_the_field(field: str) -> None:
    with pytest.raises(HindsightValidationError, match=field):
        build_interview_update(1, **{field: "Caf\udce9 owner"})


# -- bulk rows -----------------------------------------------------------------------------------


def test_row_becomes_an_update() -> None:
    row = {"interview_request_id": "12", "contact_name": "Jane", "objective": None}

    update = interview_update_from_row(row)

    assert update.interview_request_id == 12
    assert json.loads(update.payload) == {"contact_name": "Jane"}


@pytest.mark.parametrize(
    ("row", "named"),
    [
        (["interview_request_id", 1], "updates"),
        ("interview_request_id=1", "updates"),
        ({"interview_request_id": 1, "objective": "x", "deal_id": 9, "amount": 1}, "amount"),
        ({"objective": "x"}, "interview_request_id"),
        ({"interview_request_id": None, "objective": "x"}, "interview_request_id"),
        ({"interview_request_id": 1}, "contact_context"),
        ({"interview_request_id": 1, **dict.fromkeys(UPDATE_FIELDS)}, "objective"),
        ({"interview_request_id": 1, "contact_name": 7}, "contact_name"),
    ],
)
def test_bad_rows_are_refused_naming_the_problem(row: object, named: str) -> None:
    with pytest.raises(HindsightValidationError, match=named):
        interview_update_from_row(row)


# -- the non-native Jinja trap -------------------------------------------------------------------


@pytest.mark.parametrize(
    "rendered",
    [
        "{'title': 'CTO'}",
        "  {'title': 'CTO', 'champion': None, 'active': True}\n",
        "[{'interview_request_id': 1, 'objective': 'x'}]",
    ],
)
def test_rendered_python_literal_is_refused_with_the_fix(rendered: str) -> None:
    with pytest.raises(HindsightValidationError) as info:
        reject_rendered_python_literal("contact_context", rendered)

    message = str(info.value)
    assert "contact_context" in message
    assert "XComArg" in message
    assert "render_template_as_native_obj" in message


@pytest.mark.parametrize(
    "value",
    [
        '{"title": "CTO"}',
        "[1, 2, 3]",
        "Met at {conference}; prefers {email} over calls.",
        "{not python}",
        "",
        {"title": "CTO"},
        None,
    ],
)
def test_json_prose_and_objects_pass(value: object) -> None:
    assert reject_rendered_python_literal("contact_context", value) is None


@pytest.mark.parametrize(
    "rendered",
    ["{'arr': Decimal('1200.50'), 'title': 'CTO'}", "{'closed_at': datetime.date(2024, 1, 5), 'title': 'CTO'}"],
    ids=["Decimal", "date"],
)
def test_rendered_warehouse_row_is_refused(rendered: str) -> None:
    with pytest.raises(HindsightValidationError, match="XComArg"):
        reject_rendered_python_literal("contact_context", rendered)
