"""A connection of another type (``http``) works, but says so once: it is not paced as the user chose."""

from __future__ import annotations

import json

import pytest

from .helpers import API_KEY, BASE_URL, LogRecorder, MakeHook


@pytest.mark.parametrize(
    ("extra", "pace", "default_words"),
    [({}, "60", True), ({"plan": "growth"}, "300", False)],
)
def test_a_connection_of_another_type_gets_one_warning_naming_type_and_pace(
    monkeypatch: pytest.MonkeyPatch,
    make_hook: MakeHook,
    hook_logs: LogRecorder,
    extra: dict[str, str],
    pace: str,
    default_words: bool,
) -> None:
    connection = {"conn_type": "http", "host": BASE_URL, "password": API_KEY, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))
    hook = make_hook()

    hook.settings  # noqa: B018
    hook.settings  # noqa: B018  (read once, warned once)

    (warning,) = hook_logs.at(30)
    assert "'hindsight_default' is of type 'http', not 'hindsight'" in warning
    assert f"paces at {pace} requests a minute" in warning
    assert ("sets neither plan nor requests_per_minute" in warning) is default_words
    assert API_KEY not in warning
    assert hook_logs.at(20) == []  # the warning says the pace: no second line about it


def test_a_hindsight_connection_gets_no_warning(
    monkeypatch: pytest.MonkeyPatch, make_hook: MakeHook, hook_logs: LogRecorder
) -> None:
    connection = {"conn_type": "hindsight", "host": BASE_URL, "password": API_KEY, "extra": {"plan": "growth"}}
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))

    make_hook().settings  # noqa: B018

    assert hook_logs.at(30) == []
