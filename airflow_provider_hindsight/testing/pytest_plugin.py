"""pytest fixtures that run the Hindsight API emulator and point an Airflow connection at it.

Enable them in your project's root ``conftest.py``::

    pytest_plugins = ["airflow_provider_hindsight.testing.pytest_plugin"]

then ask for ``hindsight_emulator`` (or ``hindsight_emulator_factory``) in a test: the connection
``hindsight_default`` (an ``AIRFLOW_CONN_*`` environment variable) points at the emulator for the
duration of the test, so hooks and operators talk to it unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_hindsight.testing.emulator import UNLIMITED_PACE, HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["UNLIMITED_PACE", "hindsight_emulator", "hindsight_emulator_factory"]


@pytest.fixture
def hindsight_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[HindsightEmulator]:
    """A running ``HindsightEmulator(api_key="test-key")``, with ``hindsight_default`` pointing at it.

    Example::

        def test_update(hindsight_emulator):
            HindsightHook().update_interview(4821, objective="Pricing")
            assert hindsight_emulator.interview(4821)["objective"] == "Pricing"
    """
    with HindsightEmulator(api_key="test-key") as emulator:
        monkeypatch.setenv(*emulator.connection_env("hindsight_default"))
        yield emulator


@pytest.fixture
def hindsight_emulator_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., HindsightEmulator]]:
    """Start emulators with custom settings; each call points ``conn_id`` at the new emulator.

    The connection (``emulator.connection_env(conn_id)``) is paced at the emulator's
    ``requests_per_minute`` (the plan's limit), or at ``UNLIMITED_PACE`` when it has none.

    Takes ``HindsightEmulator``'s arguments plus ``conn_id="hindsight_default"``; all emulators stop
    when the test ends. Example::

        def test_rate_limited(hindsight_emulator_factory):
            emulator = hindsight_emulator_factory(requests_per_minute=300, rate_window=1.0)
            ...
    """
    started: list[HindsightEmulator] = []

    def start(api_key: str = "test-key", *, conn_id: str = "hindsight_default", **kwargs: Any) -> HindsightEmulator:
        emulator = HindsightEmulator(api_key, **kwargs).start()
        started.append(emulator)
        monkeypatch.setenv(*emulator.connection_env(conn_id))
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
