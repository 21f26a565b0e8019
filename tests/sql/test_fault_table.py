"""One fault table for every table the provider keeps: the ledgers and the shared budget's store.

Each fault is provoked for real, on a SQLite file and on a real PostgreSQL server (through psycopg 3
and psycopg2), and classified by the one rule; then the budget's store and a ledger meet the same
faults (two sessions creating the table at once, a lock held past the bound, a missing table, a
role's shorter ``lock_timeout``) and react alike.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.budget import store as budget_store
from airflow_provider_hindsight.budget.store import BudgetStore, BudgetStoreError
from airflow_provider_hindsight.ledgers import dialect as ledger_dialect
from airflow_provider_hindsight.ledgers import interviews as interview_ledger
from airflow_provider_hindsight.ledgers import sql as ledger_sql
from airflow_provider_hindsight.ledgers.faults import HindsightLedgerBusyError, TableMessages
from airflow_provider_hindsight.ledgers.interviews import InterviewLedger
from airflow_provider_hindsight.sql_connection.faults import DatabaseFault, classify_database_error, driver_message
from tests.support.postgres import PostgresDatabase, PostgresServer

CONN_ID = "fault_db"
TABLE = "fault_table"
LEDGER_TABLE = "hindsight_interviews"
BUDGET_TABLE = "hindsight_rate_budget"
SHORT_WAIT_MS = 200
"""Lock waits of the sessions under test: a held lock fails them at once."""


# -- each fault, provoked on each database ---------------------------------------------------------------------


class Database:
    """A SQLite file or a PostgreSQL database, through one driver, for provoking faults."""

    def __init__(self, driver: str, *, path: Path | None = None, postgres: PostgresDatabase | None = None) -> None:
        self.driver = driver
        self.path = path
        self.postgres = postgres

    def connect(self, *, user: str | None = None, read_only: bool = False) -> Any:
        """A new connection whose lock waits give up after :data:`SHORT_WAIT_MS`."""
        if self.driver == "sqlite3":
            assert self.path is not None
            uri = f"file:{self.path}{'?mode=ro' if read_only else ''}"
            return sqlite3.connect(uri, uri=True, timeout=SHORT_WAIT_MS / 1000)
        assert self.postgres is not None
        params = {**self.postgres.params, **({"user": user} if user else {})}
        module: Any = pytest.importorskip(self.driver)
        connection = module.connect(**params)
        with closing(connection.cursor()) as cursor:
            cursor.execute(f"SET lock_timeout = {SHORT_WAIT_MS}")
        connection.commit()
        return connection

    def run(self, *statements: str) -> None:
        with closing(self.connect()) as connection:
            with closing(connection.cursor()) as cursor:
                for statement in statements:
                    cursor.execute(statement)
            connection.commit()


def provoke(database: Database, fault: DatabaseFault, server: PostgresServer | None) -> BaseException:
    """Make the database fail with ``fault`` for real; the driver's error."""
    database.run(f"CREATE TABLE {TABLE} (k INTEGER PRIMARY KEY)", f"INSERT INTO {TABLE} VALUES (1)")
    statement = {
        DatabaseFault.MISSING_TABLE: "SELECT * FROM no_such_table_here",
        DatabaseFault.DUPLICATE: f"INSERT INTO {TABLE} VALUES (1)",
        DatabaseFault.ALREADY_EXISTS: f"CREATE TABLE {TABLE} (k INTEGER PRIMARY KEY)",
        DatabaseFault.BUSY: f"INSERT INTO {TABLE} VALUES (2)",
        DatabaseFault.PERMISSION: f"INSERT INTO {TABLE} VALUES (3)",
        DatabaseFault.LOST: "SELECT 1",
    }[fault]
    with closing(_victim(database, fault, server)) as victim, _held(database, fault):
        if fault is DatabaseFault.LOST:
            assert server is not None and database.postgres is not None
            pid = _one(victim, "SELECT pg_backend_pid()")
            server.execute(f"SELECT pg_terminate_backend({pid}, 30000)", database=database.postgres.name)
        with pytest.raises(Exception) as caught, closing(victim.cursor()) as cursor:
            cursor.execute(statement)
    return caught.value


