"""The interview ledger: which interview requests were created, so that none is ever created twice.

``POST /interviews`` is not idempotent (no idempotency key, no external id, no look-up), so the
provider keeps the memory itself: one row per ``request_key`` (the user's stable name for "this
interview should exist once") in a table on any Airflow SQL connection. States:

- ``pending``: the claim, committed **before** the POST is sent, by the worker about to send it.
  It is an ``INSERT`` under the primary key (for a key the ledger has no row of) or a compare-and-set
  ``UPDATE ... WHERE state = <the state read>`` (for a ``rejected`` row, or an ``unknown`` one with
  ``resend_unknown``): of two runs claiming one key, exactly one wins; the other counts it ``existing``.
- ``created``: Hindsight answered 201; the id, contact and survey link are stored, at once for that row.
- ``rejected``: a 4xx (not 429): nothing was created; sent again next run.
- ``unknown``: the POST may or may not have created an interview: never sent again unless the user
  says so (``resend_unknown``).

A claim whose create never reached Hindsight (429 or a refused connection after the retries, a run
stopped early) is deleted again: nothing to remember, the next run sends it. A claim records who
made it (``claimed_by``: the task instance, ``<dag_id>/<task_id>/<run_id>/<map_index>``): a
``pending`` row of an earlier try of the same task instance was left by a worker killed mid-create,
and that task's retry marks it ``unknown`` at once; one of another task instance is marked
``unknown`` once older than the create operators' ``pending_timeout`` (default
:data:`DEFAULT_PENDING_TIMEOUT`). Both with :meth:`InterviewLedger.mark_abandoned`.

The connection, the table's creation and checks, SQLite's write-ahead logging and the batched
statements are its :class:`~.sql.SqlTable`'s. The bulk engine's worker threads claim and record
concurrently, and a DB-API connection is not for several threads at once (``sqlite3`` refuses
outright), so the ledger's one connection lives on one thread of its own: every public method runs
its statements there and waits for them (see :func:`_on_ledger_thread`). Each claim and record is
its own committed transaction, so the claim is durable before the POST leaves.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.ledgers.dialect import utc_now
from airflow_provider_hindsight.ledgers.faults import HindsightLedgerError
from airflow_provider_hindsight.ledgers.sql import SqlTable, validate_table_name
from airflow_provider_hindsight.ledgers.table import Column, TableSpec
from airflow_provider_hindsight.ledgers.values import utc_timestamp
from airflow_provider_hindsight.sql_connection.session import SessionThread

__all__ = [
    "DEFAULT_INTERVIEW_TABLE",
    "DEFAULT_PENDING_TIMEOUT",
    "MAX_REQUEST_KEY_CHARS",
    "STATES",
    "HindsightLedgerError",
    "InterviewLedger",
    "LedgerEntry",
    "created_ids_query",
    "validate_interview_table",
]

DEFAULT_INTERVIEW_TABLE = "hindsight_interviews"
MAX_REQUEST_KEY_CHARS = 256
PENDING, CREATED, REJECTED, UNKNOWN = "pending", "created", "rejected", "unknown"
STATES = (PENDING, CREATED, REJECTED, UNKNOWN)
DEFAULT_PENDING_TIMEOUT = datetime.timedelta(hours=1)
"""A claim of another task instance older than this has no live writer: one create takes at most a few
minutes (timeout x attempts)."""
PROBE_KEY = "\x01hindsight-ledger-probe"
"""The write probe's ``request_key``; rolled back, and no real key starts with a control character."""

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_TEXT_LIMITS = {
    "contact_email": 254,
    "deal_id": 256,
    "contact_id": 256,
    "survey_url": 2048,
    "survey_token": 512,
    "api_status": 32,
    "error_code": 64,
    "error_message": 1000,
}
SPEC = TableSpec(
    kind="Hindsight interview ledger",
    columns=(
        Column("request_key", f"VARCHAR({MAX_REQUEST_KEY_CHARS})"),
        Column("state", "VARCHAR(16)"),
        Column("interview_request_id", "BIGINT", nullable=True),
        *(Column(name, f"VARCHAR({size})", nullable=True) for name, size in _TEXT_LIMITS.items()),
        Column("attempted_at", "TIMESTAMP", nullable=True),
        Column("created_at", "TIMESTAMP", nullable=True),
        Column("claimed_by", "VARCHAR(1000)", nullable=True),  # Airflow's ids are at most 250 characters each
    ),
    key=("request_key",),
)
_CREATED_COLUMNS = (
    "state",
    "interview_request_id",
    "contact_id",
    "deal_id",
    "survey_url",
    "survey_token",
    "api_status",
    "error_code",
    "error_message",
    "created_at",
)
_ENTRY_COLUMNS = (
    "request_key",
    "state",
    "interview_request_id",
    "contact_id",
    "deal_id",
    "survey_url",
    "api_status",
    "attempted_at",
    "claimed_by",
)


