"""Rows streamed from any Airflow SQL connection: what the SQL transfers share.

:class:`SqlRowsMixin` is the reading half of ``SqlToHindsightOperator`` (updates) and
``SqlToHindsightCreateInterviewsOperator`` (creates): the arguments (``sql``, ``sql_conn_id``,
``sql_hook_params``, ``parameters``, ``context_columns``, ``batch_size``, the deprecated
``conn_id``), their checks, the source's ``DbApiHook``, a streaming cursor (server-side on Postgres,
unbuffered on MySQL, ``fetchmany`` elsewhere), mapping the result's columns to the API's fields and
turning each record into a bulk row. A transfer sets :attr:`~SqlRowsMixin.KEY_COLUMN` (the column
naming each row) and :attr:`~SqlRowsMixin.FIELDS` (the API fields read by name).
"""

from __future__ import annotations

import datetime
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any, ClassVar

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException

from airflow_provider_hindsight.exceptions import HindsightValidationError
from airflow_provider_hindsight.ledgers.sql import validate_sql_conn_id
from airflow_provider_hindsight.sql_connection import sql_hook
from airflow_provider_hindsight.transfers.streaming import (
    idle_in_transaction_timeout,
    streaming_cursor,
    streaming_kind,
)

try:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
except ImportError as error:
    raise AirflowOptionalProviderFeatureException(
        "The SQL transfers need apache-airflow-providers-common-sql: pip install 'airflow-provider-hindsight[sql]'"
    ) from error

CONTEXT_COLUMN = "contact_context"


