"""The pytest fixtures users put in their own DAG tests."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_hindsight.testing import HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Callable


pytest_plugins = ["pytester"]


# --- pytest fixtures -----------------------------------------------------------------------------


def test_hindsight_emulator_fixture(hindsight_emulator: HindsightEmulator) -> None:
    connection = json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"])

    assert connection == {
        "conn_type": "hindsight",
        "host": hindsight_emulator.base_url,
        "password": "test-key",
        "extra": {"requests_per_minute": 60_000},  # no limit on the emulator: the hook need not pace
    }
    answer = requests.patch(
        f"{connection['host']}/interviews/1",
        json={"objective": "x"},
        headers={"Authorization": f"Bearer {connection['password']}"},
        timeout=5,
    )
    assert answer.json() == {"interview_request_id": 1}


def test_hindsight_emulator_factory_fixture(
    hindsight_emulator_factory: Callable[..., HindsightEmulator],
) -> None:
    default = hindsight_emulator_factory(requests_per_minute=1)  # one a minute: the second request is a 429
    other = hindsight_emulator_factory("other-key", conn_id="hindsight_other", latency=0.01)

    assert json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_DEFAULT"]) == {
        "conn_type": "hindsight",
        "host": default.base_url,
        "password": "test-key",
        "extra": {"requests_per_minute": 1},  # the hook paces at the emulator's limit
    }
    assert json.loads(os.environ["AIRFLOW_CONN_HINDSIGHT_OTHER"]) == {
        "conn_type": "hindsight",
        "host": other.base_url,
        "password": "other-key",
        "extra": {"requests_per_minute": 60_000},
    }
    headers = {"Authorization": "Bearer test-key"}
    statuses = [
        requests.patch(f"{default.base_url}/interviews/1", json={"objective": "x"}, headers=headers).status_code
        for _ in range(2)
    ]
    assert statuses == [200, 429]


def test_fixtures_clean_up_after_the_test(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", raising=False)
    pytester.makeconftest('pytest_plugins = ["airflow_provider_hindsight.testing.pytest_plugin"]')
    pytester.makepyfile(
        """
        import os, socket, pytest

        ports = []

        def test_uses_both(hindsight_emulator, hindsight_emulator_factory):
            ports.append(hindsight_emulator.port)
            ports.append(hindsight_emulator_factory(conn_id="hindsight_extra").port)
            assert "AIRFLOW_CONN_HINDSIGHT_EXTRA" in os.environ

        def test_after():
            assert "AIRFLOW_CONN_HINDSIGHT_DEFAULT" not in os.environ
            assert "AIRFLOW_CONN_HINDSIGHT_EXTRA" not in os.environ
            for port in ports:
                with pytest.raises(ConnectionRefusedError):
                    socket.create_connection(("127.0.0.1", port), timeout=1)
        """
    )

    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
