"""What a ledger database's error means, and the errors a ledger raises.

- :class:`HindsightLedgerError`, the ledger cannot be used (permanent: a missing connection, a
  permission or schema problem; the message names the connection, the table and the fix);
  :class:`HindsightLedgerBusyError` (a lock held by another session past the bound, a deadlock, a
  serialization failure) and :class:`HindsightLedgerConnectionLostError` (the connection was lost or
  terminated), both :class:`HindsightLedgerUnavailableError`, transient: Airflow's retries apply.
- :func:`classify_database_error`: the one rule, by SQLSTATE (psycopg 3 ``sqlstate``, psycopg2
  ``pgcode``; SQLite by its words), of what a driver's error means: a :class:`DatabaseFault`.
- :class:`TableMessages`: the messages of those errors for one table, in its operator's parameter
  names, with the driver's words quoted without the connection's password.
"""

from __future__ import annotations

import enum
import sqlite3
from typing import Any, ClassVar

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightTransientError

_MISSING_TABLE_WORDS = ("no such table", "does not exist", "doesn't exist", "not found", "unknown table")
_DUPLICATE_WORDS = ("unique", "duplicate", "primary key")


class HindsightLedgerError(HindsightConfigurationError):
    """A ledger cannot be used: nothing was sent. The message names the connection, the table and the fix."""

    def __init__(self, message: str, *, ledger_conn_id: str, ledger_table: str) -> None:
        super().__init__(message, code="invalid_ledger")
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ledger_error, (type(self), self.message, self.ledger_conn_id, self.ledger_table))


def _rebuild_ledger_error(cls: type[Any], message: str, ledger_conn_id: str, ledger_table: str) -> Any:
    return cls(message, ledger_conn_id=ledger_conn_id, ledger_table=ledger_table)


class HindsightLedgerUnavailableError(HindsightTransientError):
    """The ledger's database failed for now (a lock, a lost connection): a later try may succeed.

    Transient (``transient = True``): Airflow's task retries apply. Rows recorded before it are kept.
    """

    code_name: ClassVar[str] = "ledger_unavailable"

    def __init__(self, message: str, *, ledger_conn_id: str, ledger_table: str) -> None:
        super().__init__(message, code=self.code_name)
        self.ledger_conn_id = ledger_conn_id
        self.ledger_table = ledger_table

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_ledger_error, (type(self), self.message, self.ledger_conn_id, self.ledger_table))


class HindsightLedgerBusyError(HindsightLedgerUnavailableError):
    """Another session held a lock on the ledger table past the bound (or a deadlock or serialization failure)."""

    code_name = "ledger_busy"


class HindsightLedgerConnectionLostError(HindsightLedgerUnavailableError):
    """The ledger's connection was lost or terminated (SQLSTATE class 08, 57P01 admin shutdown, ...)."""

    code_name = "ledger_connection_lost"


class DatabaseFault(enum.Enum):
    """What a database error means for the ledger (see :func:`classify_database_error`)."""

    DUPLICATE = "duplicate key"
    """Another transaction holds a row with that key (23505, or an integrity error naming a unique key)."""
    CONFLICT = "conflict"
    """A concurrent transaction conflicted: serialization failure (40001) or deadlock (40P01)."""
    MISSING_TABLE = "missing table"
    """The table does not exist (42P01, 42S02, or the driver's words for it)."""
    BUSY = "busy"
    """A statement gave up waiting for a lock: 55P03 lock_not_available (``lock_timeout``), SQLite busy."""
    LOST = "lost connection"
    """The connection is gone: class 08, 57P01/57P02/57P03 (shutdown), a driver error without SQLSTATE."""
    PERMISSION = "permission"
    """The user may not do it, or the database is read-only: 42501, 25006, SQLite's readonly database."""

    @property
    def transient(self) -> bool:
        """Whether a later try may succeed without anyone fixing anything."""
        return self in (DatabaseFault.CONFLICT, DatabaseFault.BUSY, DatabaseFault.LOST)


