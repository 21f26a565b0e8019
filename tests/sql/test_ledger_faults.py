"""Database faults under the ledgers (issue 19): a held lock or a lost connection is transient, a refusal permanent.

Against a real PostgreSQL server (another session holding ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE``,
``pg_terminate_backend``, a role without INSERT) and a real SQLite file (another writer's lock).
"""

from __future__ import annotations

import logging
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import HindsightTransientError
from airflow_provider_hindsight.ledgers import dialect as ledger_dialect
from airflow_provider_hindsight.ledgers import sql as ledger_sql
from airflow_provider_hindsight.ledgers.faults import (
    HindsightLedgerBusyError,
    HindsightLedgerConnectionLostError,
    HindsightLedgerError,
)
from airflow_provider_hindsight.ledgers.sync import SyncLedger
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "ledger_db"
TABLE = "hindsight_sync_ledger"
SYNC_ID = "warehouse_dag.push_changes"
LOGGER = "airflow_provider_hindsight.ledgers.sql"
LOCK_TIMEOUT_MS = 200
"""The ledger session's lock_timeout in these tests (10 s in production)."""
ALL_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"
PERMISSION_ADVICE = "give the connection's user SELECT, INSERT, UPDATE and DELETE"


@pytest.fixture(autouse=True)
def short_lock_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_dialect, "POSTGRES_LOCK_TIMEOUT_MS", LOCK_TIMEOUT_MS)
    monkeypatch.setattr(ledger_dialect, "SQLITE_BUSY_TIMEOUT_MS", LOCK_TIMEOUT_MS)
    monkeypatch.setattr(ledger_sql, "BUSY_PAUSE_SECONDS", 0.05)


@pytest.fixture
def postgres(postgres_database: Any, monkeypatch: pytest.MonkeyPatch) -> Backend:
    return postgres_ledger(postgres_database, monkeypatch, CONN_ID, sync_id=SYNC_ID)


@pytest.fixture
def open_ledgers() -> Iterator[Callable[..., SyncLedger]]:
    opened: list[SyncLedger] = []

    def make(conn_id: str = CONN_ID) -> SyncLedger:
        opened.append(SyncLedger(ledger_conn_id=conn_id, table=TABLE, sync_id=SYNC_ID))
        return opened[-1]

    yield make
    for ledger in opened:
        ledger.close()