def _victim(database: Database, fault: DatabaseFault, server: PostgresServer | None) -> Any:
    if fault is not DatabaseFault.PERMISSION:
        return database.connect()
    if database.driver == "sqlite3":
        return database.connect(read_only=True)
    assert server is not None and database.postgres is not None
    role = f"reader_{database.postgres.name}_{database.driver}"
    server.execute(f"CREATE ROLE {role} LOGIN")
    server.execute(f"GRANT SELECT ON {TABLE} TO {role}", database=database.postgres.name)
    return database.connect(user=role)


@contextmanager
def _held(database: Database, fault: DatabaseFault) -> Iterator[None]:
    """For BUSY, another session holds the table's lock; otherwise nothing."""
    if fault is DatabaseFault.BUSY:
        with closing(database.connect()) as holder:
            lock = "BEGIN IMMEDIATE" if database.driver == "sqlite3" else f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE"
            holder.cursor().execute(lock)
            yield
            holder.rollback()
        return
    yield


def _one(connection: Any, sql: str) -> Any:
    with closing(connection.cursor()) as cursor:
        cursor.execute(sql)
        (value,) = cursor.fetchone()
    connection.commit()
    return value


def _serialization_failure(database: Database) -> BaseException:
    """A REPEATABLE READ transaction updating a row another transaction changed since its snapshot (40001)."""
    database.run(f"CREATE TABLE {TABLE} (k INTEGER PRIMARY KEY)", f"INSERT INTO {TABLE} VALUES (1)")
    with (
        closing(database.connect()) as victim,
        closing(database.connect()) as other,
        closing(victim.cursor()) as cursor,
    ):
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"SELECT k FROM {TABLE}")
        cursor.fetchall()
        with closing(other.cursor()) as changing:
            changing.execute(f"UPDATE {TABLE} SET k = 2 WHERE k = 1")
        other.commit()
        with pytest.raises(Exception) as caught:
            cursor.execute(f"UPDATE {TABLE} SET k = 3 WHERE k = 1")  # the row its snapshot sees
    return caught.value


SQLITE_FAULTS = [
    DatabaseFault.MISSING_TABLE,
    DatabaseFault.DUPLICATE,
    DatabaseFault.ALREADY_EXISTS,
    DatabaseFault.BUSY,
    DatabaseFault.PERMISSION,
]
"""A SQLite file has no serialization failure, and no connection to lose."""
POSTGRES_FAULTS = [*SQLITE_FAULTS, DatabaseFault.CONFLICT, DatabaseFault.LOST]


@pytest.mark.parametrize(
    ("driver", "fault"),
    [("sqlite3", fault) for fault in SQLITE_FAULTS]
    + [(driver, fault) for driver in ("psycopg", "psycopg2") for fault in POSTGRES_FAULTS],
    ids=lambda value: value.name.lower() if isinstance(value, DatabaseFault) else value,
)
def test_each_fault_provoked_for_real_is_classified_by_the_one_table(
    driver: str, fault: DatabaseFault, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server: PostgresServer | None = None
    if driver == "sqlite3":
        database = Database(driver, path=tmp_path / "faults.db")
    else:
        server = request.getfixturevalue("postgres_server")
        database = Database(driver, postgres=request.getfixturevalue("postgres_database"))
    error = _serialization_failure(database) if fault is DatabaseFault.CONFLICT else provoke(database, fault, server)
    assert classify_database_error(error) is fault, f"{type(error).__module__}.{type(error).__name__}: {error}"


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (sqlite3.OperationalError("database table is locked"), DatabaseFault.BUSY),
        (Exception("(1205, 'Lock wait timeout exceeded; try restarting transaction')"), DatabaseFault.BUSY),
        (
            Exception("(1213, 'Deadlock found when trying to get lock; try restarting transaction')"),
            DatabaseFault.CONFLICT,
        ),
        (Exception("(1146, \"Table 'db.hindsight_rate_budget' doesn't exist\")"), DatabaseFault.MISSING_TABLE),
        (Exception("(1050, \"Table 'hindsight_rate_budget' already exists\")"), DatabaseFault.ALREADY_EXISTS),
        (Exception("(2006, 'MySQL server has gone away')"), DatabaseFault.LOST),
    ],
    ids=["sqlite-table-locked", "mysql-lock-wait", "mysql-deadlock", "mysql-missing", "mysql-exists", "mysql-gone"],
)
def test_mysql_words_without_sqlstate(error: BaseException, fault: DatabaseFault | None) -> None:
    """MySQL's drivers give an error number and words, no SQLSTATE (no MySQL server runs in the tests)."""
    assert classify_database_error(error) is fault