class SqlRowsMixin:
    """Read a query's rows as bulk rows, ``batch_size`` at a time (mix in before the operator base).

    :param sql: the query (or a ``.sql`` file), templated.
    :param sql_conn_id: the Airflow SQL connection to read from.
    :param sql_hook_params: extra keyword arguments for that connection's hook.
    :param parameters: query parameters passed to ``cursor.execute``; templated.
    :param context_columns: columns folded into a ``contact_context`` object ``{column: value}``.
    :param batch_size: rows fetched from the database at a time.
    :param conn_id: deprecated alias of ``sql_conn_id``.
    """

    KEY_COLUMN: ClassVar[str] = "interview_request_id"
    """The column that names each row; required in the result."""
    KEY_HINT: ClassVar[str] = "Select the id returned by POST /interviews AS interview_request_id."
    FIELDS: ClassVar[tuple[str, ...]] = ()
    """The API fields read from columns of the same name (any case)."""
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields every row needs: a result without such a column is refused before any request."""
    ONE_OF_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields of which every row needs one: a column, or the operator's default of the same name."""

    log: Any

    def init_sql_rows(
        self,
        *,
        sql: str,
        sql_conn_id: str | None,
        sql_hook_params: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | Sequence[Any] | None,
        context_columns: Sequence[str] | None,
        batch_size: int,
        conn_id: str | None,
    ) -> None:
        """Set the reading arguments; called by each transfer's own ``__init__`` (Airflow wraps those)."""
        name = type(self).__name__
        if conn_id is not None:
            warnings.warn(
                f"{name}'s conn_id is deprecated: pass sql_conn_id instead.",
                AirflowProviderDeprecationWarning,
                stacklevel=4,
            )
            if sql_conn_id is not None and sql_conn_id != conn_id:
                raise HindsightValidationError(
                    f"sql_conn_id={sql_conn_id!r} and its deprecated alias conn_id={conn_id!r} disagree: pass only "
                    "sql_conn_id.",
                    field="sql_conn_id",
                )
            sql_conn_id = conn_id
        if sql_conn_id is None:
            raise HindsightValidationError(
                f"{name} needs sql_conn_id: the Airflow SQL connection to read rows from.", field="sql_conn_id"
            )
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.sql_hook_params = sql_hook_params
        self.parameters = parameters
        self.context_columns = context_columns
        self.batch_size = batch_size
        self._check_untemplated()

    @contextmanager
    def stream_rows(self) -> Iterator[Iterator[dict[str, Any]]]:
        """Run the query on a streaming cursor; yields the rows as bulk rows, read ``batch_size`` at a time."""
        with closing(self.db_hook.get_conn()) as connection, streaming_cursor(connection) as cursor:
            self.log.info("Reading rows with %s.", streaming_kind(connection))
            self._warn_if_batches_outlast_the_idle_timeout(connection)
            if self.parameters is None:
                cursor.execute(self.sql)
            else:
                cursor.execute(self.sql, self.parameters)
            columns = self._map_columns(cursor.description)
            yield self._rows(cursor, columns)

    def _warn_if_batches_outlast_the_idle_timeout(self, connection: Any) -> None:
        """WARNING when sending one batch at the pace takes longer than the source's idle-in-transaction timeout.

        The query's transaction stays open for the whole run and is idle while a batch is sent: a
        PostgreSQL ``idle_in_transaction_session_timeout`` shorter than that ends the session mid-run.
        """
        operator: Any = self  # a bulk operator: its hook's pace, its dry run, its log
        if operator.is_dry_run:
            return
        timeout = idle_in_transaction_timeout(connection)
        if timeout is None:
            return
        rate = operator.hook.pacer.effective_requests_per_minute
        seconds = self.batch_size * 60 / rate
        if seconds < timeout:
            return
        fits = max(1, int(timeout * rate / 60 / 2))
        operator.log.warning(
            "batch_size=%d rows take up to %.0f s to send at %.0f requests a minute, longer than the source "
            "connection %r's idle_in_transaction_session_timeout (%g s): the server may end the query's session "
            "between two fetches. Fix: a smaller batch_size (%d fits in half the timeout), or raise the timeout for "
            "the role (ALTER ROLE <user> SET idle_in_transaction_session_timeout = '30min').",
            self.batch_size,
            seconds,
            rate,
            self.sql_conn_id,
            timeout,
            fits,
        )

    def check_sql_arguments(self) -> None:
        """Refuse bad templated arguments before connecting (templates are rendered by now)."""
        if not isinstance(self.sql, str) or not self.sql.strip():
            raise HindsightValidationError(f"sql must be a non-empty query string, got {self.sql!r:.80}.", field="sql")
        if self.parameters is not None and (
            isinstance(self.parameters, (str, bytes)) or not isinstance(self.parameters, (Mapping, Sequence))
        ):
            raise HindsightValidationError(
                f"parameters must be a mapping or a sequence of query parameters, got "
                f"{type(self.parameters).__name__}. Pass a dict for named placeholders or a list for "
                "positional ones.",
                field="parameters",
            )

    def _check_untemplated(self) -> None:
        """Refuse bad arguments that no template renders when the DAG is parsed, naming each."""
        validate_sql_conn_id(self.sql_conn_id)
        if self.sql_hook_params is not None and not isinstance(self.sql_hook_params, Mapping):
            raise HindsightValidationError(
                f"sql_hook_params must be a dict of keyword arguments for the SQL hook, got "
                f"{type(self.sql_hook_params).__name__}.",
                field="sql_hook_params",
            )
        columns = self.context_columns
        if columns is not None and (
            isinstance(columns, str)
            or not isinstance(columns, Sequence)
            or not all(isinstance(name, str) and name for name in columns)
            or not columns
        ):
            raise HindsightValidationError(
                f"context_columns must be a non-empty list of column names, got {columns!r}. "
                "For one column write ['title'], not 'title'.",
                field="context_columns",
            )
        if columns is not None and len({name.lower() for name in columns}) != len(columns):
            raise HindsightValidationError(
                f"context_columns lists a column twice: {list(columns)}.", field="context_columns"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise HindsightValidationError(
                f"batch_size must be a positive int (rows fetched at a time), got {self.batch_size!r}.",
                field="batch_size",
            )

    @cached_property
    def db_hook(self) -> DbApiHook:
        """The source connection's SQL hook."""
        hook, _ = sql_hook(self.sql_conn_id, parameter="sql_conn_id", hook_params=self.sql_hook_params)
        return hook

    def key_value(self, value: Any) -> Any:
        """A key cell as the row's key: drivers return NUMBER/NUMERIC ids as ``Decimal``; a whole one is an int."""
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            return int(value)
        return value

    def _map_columns(self, description: Sequence[Sequence[Any]] | None) -> _Columns:
        """Which result position feeds which API field and which ``context_columns`` key.

        Raises before any request when the result cannot make rows: no key column, an unknown
        context column, or two sources of ``contact_context``.
        """
        key = self.KEY_COLUMN
        if not description:
            raise HindsightValidationError(
                f"sql returned no result set: it must be a SELECT with a {key} column.", field="sql"
            )
        names = [str(column[0]) for column in description]
        positions: dict[str, list[int]] = {}
        for position, name in enumerate(names):
            positions.setdefault(name.lower(), []).append(position)

        def position_of(name: str, parameter: str) -> int | None:
            found = positions.get(name.lower(), [])
            if len(found) > 1:
                raise HindsightValidationError(
                    f"the result has {len(found)} columns named {name!r}; alias them so that each name appears once.",
                    field=parameter,
                )
            return found[0] if found else None

        fields = {name: position_of(name, "sql") for name in (key, *self.FIELDS)}
        columns = _Columns(fields=[(name, pos) for name, pos in fields.items() if pos is not None], context=[])
        if fields[key] is None:
            raise HindsightValidationError(
                f"the result has no {key} column (columns: {', '.join(names)}). {self.KEY_HINT}", field="sql"
            )
        self._check_field_columns({name for name, pos in fields.items() if pos is not None and name != key}, names)
        if self.context_columns is not None:
            if fields.get(CONTEXT_COLUMN) is not None:
                raise HindsightValidationError(
                    "the result has a contact_context column and context_columns is set: contact_context "
                    "would come from two places. Drop the column from the query or drop context_columns.",
                    field="context_columns",
                )
            context = [(name, position_of(name, "context_columns")) for name in self.context_columns]
            missing = [name for name, pos in context if pos is None]
            if missing:
                raise HindsightValidationError(
                    f"context_columns {missing} are not in the result (columns: {', '.join(names)}). "
                    "Select them in sql or fix the names.",
                    field="context_columns",
                )
            columns.context = [(name, pos) for name, pos in context if pos is not None]
        used = {pos for _, pos in (*columns.fields, *columns.context)}
        ignored = [name for position, name in enumerate(names) if position not in used]
        if ignored:
            self.log.info(
                "Ignoring columns %s: only %s, %s and context_columns are sent.",
                ", ".join(ignored),
                key,
                ", ".join(self.FIELDS),
            )
        return columns

    def _check_field_columns(self, present: set[str], names: list[str]) -> None:
        """Refuse, before any request, a result whose every row would fail for a missing column.

        Each refusal names the column and the fix once, instead of one failed row per record.
        """
        listed = ", ".join(names)
        missing = [name for name in self.REQUIRED_FIELDS if name not in present]
        if missing:
            raise HindsightValidationError(
                f"the result has no {' or '.join(missing)} column (columns: {listed}), which every row needs. "
                f"Select it in sql, e.g. SELECT ..., email AS {missing[0]}.",
                field="sql",
            )
        choices = self.ONE_OF_FIELDS
        if choices and not any(name in present or getattr(self, name, None) is not None for name in choices):
            raise HindsightValidationError(
                f"the result has none of the columns {' and '.join(choices)} (columns: {listed}) and the operator "
                f"sets no default for them: every row needs one. Select one in sql or pass {choices[0]}= to the "
                "operator.",
                field="sql",
            )
        if not present and self.context_columns is None:
            raise HindsightValidationError(
                f"the result has none of the columns {', '.join(self.FIELDS)} (columns: {listed}) and "
                "context_columns is not set: no row would have a field to send. Alias the columns to these names "
                "or set context_columns.",
                field="sql",
            )

    def _rows(self, cursor: Any, columns: _Columns) -> Iterator[dict[str, Any]]:
        """Fetch ``batch_size`` rows at a time and turn each into a bulk row."""
        key = self.KEY_COLUMN
        while True:
            batch = cursor.fetchmany(self.batch_size)
            if not batch:
                return
            for record in batch:
                row = {field: record[position] for field, position in columns.fields}
                row[key] = self.key_value(row[key])
                if CONTEXT_COLUMN in row:
                    row[CONTEXT_COLUMN] = _context_value(row[CONTEXT_COLUMN])
                if columns.context:
                    notes = {name: _json_value(record[pos]) for name, pos in columns.context if record[pos] is not None}
                    row[CONTEXT_COLUMN] = notes or None
                yield row


@dataclass
class _Columns:
    """Result positions: ``fields`` are sent as API fields, ``context`` builds ``contact_context``."""

    fields: list[tuple[str, int]]
    context: list[tuple[str, int]]


def _context_value(value: Any) -> Any:
    """A ``contact_context`` cell: text holding a JSON object is sent as that object, other text as prose."""
    value = _text(value)
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _json_value(value: Any) -> Any:
    """A ``context_columns`` cell as a JSON value: dates as ISO text, decimals as numbers, bytes as text."""
    if isinstance(value, (datetime.date, datetime.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    return _text(value)


def _text(value: Any) -> Any:
    """Bytes as UTF-8 text; bytes that are not UTF-8 stay as they are, so the row fails with a reason."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value