class WarningSeen(logging.Handler):
    """Sets :attr:`seen` when the ledger logs a WARNING about a lock; keeps the messages."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "is locked by another session" in message:
            self.messages.append(message)
            self.seen.set()


@pytest.fixture
def lock_warnings() -> Iterator[WarningSeen]:
    handler = WarningSeen()
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@contextmanager
def table_locked(backend: Backend, mode: str = "ACCESS EXCLUSIVE") -> Iterator[Callable[[], None]]:
    """Another session holds a ``mode`` lock on the ledger table (in an open transaction); yields ``release``."""
    holder = backend.connect()
    try:
        holder.execute(f"LOCK TABLE {TABLE} IN {mode} MODE")
        yield holder.rollback
    finally:
        holder.close()


def writer_role(backend: Backend, *, lock_timeout: str | None, privileges: str = ALL_RIGHTS) -> str:
    """A login role with ``privileges`` on the ledger and lease tables (and a role-level lock_timeout); its
    connection id."""
    ((database,),) = backend.query("SELECT current_database()")
    role = f"writer_{database}"  # roles belong to the server: one per test database
    backend.run(f"CREATE ROLE {role} LOGIN", f"GRANT {privileges} ON {TABLE}, {TABLE}_leases TO {role}")
    if lock_timeout is not None:
        backend.run(f"ALTER ROLE {role} SET lock_timeout = '{lock_timeout}'")
    return backend.set_connection("writer_ledger", login=role)


def use_driver(monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
    """Make the Postgres hook connect with psycopg 3 (its default here) or psycopg2 (SQLSTATE in ``pgcode``)."""
    from airflow.providers.postgres.hooks import postgres

    pytest.importorskip(driver)
    if driver == "psycopg" and not hasattr(postgres, "register_default_adapters"):
        pytest.skip("this Postgres provider (Airflow 2.11's) connects with psycopg2 only")
    monkeypatch.setattr(postgres, "USE_PSYCOPG3", driver == "psycopg")


def assert_busy(error: BaseException) -> None:
    assert isinstance(error, HindsightLedgerBusyError)
    assert isinstance(error, HindsightTransientError) and error.transient
    assert not isinstance(error, AirflowFailException), "Airflow retries it"
    message = str(error)
    assert f"the ledger table '{TABLE}' on 'writer_ledger' is locked by another session (" in message
    assert "lock timeout" in message, "the driver's reason is quoted"
    assert PERMISSION_ADVICE not in message and "read-only" not in message and "not a replica" not in message
    assert (error.ledger_conn_id, error.ledger_table) == ("writer_ledger", TABLE)


# -- a held lock ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role_lock_timeout", "driver"),
    [(None, "psycopg"), ("150ms", "psycopg"), ("1h", "psycopg"), ("150ms", "psycopg2")],
    ids=["no-role-timeout", "role-150ms", "role-1h", "role-150ms-psycopg2"],
)
def test_a_held_lock_is_transient_and_bounded(
    postgres: Backend,
    open_ledgers: Callable[..., SyncLedger],
    lock_warnings: WarningSeen,
    monkeypatch: pytest.MonkeyPatch,
    role_lock_timeout: str | None,
    driver: str,
) -> None:
    use_driver(monkeypatch, driver)
    open_ledgers().prepare(create=True)
    conn_id = writer_role(postgres, lock_timeout=role_lock_timeout)
    ledger = open_ledgers(conn_id)
    ledger.prepare(create=True)
    ((session_timeout,),) = _query(ledger, "SHOW lock_timeout")
    assert session_timeout == ("150ms" if role_lock_timeout == "150ms" else f"{LOCK_TIMEOUT_MS}ms"), (
        "the ledger's own bound, unless the role's is shorter"
    )
    ledger.record([(1, "a" * 64)])

    with table_locked(postgres) as release:
        with pytest.raises(HindsightLedgerBusyError) as caught:
            ledger.record([(1, "b" * 64), (2, "b" * 64)])
        assert_busy(caught.value)
        assert "gave up after waiting" in str(caught.value)
        assert len(lock_warnings.messages) == ledger_sql.BUSY_ATTEMPTS - 1, "a WARNING before each new try"
        for warning in lock_warnings.messages:
            assert f"The ledger table {TABLE} on 'writer_ledger' is locked by another session" in warning
            assert "so far" in warning
        assert ledger.lock_wait_seconds >= ledger_sql.BUSY_ATTEMPTS * 0.1
        with pytest.raises(HindsightLedgerBusyError) as caught:
            ledger.lookup([1, 2])
        assert_busy(caught.value)
        with pytest.raises(HindsightLedgerBusyError) as caught:
            open_ledgers(conn_id).prepare(create=True)  # the issue: was "give the connection's user SELECT, ..."
        assert_busy(caught.value)
        release()
        assert ledger.record([(1, "b" * 64), (2, "b" * 64)]) == 2, "the same connection goes on"
    open_ledgers(conn_id).prepare(create=True)
    assert postgres.hashes() == {1: "b" * 64, 2: "b" * 64}


def test_a_lock_on_writes_only_fails_the_write_probe_as_busy_not_read_only(
    postgres: Backend, open_ledgers: Callable[..., SyncLedger]
) -> None:
    """EXCLUSIVE lets the probe's read through and blocks its write: was 'not a replica, not read-only'."""
    open_ledgers().prepare(create=True)
    conn_id = writer_role(postgres, lock_timeout="150ms")
    with table_locked(postgres, "EXCLUSIVE") as release:
        with pytest.raises(HindsightLedgerBusyError) as caught:
            open_ledgers(conn_id).prepare(create=True)
        assert_busy(caught.value)
        release()
    open_ledgers(conn_id).prepare(create=True)


