"""Connection parsing as a pure function: a table of connection fields and the settings they give."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightConfigurationError
from airflow_provider_hindsight.get_provider_info import get_provider_info
from airflow_provider_hindsight.hooks.connection import parse_connection
from airflow_provider_hindsight.hooks.connection_form import CONNECTION_FIELDS

KEY = "sk-parse-secret"

# (host, port, extra, hook arguments) -> (base_url, requests_per_minute, paced_by_default, timeout, max_retries)
PARSED: list[tuple[str | None, int | None, dict[str, Any], dict[str, Any], tuple[str, float, bool, float, int]]] = [
    (None, None, {}, {}, ("https://app.usehindsight.com/api/v1", 60.0, True, 30.0, 5)),
    ("", None, {"plan": "growth"}, {}, ("https://app.usehindsight.com/api/v1", 300.0, False, 30.0, 5)),
    ("api.example.com", None, {"plan": " Enterprise "}, {}, ("https://api.example.com/api/v1", 1000.0, False, 30.0, 5)),
    ("api.example.com", 8443, {}, {}, ("https://api.example.com:8443/api/v1", 60.0, True, 30.0, 5)),
    ("http://127.0.0.1:9321/api/v1/", None, {}, {}, ("http://127.0.0.1:9321/api/v1", 60.0, True, 30.0, 5)),
    (
        "http://localhost:9321/api/v1",
        None,
        {"timeout": "2.5", "max_retries": "0"},
        {},
        ("http://localhost:9321/api/v1", 60.0, True, 2.5, 0),
    ),
    (
        "http://[::1]:9321/api/v1",
        None,
        {"requests_per_minute": 120, "plan": "growth"},
        {},
        ("http://[::1]:9321/api/v1", 120.0, False, 30.0, 5),
    ),
    (
        "http://10.0.0.5/api/v1",
        None,
        {"allow_insecure_http": "true"},
        {},
        ("http://10.0.0.5/api/v1", 60.0, True, 30.0, 5),
    ),
    (
        None,
        None,
        {"plan": "growth", "timeout": 10},
        {"requests_per_minute": 30.0, "timeout": 3.0, "max_retries": 1},
        ("https://app.usehindsight.com/api/v1", 30.0, False, 3.0, 1),
    ),
]


@pytest.mark.parametrize(("host", "port", "extra", "arguments", "expected"), PARSED)
def test_connection_fields_give_these_settings(
    host: str | None, port: int | None, extra: dict[str, Any], arguments: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    settings = parse_connection("hindsight_default", host=host, port=port, password=KEY, extra=extra, **arguments)

    assert (
        settings.base_url,
        settings.requests_per_minute,
        settings.paced_by_default,
        settings.timeout,
        settings.max_retries,
    ) == expected
    assert settings.api_key == KEY
    assert KEY not in repr(settings)


REFUSED: list[tuple[str | None, str | None, dict[str, Any], str]] = [
    (None, None, {}, "has no API key"),
    (None, KEY, {"plan": "platinum"}, "plan 'platinum' is not one of essentials, growth, enterprise"),
    (None, KEY, {"timeout": 0}, "timeout must be a positive number"),
    (None, KEY, {"requests_per_minute": "fast"}, "requests_per_minute must be a positive number"),
    (None, KEY, {"max_retries": -1}, "max_retries must be a whole number of 0 or more"),
    ("http://api.example.com/api/v1", KEY, {}, "would send the API key unencrypted"),
    ("ftp://api.example.com", KEY, {}, "is not a valid base URL"),
    ("api.example.com/api/v1", KEY, {}, "is not a valid base URL"),
    ("http://127.0.0.1:port/api/v1", KEY, {}, "is not a valid base URL"),
]


@pytest.mark.parametrize(("host", "password", "extra", "says"), REFUSED)
def test_bad_connection_fields_are_refused_naming_the_connection(
    host: str | None, password: str | None, extra: dict[str, Any], says: str
) -> None:
    with pytest.raises(HindsightConfigurationError) as raised:
        parse_connection("my_hindsight", host=host, port=None, password=password, extra=extra)

    assert says in str(raised.value)
    assert "my_hindsight" in str(raised.value) or "must be" in str(raised.value)
    assert raised.value.code == "invalid_connection"


def test_a_bare_host_is_remembered_as_such_for_tls_hints() -> None:
    bare = parse_connection("c", host="127.0.0.1", port=9321, password=KEY, extra={})
    full = parse_connection("c", host="http://127.0.0.1:9321/api/v1", port=None, password=KEY, extra={})

    assert (bare.base_url, bare.host_without_scheme) == ("https://127.0.0.1:9321/api/v1", True)
    assert (full.host, full.host_without_scheme, full.is_loopback) == ("127.0.0.1:9321", False, True)


def test_both_connection_forms_come_from_one_description_of_the_fields() -> None:
    (connection_type,) = get_provider_info()["connection-types"]
    conn_fields = connection_type["conn-fields"]

    assert list(conn_fields) == [field.name for field in CONNECTION_FIELDS]
    assert conn_fields["plan"]["schema"] == {"type": ["string", "null"], "enum": ["essentials", "growth", "enterprise"]}
    assert conn_fields["timeout"]["schema"]["type"] == ["number", "null"]
    assert conn_fields["requests_per_minute"]["schema"]["type"] == ["integer", "null"]
    assert connection_type["ui-field-behaviour"]["placeholders"]["timeout"] == "30"
