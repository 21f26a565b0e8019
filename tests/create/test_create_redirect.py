"""A redirected create (SQLite and PostgreSQL ledgers, the emulator's redirect fault): nothing is created or
recorded as created, no follow-up GET goes out, and a run after the host is fixed creates each row once."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightPermanentError
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.support.ledger_db import LedgerDatabase
from tests.sync.helpers import run

from .helpers import counts, creator, email, key, point_hindsight, posts, rows, states


@pytest.fixture
def emulator(hindsight_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> HindsightEmulator:
    emulator = hindsight_emulator_factory()
    point_hindsight(monkeypatch, emulator, max_retries=2, timeout=1)
    return emulator


@pytest.mark.parametrize("status", [302, 303])
def test_a_redirected_create_creates_nothing_and_is_sent_again_once_fixed(
    emulator: HindsightEmulator, ledger_db: LedgerDatabase, status: int
) -> None:
    emulator.inject_redirect(status, method="POST", times=1000)

    redirected = run(creator(rows(range(1, 11)), ledger_db, max_workers=1))

    assert isinstance(redirected.error, HindsightPermanentError)
    assert redirected.summary["stopped"]["code"] == "stopped_redirect"
    total, created, _, failed, unknown = counts(redirected.summary)
    assert (total, created, failed, unknown) == (10, 0, 10, 0)
    assert [(request.method, request.status) for request in emulator.requests] == [("POST", status)]
    assert emulator.created_interviews() == []
    assert states(ledger_db) == {}  # the claim was released: the POST was answered with a redirect, not created

    emulator.clear_faults()
    emulator.reset_requests()
    fixed = run(creator(rows(range(1, 11)), ledger_db))

    assert fixed.error is None
    assert counts(fixed.summary) == (10, 10, 0, 0, 0)
    assert posts(emulator) == {email(n): 1 for n in range(1, 11)}
    assert states(ledger_db) == {key(n): "created" for n in range(1, 11)}
