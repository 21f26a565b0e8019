"""The forkserver the shared-budget tests start their child processes from."""

from __future__ import annotations

from multiprocessing.context import ForkServerContext

import pytest

from tests.budget.helpers import forkserver


@pytest.fixture(scope="module")
def context() -> ForkServerContext:
    return forkserver()