_SQLSTATE_FAULTS: dict[str, DatabaseFault] = {
    "23505": DatabaseFault.DUPLICATE,
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
_SQLITE_BUSY_WORDS = ("database is locked", "database table is locked", "database schema is locked")


def sqlstate(error: BaseException) -> str | None:
    """The error's SQLSTATE: psycopg 3's ``sqlstate``, psycopg2's ``pgcode``, or ``None``."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def classify_database_error(error: BaseException) -> DatabaseFault | None:
    """What ``error`` from a ledger statement means, by SQLSTATE where the driver gives one; ``None``: other."""
    code = sqlstate(error)
    if code is not None:
        fault = _SQLSTATE_FAULTS.get(code)
        if fault is not None:
            return fault
        if code.startswith("08"):
            return DatabaseFault.LOST
    text = str(error).lower()
    if code is None and _is_integrity_error(error) and any(words in text for words in _DUPLICATE_WORDS):
        return DatabaseFault.DUPLICATE
    if isinstance(error, sqlite3.OperationalError):
        if any(words in text for words in _SQLITE_BUSY_WORDS):
            return DatabaseFault.BUSY
        if "readonly database" in text:
            return DatabaseFault.PERMISSION
    if code is None and _is_postgres_connection_error(error):
        return DatabaseFault.LOST
    if any(words in text for words in _MISSING_TABLE_WORDS):
        return DatabaseFault.MISSING_TABLE
    return None


def _is_integrity_error(error: BaseException) -> bool:
    return any(cls.__name__ == "IntegrityError" for cls in type(error).__mro__)


def _is_postgres_connection_error(error: BaseException) -> bool:
    """psycopg's or psycopg2's OperationalError or InterfaceError without SQLSTATE: the connection broke."""
    return any(
        cls.__module__.partition(".")[0] in ("psycopg", "psycopg2")
        and cls.__name__ in ("OperationalError", "InterfaceError")
        for cls in type(error).__mro__
    )


class TransientFault(Exception):
    """A transient driver error met while preparing a table, carried out to ``prepare()``'s retry loop."""

    def __init__(self, fault: DatabaseFault, error: BaseException) -> None:
        super().__init__(str(error))
        self.fault = fault
        self.error = error


def raise_if_transient(error: BaseException) -> None:
    """Raise :class:`TransientFault` when ``error`` is one a later try may not meet."""
    fault = classify_database_error(error)
    if fault is not None and fault.transient:
        raise TransientFault(fault, error) from None


def is_missing_table(error: BaseException) -> bool:
    return classify_database_error(error) is DatabaseFault.MISSING_TABLE


class TableMessages:
    """The messages of one table's errors, in its operator's words; never the connection's password.

    :param noun: what the table is, in a sentence ("ledger table", "transcripts table").
    :param conn_parameter: the operator parameter naming the connection (``ledger_conn_id``, ``sql_conn_id``).
    :param table_parameter: the operator parameter naming the table (``ledger_table``, ``table``).
    """

    def __init__(self, *, conn_id: str, table: str, noun: str, conn_parameter: str, table_parameter: str) -> None:
        self.conn_id = conn_id
        self.table = table
        self.noun = noun
        self.conn_parameter = conn_parameter
        self.table_parameter = table_parameter
        self.secret = ""
        """The connection's password, replaced by ``***`` in any driver message quoted."""

    @property
    def where(self) -> str:
        """``the ledger table 'x' on connection 'y'``."""
        return f"the {self.noun} {self.table!r} on connection {self.conn_id!r}"

    def quote(self, error: BaseException | None) -> str:
        """The driver's message, on one line, without the connection's password."""
        text = " ".join(str(error).split())[:500]
        return text.replace(self.secret, "***") if self.secret else text

    def error(self, message: str) -> HindsightLedgerError:
        return HindsightLedgerError(message, ledger_conn_id=self.conn_id, ledger_table=self.table)

    def busy(self, error: BaseException, waited: float) -> HindsightLedgerBusyError:
        return HindsightLedgerBusyError(
            f"the {self.noun} {self.table!r} on {self.conn_id!r} is locked by another session "
            f"({self.quote(error)}); gave up after waiting {waited:.1f} s. This is not a permission problem and "
            "nothing needs fixing if it passes: Airflow's retries try again, and rows recorded before are kept. If "
            "it keeps happening, find the session holding the lock (on PostgreSQL: pg_locks and pg_stat_activity).",
            ledger_conn_id=self.conn_id,
            ledger_table=self.table,
        )

    def lost(self, error: BaseException) -> HindsightLedgerConnectionLostError:
        return HindsightLedgerConnectionLostError(
            f"lost the connection to the {self.noun} {self.table!r} on {self.conn_id!r} ({self.quote(error)}): the "
            "database closed or terminated it. Airflow's retries try again, and rows recorded before are kept.",
            ledger_conn_id=self.conn_id,
            ledger_table=self.table,
        )

    def refused(self, error: BaseException, action: str) -> HindsightLedgerError:
        return self.error(
            f"cannot {action} {self.where}: {self.quote(error)}. Fix: give the connection's user SELECT, INSERT, "
            "UPDATE and DELETE on it, on a database that is not read-only (not a replica, not "
            "default_transaction_read_only)."
        )