# -- the budget's store and a ledger react alike -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def short_lock_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_dialect, "POSTGRES_LOCK_TIMEOUT_MS", SHORT_WAIT_MS)
    monkeypatch.setattr(ledger_dialect, "SQLITE_BUSY_TIMEOUT_MS", SHORT_WAIT_MS)
    monkeypatch.setattr(ledger_sql, "BUSY_PAUSE_SECONDS", 0.05)
    monkeypatch.setattr(budget_store, "LOCK_WAIT_MS", SHORT_WAIT_MS)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    """The database behind the Airflow connection :data:`CONN_ID`."""
    if request.param == "sqlite":
        path = tmp_path / "tables.db"
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "sqlite", "host": str(path)}))
        return Database("sqlite3", path=path)
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    database.set_airflow_connection(monkeypatch, CONN_ID)
    return Database("psycopg", postgres=database)


@pytest.fixture
def tables() -> Iterator[Callable[[str], Any]]:
    """``tables("ledger")`` / ``tables("budget")``: the interview ledger or the budget's store on :data:`CONN_ID`."""
    opened: list[Any] = []

    def make(kind: str, conn_id: str = CONN_ID) -> Any:
        table = InterviewLedger(ledger_conn_id=conn_id) if kind == "ledger" else BudgetStore(conn_id, BUDGET_TABLE)
        opened.append(table)
        return table

    yield make
    for table in opened:
        table.close()


def use(table: Any) -> None:
    """One operation that writes: a ledger's claim (after ``prepare``), a budget's lease."""
    if isinstance(table, InterviewLedger):
        if not table.sql.writable:
            table.prepare(create=True)
        table.claim(f"key-{time.monotonic_ns()}", contact_email="someone@example.com", deal_id=None, replacing=None)
    else:
        table.lease("budget", "a" * 32, configured_requests_per_minute=60, cap_requests_per_minute=60, demand=1)


def table_name(table: Any) -> str:
    return LEDGER_TABLE if isinstance(table, InterviewLedger) else BUDGET_TABLE


