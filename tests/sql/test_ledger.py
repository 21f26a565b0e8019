"""The sync ledger on a real SQLite file and a real PostgreSQL server, through Airflow connections."""

from __future__ import annotations

import datetime
import hashlib
import json
import pickle
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.ledgers import dialect as ledger_dialect
from airflow_provider_hindsight.ledgers.sync import (
    HindsightLedgerError,
    SyncLedger,
    body_sha256,
    validate_ledger_table,
    validate_sync_id,
)
from airflow_provider_hindsight.transfers.streaming import streaming_cursor
from tests.helpers import free_port
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

LEDGER_CONN_ID = "ledger_db"
TABLE = "hindsight_sync_ledger"
SYNC_ID = "warehouse_dag.push_changes"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The ledger database: a SQLite file, or a fresh database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "warehouse.db", monkeypatch, LEDGER_CONN_ID, sync_id=SYNC_ID)
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, LEDGER_CONN_ID, sync_id=SYNC_ID)


@pytest.fixture
def open_ledgers() -> Iterator[list[SyncLedger]]:
    """Ledgers a test opens; closed at its end."""
    ledgers: list[SyncLedger] = []
    yield ledgers
    for ledger in ledgers:
        ledger.close()


@pytest.fixture
def new_ledger(backend: Backend, open_ledgers: list[SyncLedger]) -> Callable[..., SyncLedger]:
    def make(**arguments: Any) -> SyncLedger:
        options = {"ledger_conn_id": backend.conn_id, "table": TABLE, "sync_id": SYNC_ID, **arguments}
        open_ledgers.append(SyncLedger(**options))
        return open_ledgers[-1]

    return make


def ledger_error(ledger: SyncLedger, *, create: bool = True) -> HindsightLedgerError:
    with pytest.raises(HindsightLedgerError) as caught:
        ledger.prepare(create=create)
    return caught.value


# -- creating, reading, writing ------------------------------------------------------------------


