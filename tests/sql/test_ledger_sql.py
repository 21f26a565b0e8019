"""The machinery every table shares (ledgers/sql.py's SqlTable), through a small ledger of its own, on SQLite and
Postgres."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.ledgers import dialect as ledger_dialect
from airflow_provider_hindsight.ledgers.schema import TableSchema
from airflow_provider_hindsight.ledgers.sql import SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.table import Column, TableSpec
from tests.support.ledger_db import LedgerDatabase as Backend
from tests.support.ledger_db import postgres_ledger, sqlite_ledger

CONN_ID = "claims_db"
TABLE = "claims"
LOGGER = "airflow_provider_hindsight.ledgers"
"""The ledgers' loggers: ledgers.sql, ledgers.schema for creating the table, ledgers.dialect for switching to WAL."""
SPEC = TableSpec(
    kind="claim ledger",
    columns=(
        Column("request_key", "VARCHAR(256)"),
        Column("state", "VARCHAR(16)"),
        Column("interview_request_id", "BIGINT", nullable=True),
        Column("attempted_at", "TIMESTAMP"),
    ),
    key=("request_key",),
)


class ClaimLedger:
    """A create-once ledger in miniature, built as the real ones are: one row per key, claimed by an insert."""

    def __init__(self, *, ledger_conn_id: str, table: str) -> None:
        self.sql = SqlTable(SPEC, conn_id=ledger_conn_id, table=table, probe_rows=self._probe_rows)

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        return [("<ledger probe>", state, None, self.sql.now()) for state in ("pending", "created")]

    def prepare(self, *, create: bool) -> None:
        self.sql.prepare(create=create)

    def close(self) -> None:
        self.sql.close()

    def __enter__(self) -> ClaimLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def claim(self, key: str) -> bool:
        return self.sql.insert_if_absent((key, "pending", None, self.sql.now()))

    def states(self, keys: list[str]) -> dict[str, tuple[str, int | None]]:
        rows = self.sql.select_by_keys(("request_key", "state", "interview_request_id"), ((key,) for key in keys))
        return {key: (state, request_id) for key, state, request_id in rows}


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    if request.param == "sqlite":
        return sqlite_ledger(tmp_path / "claims.db", monkeypatch, CONN_ID, sync_id="-")
    return postgres_ledger(request.getfixturevalue("postgres_database"), monkeypatch, CONN_ID, sync_id="-")


@pytest.fixture
def new_ledger(backend: Backend) -> Iterator[Callable[..., ClaimLedger]]:
    opened: list[ClaimLedger] = []

    def make(**arguments: Any) -> ClaimLedger:
        opened.append(ClaimLedger(**{"ledger_conn_id": backend.conn_id, "table": TABLE, **arguments}))
        return opened[-1]

    yield make
    for ledger in opened:
        ledger.close()


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith(f"{LOGGER}.")]