@pytest.mark.parametrize("step", ["prepare", "record", "forget"])
def test_a_lock_released_while_waiting_lets_the_step_finish(
    postgres: Backend,
    open_ledgers: Callable[..., SyncLedger],
    lock_warnings: WarningSeen,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    monkeypatch.setattr(ledger_sql, "BUSY_ATTEMPTS", 1000)  # bounded by the test's release, not by the tries
    monkeypatch.setattr(ledger_sql, "LOCK_WAIT_LIMIT_SECONDS", 600.0)
    open_ledgers().prepare(create=True)
    ledger = open_ledgers()
    if step != "prepare":
        ledger.prepare(create=True)
        ledger.record([(9, "9" * 64)])
    outcome: list[Any] = []

    def run() -> None:
        try:
            if step == "prepare":
                outcome.append(ledger.prepare(create=True))
            elif step == "record":
                outcome.append(ledger.record([(1, "1" * 64), (9, "a" * 64)]))
            else:
                outcome.append(ledger.forget([9]))
        except BaseException as error:
            outcome.append(error)

    with table_locked(postgres) as release:
        worker = threading.Thread(target=run)
        worker.start()
        assert lock_warnings.seen.wait(timeout=60), "no WARNING while waiting for the lock"
        release()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert outcome == [{"prepare": None, "record": 2, "forget": 1}[step]]
    assert "waited" in lock_warnings.messages[0] and TABLE in lock_warnings.messages[0]
    if step == "prepare":
        assert ledger.sql.writable and ledger.lock_wait_seconds == 0.0, "prepare's wait is not a write's"
    else:
        assert ledger.lock_wait_seconds >= LOCK_TIMEOUT_MS / 1000
    expected = {"prepare": {}, "record": {1: "1" * 64, 9: "a" * 64}, "forget": {}}[step]
    assert postgres.hashes() == expected


def test_sqlite_database_is_locked_is_transient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_ledgers: Callable[..., SyncLedger]
) -> None:
    path = tmp_path / "ledger.db"
    sqlite_ledger(path, monkeypatch, CONN_ID, sync_id=SYNC_ID)
    ledger = open_ledgers()
    ledger.prepare(create=True)
    with closing(sqlite3.connect(path)) as other:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the file's write lock
        with pytest.raises(HindsightLedgerBusyError) as caught:
            ledger.record([(1, "a" * 64)])
        assert f"the ledger table '{TABLE}' on '{CONN_ID}' is locked by another session" in str(caught.value)
        assert "database is locked" in str(caught.value)
        assert caught.value.transient
        other.rollback()
    assert ledger.record([(1, "a" * 64)]) == 1


# -- a lost connection ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
@pytest.mark.parametrize("step", ["record", "lookup"])
def test_a_terminated_ledger_connection_is_transient_naming_the_table(
    postgres: Backend, open_ledgers: Callable[..., SyncLedger], monkeypatch: pytest.MonkeyPatch, step: str, driver: str
) -> None:
    use_driver(monkeypatch, driver)
    ledger = open_ledgers()
    ledger.prepare(create=True)
    ledger.record([(1, "a" * 64)])
    ((pid,),) = _query(ledger, "SELECT pg_backend_pid()")
    postgres.run(f"SELECT pg_terminate_backend({pid}, 30000)")  # returns once the backend has exited
    steps: dict[str, Callable[[], Any]] = {
        "record": lambda: ledger.record([(2, "b" * 64)]),
        "lookup": lambda: ledger.lookup([1]),
    }
    with pytest.raises(HindsightLedgerConnectionLostError) as caught:
        steps[step]()
    error = caught.value
    assert isinstance(error, HindsightTransientError) and error.transient
    assert not isinstance(error, AirflowFailException)
    assert f"lost the connection to the ledger table '{TABLE}' on '{CONN_ID}'" in str(error)
    assert PERMISSION_ADVICE not in str(error)
    ledger.close()  # closing a dead connection is fine
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.ledger_table) == (HindsightLedgerConnectionLostError, str(error), TABLE)


# -- refusals stay permanent ---------------------------------------------------------------------------------


def test_a_role_without_insert_is_refused_for_good(postgres: Backend, open_ledgers: Callable[..., SyncLedger]) -> None:
    open_ledgers().prepare(create=True)
    conn_id = writer_role(postgres, lock_timeout="150ms", privileges="SELECT, UPDATE, DELETE")
    with pytest.raises(HindsightLedgerError) as caught:
        open_ledgers(conn_id).prepare(create=True)
    error = caught.value
    assert isinstance(error, AirflowFailException) and not error.transient
    assert f"cannot write to the ledger table '{TABLE}' on connection 'writer_ledger'" in str(error)
    assert f"permission denied for table {TABLE}" in str(error)
    assert "the connection's user needs INSERT, UPDATE and DELETE on it" in str(error)


