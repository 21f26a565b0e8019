"""The emulator fixture of these tests: a fresh emulator per test, with the key ``KEY``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator

from .helpers import KEY


@pytest.fixture
def emulator() -> Iterator[HindsightEmulator]:
    with HindsightEmulator(api_key=KEY) as running:
        yield running
