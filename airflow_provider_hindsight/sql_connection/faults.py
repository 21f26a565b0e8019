"""What a database driver's error means, for every table the provider keeps: the one rule.

:func:`classify_database_error` gives a :class:`DatabaseFault` (or ``None``: another error). The
error's SQLSTATE decides where the driver gives one (psycopg 3 and other drivers' ``sqlstate``,
psycopg2's ``pgcode``), from one table (:data:`SQLSTATE_FAULTS`, class 08 aside); the words of
SQLite's and MySQL's messages decide where it gives none, or only a whole class (``23000``,
``HY000``). The ledgers and the budget each decide what to do about a fault.

:func:`driver_message` is a driver's message as the provider quotes it: on one line, shortened, and
without the connection's password.
"""

from __future__ import annotations

import enum

from airflow_provider_hindsight.sql_connection.session import POSTGRES_DRIVERS, driver_of

MESSAGE_LIMIT = 500
"""Characters of a driver's message quoted in an error."""


class DatabaseFault(enum.Enum):
    """What a database error means (see :func:`classify_database_error`)."""

    DUPLICATE = "duplicate key"
    """Another transaction holds a row with that key (23505, or an integrity error naming a unique key)."""
    ALREADY_EXISTS = "already exists"
    """The table (or its row type) exists already: 42P07, 42710, 42S01; two sessions creating one table at once."""
    CONFLICT = "conflict"
    """A concurrent transaction conflicted: serialization failure (40001) or deadlock (40P01, MySQL's)."""
    MISSING_TABLE = "missing table"
    """The table does not exist (42P01, 42S02, or the driver's words for it)."""
    BUSY = "busy"
    """A statement gave up waiting for a lock: 55P03 (``lock_timeout``), SQLite busy, MySQL's lock wait timeout."""
    LOST = "lost connection"
    """The connection is gone: class 08, 57P01/57P02/57P03 (shutdown), a psycopg error without SQLSTATE."""
    PERMISSION = "permission"
    """The user may not do it, or the database is read-only: 42501, 25006, SQLite's readonly database."""

    @property
    def transient(self) -> bool:
        """Whether a later try may succeed without anyone fixing anything."""
        return self in (DatabaseFault.CONFLICT, DatabaseFault.BUSY, DatabaseFault.LOST)


SQLSTATE_FAULTS: dict[str, DatabaseFault] = {
    "23505": DatabaseFault.DUPLICATE,
    "42P07": DatabaseFault.ALREADY_EXISTS,  # duplicate_table
    "42710": DatabaseFault.ALREADY_EXISTS,  # duplicate_object: the table's row type, made by another session
    "42S01": DatabaseFault.ALREADY_EXISTS,  # base table exists (ODBC, MySQL)
    "40001": DatabaseFault.CONFLICT,
    "40P01": DatabaseFault.CONFLICT,
    "42P01": DatabaseFault.MISSING_TABLE,
    "42S02": DatabaseFault.MISSING_TABLE,
    "55P03": DatabaseFault.BUSY,
    "57P01": DatabaseFault.LOST,
    "57P02": DatabaseFault.LOST,
    "57P03": DatabaseFault.LOST,
    "42501": DatabaseFault.PERMISSION,
    "25006": DatabaseFault.PERMISSION,
}
"""The one table of SQLSTATEs; any other code of class 08 (connection exception) is :attr:`DatabaseFault.LOST`."""

_FAULT_WORDS: tuple[tuple[DatabaseFault, tuple[str, ...]], ...] = (
    (DatabaseFault.BUSY, ("database is locked", "database table is locked", "database schema is locked")),
    (DatabaseFault.BUSY, ("lock wait timeout exceeded",)),  # MySQL 1205
    (DatabaseFault.CONFLICT, ("deadlock found",)),  # MySQL 1213
    (DatabaseFault.PERMISSION, ("readonly database", "--read-only option", "command denied")),
    (DatabaseFault.LOST, ("server has gone away", "lost connection to")),  # MySQL 2006, 2013
    (DatabaseFault.ALREADY_EXISTS, ("already exists",)),
    (DatabaseFault.MISSING_TABLE, ("no such table", "does not exist", "doesn't exist", "unknown table", "not found")),
)
"""SQLite's and MySQL's words, for errors without a specific SQLSTATE (first match wins)."""
_DUPLICATE_WORDS = ("unique", "duplicate", "primary key")
"""An integrity error naming a unique key (SQLite's ``UNIQUE constraint failed``, MySQL's ``Duplicate entry``)."""


def sqlstate(error: BaseException) -> str | None:
    """The error's SQLSTATE: psycopg 3's (and others') ``sqlstate``, psycopg2's ``pgcode``, or ``None``."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) and code else None


def fault_of_sqlstate(code: str | None) -> DatabaseFault | None:
    """What the SQLSTATE ``code`` means (``None``: nothing the provider acts on)."""
    if code is None:
        return None
    if code.startswith("08"):
        return DatabaseFault.LOST
    return SQLSTATE_FAULTS.get(code)


def classify_database_error(error: BaseException) -> DatabaseFault | None:
    """What ``error`` from a table's statement means; ``None``: another error (see the module's docstring)."""
    code = sqlstate(error)
    if code is not None and not code.endswith("000"):
        return fault_of_sqlstate(code)
    text = str(error).lower()
    if _is_integrity_error(error):
        return DatabaseFault.DUPLICATE if any(words in text for words in _DUPLICATE_WORDS) else None
    if code is None and _is_postgres_connection_error(error):
        return DatabaseFault.LOST
    for fault, words in _FAULT_WORDS:
        if any(word in text for word in words):
            return fault
    return None


def _is_integrity_error(error: BaseException) -> bool:
    return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)


def _is_postgres_connection_error(error: BaseException) -> bool:
    """psycopg's or psycopg2's OperationalError or InterfaceError without SQLSTATE: the connection broke."""
    return driver_of(error) in POSTGRES_DRIVERS and any(
        cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(error).__mro__
    )


def driver_message(error: BaseException | None, *, password: str = "", limit: int = MESSAGE_LIMIT) -> str:
    """The driver's message on one line, at most ``limit`` characters, the connection's password as ``***``."""
    text = str(error)
    if password:
        text = text.replace(password, "***")
    return " ".join(text.split())[:limit]
