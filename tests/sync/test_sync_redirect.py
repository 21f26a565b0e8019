"""A redirect during change-only sync: nothing counts as delivered, so the ledger records nothing and the
next run sends the changed rows (SQLite and PostgreSQL ledgers, the emulator's redirect fault)."""

from __future__ import annotations

import pytest

from airflow_provider_hindsight.exceptions import HindsightPermanentError
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.support.ledger_db import LedgerDatabase
from tests.sync.helpers import Source, assert_sent_exactly, assert_summary, bulk, point_hindsight, run, transfer

ROWS = 40
CHANGED = [3, 17, 29]


@pytest.mark.parametrize("operator", ["sql_transfer", "bulk_operator"])
def test_a_redirected_update_is_not_recorded_as_delivered(
    operator: str,
    source: Source,
    ledger_db: LedgerDatabase,
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point_hindsight(monkeypatch, hindsight_emulator)
    make = transfer if operator == "sql_transfer" else bulk
    source.fill(ROWS)
    assert run(make(source, ledger_db)).error is None  # every interview now exists: a followed GET would answer 200
    delivered = ledger_db.hashes()
    source.change(CHANGED)
    hindsight_emulator.reset_requests()
    hindsight_emulator.inject_redirect(302, method="PATCH", times=1000)

    redirected = run(make(source, ledger_db, max_workers=1))

    assert isinstance(redirected.error, HindsightPermanentError)
    assert redirected.summary["stopped"]["code"] == "stopped_redirect"
    assert redirected.summary["succeeded"] == 0
    assert [(request.method, request.status) for request in hindsight_emulator.requests] == [("PATCH", 302)]
    # Nothing recorded as delivered: the redirected row's old entry goes, as any failed row's does.
    assert ledger_db.hashes() == {key: value for key, value in delivered.items() if key != CHANGED[0]}

    hindsight_emulator.clear_faults()
    hindsight_emulator.reset_requests()
    fixed = run(make(source, ledger_db))

    assert fixed.error is None
    assert_summary(fixed.summary, succeeded=len(CHANGED), unchanged=ROWS - len(CHANGED))
    assert_sent_exactly(hindsight_emulator, source.bodies(CHANGED))
