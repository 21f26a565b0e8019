"""Fixtures of the create-once tests: the ledger's database (SQLite or PostgreSQL) behind ``create_ledger``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ledger_db import LedgerDatabase, postgres_ledger, sqlite_ledger

from .helpers import LEDGER_CONN_ID


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LedgerDatabase:
    """The interview ledger's database: a SQLite file of its own, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "ledger.db", monkeypatch, LEDGER_CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, LEDGER_CONN_ID, sync_id="-")


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LedgerDatabase:
    """A SQLite ledger database only, for tests whose point is not the database."""
    return sqlite_ledger(tmp_path / "ledger.db", monkeypatch, LEDGER_CONN_ID, sync_id="-")