def validate_interview_table(table: object) -> str:
    """Return ``table`` when it is a plain or schema-qualified SQL identifier, else raise naming ``ledger_table``."""
    return validate_table_name(table, parameter="ledger_table", example=DEFAULT_INTERVIEW_TABLE)


def created_ids_query(table: str) -> str:
    """The ids of the interviews the ledger ``table`` holds as created, in order (the landing's default ids)."""
    return (
        f"SELECT interview_request_id FROM {table} "
        f"WHERE state = '{CREATED}' AND interview_request_id IS NOT NULL ORDER BY interview_request_id"
    )


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger holds about one key (no e-mail address, no token: only what the operators use)."""

    request_key: str
    state: str
    interview_request_id: int | None
    contact_id: str | None
    deal_id: str | None
    survey_url: str | None
    api_status: str | None
    attempted_at: datetime.datetime | None
    claimed_by: str | None
    """Which task instance made the claim (``<dag_id>/<task_id>/<run_id>/<map_index>``); ``None`` on rows of an
    earlier version."""

    def is_stale(self, now: datetime.datetime, pending_timeout: datetime.timedelta) -> bool:
        """A ``pending`` claim so old that the run that made it cannot still be sending it."""
        return self.state == PENDING and (self.attempted_at is None or now - self.attempted_at > pending_timeout)

    def as_interview(self) -> dict[str, Any]:
        """The recorded interview, shaped like the 201 body (without ``survey_token``)."""
        return {
            "interview_request_id": self.interview_request_id,
            "contact_id": self.contact_id,
            "deal_id": self.deal_id,
            "survey_url": self.survey_url,
            "status": self.api_status,
            "request_key": self.request_key,
        }


@dataclass(frozen=True)
class Claim:
    """A claim this run holds: the key and the ``attempted_at`` it wrote (to release only its own)."""

    request_key: str
    attempted_at: Any


def _on_ledger_thread(method: F) -> F:
    """Run ``method`` on the ledger's own thread and wait for it (directly when already there)."""

    @functools.wraps(method)
    def run(self: InterviewLedger, *args: Any, **kwargs: Any) -> Any:
        return self.on_thread(functools.partial(method, self, *args, **kwargs))

    return run  # type: ignore[return-value]


