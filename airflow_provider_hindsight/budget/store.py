"""The shared budget's table on an Airflow SQL connection (``budget_conn_id``), one lease per transaction.

One row per budget (``member = '*'``) holds the key's shared schedule
(:class:`~airflow_provider_hindsight.pace.PaceState`, times in seconds on the wall clock);
one row per process that took a lease holds when it last did (``seen``), so that the fair share
counts the processes that want requests. A lease is one transaction that locks the budget's row
(``SELECT ... FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite, which has one writer at a time), counts
the processes seen in the last :data:`~.share.ACTIVE_SECONDS` in the same statement, takes the start
times and writes the row back: three or four statements and a commit.

The SQL is the budget's own, portable (``CREATE TABLE IF NOT EXISTS``, ``SELECT``, ``UPDATE``,
``INSERT``): the budget sits below the hooks and the ledgers and imports neither. The table is
created on first use (``CREATE TABLE IF NOT EXISTS``; a process that loses the race to create it
finds it made). Lock waits are bounded (:data:`LOCK_WAIT_MS`, or the role's shorter ``lock_timeout``), so a
stuck store makes a lease fail fast instead of holding a request back. What a driver's error means, the
session's bounds and the quoting of the driver's message are the SQL connection layer's
(:mod:`airflow_provider_hindsight.sql_connection`), shared with the ledgers."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_hindsight.budget.share import ACTIVE_SECONDS, FORGET_SECONDS, Grant, grant_size, take_grant
from airflow_provider_hindsight.pace import PaceState
from airflow_provider_hindsight.sql_connection import sql_hook
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error, driver_message
from airflow_provider_hindsight.sql_connection.session import bound_waits, is_sqlite

BUDGET_ROW = "*"
"""``member`` of a budget's own row; a process's row has its member id (32 hex digits)."""
LOCK_WAIT_MS = 2_000
"""How long a lease waits for another process's lock before it fails (and the process paces alone)."""
STATEMENT_TIMEOUT_MS = 5_000
"""PostgreSQL ``statement_timeout`` of the budget's session (a role's shorter one is kept)."""
MEMBER_REFRESH_SECONDS = 1.0
"""A process's row is written again at most this often: it only has to stay within ``ACTIVE_SECONDS``."""

log = logging.getLogger(__name__)


COLUMNS = (
    "budget_key",
    "member",
    "requests_per_minute",
    "next_start",
    "paused_until",
    "quiet_since",
    "last_slow_down",
    "seen",
)
_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    budget_key VARCHAR(64) NOT NULL,
    member VARCHAR(32) NOT NULL,
    requests_per_minute DOUBLE PRECISION NOT NULL,
    next_start DOUBLE PRECISION NOT NULL,
    paused_until DOUBLE PRECISION NOT NULL,
    quiet_since DOUBLE PRECISION,
    last_slow_down DOUBLE PRECISION NOT NULL,
    seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (budget_key, member)
)"""
_TRIED_AGAIN = frozenset({DatabaseFault.MISSING_TABLE, DatabaseFault.DUPLICATE, DatabaseFault.CONFLICT})
"""Faults a lease tries again (at most three tries): the table is created, or another process's transaction
went first. A lock held past :data:`LOCK_WAIT_MS` or a lost connection fails the lease at once."""
_TABLE_MADE_ELSEWHERE = frozenset({DatabaseFault.ALREADY_EXISTS, DatabaseFault.DUPLICATE})
"""What ``CREATE TABLE IF NOT EXISTS`` fails with when another process creates the table at the same moment
(PostgreSQL: the table, or its row type in ``pg_type``)."""


class BudgetStoreError(Exception):
    """The budget's database failed; the message names the connection and the table, never a password."""


class BudgetConfigurationError(BudgetStoreError):
    """``budget_conn_id`` names no usable SQL connection; the message says the fix."""


