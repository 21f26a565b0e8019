"""Change-only sync end to end: a SQLite source, a ledger on SQLite or PostgreSQL, the real emulator.

Every check is independent of the provider's own code: bodies are encoded here as the API receives
them, and ledger hashes are computed here from the base URL and the exact bytes the emulator received.
Fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.testing import HindsightEmulator
from tests.helpers import FakeTaskInstance
from tests.support import ledger_db
from tests.support.ledger_db import LedgerDatabase
from tests.support.postgres import PostgresDatabase

SOURCE_CONN_ID = "sync_source"


LEDGER_CONN_ID = "sync_ledger"


TABLE = "hindsight_sync_ledger"


DAG_ID = "warehouse_sync"


TASK_ID = "push_changes"


DEFAULT_SYNC_ID = f"{DAG_ID}.{TASK_ID}"


SQL = "SELECT interview_request_id, contact_name, title, notes FROM enrichment ORDER BY interview_request_id"


def payload(body: dict[str, Any]) -> bytes:
    """The exact bytes the provider sends for ``body``: compact JSON, UTF-8, keys in the API's field order."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def body_hash(base_url: str, body: bytes) -> str:
    """SHA-256 of the base URL, a newline and the body bytes: what the ledger holds for a delivered row."""
    return hashlib.sha256(base_url.rstrip("/").encode() + b"\n" + body).hexdigest()


def request_id(request: Any) -> int:
    return int(request.path.rsplit("/", 1)[1])


KEY_CHECK = ("PATCH", "/api/v1/interviews/0", b"{}")
"""The one request a change-only run that owes nothing sends: the connection test's check of the key."""


def is_key_check(request: Any) -> bool:
    return (request.method, request.path, request.body) == KEY_CHECK


def assert_only_the_key_check(emulator: HindsightEmulator) -> None:
    """A change-only run that owed nothing sent no update, only one check of the API key."""
    requests = emulator.requests
    assert [is_key_check(request) for request in requests] == [True], [request.path for request in requests]


def sent(emulator: HindsightEmulator) -> dict[int, Any]:
    """``{interview id: recorded request}`` of every update (not the key check), checking each is sent once."""
    requests = [request for request in emulator.requests if not is_key_check(request)]
    by_id = {request_id(request): request for request in requests}
    assert len(by_id) == len(requests), f"an interview was sent twice: {sorted(map(request_id, requests))}"
    for interview_id, request in by_id.items():
        assert (request.method, request.path) == ("PATCH", f"/api/v1/interviews/{interview_id}")
    return by_id


def assert_sent_exactly(emulator: HindsightEmulator, bodies: dict[int, dict[str, Any]]) -> None:
    """The emulator received one request per id of ``bodies``, each with exactly that body, and nothing else."""
    requests = sent(emulator)
    assert sorted(requests) == sorted(bodies)
    for interview_id, body in bodies.items():
        assert requests[interview_id].body == payload(body), interview_id
        assert requests[interview_id].json == body


def assert_summary(summary: dict[str, Any], *, succeeded: int, unchanged: int, failed: int = 0) -> None:
    assert (summary["succeeded"], summary["unchanged"], summary["failed"]) == (succeeded, unchanged, failed)
    assert summary["total"] == summary["succeeded"] + summary["failed"] + summary["unchanged"]
    assert len(summary["failures"]) == failed