class InterviewLedger:
    """The interview ledger ``table`` on the Airflow SQL connection ``ledger_conn_id``.

    Thread-safe: the bulk engine's workers call :meth:`claim` and the ``record_*`` methods at once;
    each runs on the ledger's one thread, which alone uses the one connection, one statement batch
    after another. Call :meth:`prepare` first and :meth:`close`
    at the end (or use it as a context manager).
    """

    def __init__(self, *, ledger_conn_id: str, table: str = DEFAULT_INTERVIEW_TABLE) -> None:
        self.ledger_conn_id = ledger_conn_id
        self.table = validate_interview_table(table)
        self.sql = SqlTable(
            SPEC,
            conn_id=ledger_conn_id,
            table=self.table,
            probe_rows=self._probe_rows,
            missing_means="no interview was created through it yet",
        )
        self._thread = SessionThread("hindsight-ledger")

    def on_thread(self, call: Callable[[], T]) -> T:
        """``call()`` on the ledger's thread, its result or its exception returned here."""
        return self._thread.run(call)

    def _probe_rows(self) -> list[tuple[Any, ...]]:
        now = self.sql.now()
        first = self._row(PROBE_KEY, PENDING, attempted_at=now)
        second = self._row(PROBE_KEY, CREATED, interview_request_id=1, attempted_at=now, created_at=now)
        return [first, second]

    @property
    def lock_wait_seconds(self) -> float:
        return self.sql.lock_wait_seconds

    @_on_ledger_thread
    def prepare(self, *, create: bool = True) -> None:
        """See :meth:`~.sql.SqlTable.prepare`."""
        self.sql.prepare(create=create)

    def close(self) -> None:
        """Close the connection (on its thread), then end the thread; safe to call twice."""
        if not self._thread.started or self._thread.is_current:
            self.sql.close()
            return
        try:
            self._thread.run(self.sql.close)
        finally:
            self._thread.shutdown()

    def __enter__(self) -> InterviewLedger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------------------

    @_on_ledger_thread
    def lookup(self, request_keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """The entries of these keys that the ledger holds; one query per 500 keys."""
        self.sql.require_prepared()
        if not self.sql.exists:
            return {}
        rows = list(self.sql.select_by_keys(_ENTRY_COLUMNS, ((key,) for key in request_keys)))
        entries = {}
        for key, state, request_id, contact_id, deal_id, url, status, attempted, claimer in rows:
            entries[str(key)] = LedgerEntry(
                str(key),
                str(state),
                None if request_id is None else int(request_id),
                contact_id,
                deal_id,
                url,
                status,
                utc_timestamp(attempted),
                claimer,
            )
        return entries

    def describe(self, error: BaseException) -> str:
        """A driver's error on one line, without the connection's password (for a row's failure message)."""
        return self.sql.describe(error)

    def now(self) -> datetime.datetime:
        """Now in UTC, naive, as :meth:`lookup` returns the ledger's timestamps."""
        return utc_now()

    # -- claiming ----------------------------------------------------------------------------------------

    @_on_ledger_thread
    def claim(
        self,
        request_key: str,
        *,
        contact_email: str,
        deal_id: str | None,
        replacing: str | None,
        claimed_by: str | None = None,
    ) -> Claim | None:
        """Commit a ``pending`` row for ``request_key``; ``None`` when another run's row won.

        ``replacing`` is the state the look-up found (``rejected``, ``unknown``), or ``None`` for a key
        the ledger had no row of: then it is an ``INSERT`` that loses quietly to an existing key, else
        an ``UPDATE`` that only succeeds while the row is still in that state. ``claimed_by`` names the
        task instance claiming it.
        """
        now = self.sql.now()
        if replacing is None:
            row = self._row(
                request_key,
                PENDING,
                contact_email=contact_email,
                deal_id=deal_id,
                attempted_at=now,
                claimed_by=claimed_by,
            )
            return Claim(request_key, now) if self.sql.insert_if_absent(row) else None
        values = (PENDING, _fit("contact_email", contact_email), _fit("deal_id", deal_id), None, None, now, claimed_by)
        changed = self._update_where(
            ("state", "contact_email", "deal_id", "error_code", "error_message", "attempted_at", "claimed_by"),
            values,
            request_key,
            replacing,
        )
        return Claim(request_key, now) if changed else None

    @_on_ledger_thread
    def release(self, claim: Claim) -> None:
        """Delete this run's own claim: its create never reached Hindsight, so the next run sends it."""
        p = self.sql.dialect.placeholder
        self.sql.execute(
            f"DELETE FROM {self.table} WHERE request_key = {p} AND state = {p} AND attempted_at = {p}",
            (claim.request_key, PENDING, claim.attempted_at),
        )

    # -- recording ---------------------------------------------------------------------------------------

    @_on_ledger_thread
    def record_created(self, request_key: str, answer: Mapping[str, Any]) -> None:
        """Record a 201 for ``request_key`` at once (whatever state the row is in now: this answer is the truth)."""
        request_id = answer.get("interview_request_id")
        values = (
            CREATED,
            request_id if isinstance(request_id, int) else None,
            _fit("contact_id", _text(answer.get("contact_id"))),
            _fit("deal_id", _text(answer.get("deal_id"))),
            _fit("survey_url", _text(answer.get("survey_url"))),
            _fit("survey_token", _text(answer.get("survey_token"))),
            _fit("api_status", _text(answer.get("status"))),
            None,
            None,
            self.sql.now(),
        )
        if not self.sql.update_by_key(_CREATED_COLUMNS, [(*values, request_key)]):
            # Someone deleted the claim meanwhile (by hand): the interview exists all the same.
            row = dict(zip(_CREATED_COLUMNS, values, strict=True))
            self.sql.upsert_rows([self._row(request_key, **row)])

    def record_created_sql(self, request_key: str, answer: Mapping[str, Any]) -> str:
        """The statement that records a 201 by hand where :meth:`record_created` could not (for its message).

        It sets what the operators and the landing read (state, id, contact, deal, status, time), not the
        survey link or token.
        """
        request_id = answer.get("interview_request_id")
        values = {
            "state": CREATED,
            "interview_request_id": request_id if isinstance(request_id, int) else None,
            "contact_id": _fit("contact_id", _text(answer.get("contact_id"))),
            "deal_id": _fit("deal_id", _text(answer.get("deal_id"))),
            "api_status": _fit("api_status", _text(answer.get("status"))),
            "created_at": utc_now().isoformat(sep=" ", timespec="seconds"),
        }
        assignments = ", ".join(f"{name} = {_sql_literal(value)}" for name, value in values.items())
        return f"UPDATE {self.table} SET {assignments} WHERE request_key = {_sql_literal(request_key)};"

    @_on_ledger_thread
    def record_failure(self, request_key: str, state: str, code: str | None, message: str | None) -> None:
        """Record ``rejected`` (a 4xx: nothing was created) or ``unknown`` (it may have been) with the reason."""
        assert state in (REJECTED, UNKNOWN)
        values = (state, _fit("error_code", code), _fit("error_message", message))
        if not self.sql.update_by_key(("state", "error_code", "error_message"), [(*values, request_key)]):
            row = self._row(request_key, state, error_code=values[1], error_message=values[2])
            self.sql.upsert_rows([row])

    @_on_ledger_thread
    def mark_abandoned(self, entry: LedgerEntry, *, by: str = "a run") -> bool:
        """Turn an abandoned ``pending`` row into ``unknown``; ``False`` if it changed meanwhile.

        ``by`` says whose claim it was, for the row's ``error_message`` ("an earlier try of this task").
        """
        at = entry.attempted_at
        when = at.isoformat(sep=" ", timespec="seconds") if at else "an unknown time"
        message = f"claimed at {when} UTC by {by} that never recorded the answer (killed mid-create?)"
        changed = self._update_where(
            ("state", "error_code", "error_message"),
            (UNKNOWN, "abandoned_claim", message),
            entry.request_key,
            PENDING,
        )
        return bool(changed)

    # -- SQL ---------------------------------------------------------------------------------------------

    def _update_where(self, columns: tuple[str, ...], values: tuple[Any, ...], key: str, state: str) -> int:
        """``UPDATE ... SET columns WHERE request_key = key AND state = state``, committed; rows changed (0 or 1)."""
        self.sql.require_writable("InterviewLedger claims and records")
        p = self.sql.dialect.placeholder
        assignments = ", ".join(f"{name} = {p}" for name in columns)
        statement = f"UPDATE {self.table} SET {assignments} WHERE request_key = {p} AND state = {p}"
        return self.sql.execute(statement, (*values, key, state))

    def _row(self, request_key: str, state: str, **values: Any) -> tuple[Any, ...]:
        row = {"request_key": request_key, "state": state, **values}
        return tuple(_fit(name, row.get(name)) for name in SPEC.names)


def validate_request_key(value: object) -> str:
    """A ``request_key``: a non-blank string of at most 256 characters; the message never quotes it."""
    if not isinstance(value, str) or not value.strip():
        raise HindsightValidationError(
            "request_key is missing or blank: every create needs a stable key naming the interview that should "
            "exist once, e.g. '<deal id>:<contact id>'.",
            field="request_key",
        )
    if len(value) > MAX_REQUEST_KEY_CHARS:
        raise HindsightValidationError(
            f"request_key is {len(value)} characters long; the ledger keeps at most {MAX_REQUEST_KEY_CHARS}.",
            field="request_key",
        )
    return value


def _fit(name: str, value: Any) -> Any:
    """Text cut to its column's width (an error message, a URL): the ledger write must not fail on length."""
    limit = _TEXT_LIMITS.get(name)
    if limit is not None and isinstance(value, str) and len(value) > limit:
        return value[:limit]
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _sql_literal(value: str | int | None) -> str:
    """``value`` as a SQL literal in a statement to run by hand: ``NULL``, a number, or quoted text."""
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"