def test_the_table_is_created_from_the_column_spec(
    backend: Backend, new_ledger: Callable[..., ClaimLedger], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    ledger = new_ledger()
    ledger.prepare(create=True)
    assert backend.table_exists(TABLE)
    assert backend.query(f"SELECT COUNT(*) FROM {TABLE}") == [(0,)], "the probe left no row"
    assert f"Created the ledger table {TABLE} on '{CONN_ID}'." in messages(caplog)
    backend.run(f"INSERT INTO {TABLE} (request_key, state, attempted_at) VALUES ('k', 'pending', '2026-01-01')")
    with pytest.raises(Exception, match=r"(?i)not.null"):
        backend.run(f"INSERT INTO {TABLE} (request_key, attempted_at) VALUES ('k2', '2026-01-01')")
    caplog.clear()
    new_ledger().prepare(create=True)
    assert not [message for message in messages(caplog) if "ledger table" in message], "found at once: no line"


def test_a_table_created_by_another_run_meanwhile_is_found_not_created(
    backend: Backend,
    new_ledger: Callable[..., ClaimLedger],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other run created it between this run's read and its CREATE TABLE IF NOT EXISTS."""
    new_ledger().prepare(create=True)
    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.clear()
    ledger = new_ledger()
    real_read = TableSchema.read_columns
    reads = iter([(None, RuntimeError("no such table: claims"))])
    monkeypatch.setattr(TableSchema, "read_columns", lambda schema: next(reads, None) or real_read(schema))
    ledger.prepare(create=True)
    assert ledger.sql.writable
    found = [message for message in messages(caplog) if "ledger table" in message]
    assert found == [f"Found the ledger table {TABLE} on '{CONN_ID}': another run created it at the same moment."]


def test_insert_if_absent_loses_quietly_and_the_connection_stays_usable(
    backend: Backend, new_ledger: Callable[..., ClaimLedger]
) -> None:
    ledger = new_ledger()
    ledger.prepare(create=True)
    assert ledger.claim("D-1042:C-7781") is True
    assert ledger.claim("D-1042:C-7781") is False, "a duplicate key is a lost claim, not an error"
    assert ledger.claim("D-1042:C-7781") is False
    # the failed insert was rolled back: the connection reads and writes on
    assert ledger.states(["D-1042:C-7781", "D-1:C-2"]) == {"D-1042:C-7781": ("pending", None)}
    assert ledger.claim("D-1:C-2") is True
    assert ledger.sql.update_by_key(("state", "interview_request_id"), [("created", 4821, "D-1042:C-7781")]) == 1
    assert ledger.sql.update_by_key(("state",), [("created", "no such key")]) == 0
    assert ledger.states(["D-1042:C-7781", "D-1:C-2"]) == {
        "D-1042:C-7781": ("created", 4821),
        "D-1:C-2": ("pending", None),
    }
    assert backend.query(f"SELECT COUNT(*) FROM {TABLE}") == [(2,)]


def test_insert_if_absent_raises_on_other_integrity_errors(new_ledger: Callable[..., ClaimLedger]) -> None:
    ledger = new_ledger()
    ledger.prepare(create=True)
    with pytest.raises(Exception, match=r"(?i)null"):
        ledger.sql.insert_if_absent(("k", None, None, ledger.sql.now()))  # state is NOT NULL: not a lost claim
    assert ledger.claim("k") is True


def test_two_runs_claiming_one_key_at_once_one_wins(backend: Backend, new_ledger: Callable[..., ClaimLedger]) -> None:
    new_ledger().prepare(create=True)
    ledgers = [new_ledger(), new_ledger()]
    start, results, errors = threading.Barrier(2), [], []

    def claim(ledger: ClaimLedger) -> None:
        try:
            ledger.prepare(create=True)  # in the thread: a SQLite connection belongs to the thread that opened it
            start.wait(timeout=30)
            results.extend(ledger.claim(f"key-{number}") for number in range(50))
        except BaseException as error:
            errors.append(error)
        finally:
            ledger.close()

    threads = [threading.Thread(target=claim, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [False] * 50 + [True] * 50, "each key claimed exactly once"
    assert backend.query(f"SELECT COUNT(*) FROM {TABLE}") == [(50,)]


@pytest.mark.parametrize("upsert", [True, False], ids=["dialect-upsert", "update-then-insert"])
def test_upsert_and_delete_by_a_one_column_key(
    new_ledger: Callable[..., ClaimLedger], upsert: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not upsert:
        monkeypatch.setattr(ledger_dialect, "upsert_statement", lambda *arguments: None)
    ledger = new_ledger()
    ledger.prepare(create=True)
    now = ledger.sql.now()
    keys = [f"k{number:04}" for number in range(1, 1201)]
    assert ledger.sql.upsert_rows((key, "pending", None, now) for key in keys) == 1200
    assert ledger.sql.upsert_rows([("k0001", "created", 1, now), ("k0002", "rejected", None, now)]) == 2
    states = ledger.states(keys)
    assert len(states) == 1200
    assert states["k0001"] == ("created", 1)
    assert states["k0002"] == ("rejected", None)
    assert ledger.sql.delete_keys((key,) for key in keys[:600]) == 600
    assert sorted(ledger.states(keys)) == keys[600:]


def test_the_switch_to_write_ahead_logging_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    backend = sqlite_ledger(tmp_path / "claims.db", monkeypatch, CONN_ID, sync_id="-")
    caplog.set_level(logging.INFO, logger=LOGGER)
    with ClaimLedger(ledger_conn_id=CONN_ID, table=TABLE) as ledger:
        ledger.prepare(create=True)
    assert backend.query("PRAGMA journal_mode") == [("wal",)]
    switched = [message for message in messages(caplog) if "write-ahead logging" in message]
    assert len(switched) == 1
    assert f"Switched the SQLite database of ledger_conn_id '{CONN_ID}' to write-ahead logging" in switched[0]
    caplog.clear()
    with ClaimLedger(ledger_conn_id=CONN_ID, table=TABLE) as again:
        again.prepare(create=True)
    assert not [message for message in messages(caplog) if "write-ahead logging" in message]


def test_driver_messages_never_show_the_password() -> None:
    ledger = ClaimLedger(ledger_conn_id=CONN_ID, table=TABLE)
    ledger.sql.messages.secret = "s3cr3t-pw"
    message = ledger.sql.describe(RuntimeError('connection to "db" failed:\n  password "s3cr3t-pw"  rejected'))
    assert message == 'connection to "db" failed: password "***" rejected'


@pytest.mark.parametrize("table", ["a; drop table x", "a.b.c", "", None])
def test_table_names_are_checked_naming_the_parameter(table: Any) -> None:
    with pytest.raises(HindsightValidationError, match="interviews_table must be a table name such as") as caught:
        validate_table_name(table, parameter="interviews_table", example="hindsight_interviews")
    assert caught.value.field == "interviews_table"
    assert "'analytics.hindsight_interviews'" in str(caught.value)
    assert validate_table_name("analytics.hindsight_interviews", parameter="x", example="y") == (
        "analytics.hindsight_interviews"
    )


def test_create_table_sql() -> None:
    assert SPEC.create_sql("s.claims") == (
        "CREATE TABLE IF NOT EXISTS s.claims (\n"
        "    request_key VARCHAR(256) NOT NULL,\n"
        "    state VARCHAR(16) NOT NULL,\n"
        "    interview_request_id BIGINT,\n"
        "    attempted_at TIMESTAMP NOT NULL,\n"
        "    PRIMARY KEY (request_key)\n"
        ")"
    )


def test_keys_of_several_prefixes_are_looked_up_and_deleted_together(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A two-column key (the sync ledger's): one ``a = ? AND b IN (...)`` per first-column value."""
    from airflow_provider_hindsight.ledgers.sync import SyncLedger

    with SyncLedger(ledger_conn_id=backend.conn_id, sync_id="dag.one") as ledger:
        ledger.prepare(create=True)
        now = ledger.sql.now()
        sync_ids = ("dag.one", "dag.two")
        rows = [(sync_id, number, f"{sync_id}-{number}", now) for sync_id in sync_ids for number in (1, 2)]
        assert ledger.sql.upsert_rows(rows) == 4
        keys = [("dag.two", 2), ("dag.one", 1), ("dag.three", 1)]
        found = sorted(ledger.sql.select_by_keys(("sync_id", "interview_request_id", "body_sha256"), keys))
        assert found == [("dag.one", 1, "dag.one-1"), ("dag.two", 2, "dag.two-2")]
        assert ledger.sql.delete_keys(keys) == 3
        assert sorted(backend.query("SELECT sync_id, interview_request_id FROM hindsight_sync_ledger")) == [
            ("dag.one", 2),
            ("dag.two", 1),
        ]


def test_use_before_prepare_is_refused_at_the_call() -> None:
    ledger = ClaimLedger(ledger_conn_id=CONN_ID, table=TABLE)
    with pytest.raises(RuntimeError, match=r"prepare\(\) must run before the ledger table claims is used"):
        ledger.sql.select_by_keys(("state",), [("k",)])
    with pytest.raises(RuntimeError, match=r"writes to the ledger table claims need prepare\(create=True\)"):
        ledger.sql.insert_if_absent(("k", "pending", None, "2026-01-01 00:00:00"))