def test_prepare_creates_the_table_and_leaves_no_trace(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    assert not backend.table_exists()
    ledger = new_ledger()
    ledger.prepare(create=True)
    assert backend.table_exists()
    assert ledger.sql.exists and ledger.sql.writable
    columns = backend.query(f"SELECT * FROM {TABLE}")
    assert columns == [], "the write probe was rolled back"
    again = new_ledger()
    again.prepare(create=True)  # the table exists now: checked, not created
    assert backend.query(f"SELECT COUNT(*) FROM {TABLE}") == [(0,)]


def test_lookup_record_forget_round_trip(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    ledger = new_ledger()
    ledger.prepare(create=True)
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert ledger.lookup([4821, 4822]) == {}
    assert ledger.record([(4821, digest("a")), (4822, digest("b"))]) == 2
    assert ledger.lookup([4821, 4822, 4823]) == {4821: digest("a"), 4822: digest("b")}
    other_task = new_ledger(sync_id="warehouse_dag.other_task")
    other_task.prepare(create=True)
    assert other_task.lookup([4821, 4822]) == {}, "a sync_id sees only its own rows"
    assert ledger.forget([4822, 999]) == 2
    assert ledger.lookup([4821, 4822]) == {4821: digest("a")}
    ((synced_at,),) = backend.query(f"SELECT synced_at FROM {TABLE} WHERE interview_request_id = 4821")
    if isinstance(synced_at, str):  # SQLite keeps timestamps as ISO text
        synced_at = datetime.datetime.fromisoformat(synced_at)
    assert before <= synced_at <= datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def test_record_of_the_same_keys_upserts(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    ledger = new_ledger()
    ledger.prepare(create=True)
    ledger.record([(1, digest("first")), (2, digest("first"))])
    ledger.record([(1, digest("second")), (3, digest("x")), (3, digest("y"))])
    assert backend.hashes() == {1: digest("second"), 2: digest("first"), 3: digest("y")}
    assert backend.query(f"SELECT COUNT(*) FROM {TABLE}") == [(3,)]


def test_large_sets_go_in_batches(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    ledger = new_ledger()
    ledger.prepare(create=True)
    ids = list(range(1, 1235))
    assert ledger.record((request_id, digest(str(request_id))) for request_id in ids) == len(ids)
    found = ledger.lookup(iter(ids))
    assert found == {request_id: digest(str(request_id)) for request_id in ids}
    assert ledger.forget(ids[:700]) == 700
    assert sorted(backend.hashes()) == ids[700:]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_lookups_and_deletions_are_one_statement_per_500_ids(
    backend: Backend, new_ledger: Callable[..., SyncLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    statements: list[str] = []
    real_get_conn = SqliteHook.get_conn

    def traced_get_conn(self: SqliteHook) -> sqlite3.Connection:
        connection = real_get_conn(self)
        connection.set_trace_callback(statements.append)
        return connection

    monkeypatch.setattr(SqliteHook, "get_conn", traced_get_conn)
    ledger = new_ledger()
    ledger.prepare(create=True)
    ids = list(range(1, 1235))
    ledger.record((request_id, digest("x")) for request_id in ids)
    statements.clear()
    ledger.lookup(ids)
    assert sum(statement.startswith("SELECT") for statement in statements) == 3
    statements.clear()
    ledger.forget(ids)
    assert sum(statement.startswith("DELETE") for statement in statements) == 3


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_schema_qualified_table_on_postgres(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    backend.run("CREATE SCHEMA analytics")
    ledger = new_ledger(table="analytics.hindsight_sync_ledger")
    ledger.prepare(create=True)
    assert backend.table_exists("analytics.hindsight_sync_ledger")
    assert not backend.table_exists(TABLE)
    ledger.record([(7, digest("seven"))])
    ledger.record([(7, digest("seven again"))])
    assert ledger.lookup([7]) == {7: digest("seven again")}
    assert backend.hashes(table="analytics.hindsight_sync_ledger") == {7: digest("seven again")}

    error = ledger_error(new_ledger(table="nowhere.hindsight_sync_ledger"))
    assert "cannot create the ledger table 'nowhere.hindsight_sync_ledger'" in str(error)
    assert "The schema 'nowhere' must exist: CREATE SCHEMA nowhere." in str(error)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_main_schema_prefix(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    ledger = new_ledger(table="main.hindsight_sync_ledger")
    ledger.prepare(create=True)
    ledger.record([(7, digest("seven"))])
    assert backend.hashes() == {7: digest("seven")}


@pytest.mark.parametrize("upsert", [True, False], ids=["dialect-upsert", "update-then-insert"])
def test_concurrent_writers_of_one_sync_id_both_finish(
    backend: Backend, upsert: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs record overlapping keys, in opposite orders, many times: no error, the last write wins."""
    if not upsert:
        monkeypatch.setattr(ledger_dialect, "upsert_statement", lambda *arguments: None)
    rounds, start = 12, threading.Barrier(2)
    keys = {"a": list(range(1, 301)), "b": list(range(300, 100, -1))}
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with SyncLedger(ledger_conn_id=backend.conn_id, table=TABLE, sync_id=SYNC_ID) as ledger:
                start.wait(timeout=30)
                ledger.prepare(create=True)  # both create the table at the same time
                for number in range(rounds):
                    ledger.record((key, digest(f"{name}{number}")) for key in keys[name])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(name,)) for name in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    assert errors == []
    final = backend.hashes()
    last = {name: digest(f"{name}{rounds - 1}") for name in keys}
    assert sorted(final) == list(range(1, 301))
    assert all(final[key] == last["a"] for key in range(1, 101))
    assert all(final[key] in (last["a"], last["b"]) for key in range(101, 301))


# -- dry runs ------------------------------------------------------------------------------------


def test_dry_run_prepare_does_not_create_the_table(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    ledger = new_ledger()
    ledger.prepare(create=False)
    assert not backend.table_exists()
    assert not ledger.sql.exists and not ledger.sql.writable
    assert ledger.lookup([1, 2]) == {}, "no table: every row is new"
    with pytest.raises(RuntimeError, match=r"need prepare\(create=True\)"):
        ledger.record([(1, digest("x"))])
    with pytest.raises(RuntimeError, match=r"need prepare\(create=True\)"):
        ledger.forget([1])


def test_dry_run_reads_an_existing_ledger_and_writes_nothing(
    backend: Backend, new_ledger: Callable[..., SyncLedger]
) -> None:
    writer = new_ledger()
    writer.prepare(create=True)
    writer.record([(1, digest("one"))])
    writer.close()
    if backend.backend == "sqlite":
        backend.run("PRAGMA journal_mode = DELETE")
    dry = new_ledger()
    dry.prepare(create=False)
    assert dry.sql.exists and not dry.sql.writable
    assert dry.lookup([1, 2]) == {1: digest("one")}
    if backend.backend == "sqlite":
        assert backend.query("PRAGMA journal_mode") == [("delete",)], "a dry run leaves the file as it is"


def test_lookup_before_prepare_is_refused(new_ledger: Callable[..., SyncLedger]) -> None:
    with pytest.raises(RuntimeError, match=r"prepare\(\) must run before"):
        new_ledger().lookup([1])


# -- SQLite: the ledger in the file the rows stream from -----------------------------------------

SOURCE_ROWS = 2500


def _fill_source(path: Path) -> None:
    with closing(sqlite3.connect(path)) as database, database:
        database.execute("CREATE TABLE enrichment (interview_request_id INTEGER PRIMARY KEY, notes TEXT)")
        database.executemany(
            "INSERT INTO enrichment VALUES (?, ?)", [(n, f"notes {n}") for n in range(1, SOURCE_ROWS + 1)]
        )


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_ledger_in_the_file_being_streamed(
    backend: Backend, new_ledger: Callable[..., SyncLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One SELECT open on the file for the whole run, ledger reads and writes between its batches."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    monkeypatch.setattr(ledger_dialect, "SQLITE_BUSY_TIMEOUT_MS", 2000)  # a lock would fail fast, not hang
    path = Path(backend.query("PRAGMA database_list")[0][2])
    _fill_source(path)
    assert backend.query("PRAGMA journal_mode") == [("delete",)]
    ledger = new_ledger()
    ledger.prepare(create=True)  # before the source query, as the operator does
    assert backend.query("PRAGMA journal_mode") == [("wal",)]
    source = SqliteHook(sqlite_conn_id=backend.conn_id).get_conn()
    streamed = 0
    try:
        with streaming_cursor(source) as cursor:
            cursor.execute("SELECT interview_request_id, notes FROM enrichment ORDER BY interview_request_id")
            while batch := cursor.fetchmany(300):
                ids = [row[0] for row in batch]
                assert ledger.lookup(ids) == {}
                ledger.record((request_id, digest(notes)) for request_id, notes in batch)
                ledger.forget(ids[:1])  # the first row of each batch "failed"
                streamed += len(batch)
    finally:
        source.close()
    assert streamed == SOURCE_ROWS
    recorded = backend.hashes()
    assert len(recorded) == SOURCE_ROWS - 9  # 9 batches, one forgotten in each
    assert recorded[2] == digest("notes 2")
    assert 1 not in recorded and 301 not in recorded


def test_sqlite_rollback_journal_would_lock_the_writer(tmp_path: Path) -> None:
    """Why the ledger switches SQLite to WAL: in the default mode an open SELECT blocks other writers' commits."""
    path = tmp_path / "warehouse.db"
    _fill_source(path)
    with closing(sqlite3.connect(path)) as reader, closing(sqlite3.connect(path, timeout=0.2)) as writer:
        writer.execute("CREATE TABLE ledger (x INTEGER)")
        cursor = reader.execute("SELECT interview_request_id FROM enrichment")
        assert len(cursor.fetchmany(300)) == 300
        writer.execute("INSERT INTO ledger VALUES (1)")
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            writer.commit()


# -- errors before any request --------------------------------------------------------------------


def test_missing_connection(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    error = ledger_error(new_ledger(ledger_conn_id="no_such_ledger"))
    assert "ledger_conn_id 'no_such_ledger' is not a defined Airflow connection" in str(error)
    assert "Fix: create it" in str(error)
    assert (error.ledger_conn_id, error.ledger_table) == ("no_such_ledger", TABLE)
    assert isinstance(error, HindsightConfigurationError)
    assert isinstance(error, AirflowFailException), "permanent: Airflow does not retry it"
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.ledger_conn_id) == (HindsightLedgerError, str(error), "no_such_ledger")


def test_unreachable_database(
    backend: Backend, new_ledger: Callable[..., SyncLedger], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend.backend == "sqlite":
        connection = {"conn_type": "sqlite", "host": str(tmp_path / "no" / "such" / "dir" / "ledger.db")}
    else:
        connection = {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": free_port(),
            "login": "postgres",
            "schema": "x",
        }
    monkeypatch.setenv("AIRFLOW_CONN_DOWN_LEDGER", json.dumps(connection))
    error = ledger_error(new_ledger(ledger_conn_id="down_ledger"))
    assert "cannot connect to ledger_conn_id 'down_ledger'" in str(error)
    assert "Fix: check the connection's host, port, database and credentials" in str(error)


def test_not_a_sql_connection(new_ledger: Callable[..., SyncLedger], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_API_LEDGER", json.dumps({"conn_type": "http", "host": "example.com"}))
    error = ledger_error(new_ledger(ledger_conn_id="api_ledger"))
    assert "ledger_conn_id 'api_ledger' is a 'http' connection (HttpHook), not a SQL database connection" in str(error)
    assert "Fix: point ledger_conn_id at a database connection" in str(error)


def test_table_with_other_columns(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    backend.run(f"CREATE TABLE {TABLE} (sync_id VARCHAR(10), interview_request_id INTEGER, note TEXT)")
    for create in (True, False):
        error = ledger_error(new_ledger(), create=create)
        assert f"the table '{TABLE}' on connection '{LEDGER_CONN_ID}' is not a Hindsight sync ledger" in str(error)
        assert "its columns are (sync_id, interview_request_id, note)" in str(error)
        assert "Fix: set ledger_table to another name, or drop or rename that table" in str(error)


def test_read_only_database(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    """A ledger that exists but cannot be written, and one that cannot be created there."""
    new_ledger().prepare(create=True)
    if backend.backend == "sqlite":
        backend.set_connection("ro_ledger", mode="ro")
        refusal = "attempt to write a readonly database"
    else:
        ((database,),) = backend.query("SELECT current_database()")
        backend.run(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        backend.set_connection("ro_ledger")
        refusal = "cannot execute INSERT in a read-only transaction"
    error = ledger_error(new_ledger(ledger_conn_id="ro_ledger"))
    assert f"cannot write to the ledger table '{TABLE}' on connection 'ro_ledger'" in str(error)
    assert refusal in str(error)
    assert "Fix: the connection's user needs INSERT, UPDATE and DELETE on it" in str(error)
    error = ledger_error(new_ledger(ledger_conn_id="ro_ledger", table="another_ledger"))
    assert "cannot create the ledger table 'another_ledger' on connection 'ro_ledger'" in str(error)
    assert "Fix: let the connection's user create tables there, create the table yourself" in str(error)
    assert not backend.table_exists("another_ledger")
    new_ledger(ledger_conn_id="ro_ledger").prepare(create=False)  # a dry run only reads


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_user_without_write_rights(backend: Backend, new_ledger: Callable[..., SyncLedger]) -> None:
    new_ledger().prepare(create=True)
    ((database,),) = backend.query("SELECT current_database()")
    reader = f"reader_{database}"  # roles belong to the server: one per test database
    backend.run(f"CREATE ROLE {reader} LOGIN", f"GRANT SELECT ON {TABLE} TO {reader}")
    backend.set_connection("reader_ledger", login=reader)
    error = ledger_error(new_ledger(ledger_conn_id="reader_ledger"))
    assert f"cannot write to the ledger table '{TABLE}' on connection 'reader_ledger'" in str(error)
    assert f"permission denied for table {TABLE}" in str(error)
    backend.run(f"REVOKE SELECT ON {TABLE} FROM {reader}")
    error = ledger_error(new_ledger(ledger_conn_id="reader_ledger"))
    assert f"cannot read the ledger table '{TABLE}' on connection 'reader_ledger'" in str(error)
    assert "Fix: give the connection's user SELECT, INSERT, UPDATE and DELETE on it" in str(error)


# -- names and hashes ------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["hindsight_sync_ledger", "analytics.hindsight_sync_ledger", "_ledger2", "A.B"])
def test_ledger_table_names_accepted(table: str) -> None:
    assert validate_ledger_table(table) == table


@pytest.mark.parametrize(
    "table",
    ["a; drop table x", "a.b.c", '"quoted"', "", " ledger", "1ledger", "my-ledger", "a.", ".a", "x" * 129, None, 5],
)
def test_ledger_table_names_refused(table: Any) -> None:
    with pytest.raises(HindsightValidationError, match="ledger_table must be a table name") as caught:
        validate_ledger_table(table)
    assert caught.value.field == "ledger_table"


def test_bad_table_name_is_refused_before_connecting() -> None:
    with pytest.raises(HindsightValidationError) as caught:
        SyncLedger(ledger_conn_id="never_looked_up", table="a; drop table x", sync_id=SYNC_ID)
    assert caught.value.field == "ledger_table"


@pytest.mark.parametrize("sync_id", ["", "   ", "x" * 513, None])
def test_sync_id_refused(sync_id: Any) -> None:
    with pytest.raises(HindsightValidationError) as caught:
        validate_sync_id(sync_id)
    assert caught.value.field == "sync_id"


def test_body_sha256_covers_base_url_and_exact_bytes() -> None:
    payload = b'{"contact_name":"Ada"}'
    value = body_sha256("https://app.usehindsight.com/api/v1", payload)
    assert value == hashlib.sha256(b"https://app.usehindsight.com/api/v1\n" + payload).hexdigest()
    assert body_sha256("https://app.usehindsight.com/api/v1/", payload) == value
    assert body_sha256("http://127.0.0.1:8080/api/v1", payload) != value
    assert body_sha256("https://app.usehindsight.com/api/v1", b'{"contact_name": "Ada"}') != value
