"""A source role with idle_in_transaction_session_timeout shorter than one batch at the pace: a WARNING naming
batch_size and the fix, before any row is read (issue 19, item 5), on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from airflow_provider_hindsight.transfers.streaming import postgres_duration
from tests.support.postgres import PostgresDatabase
from tests.sync.helpers import Source, point_hindsight, run, transfer


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", None), ("30s", 30.0), ("2min", 120.0), ("500ms", 0.5), ("30000", 30.0), ("1h", 3600.0)]
)
def test_postgres_durations(text: str, seconds: float | None) -> None:
    assert postgres_duration(text) == seconds


def source_as(postgres_database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch, role: str) -> Source:
    import psycopg

    params = postgres_database.params
    source = Source("pg_source", lambda: psycopg.connect(**params), placeholder="%s")
    source.fill(3)
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute(f"GRANT SELECT ON enrichment TO {role}")
    postgres_database.set_airflow_connection(monkeypatch, "pg_source", login=role)
    return source


@pytest.mark.parametrize(("timeout", "warned"), [("2s", True), ("10min", False), ("0", False)])
def test_a_batch_that_outlasts_the_idle_in_transaction_timeout_is_warned_about(
    timeout: str,
    warned: bool,
    postgres_database: PostgresDatabase,
    hindsight_emulator: HindsightEmulator,
    monkeypatch: pytest.MonkeyPatch,
    task_logs: Callable[[], str],
) -> None:
    role = f"reader_{postgres_database.name}"
    import psycopg

    with psycopg.connect(**postgres_database.params, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"ALTER ROLE {role} SET idle_in_transaction_session_timeout = '{timeout}'")
    source = source_as(postgres_database, monkeypatch, role)
    point_hindsight(monkeypatch, hindsight_emulator, requests_per_minute=600)  # 100 rows take 10.3 s

    outcome = run(transfer(source, batch_size=100))

    assert outcome.error is None
    assert (outcome.summary["succeeded"], outcome.summary["failed"]) == (3, 0)
    logs = task_logs()
    line = (
        "batch_size=100 rows take up to 10 s to send at 582 requests a minute, longer than the source connection "
        "'pg_source''s idle_in_transaction_session_timeout (2 s)"
    )
    assert (line in logs) is warned, logs[-2000:]
    if warned:
        assert "Fix: a smaller batch_size (9 fits in half the timeout), or raise the timeout for the role" in logs
