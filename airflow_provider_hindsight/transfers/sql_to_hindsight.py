"""The SQL transfers: stream a SQL query's rows into Hindsight in one task.

- :class:`SqlToHindsightOperator`: each row updates an interview request (``PATCH``).
- :class:`SqlToHindsightCreateInterviewsOperator`: each row creates one, exactly once (``POST``, with
  the interview ledger).

Needs the ``sql`` extra (``pip install airflow-provider-hindsight[sql]``), which brings
``apache-airflow-providers-common-sql``: every Airflow SQL connection (Postgres, Snowflake,
BigQuery, SQLite, ...) gives a ``DbApiHook`` that these operators read with. The reading is
:class:`~airflow_provider_hindsight.transfers.sql_rows.SqlRowsMixin`'s, shared by both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowOptionalProviderFeatureException

try:  # checked here too: sql_rows may already be imported
    from airflow.providers.common.sql.hooks.sql import DbApiHook  # noqa: F401
except ImportError as error:
    raise AirflowOptionalProviderFeatureException(
        "The SQL transfers need apache-airflow-providers-common-sql: pip install 'airflow-provider-hindsight[sql]'"
    ) from error

from airflow_provider_hindsight.lineage import SqlToHindsightLineageMixin
from airflow_provider_hindsight.operators.bulk import BaseHindsightUpdateOperator
from airflow_provider_hindsight.operators.create import BaseHindsightCreateOperator
from airflow_provider_hindsight.resources.interviews import CREATE_FIELDS, UPDATE_FIELDS
from airflow_provider_hindsight.transfers.sql_rows import SqlRowsMixin

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["SqlToHindsightCreateInterviewsOperator", "SqlToHindsightOperator"]


class SqlToHindsightOperator(SqlRowsMixin, SqlToHindsightLineageMixin, BaseHindsightUpdateOperator):
    """Run a query on any Airflow SQL connection and send each result row as an interview update.

    Rows are fetched ``batch_size`` at a time and sent at the pace of the ``hindsight`` connection,
    so memory does not grow with the table: Postgres (psycopg2 and psycopg 3) is read through a
    named server-side cursor, MySQL (mysqlclient, PyMySQL) through an unbuffered cursor, and other
    drivers (SQLite, Snowflake, BigQuery, ...) through their own cursor's ``fetchmany``. On Postgres
    ``sql`` must therefore be a single ``SELECT``. Columns named ``interview_request_id``,
    ``contact_context``, ``contact_name`` and ``objective`` (any case) are used directly; NULL means
    "leave unchanged". A ``contact_context`` column holding a JSON object as text is sent as an
    object, other text as prose. Other columns are ignored unless listed in ``context_columns``.
    Returns (and pushes under the XCom key ``summary``) the same summary as
    ``HindsightBulkUpdateInterviewsOperator``: ``{"total", "succeeded", "failed", "failures": [...]}``,
    plus ``unchanged`` with a ledger (change-only sync). With a ledger the ledger is checked before
    the query runs.

    :param sql: the query (or a ``.sql`` file), templated.
    :param sql_conn_id: the Airflow SQL connection to read from.
    :param sql_hook_params: extra keyword arguments for that connection's hook (as in Airflow's SQL
        operators' ``hook_params``), e.g. ``{"schema": "analytics"}``.
    :param parameters: query parameters passed to ``cursor.execute``, in the driver's placeholder
        style; templated.
    :param context_columns: columns folded into a ``contact_context`` object ``{column: value}``.
        NULLs are left out (a row whose columns are all NULL leaves the notes unchanged); dates
        become ISO strings, decimals numbers and bytes UTF-8 text. Cannot be combined with a
        ``contact_context`` column.
    :param batch_size: rows fetched from the database at a time.
    :param conn_id: deprecated alias of ``sql_conn_id``.
    """

    template_fields: Sequence[str] = ("sql", "parameters", "full_refresh")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#f4e3c4"
    KEY_COLUMN = "interview_request_id"
    FIELDS = UPDATE_FIELDS

    def __init__(
        self,
        *,
        sql: str,
        sql_conn_id: str | None = None,
        sql_hook_params: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        context_columns: Sequence[str] | None = None,
        batch_size: int = 1000,
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.init_sql_rows(
            sql=sql,
            sql_conn_id=sql_conn_id,
            sql_hook_params=sql_hook_params,
            parameters=parameters,
            context_columns=context_columns,
            batch_size=batch_size,
            conn_id=conn_id,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        """Stream the query's rows to Hindsight and return the summary."""
        self.check_sql_arguments()
        # The ledger opens before the query: it may share its database (SQLite WAL).
        with self.recorded(context, self.operation), self.open_sync(context) as sync, self.stream_rows() as rows:
            return self.push_rows(rows, context, sync=sync)


