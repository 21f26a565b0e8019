"""OpenLineage for the Hindsight operators: the SQL tables a transfer reads, and the interviews it writes.

Airflow's OpenLineage listener (``apache-airflow-providers-openlineage``) calls
``get_openlineage_facets_on_start()`` when a task starts and
``get_openlineage_facets_on_complete(task_instance)`` when it ends, on every operator that has
them. Without that provider both return ``None`` and nothing else changes. Building lineage never
fails a task: a problem is logged and the lineage reported is what could be built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

log = logging.getLogger(__name__)

INTERVIEWS_DATASET_NAME = "interviews"
"""The OpenLineage dataset name of a Hindsight account's interview requests."""

_DEFAULT_PORTS = {"https": 443, "http": 80}


def interviews_dataset_namespace(base_url: str) -> str:
    """The OpenLineage namespace of the interviews behind an API base URL: ``hindsight://<host>[:<port>]``.

    One namespace per API server, so every task that writes through one server meets at one
    dataset: the host is lower-cased, the path and any user info are left out, and the port is kept
    unless it is the scheme's default (``https://app.usehindsight.com:443/api/v1`` is
    ``hindsight://app.usehindsight.com``). Raises ``ValueError`` for a URL without a host.
    """
    parts = urlsplit(base_url.strip())
    host = parts.hostname
    if not host:
        raise ValueError(
            f"base_url {base_url!r} has no host: expected a URL such as https://app.usehindsight.com/api/v1."
        )
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as error:
        raise ValueError(f"base_url {base_url!r} has an invalid port: {error}.") from None
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return f"hindsight://{host}"


class HindsightLineageMixin:
    """Reports the ``interviews`` dataset of the task's ``hindsight`` connection as the task's output.

    Mix into an operator that sets ``hindsight_conn_id``, before ``BaseOperator`` in the bases.
    """

    hindsight_conn_id: str

    def get_openlineage_facets_on_start(self) -> OperatorLineage | None:
        """What the task reads and writes; ``None`` when the OpenLineage provider is not installed."""
        try:
            from airflow.providers.openlineage.extractors import OperatorLineage
        except ImportError:
            log.debug("OpenLineage provider not installed: no lineage for the Hindsight task.")
            return None
        source = self._openlineage_source_lineage()
        outputs = self._openlineage_interviews_datasets()
        if source is None:
            return OperatorLineage(outputs=outputs)
        return OperatorLineage(
            inputs=list(source.inputs),
            outputs=[*source.outputs, *outputs],
            run_facets=dict(source.run_facets),
            job_facets=dict(source.job_facets),
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """The same datasets as at start: what the task reads and writes does not depend on how it ended."""
        return self.get_openlineage_facets_on_start()

    def _openlineage_source_lineage(self) -> OperatorLineage | None:
        """Lineage of what the task reads; none for operators whose rows come from Airflow itself."""
        return None

    def _openlineage_interviews_datasets(self) -> list[Dataset]:
        """``[hindsight://<host> / interviews]``, or ``[]`` (logged) when the connection cannot say which host."""
        try:
            from airflow.providers.common.compat.openlineage.facet import Dataset

            base_url = cast(Any, self).hook.settings.base_url  # the operator's hook: its settings are read once
            namespace = interviews_dataset_namespace(base_url)
        except Exception as error:
            log.warning(
                "OpenLineage: no output dataset for connection %r: %s",
                getattr(self, "hindsight_conn_id", None),
                error,
            )
            return []
        return [Dataset(namespace=namespace, name=INTERVIEWS_DATASET_NAME)]


class SqlToHindsightLineageMixin(HindsightLineageMixin):
    """Adds the tables the ``sql`` query reads as inputs, through the source hook's own OpenLineage support.

    The hook of ``sql_conn_id`` names the database (``get_openlineage_database_info``), its dialect
    and default schema, and OpenLineage's SQL parser finds the tables in the query, as Airflow's
    ``SQLExecuteQueryOperator`` does. A hook without OpenLineage support (SQLite, for one) or a query
    the parser cannot read gives no inputs; the output is reported all the same.
    """

    sql: str
    sql_conn_id: str
    sql_hook_params: Mapping[str, Any] | None

    def _openlineage_source_lineage(self) -> OperatorLineage | None:
        sql = getattr(self, "sql", None)
        if not isinstance(sql, str) or not sql.strip():
            log.debug("OpenLineage: no SQL text to parse for inputs.")
            return None
        try:
            from airflow.providers.common.compat.openlineage.utils.sql import get_openlineage_facets_with_sql
            from airflow.providers.common.compat.sdk import BaseHook
            from airflow.providers.common.sql.hooks.sql import DbApiHook

            hook = BaseHook.get_connection(self.sql_conn_id).get_hook(hook_params=dict(self.sql_hook_params or {}))
            if not isinstance(hook, DbApiHook):
                log.debug("OpenLineage: %s is not a SQL hook; no input datasets.", type(hook).__name__)
                return None
            return get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=self.sql_conn_id, database=None)
        except ImportError as error:
            log.debug("OpenLineage: SQL lineage is not available (%s); no input datasets.", error)
            return None
        except Exception as error:
            log.warning(
                "OpenLineage: no input datasets from connection %r: %s",
                getattr(self, "sql_conn_id", None),
                error,
            )
            log.debug("OpenLineage input lineage failure details:", exc_info=True)
            return None
