"""The ``hindsight`` connection's values parsed into validated settings.

Pure: no Airflow database, no network. :func:`parse_connection` turns a connection's fields into a
frozen :class:`ConnectionSettings`. The fields themselves are described in
:mod:`airflow_provider_hindsight.hooks.connection_form`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_hindsight.exceptions import HindsightConfigurationError, HindsightValidationError
from airflow_provider_hindsight.hooks.connection_form import (
    DEFAULT_BASE_URL,
    DEFAULT_BUDGET_TABLE,
    DEFAULT_HISTORY_RETENTION_DAYS,
    DEFAULT_HISTORY_TABLE,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TIMEOUT,
    HISTORY_ROWS_SUFFIX,
    PLAN_REQUESTS_PER_MINUTE,
)
from airflow_provider_hindsight.inputs import parse_flag
from airflow_provider_hindsight.sql_connection import valid_table_name

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook uses from its connection, validated. The key is kept out of ``repr``."""

    conn_id: str
    base_url: str
    api_key: str = field(repr=False)
    requests_per_minute: float
    paced_by_default: bool
    """True when neither the hook, ``requests_per_minute`` nor ``plan`` set the pace."""
    timeout: float
    max_retries: int
    host_without_scheme: bool
    """True when the host was given as a bare name, which the hook turns into ``https://``."""
    connection_requests_per_minute: float = 0.0
    """The connection's own pace (``requests_per_minute`` or ``plan``), before any hook argument: a
    shared budget's pace. 0 means the same as ``requests_per_minute``."""
    budget_conn_id: str | None = None
    """The SQL connection of the rate budget shared by every process using this key, if any."""
    budget_table: str = DEFAULT_BUDGET_TABLE
    """Its table there: ``name`` or ``schema.name``."""
    history_conn_id: str | None = None
    """The SQL connection where every run writes its history, if any."""
    history_table: str = DEFAULT_HISTORY_TABLE
    """Its runs' table there: ``name`` or ``schema.name`` (the rows' table adds ``_rows``: see
    :attr:`history_rows_table`)."""
    history_retention_days: float = DEFAULT_HISTORY_RETENTION_DAYS
    """Runs delete history older than this many days."""

    @property
    def host(self) -> str:
        """``host[:port]`` of the base URL, for messages."""
        return urlsplit(self.base_url).netloc

    @property
    def history_rows_table(self) -> str:
        """The run history's rows' table, beside :attr:`history_table`."""
        return self.history_table + HISTORY_ROWS_SUFFIX

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(urlsplit(self.base_url).hostname or "")


