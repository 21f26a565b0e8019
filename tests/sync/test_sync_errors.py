"""A ledger that cannot be used fails the task before any request, naming the problem and the fix."""

from __future__ import annotations

import json

import pytest

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.ledgers.sync import HindsightLedgerError
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import free_port
from tests.sync.helpers import TABLE, LedgerDatabase, Outcome, Source, bulk, run, transfer


@pytest.fixture
def filled(source: Source) -> Source:
    source.fill(5)
    return source


def refused_before_sending(outcome: Outcome, emulator: HindsightEmulator) -> str:
    """The run failed with a ledger error, pushed no summary and sent nothing; returns the message."""
    assert isinstance(outcome.error, HindsightLedgerError), outcome.error
    assert outcome.summary is None
    assert emulator.request_count == 0
    return str(outcome.error)


def test_missing_connection(filled: Source, hindsight_emulator: HindsightEmulator) -> None:
    for operator in (transfer(filled, ledger_conn_id="no_such_ledger"), bulk(filled, ledger_conn_id="nope")):
        message = refused_before_sending(run(operator), hindsight_emulator)
        assert f"ledger_conn_id {operator.ledger_conn_id!r} is not a defined Airflow connection" in message
        assert "Fix: create it (Admin > Connections" in message


def test_unreachable_postgres(
    filled: Source, hindsight_emulator: HindsightEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens there
    connection = {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres", "schema": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_DOWN_LEDGER", json.dumps(connection))

    message = refused_before_sending(run(transfer(filled, ledger_conn_id="down_ledger")), hindsight_emulator)

    assert "cannot connect to ledger_conn_id 'down_ledger'" in message
    assert f"port {port} failed: Connection refused" in message
    assert "Fix: check the connection's host, port, database and credentials, and that the database is up" in message


def read_only_connection(ledger_db: LedgerDatabase, how: str) -> tuple[str, str]:
    """Define a connection that can read the ledger's database but not write it; returns its id and the refusal."""
    if how == "sqlite_file":
        return ledger_db.set_connection("ro_ledger", mode="ro"), "attempt to write a readonly database"
    ((database,),) = ledger_db.query("SELECT current_database()")
    if how == "postgres_database":
        ledger_db.run(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        return ledger_db.set_connection("ro_ledger"), "cannot execute INSERT in a read-only transaction"
    reader = f"reader_{database}"  # roles belong to the server: one per test database
    ledger_db.run(f"CREATE ROLE {reader} LOGIN", f"GRANT SELECT ON {TABLE} TO {reader}")
    return ledger_db.set_connection("ro_ledger", login=reader), f"permission denied for table {TABLE}"


@pytest.mark.parametrize(
    ("ledger_db", "how"),
    [("sqlite", "sqlite_file"), ("postgres", "postgres_database"), ("postgres", "postgres_user")],
    indirect=["ledger_db"],
)
def test_read_only_ledger(
    how: str, filled: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    assert run(transfer(filled, ledger_db)).error is None  # the ledger exists, with five rows
    filled.change([1, 2])
    hindsight_emulator.reset_requests()
    conn_id, refusal = read_only_connection(ledger_db, how)

    message = refused_before_sending(run(transfer(filled, ledger_conn_id=conn_id)), hindsight_emulator)

    assert f"cannot write to the ledger table '{TABLE}' on connection 'ro_ledger'" in message
    assert refusal in message
    assert "Fix: the connection's user needs INSERT, UPDATE and DELETE on it" in message
    dry = run(transfer(filled, ledger_conn_id=conn_id, dry_run=True))  # a dry run only reads: it works
    assert dry.error is None and dry.summary is not None
    assert (dry.summary["succeeded"], dry.summary["unchanged"]) == (2, 3)
    assert hindsight_emulator.request_count == 0


def test_a_table_of_that_name_with_other_columns(
    filled: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    ledger_db.run(f"CREATE TABLE {TABLE} (sync_id VARCHAR(10), interview_request_id INTEGER, note TEXT)")

    message = refused_before_sending(run(transfer(filled, ledger_db)), hindsight_emulator)

    assert f"the table '{TABLE}' on connection '{ledger_db.conn_id}' is not a Hindsight sync ledger" in message
    assert "its columns are (sync_id, interview_request_id, note)" in message
    assert "Fix: set ledger_table to another name, or drop or rename that table" in message
    assert ledger_db.query(f"SELECT COUNT(*) FROM {TABLE}") == [(0,)]


def test_a_ledger_table_that_is_not_a_plain_name(
    filled: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator
) -> None:
    """Refused when the DAG is parsed (the operator is built), long before any run."""
    ledger_db.run("CREATE TABLE y (keep INTEGER)")
    for table in ("x; drop table y", "analytics.ledger.v2", "ledger-2026", '"ledger"'):
        with pytest.raises(HindsightValidationError) as info:
            transfer(filled, ledger_db, ledger_table=table)

        assert info.value.field == "ledger_table"
        assert "ledger_table must be a table name such as 'hindsight_sync_ledger'" in str(info.value)
        assert repr(table) in str(info.value)
    assert hindsight_emulator.request_count == 0
    assert ledger_db.table_exists("y") and not ledger_db.table_exists(TABLE)


def test_a_bad_sync_id(filled: Source, ledger_db: LedgerDatabase, hindsight_emulator: HindsightEmulator) -> None:
    with pytest.raises(HindsightValidationError) as info:
        transfer(filled, ledger_db, sync_id="   ")
    assert info.value.field == "sync_id"
    assert "Leave it unset for '<dag_id>.<task_id>'" in str(info.value)
    assert hindsight_emulator.request_count == 0


def test_a_missing_hindsight_connection_fails_before_the_ledger_is_touched(
    filled: Source, ledger_db: LedgerDatabase
) -> None:
    outcome = run(transfer(filled, ledger_db))

    assert isinstance(outcome.error, HindsightConfigurationError)
    assert "'hindsight_default'" in str(outcome.error)
    assert not ledger_db.table_exists()