def table_exists(database: Database, name: str) -> bool:
    with closing(database.connect()) as connection, closing(connection.cursor()) as cursor:
        if database.driver == "sqlite3":
            cursor.execute(f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{name}'")
        else:
            cursor.execute(f"SELECT 1 FROM information_schema.tables WHERE table_name = '{name}'")
        return cursor.fetchone() is not None


@pytest.mark.parametrize("kind", ["ledger", "budget"])
def test_a_missing_table_is_created_on_first_use(backend: Database, tables: Callable[..., Any], kind: str) -> None:
    table = tables(kind)
    assert not table_exists(backend, table_name(table))
    use(table)
    assert table_exists(backend, table_name(table))
    use(table)


@pytest.mark.parametrize("kind", ["ledger", "budget"])
def test_a_lock_held_past_the_bound_fails_for_now_and_the_next_use_goes_on(
    backend: Database, tables: Callable[..., Any], kind: str
) -> None:
    table = tables(kind)
    use(table)
    with closing(backend.connect()) as holder:
        lock = "BEGIN EXCLUSIVE" if backend.driver == "sqlite3" else f"LOCK TABLE {table_name(table)}"
        holder.cursor().execute(lock)
        expected = HindsightLedgerBusyError if kind == "ledger" else BudgetStoreError
        with pytest.raises(expected) as caught:
            use(table)
        reason = "database is locked" if backend.driver == "sqlite3" else "lock timeout"
        assert reason in str(caught.value), "the driver's reason is quoted"
        holder.rollback()
    use(table)


@pytest.mark.parametrize("kind", ["ledger", "budget"])
def test_two_sessions_creating_the_table_at_once_both_go_on(
    postgres_database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch, tables: Callable[..., Any], kind: str
) -> None:
    """Another session's ``CREATE TABLE`` is not committed yet when this one's starts: PostgreSQL makes this one
    wait, then fails it (duplicate key in ``pg_type``, or already exists): the table is there, so it goes on."""
    monkeypatch.setattr(ledger_dialect, "POSTGRES_LOCK_TIMEOUT_MS", 60_000)  # waits for the other session's commit
    monkeypatch.setattr(budget_store, "LOCK_WAIT_MS", 60_000)
    monkeypatch.setattr(budget_store, "STATEMENT_TIMEOUT_MS", 60_000)
    postgres_database.set_airflow_connection(monkeypatch, CONN_ID)
    database = Database("psycopg", postgres=postgres_database)
    table = tables(kind)
    create = (
        interview_ledger.SPEC.create_sql(LEDGER_TABLE)
        if kind == "ledger"
        else budget_store._CREATE_TABLE.format(table=BUDGET_TABLE)
    )
    outcome: list[BaseException | None] = []

    def first_use() -> None:
        try:
            use(table)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    with closing(database.connect()) as other, closing(database.connect()) as watcher:
        other.cursor().execute(create)  # in a transaction left open
        worker = threading.Thread(target=first_use)
        worker.start()
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 60
        while _one(watcher, waiting) == 0:
            assert worker.is_alive() and time.monotonic() < deadline, f"never waited for the other session: {outcome}"
            time.sleep(0.01)
        other.commit()
        worker.join(timeout=60)
    assert outcome == [None]
    use(table)


@pytest.mark.parametrize("kind", ["ledger", "budget"])
@pytest.mark.parametrize(
    ("role_setting", "expected"),
    [("150ms", "150ms"), ("1h", f"{SHORT_WAIT_MS}ms"), (None, f"{SHORT_WAIT_MS}ms")],
    ids=["role-shorter", "role-longer", "no-role-setting"],
)
def test_a_role_s_shorter_lock_timeout_is_kept(
    postgres_server: PostgresServer,
    postgres_database: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    tables: Callable[..., Any],
    kind: str,
    role_setting: str | None,
    expected: str,
) -> None:
    role = f"writer_{postgres_database.name}"
    postgres_server.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    if role_setting is not None:
        postgres_server.execute(f"ALTER ROLE {role} SET lock_timeout = '{role_setting}'")
    table = tables(kind, postgres_database.set_airflow_connection(monkeypatch, "role_db", login=role))
    use(table)
    connection = table.sql._connection if kind == "ledger" else table._connection
    assert _one(connection, "SHOW lock_timeout") == expected


def test_a_role_s_shorter_statement_timeout_is_kept_by_the_budget(
    postgres_server: PostgresServer,
    postgres_database: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    tables: Callable[..., Any],
) -> None:
    role = f"writer_{postgres_database.name}"
    postgres_server.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    postgres_server.execute(f"ALTER ROLE {role} SET statement_timeout = '3s'")
    store = tables("budget", postgres_database.set_airflow_connection(monkeypatch, "role_db", login=role))
    use(store)
    assert _one(store._connection, "SHOW statement_timeout") == "3s"


# -- the driver's message, without the password ----------------------------------------------------------------


def test_a_password_cut_by_the_length_limit_shows_no_part_of_it() -> None:
    password = "hunter2-correct-horse"
    error = sqlite3.OperationalError("x" * 485 + f" password={password} and more")  # cut at 500: inside it
    messages = TableMessages(conn_id="c", table="t", noun="ledger table", conn_parameter="p", table_parameter="q")
    messages.secret = password
    store = BudgetStore("c", "t")
    store._secret = password
    for quoted in (driver_message(error, password=password), messages.quote(error), store._message(error)):
        assert password[:5] not in quoted