def parse_connection(
    conn_id: str,
    *,
    host: str | None,
    port: int | None,
    password: str | None,
    extra: Mapping[str, Any],
    requests_per_minute: float | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> ConnectionSettings:
    """Validate a connection's fields into settings; hook arguments win over the connection's extras.

    Raises :class:`HindsightConfigurationError` naming the connection, the field and the fix.
    """
    if not password:
        raise HindsightConfigurationError(
            f"Connection {conn_id!r} has no API key: put the Hindsight API key in its API key field.",
            code="invalid_connection",
        )
    pace, paced_by_default = _pace(conn_id, extra, requests_per_minute)
    connection_pace = pace if requests_per_minute is None else _pace(conn_id, extra, None)[0]
    retention = positive_number("history_retention_days", extra.get("history_retention_days"))
    retries = max_retries if max_retries is not None else non_negative_int("max_retries", extra.get("max_retries"))
    return ConnectionSettings(
        conn_id=conn_id,
        base_url=_base_url(conn_id, host, port, extra),
        api_key=password,
        requests_per_minute=pace,
        paced_by_default=paced_by_default,
        timeout=timeout or positive_number("timeout", extra.get("timeout")) or DEFAULT_TIMEOUT,
        max_retries=DEFAULT_MAX_RETRIES if retries is None else retries,
        host_without_scheme=bool(host and host.strip() and "://" not in host),
        connection_requests_per_minute=connection_pace,
        budget_conn_id=_sql_conn_id_extra(conn_id, extra, "budget_conn_id", example="airflow_db"),
        budget_table=_table_extra(conn_id, extra, "budget_table", DEFAULT_BUDGET_TABLE),
        history_conn_id=_sql_conn_id_extra(conn_id, extra, "history_conn_id", example="warehouse"),
        history_table=_table_extra(conn_id, extra, "history_table", DEFAULT_HISTORY_TABLE, suffix=HISTORY_ROWS_SUFFIX),
        history_retention_days=retention or DEFAULT_HISTORY_RETENTION_DAYS,
    )


def _sql_conn_id_extra(conn_id: str, extra: Mapping[str, Any], name: str, *, example: str) -> str | None:
    """The extra ``name``: the id of an Airflow SQL connection, or ``None`` when it is empty."""
    value = extra.get(name)
    if value is not None and not isinstance(value, str):
        raise HindsightConfigurationError(
            f"Connection {conn_id!r}: {name} must be the id of an Airflow SQL connection, got {value!r}. Fix: set "
            f"it to a connection id such as {example!r}, or leave it empty.",
            code="invalid_connection",
        )
    return (value.strip() or None) if value else None


def _table_extra(conn_id: str, extra: Mapping[str, Any], name: str, default: str, *, suffix: str = "") -> str:
    """The extra ``name``: a table name (``name`` or ``schema.name``), ``default`` when it is empty.

    With ``suffix``, the name with ``suffix`` added (a second table beside it) must be a table name too.
    """
    table = extra.get(name) or default
    if not valid_table_name(table) or not valid_table_name(table + suffix):
        second = f", and still one with {suffix} added (its rows' table)" if suffix else ""
        raise HindsightConfigurationError(
            f"Connection {conn_id!r}: {name} must be a table name such as '{default}' or 'analytics.{default}' "
            f"(letters, digits and underscores, optionally one schema prefix{second}), got {table!r}. Fix: correct "
            f"the connection's extra {name}, or leave it empty for the default.",
            code="invalid_connection",
        )
    return table


def _pace(conn_id: str, extra: Mapping[str, Any], argument: float | None) -> tuple[float, bool]:
    if argument is not None:
        return argument, False
    explicit = positive_number("requests_per_minute", extra.get("requests_per_minute"))
    if explicit is not None:
        return explicit, False
    plan = extra.get("plan")
    if plan in (None, ""):
        return float(DEFAULT_REQUESTS_PER_MINUTE), True
    key = str(plan).strip().lower()
    if key not in PLAN_REQUESTS_PER_MINUTE:
        raise HindsightConfigurationError(
            f"Connection {conn_id!r}: plan {plan!r} is not one of {', '.join(PLAN_REQUESTS_PER_MINUTE)}. "
            "Pick your Hindsight plan, or set requests_per_minute instead.",
            code="invalid_connection",
        )
    return float(PLAN_REQUESTS_PER_MINUTE[key]), False


def _base_url(conn_id: str, host: str | None, port: int | None, extra: Mapping[str, Any]) -> str:
    """The API base URL: the default, a full URL as is, or ``https://<host>[:port]/api/v1`` for a bare host."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    netloc = f"{host}:{port}" if port else host
    url = host.rstrip("/") if "://" in host else f"https://{netloc}/api/v1"
    try:
        parts = urlsplit(url)
        scheme, hostname = parts.scheme, parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        if "://" not in host and parts.path != "/api/v1":  # a bare host is a name and port, not a path
            hostname = None
    except ValueError:
        scheme, hostname = "", None
    if scheme not in ("http", "https") or not hostname or any(ch.isspace() for ch in url):
        raise HindsightConfigurationError(
            f"Connection {conn_id!r}: host {host!r} is not a valid base URL. Leave it empty for "
            f"{DEFAULT_BASE_URL}, or give a host name or a full URL such as https://example.com/api/v1.",
            code="invalid_connection",
        )
    if scheme == "http" and not _is_loopback(hostname) and not _truthy(extra.get("allow_insecure_http")):
        raise HindsightConfigurationError(
            f"Connection {conn_id!r}: {host!r} uses plain http, which would send the API key unencrypted. "
            "Use https, or set the extra allow_insecure_http to true for a trusted network.",
            code="invalid_connection",
        )
    return url


def _is_loopback(hostname: str) -> bool:
    if hostname.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _truthy(value: Any) -> bool:
    try:
        return parse_flag("allow_insecure_http", value if isinstance(value, (bool, str)) else bool(value))
    except HindsightValidationError:
        return False


def positive_number(name: str, value: Any) -> float | None:
    """``value`` as a positive finite number; ``None`` or ``""`` mean unset. Raises naming ``name``."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number > 0 or number == float("inf"):
        raise HindsightConfigurationError(
            f"{name} must be a positive number, got {value!r}.", code="invalid_connection"
        )
    return number


def non_negative_int(name: str, value: Any) -> int | None:
    """``value`` as a whole number of 0 or more; ``None`` or ``""`` mean unset. Raises naming ``name``."""
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -1
    if isinstance(value, bool) or number < 0:
        raise HindsightConfigurationError(
            f"{name} must be a whole number of 0 or more, got {value!r}.", code="invalid_connection"
        )
    return number
