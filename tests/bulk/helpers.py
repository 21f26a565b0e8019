"""Constants and helpers shared by these tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from tests.helpers import Executed, FakeTaskInstance

__all__ = ["Executed", "FakeTaskInstance"]

WAREHOUSE_CONN_ID = "bulk_warehouse"


class SpyCursor:
    """A DB-API cursor that records when ``fetchmany`` was called and refuses ``fetchall``."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.fetches: list[tuple[float, int]] = []
        """``(time.time(), size)`` of each ``fetchmany`` call."""
        self.closed = False

    @property
    def description(self) -> Any:
        return self._cursor.description

    def execute(self, sql: str, parameters: Any = ()) -> SpyCursor:
        self._cursor.execute(sql, parameters)
        return self

    def fetchmany(self, size: int) -> list[Any]:
        self.fetches.append((time.time(), size))
        return self._cursor.fetchmany(size)

    def fetchall(self) -> list[Any]:
        raise AssertionError("fetchall() reads the whole result into memory")

    def close(self) -> None:
        self.closed = True
        self._cursor.close()


class SpyConnection:
    """A DB-API connection whose cursors are :class:`SpyCursor` and whose ``close`` is recorded."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.cursors: list[SpyCursor] = []
        self.closed = False

    def cursor(self) -> SpyCursor:
        self.cursors.append(SpyCursor(self._connection.cursor()))
        return self.cursors[-1]

    def close(self) -> None:
        self.closed = True
        self._connection.close()