class SqlToHindsightCreateInterviewsOperator(SqlRowsMixin, SqlToHindsightLineageMixin, BaseHindsightCreateOperator):
    """Run a query on any Airflow SQL connection and create one interview request per row, exactly once.

    Rows are streamed as :class:`SqlToHindsightOperator` reads them. Columns named like the API's
    create fields (``contact_email``, ``sequence_id``, ``interview_type_id``, ``contact_name``,
    ``contact_context``, ``deal_id``, ``objective``; any case) plus ``request_key`` are used; NULL
    leaves a field out (and a row whose ``sequence_id`` and ``interview_type_id`` are both NULL gets
    the operator's default). ``context_columns`` builds ``contact_context`` from several columns.
    Each key is claimed in the interview ledger before its POST and recorded at once after it: see
    :class:`~airflow_provider_hindsight.operators.create.HindsightCreateInterviewsOperator` for the
    ledger arguments and the summary ``{"total", "created", "existing", "failed", "unknown",
    "failures"}``. The ledger is checked (and created) before the query runs.

    :param sql: the query (or a ``.sql`` file), templated; it must return a ``request_key`` column.
    :param sql_conn_id: the Airflow SQL connection to read from.
    :param sql_hook_params: extra keyword arguments for that connection's hook.
    :param parameters: query parameters passed to ``cursor.execute``; templated.
    :param context_columns: columns folded into a ``contact_context`` object ``{column: value}``.
    :param batch_size: rows fetched from the database at a time.
    """

    template_fields: Sequence[str] = ("sql", "parameters", "resend_unknown")
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql"}
    ui_color = "#d9ead3"
    KEY_COLUMN = "request_key"
    KEY_HINT = "Select a stable key per interview AS request_key, e.g. deal_id || ':' || contact_id."
    FIELDS = CREATE_FIELDS
    REQUIRED_FIELDS = ("contact_email",)
    ONE_OF_FIELDS = ("sequence_id", "interview_type_id")

    def __init__(
        self,
        *,
        sql: str,
        sql_conn_id: str | None = None,
        sql_hook_params: Mapping[str, Any] | None = None,
        parameters: Mapping[str, Any] | Sequence[Any] | None = None,
        context_columns: Sequence[str] | None = None,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.init_sql_rows(
            sql=sql,
            sql_conn_id=sql_conn_id,
            sql_hook_params=sql_hook_params,
            parameters=parameters,
            context_columns=context_columns,
            batch_size=batch_size,
            conn_id=None,
        )

    def key_value(self, value: Any) -> Any:
        """A whole-number key (an integer column) is its text: request keys are strings."""
        value = super().key_value(value)
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def execute(self, context: Context) -> dict[str, Any]:
        """Stream the query's rows, create each key once, and return the summary."""
        self.check_sql_arguments()
        resend_unknown = self.check_create_arguments()
        # The ledger opens before the query: it may share its database (SQLite WAL).
        with (
            self.recorded(context, "create"),
            self.open_ledger(resend_unknown, context) as create_once,
            self.stream_rows() as rows,
        ):
            return self.push_creates(rows, context, create_once)