def test_insert_revoked_mid_run_is_refused_for_good(postgres: Backend, open_ledgers: Callable[..., SyncLedger]) -> None:
    open_ledgers().prepare(create=True)
    conn_id = writer_role(postgres, lock_timeout=None)
    ledger = open_ledgers(conn_id)
    ledger.prepare(create=True)
    ((role,),) = _query(ledger, "SELECT current_user")
    postgres.run(f"REVOKE INSERT ON {TABLE} FROM {role}")
    with pytest.raises(HindsightLedgerError) as caught:
        ledger.record([(1, "a" * 64)])
    error = caught.value
    assert isinstance(error, AirflowFailException) and not error.transient
    assert f"cannot write the ledger table '{TABLE}' on connection 'writer_ledger'" in str(error)
    assert PERMISSION_ADVICE in str(error)
    assert ledger.lock_wait_seconds == 0.0


# -- the rule ------------------------------------------------------------------------------------------------


class FakeDriverError(Exception):
    def __init__(self, message: str = "boom", *, sqlstate: str | None = None, pgcode: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.pgcode = pgcode


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (FakeDriverError(sqlstate="55P03"), DatabaseFault.BUSY),
        (FakeDriverError(pgcode="55P03"), DatabaseFault.BUSY),  # psycopg2
        (FakeDriverError(sqlstate="40001"), DatabaseFault.CONFLICT),
        (FakeDriverError(pgcode="40P01"), DatabaseFault.CONFLICT),
        (FakeDriverError(sqlstate="57P01"), DatabaseFault.LOST),
        (FakeDriverError(sqlstate="08006"), DatabaseFault.LOST),
        (FakeDriverError(pgcode="08003"), DatabaseFault.LOST),
        (FakeDriverError(sqlstate="42501", message="permission denied for table x"), DatabaseFault.PERMISSION),
        (FakeDriverError(sqlstate="25006"), DatabaseFault.PERMISSION),
        (FakeDriverError(sqlstate="23505"), DatabaseFault.DUPLICATE),
        (FakeDriverError(sqlstate="42P01"), DatabaseFault.MISSING_TABLE),
        (FakeDriverError(sqlstate="42703"), None),
        (sqlite3.OperationalError("database is locked"), DatabaseFault.BUSY),
        (sqlite3.OperationalError("attempt to write a readonly database"), DatabaseFault.PERMISSION),
        (sqlite3.IntegrityError("UNIQUE constraint failed: t.k"), DatabaseFault.DUPLICATE),
        (sqlite3.IntegrityError("NOT NULL constraint failed: t.state"), None),
        (ValueError("nothing a database said"), None),
    ],
)
def test_classify_database_error(error: BaseException, fault: DatabaseFault | None) -> None:
    assert classify_database_error(error) is fault


def test_a_psycopg_error_without_sqlstate_is_a_lost_connection() -> None:
    psycopg = pytest.importorskip("psycopg")
    assert classify_database_error(psycopg.OperationalError("the connection is closed")) is DatabaseFault.LOST
    assert classify_database_error(psycopg.errors.AdminShutdown("terminating connection")) is DatabaseFault.LOST
    assert classify_database_error(psycopg.errors.LockNotAvailable("lock timeout")) is DatabaseFault.BUSY
    psycopg2 = pytest.importorskip("psycopg2")
    assert classify_database_error(psycopg2.OperationalError("server closed the connection")) is DatabaseFault.LOST
    assert classify_database_error(psycopg2.InterfaceError("connection already closed")) is DatabaseFault.LOST


def test_transient_faults() -> None:
    transient = {fault for fault in DatabaseFault if fault.transient}
    assert transient == {DatabaseFault.BUSY, DatabaseFault.CONFLICT, DatabaseFault.LOST}


def test_busy_error_pickles() -> None:
    error = HindsightLedgerBusyError("locked", ledger_conn_id="c", ledger_table="t")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.message, copy.ledger_conn_id, copy.ledger_table, copy.code) == (
        HindsightLedgerBusyError,
        "locked",
        "c",
        "t",
        "ledger_busy",
    )


def _query(ledger: SyncLedger, sql: str) -> list[tuple[Any, ...]]:
    """A statement on the ledger's own connection (its session settings), committed."""
    cursor = ledger.sql._connection.cursor()
    try:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()
        ledger.sql._connection.commit()
