"""The errors a table of the provider raises, and their messages.

- :class:`HindsightLedgerError`, the ledger cannot be used (permanent: a missing connection, a
  permission or schema problem; the message names the connection, the table and the fix);
  :class:`HindsightLedgerBusyError` (a lock held by another session past the bound, a deadlock, a
  serialization failure) and :class:`HindsightLedgerConnectionLostError` (the connection was lost or
  terminated), both :class:`HindsightLedgerUnavailableError`, transient: Airflow's retries apply.
- what a driver's error means is the SQL connection layer's one rule,
  :func:`~airflow_provider_hindsight.sql_connection.faults.classify_database_error`;
  :class:`TransientFault` carries a transient one out of ``prepare()``'s steps to its retries.
- :class:`TableMessages`: the messages of those errors for one table, in its operator's parameter
  names, with the driver's words quoted without the connection's password.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightTransientError
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error, driver_message


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
    """The ledger's connection was lost, terminated or shut down (``DatabaseFault.LOST``)."""

    code_name = "ledger_connection_lost"


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
        return driver_message(error, password=self.secret)

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
