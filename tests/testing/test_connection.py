"""``HindsightEmulator.connection()`` and ``connection_env()``: the Airflow connection that points at it."""

from __future__ import annotations

import json

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.testing.emulator import UNLIMITED_PACE
from airflow_provider_hindsight.testing.pytest_plugin import UNLIMITED_PACE as PLUGIN_PACE

from .helpers import KEY


def test_without_a_limit_the_pace_is_fast(emulator: HindsightEmulator) -> None:
    assert emulator.connection() == {
        "conn_id": "hindsight_default",
        "conn_type": "hindsight",
        "host": emulator.base_url,
        "password": KEY,
        "extra": {"requests_per_minute": UNLIMITED_PACE},
    }
    assert UNLIMITED_PACE == PLUGIN_PACE == 60_000


@pytest.mark.parametrize(("limit", "pace"), [(300, 300), (300.0, 300), (1.5, 1.5)])
def test_the_pace_is_the_emulators_own_limit(limit: float, pace: float) -> None:
    with HindsightEmulator(api_key=KEY, requests_per_minute=limit) as emulator:
        assert emulator.requests_per_minute == limit
        assert emulator.connection("other")["extra"] == {"requests_per_minute": pace}
        assert emulator.connection("other")["conn_id"] == "other"


def test_an_explicit_pace_wins() -> None:
    with HindsightEmulator(api_key=KEY, requests_per_minute=300) as emulator:
        assert emulator.connection(requests_per_minute=1000)["extra"] == {"requests_per_minute": 1000}


def test_connection_env_is_the_airflow_variable(emulator: HindsightEmulator) -> None:
    name, value = emulator.connection_env("hindsight_Staging")

    assert name == "AIRFLOW_CONN_HINDSIGHT_STAGING"
    expected = emulator.connection("hindsight_Staging")
    del expected["conn_id"]  # Airflow takes the id from the variable's name and refuses it in the JSON
    assert json.loads(value) == expected


def test_airflow_reads_the_connection(emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.connection import Connection

    name, value = emulator.connection_env("hindsight_emu", requests_per_minute=120)
    monkeypatch.setenv(name, value)

    connection = Connection.from_json(value, conn_id="hindsight_emu")
    assert (connection.conn_type, connection.host, connection.password) == ("hindsight", emulator.base_url, KEY)
    assert connection.extra_dejson == {"requests_per_minute": 120}

    built = Connection(**emulator.connection("hindsight_emu"))  # the dict form carries its id
    assert (built.conn_id, built.host, built.extra_dejson) == (
        "hindsight_emu",
        emulator.base_url,
        {"requests_per_minute": UNLIMITED_PACE},
    )


def test_a_connection_needs_a_started_emulator() -> None:
    with pytest.raises(RuntimeError, match="not been started"):
        HindsightEmulator().connection()