@dataclass
class Source:
    """An ``enrichment`` table behind the Airflow connection ``conn_id``, read and changed directly."""

    conn_id: str
    connect: Callable[[], Any]
    placeholder: str = "?"

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with closing(self.connect()) as database:
            cursor = database.cursor()
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS enrichment "
                "(interview_request_id INTEGER PRIMARY KEY, contact_name TEXT, title TEXT, notes TEXT)"
            )
            if rows:
                cursor.executemany(sql.replace("?", self.placeholder), rows)
            database.commit()

    def fill(self, count: int, *, first: int = 1) -> None:
        rows = [
            (n, f"Contact {n}", "CTO" if n % 2 else "VP Sales", f"Renewal notes {n}")
            for n in range(first, first + count)
        ]
        self._write("INSERT INTO enrichment VALUES (?, ?, ?, ?)", rows)

    def set_notes(self, notes: dict[int, str]) -> None:
        rows = [(text, interview_id) for interview_id, text in notes.items()]
        self._write("UPDATE enrichment SET notes = ? WHERE interview_request_id = ?", rows)

    def change(self, ids: Iterable[int]) -> None:
        """Give these rows new notes, as a warehouse refresh would."""
        rows = [(interview_id,) for interview_id in ids]
        self._write("UPDATE enrichment SET notes = notes || ' (updated)' WHERE interview_request_id = ?", rows)

    def bodies(self, ids: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
        """``{id: the JSON body the transfer sends for that row}``, in the order the API fields are encoded."""
        with closing(self.connect()) as database:
            cursor = database.cursor()
            cursor.execute(SQL)
            rows = cursor.fetchall()
        wanted = None if ids is None else set(ids)
        return {
            interview_id: {"contact_context": {"title": title, "notes": notes}, "contact_name": name}
            for interview_id, name, title, notes in rows
            if wanted is None or interview_id in wanted
        }

    def updates(self) -> list[dict[str, Any]]:
        """The rows as ``HindsightBulkUpdateInterviewsOperator`` takes them."""
        return [{"interview_request_id": interview_id, **body} for interview_id, body in self.bodies().items()]


def sqlite_ledger(path: Path, monkeypatch: pytest.MonkeyPatch, conn_id: str = LEDGER_CONN_ID) -> LedgerDatabase:
    """The ledger in a SQLite file, behind ``conn_id``, holding this suite's sync by default."""
    return ledger_db.sqlite_ledger(path, monkeypatch, conn_id, sync_id=DEFAULT_SYNC_ID)


def postgres_ledger(
    database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch, conn_id: str = LEDGER_CONN_ID
) -> LedgerDatabase:
    """The ledger in a PostgreSQL database, behind ``conn_id``, holding this suite's sync by default."""
    return ledger_db.postgres_ledger(database, monkeypatch, conn_id, sync_id=DEFAULT_SYNC_ID)


def point_hindsight(
    monkeypatch: pytest.MonkeyPatch, emulator: HindsightEmulator, *, requests_per_minute: float = 60_000, **extra: Any
) -> None:
    """Point ``hindsight_default`` at ``emulator`` with connection extras (``max_retries``, ``timeout``, ...)."""
    connection = emulator.connection(requests_per_minute=requests_per_minute)
    del connection["conn_id"]  # not inside an AIRFLOW_CONN_* value
    connection["extra"].update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))


@dataclass
class Outcome:
    """One ``execute()``: the returned summary, or the error and the summary pushed before it."""

    summary: Any
    """The summary dict; ``None`` when the run failed before pushing one."""
    error: Exception | None


class _DagRun:
    def __init__(self, start_date: datetime.datetime | None) -> None:
        self.start_date = start_date


def run(operator: Any, *, dag_run_start: datetime.datetime | None = None) -> Outcome:
    """Run ``operator.execute()`` with the part of a task context the bulk operators use.

    ``dag_run_start`` is ``context["dag_run"].start_date`` (a retry of a full refresh in the same DAG run).
    """
    ti = FakeTaskInstance()
    try:
        operator.execute({"ti": ti, "dag_run": _DagRun(dag_run_start)})
    except Exception as error:
        return Outcome(ti.xcom.get("summary"), error)
    return Outcome(ti.xcom["summary"], None)


def in_dag(operator_class: type, dag_id: str = DAG_ID, task_id: str = TASK_ID, **kwargs: Any) -> Any:
    """``operator_class(task_id=..., **kwargs)`` in a new DAG, so that the default sync_id is ``<dag_id>.<task_id>``."""
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=datetime.datetime(2026, 1, 1)):
        return operator_class(task_id=task_id, **kwargs)


def transfer(source: Source, ledger: LedgerDatabase | None = None, **kwargs: Any) -> Any:
    """A ``SqlToHindsightOperator`` reading ``source`` with change-only sync on ``ledger``."""
    from airflow_provider_hindsight.transfers.sql_to_hindsight import SqlToHindsightOperator

    options: dict[str, Any] = {
        "sql_conn_id": source.conn_id,
        "sql": SQL,
        "context_columns": ["title", "notes"],
        "batch_size": 100,
    }
    if ledger is not None:
        options["ledger_conn_id"] = ledger.conn_id
    return in_dag(SqlToHindsightOperator, **{**options, **kwargs})


def bulk(source: Source, ledger: LedgerDatabase | None = None, **kwargs: Any) -> Any:
    """A ``HindsightBulkUpdateInterviewsOperator`` sending the rows of ``source``; change-only sync on ``ledger``."""
    from airflow_provider_hindsight.operators.hindsight import HindsightBulkUpdateInterviewsOperator

    options: dict[str, Any] = {"updates": source.updates()}
    if ledger is not None:
        options["ledger_conn_id"] = ledger.conn_id
    return in_dag(HindsightBulkUpdateInterviewsOperator, **{**options, **kwargs})
