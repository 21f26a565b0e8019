"""Fixtures of the run history tests: the history store on SQLite or a real PostgreSQL, and a Hindsight connection
to the emulator whose extras point at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ledger_db import LedgerDatabase, postgres_ledger, sqlite_ledger

from .helpers import HISTORY_CONN_ID


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LedgerDatabase:
    """The history store behind ``HISTORY_CONN_ID``: a SQLite file, then a database of the test PostgreSQL server."""
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "history.db", monkeypatch, HISTORY_CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, HISTORY_CONN_ID, sync_id="-")


@pytest.fixture
def sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LedgerDatabase:
    return sqlite_ledger(tmp_path / "history.db", monkeypatch, HISTORY_CONN_ID, sync_id="-")
