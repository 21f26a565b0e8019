"""Fixtures of the change-only sync tests: the source, the ledger database, the Hindsight connection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.ledger_db import set_sqlite_connection

from .helpers import (
    SOURCE_CONN_ID,
    LedgerDatabase,
    Source,
    postgres_ledger,
    sqlite_ledger,
)

# -- the source: a SQLite file ----------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Source:
    """An empty SQLite source file behind ``sync_source``; ``source.fill(n)`` adds rows 1..n."""
    path = tmp_path / "source.db"
    set_sqlite_connection(monkeypatch, SOURCE_CONN_ID, path)
    return Source(SOURCE_CONN_ID, lambda: sqlite3.connect(path))


# -- the ledger's database: a SQLite file or a PostgreSQL database ------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LedgerDatabase:
    """The ledger's database behind ``sync_ledger``: a SQLite file of its own, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "ledger.db", monkeypatch)
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch)


# -- the API connection and running the operators -----------------------------------------------------