class BudgetStore:
    """The table ``table`` on ``budget_conn_id``, through one connection used by one thread at a time.

    :meth:`lease` is the only operation; :attr:`round_trips` counts the statements and commits sent
    (drivers may add a ``BEGIN`` of their own per transaction).
    """

    def __init__(self, budget_conn_id: str, table: str, *, clock: Callable[[], float] = time.time) -> None:
        self.budget_conn_id = budget_conn_id
        self.table = table
        self.round_trips = 0
        self._clock = clock
        self._hook: Any = None
        self._connection: Any = None
        self._is_sqlite = False
        self._secret = ""
        self._member_written: dict[str, float] = {}

    def lease(
        self,
        name: str,
        member: str,
        *,
        configured_requests_per_minute: float,
        cap_requests_per_minute: float,
        demand: int,
        pause_until: float = 0.0,
        slow_down: bool = False,
    ) -> Grant:
        """Take start times for ``demand`` requests at most (none for 0: only report a pause or slow-down).

        Raises :class:`BudgetStoreError` when the database fails; the connection is then closed and
        the next call connects again.
        """
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    self._connect()
                    return self._lease(
                        name,
                        member,
                        configured_requests_per_minute,
                        cap_requests_per_minute,
                        demand,
                        pause_until,
                        slow_down,
                    )
                except BudgetStoreError:
                    raise
                except Exception as error:
                    self._rollback()
                    fault = classify_database_error(error)
                    if attempt == 3 or fault not in _TRIED_AGAIN:
                        raise BudgetStoreError(self._message(error)) from None
                    if fault is DatabaseFault.MISSING_TABLE:
                        self._create_table()
        except BudgetStoreError:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection = self._connection, None
        self._member_written.clear()
        if connection is not None:
            try:
                connection.close()
            except Exception as error:  # a connection already broken
                log.debug("Closing the budget's connection failed: %s", self._message(error))

    # -- one lease ---------------------------------------------------------------------------------

    def _lease(
        self, name: str, member: str, configured: float, cap: float, demand: int, pause_until: float, slow_down: bool
    ) -> Grant:
        cursor = self._connection.cursor()
        try:
            if self._is_sqlite:
                self._execute(cursor, "BEGIN IMMEDIATE")
            state, members = self._read(cursor, name, member)
            now = self._clock()  # read once the lock is held: the time the start times are counted from
            rate = configured if state is None else min(state.rate, configured)
            size = grant_size(rate, members=members + 1, demand=demand, cap_requests_per_minute=cap) if demand else 0
            lease = take_grant(
                configured, state, now, size=size, pause_until=pause_until, slow_down=slow_down, members=members + 1
            )
            self._write(cursor, name, lease.state, insert=state is None)
            refresh = demand and now - self._member_written.get(member, -math.inf) >= MEMBER_REFRESH_SECONDS
            if refresh:
                self._upsert_member(cursor, name, member, now, first=member not in self._member_written)
            self.round_trips += 1
            self._connection.commit()
        finally:
            cursor.close()
        if refresh:  # when the row was last written: a process that asks more often than that still refreshes it
            self._member_written[member] = now
        return lease

    def _read(self, cursor: Any, name: str, member: str) -> tuple[PaceState | None, int]:
        """The budget's schedule (``None`` for a new budget) and how many other processes want requests."""
        p = self._placeholder
        lock = "" if self._is_sqlite else " FOR UPDATE"
        self._execute(
            cursor,
            f"SELECT requests_per_minute, next_start, paused_until, quiet_since, last_slow_down, "
            f"(SELECT COUNT(*) FROM {self.table} WHERE budget_key = {p} AND member <> {p} AND member <> {p} "
            f"AND seen >= {p}) FROM {self.table} WHERE budget_key = {p} AND member = {p}{lock}",
            (name, BUDGET_ROW, member, self._clock() - ACTIVE_SECONDS, name, BUDGET_ROW),
        )
        row = cursor.fetchone()
        if row is None:
            return None, 0
        rate, next_start, paused_until, quiet_since, last_slow_down, members = row
        quiet = None if quiet_since is None else float(quiet_since)
        state = PaceState(float(rate), float(next_start), float(paused_until), quiet, float(last_slow_down))
        return state, int(members)

    def _write(self, cursor: Any, name: str, state: PaceState, *, insert: bool) -> None:
        last_slow_down = state.last_slow_down if math.isfinite(state.last_slow_down) else 0.0
        values = (state.rate, state.next_start, state.paused_until, state.quiet_since, last_slow_down)
        p = self._placeholder
        if insert:  # a concurrent insert of the same budget fails on the primary key: the lease is tried again
            self._execute(
                cursor,
                f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({', '.join([p] * len(COLUMNS))})",
                (name, BUDGET_ROW, *values, self._clock()),
            )
            return
        self._execute(
            cursor,
            f"UPDATE {self.table} SET requests_per_minute = {p}, next_start = {p}, paused_until = {p}, "
            f"quiet_since = {p}, last_slow_down = {p} WHERE budget_key = {p} AND member = {p}",
            (*values, name, BUDGET_ROW),
        )

    def _upsert_member(self, cursor: Any, name: str, member: str, now: float, *, first: bool) -> None:
        """Mark this process as wanting requests; on its first lease, forget processes long gone."""
        row = (name, member, 0.0, 0.0, 0.0, None, 0.0, now)
        p = self._placeholder
        if first:
            self._execute(
                cursor,
                f"DELETE FROM {self.table} WHERE budget_key = {p} AND member <> {p} AND seen < {p}",
                (name, BUDGET_ROW, now - FORGET_SECONDS),
            )
        self._execute(
            cursor, f"UPDATE {self.table} SET seen = {p} WHERE budget_key = {p} AND member = {p}", (now, name, member)
        )
        if cursor.rowcount == 0:
            self._execute(
                cursor,
                f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES ({', '.join([p] * len(row))})",
                row,
            )

    # -- the connection and the table ------------------------------------------------------------------

    def _connect(self) -> None:
        if self._connection is not None:
            return
        try:
            self._hook, connection = sql_hook(self.budget_conn_id, parameter="budget_conn_id")
        except Exception as error:
            raise BudgetConfigurationError(str(error)) from None
        self._secret = connection.password or ""
        try:
            self._connection = self._hook.get_conn()
        except Exception as error:
            raise BudgetStoreError(f"cannot connect: {self._message(error)}") from None
        self._is_sqlite = is_sqlite(self._connection)
        self.round_trips += bound_waits(
            self._connection,
            lock_timeout_ms=LOCK_WAIT_MS,
            sqlite_busy_timeout_ms=LOCK_WAIT_MS,
            statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        )

    def _create_table(self) -> None:
        """``CREATE TABLE IF NOT EXISTS``; losing the race to another process that creates it is no error."""
        cursor = self._connection.cursor()
        try:
            self._execute(cursor, _CREATE_TABLE.format(table=self.table))
            self._connection.commit()
            log.info("Created the rate budget's table %s on %r.", self.table, self.budget_conn_id)
        except Exception as error:
            self._rollback()
            if classify_database_error(error) not in _TABLE_MADE_ELSEWHERE:
                raise BudgetStoreError(f"cannot create the table: {self._message(error)}") from None
        finally:
            cursor.close()

    def _execute(self, cursor: Any, sql: str, parameters: tuple[Any, ...] = ()) -> None:
        self.round_trips += 1
        cursor.execute(sql, parameters) if parameters else cursor.execute(sql)

    def _rollback(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.rollback()
        except Exception as error:
            log.debug("Rolling back the budget's transaction failed: %s", self._message(error))

    @property
    def _placeholder(self) -> str:
        return str(self._hook.placeholder)

    def _message(self, error: BaseException) -> str:
        """The driver's message on one line, naming the connection and the table, without its password."""
        return f"{driver_message(error, password=self._secret)} (table {self.table} on {self.budget_conn_id!r})"
