"""``HindsightHook``: the connection, the HTTP session, pacing, retries and the bulk engine."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.sdk import BaseHook, mask_secret
from requests.adapters import HTTPAdapter

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightConnectionError,
    HindsightError,
    HindsightResponseError,
    HindsightValidationError,
    error_from_response,
)
from airflow_provider_hindsight.hooks.pacing import RatePacer
from airflow_provider_hindsight.hooks.retry import RetryPolicy, requested_wait
from airflow_provider_hindsight.payload import (
    InterviewUpdate,
    build_interview_update,
    interview_update_from_row,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

DEFAULT_BASE_URL = "https://app.usehindsight.com/api/v1"
PLAN_REQUESTS_PER_MINUTE: dict[str, int] = {"essentials": 60, "growth": 300, "enterprise": 1000}
DEFAULT_REQUESTS_PER_MINUTE = 60
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_RETRY_WAIT = 60.0
DEFAULT_MAX_WORKERS = 16
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class ConnectionSettings:
    """What the hook reads from its Airflow connection, validated (the key is kept out of ``repr``)."""

    base_url: str
    api_key: str
    requests_per_minute: float
    pace_source: str
    timeout: float
    max_retries: int

    def __repr__(self) -> str:
        return (
            f"ConnectionSettings(base_url={self.base_url!r}, requests_per_minute={self.requests_per_minute}, "
            f"timeout={self.timeout}, max_retries={self.max_retries})"
        )


@dataclass(frozen=True)
class UpdateResult:
    """How one row of a bulk run ended: succeeded, or failed with a reason."""

    row: int
    interview_request_id: Any
    succeeded: bool
    status_code: int | None = None
    code: str | None = None
    message: str | None = None

    def as_failure(self) -> dict[str, Any]:
        """The entry for the summary's ``failures`` list."""
        return {
            "row": self.row,
            "interview_request_id": self.interview_request_id,
            "status_code": self.status_code,
            "code": self.code,
            "message": self.message,
        }


class HindsightHook(BaseHook):
    """Talks to the Hindsight API with the key and settings of an Airflow connection.

    One ``requests.Session`` (keep-alive) and one pacer per hook, shared by every thread that uses
    it; bounded retries that honour ``Retry-After``; typed errors from :mod:`..exceptions`.

    :param hindsight_conn_id: the ``hindsight`` connection to use.
    :param requests_per_minute: pace; wins over the connection's ``requests_per_minute`` and ``plan``.
    :param max_retries: retries after the first attempt; wins over the connection's extra.
    :param timeout: seconds per request; wins over the connection's extra.
    :param max_retry_wait: the longest single wait between attempts. A longer ``Retry-After`` is
        raised at once as :class:`HindsightRateLimitError` with ``retry_after`` set.
    """

    conn_name_attr = "hindsight_conn_id"
    default_conn_name = "hindsight_default"
    conn_type = "hindsight"
    hook_name = "Hindsight"

    def __init__(
        self,
        hindsight_conn_id: str = default_conn_name,
        *,
        requests_per_minute: float | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
    ) -> None:
        super().__init__()
        self.hindsight_conn_id = hindsight_conn_id
        self._requests_per_minute = _positive_number("requests_per_minute", requests_per_minute)
        self._max_retries = _non_negative_int("max_retries", max_retries)
        self._timeout = _positive_number("timeout", timeout)
        self._max_retry_wait = _positive_number("max_retry_wait", max_retry_wait) or DEFAULT_MAX_RETRY_WAIT
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic
        self._rate_limited_lock = threading.Lock()
        self.rate_limited_count = 0
        """429 answers received so far by this hook (retried or not)."""

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's settings, validated once; hook arguments win over extras."""
        conn = self.get_connection(self.hindsight_conn_id)
        extra = conn.extra_dejson if conn.extra else {}
        if not conn.password:
            raise HindsightConfigurationError(
                f"Connection {self.hindsight_conn_id!r} has no API key: put the Hindsight API key in the "
                "connection's Password field.",
                code="invalid_connection",
            )
        mask_secret(conn.password)
        base_url = _base_url(conn.host, conn.port, conn.schema, extra, self.hindsight_conn_id)
        rate, source = self._pace(extra)
        timeout = self._timeout or _positive_number("timeout", extra.get("timeout")) or DEFAULT_TIMEOUT
        max_retries = self._max_retries
        if max_retries is None:
            max_retries = _non_negative_int("max_retries", extra.get("max_retries"))
        settings = ConnectionSettings(
            base_url=base_url,
            api_key=conn.password,
            requests_per_minute=rate,
            pace_source=source,
            timeout=timeout,
            max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
        )
        if source == "default":
            self.log.info(
                "Connection %r sets neither plan nor requests_per_minute: pacing at %s requests a minute "
                "(the Essentials limit). Set the extra `plan` or `requests_per_minute` to go faster.",
                self.hindsight_conn_id,
                DEFAULT_REQUESTS_PER_MINUTE,
            )
        return settings

    def _pace(self, extra: Mapping[str, Any]) -> tuple[float, str]:
        if self._requests_per_minute is not None:
            return self._requests_per_minute, "argument"
        explicit = _positive_number("requests_per_minute", extra.get("requests_per_minute"))
        if explicit is not None:
            return explicit, "requests_per_minute"
        plan = extra.get("plan")
        if plan not in (None, ""):
            key = str(plan).strip().lower()
            if key not in PLAN_REQUESTS_PER_MINUTE:
                raise HindsightConfigurationError(
                    f"Connection {self.hindsight_conn_id!r}: plan {plan!r} is not one of "
                    f"{', '.join(PLAN_REQUESTS_PER_MINUTE)}. Pick your Hindsight plan, or set "
                    "requests_per_minute instead.",
                    code="invalid_connection",
                )
            return float(PLAN_REQUESTS_PER_MINUTE[key]), "plan"
        return float(DEFAULT_REQUESTS_PER_MINUTE), "default"

    @cached_property
    def session(self) -> requests.Session:
        """The keep-alive session, with auth and JSON headers, sized for the bulk engine's threads."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=DEFAULT_MAX_WORKERS * 2, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        session.headers.update(
            {
                "Authorization": f"Bearer {self.settings.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": f"airflow-provider-hindsight/{__version__}",
            }
        )
        return session

    @cached_property
    def pacer(self) -> RatePacer:
        """The pace shared by every thread using this hook."""
        return RatePacer(
            self.settings.requests_per_minute,
            clock=lambda: self._clock(),
            sleep=lambda seconds: self._sleep(seconds),
        )

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """Retries for this hook: the connection's ``max_retries`` and the hook's ``max_retry_wait``."""
        return RetryPolicy(max_retries=self.settings.max_retries, max_wait=self._max_retry_wait)

    def get_conn(self) -> requests.Session:
        """The hook's HTTP session (Airflow's usual hook entry point)."""
        return self.session

    # -- one update ---------------------------------------------------------------------------

    def update_interview(
        self,
        interview_request_id: int | str,
        *,
        contact_context: str | Mapping[str, Any] | None = None,
        contact_name: str | None = None,
        objective: str | None = None,
    ) -> dict[str, Any]:
        """``PATCH /interviews/{id}`` with exactly the fields that are not ``None``.

        Returns the API's answer, ``{"interview_request_id": ...}``. Bad arguments raise
        :class:`HindsightValidationError` before anything is sent.
        """
        update = build_interview_update(
            interview_request_id,
            contact_context=contact_context,
            contact_name=contact_name,
            objective=objective,
        )
        return self.send_update(update)

    def send_update(self, update: InterviewUpdate) -> dict[str, Any]:
        """Send a validated update with pacing and the retry policy."""
        retrying = self.retry_policy.retrying(before_sleep=self._log_retry, sleep=self._sleep)
        for attempt in retrying:
            with attempt:
                return self._send_once(update)
        raise AssertionError("tenacity stopped without an outcome")  # pragma: no cover

    def _send_once(self, update: InterviewUpdate) -> dict[str, Any]:
        self.pacer.acquire()
        url = f"{self.settings.base_url}/interviews/{update.interview_request_id}"
        try:
            response = self.session.patch(url, data=update.payload, timeout=self.settings.timeout)
        except requests.Timeout:
            raise HindsightConnectionError(
                f"No answer from {self._host} within {self.settings.timeout:g}s "
                f"(interview {update.interview_request_id}).",
                code="timeout",
            ) from None
        except requests.exceptions.ChunkedEncodingError:  # the connection dropped mid-answer
            raise HindsightConnectionError(
                f"The connection to {self._host} broke while reading the answer "
                f"(interview {update.interview_request_id}).",
                code="connection_error",
            ) from None
        except requests.ConnectionError as error:
            raise HindsightConnectionError(
                f"Could not reach {self._host} (interview {update.interview_request_id}): {type(error).__name__}.",
                code="connection_error",
            ) from None
        return self._parse(response)

    def _parse(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.ok:
            if isinstance(body, dict) and "interview_request_id" in body:
                return body
            raise HindsightResponseError(
                f"The API answered {response.status_code} but not with the documented JSON "
                f"(Content-Type {response.headers.get('Content-Type')!r}, body starts "
                f"{response.text[:80]!r}). Check the connection's host points at the Hindsight API.",
                status_code=response.status_code,
                code="invalid_response",
            )
        wait_for = requested_wait(response.headers) if response.status_code in (429, 503) else None
        if response.status_code == 429:
            self._on_rate_limited(wait_for)
        raise error_from_response(response.status_code, body, retry_after=wait_for)

    def _on_rate_limited(self, wait_for: float | None) -> None:
        """Every thread holds back for what the API asked, and the pace drops below its limit."""
        with self._rate_limited_lock:
            self.rate_limited_count += 1
        if wait_for is not None:
            self.pacer.pause(min(wait_for, self._max_retry_wait))
        self.pacer.slow_down()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        status = getattr(error, "status_code", None) or getattr(error, "code", None) or type(error).__name__
        self.log.warning(
            "Hindsight answered %s; retry %d of %d in %.1fs.",
            status,
            state.attempt_number,
            self.settings.max_retries,
            state.upcoming_sleep,
        )

    @property
    def _host(self) -> str:
        return urlsplit(self.settings.base_url).netloc

    # -- many updates -------------------------------------------------------------------------

    def update_interviews(
        self,
        rows: Iterable[Mapping[str, Any] | InterviewUpdate],
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> Iterator[UpdateResult]:
        """Send many updates at the hook's pace and yield one :class:`UpdateResult` per row.

        Rows are consumed lazily and at most ``2 * max_workers`` are in flight, so memory stays flat
        however many rows come. Invalid rows and repeated ids are reported, never sent. Results come
        in completion order; ``UpdateResult.row`` is the row's 1-based position in ``rows``.
        """
        # cached_property has no lock on Python 3.12+: create the shared session and pacer before the
        # threads start, or several threads could each build their own pacer and multiply the pace.
        _ = (self.session, self.pacer)
        in_flight: dict[Future[dict[str, Any]], tuple[int, int]] = {}
        with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hindsight") as pool:
            for position, checked in check_rows(rows):
                if isinstance(checked, UpdateResult):
                    yield checked
                    continue
                future = pool.submit(self.send_update, checked)
                in_flight[future] = (position, checked.interview_request_id)
                if len(in_flight) >= 2 * max_workers:
                    yield from self._collect(in_flight)
            while in_flight:
                yield from self._collect(in_flight)

    @staticmethod
    def _collect(in_flight: dict[Future[dict[str, Any]], tuple[int, int]]) -> Iterator[UpdateResult]:
        """Wait for at least one request in flight to end; yield the results of those that did."""
        done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            position, request_id = in_flight.pop(future)
            error = future.exception()
            if error is None:
                yield UpdateResult(position, request_id, True)
            elif isinstance(error, HindsightError):
                yield UpdateResult(position, request_id, False, error.status_code, error.code, error.message)
            else:
                yield UpdateResult(position, request_id, False, None, "unexpected_error", repr(error))

    # -- Airflow UI ---------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check the key without changing anything: an empty PATCH to interview 0.

        401 means the key was refused; 400 or 404 means it was accepted (there is no interview 0
        and an empty body changes nothing).
        """
        try:
            response = self.session.patch(
                f"{self.settings.base_url}/interviews/0", data=b"{}", timeout=self.settings.timeout
            )
        except HindsightError as error:
            return False, str(error)
        except requests.RequestException as error:
            return False, f"Could not reach {self._host}: {type(error).__name__}."
        if response.status_code in (400, 404, 429) or response.ok:
            return True, f"Connected to {self._host}: the API key was accepted."
        if response.status_code in (401, 403):
            return False, f"{self._host} refused the API key (HTTP {response.status_code})."
        return False, f"{self._host} answered HTTP {response.status_code}; try again later."

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for the Airflow 2.11 connection form (3.x reads ``conn-fields``)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        return {
            "plan": StringField(
                lazy_gettext("Plan"),
                widget=BS3TextFieldWidget(),
                description="essentials, growth or enterprise: paces requests at 60, 300 or 1,000 a minute.",
            ),
            "requests_per_minute": IntegerField(
                lazy_gettext("Requests per minute"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(strip_whitespace=True), NumberRange(min=1)],
                description="Optional. Explicit pace; wins over plan. Default 60.",
            ),
            "timeout": IntegerField(
                lazy_gettext("Timeout"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(strip_whitespace=True), NumberRange(min=1)],
                description="Optional. Seconds per request. Default 30.",
            ),
            "max_retries": IntegerField(
                lazy_gettext("Max retries"),
                widget=BS3TextFieldWidget(),
                validators=[Optional(strip_whitespace=True), NumberRange(min=0)],
                description="Optional. Retries after the first attempt on 429, 5xx and network errors. Default 5.",
            ),
            "allow_insecure_http": BooleanField(
                lazy_gettext("Allow plain HTTP to a remote host"),
                description="Sends the API key unencrypted: trusted networks only. Loopback needs no flag.",
            ),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Labels, placeholders and hidden fields for the Airflow 2.11 form, from the provider info."""
        from airflow_provider_hindsight.get_provider_info import get_provider_info

        (connection_type,) = get_provider_info()["connection-types"]
        behaviour = connection_type["ui-field-behaviour"]
        return {key.replace("-", "_"): value for key, value in behaviour.items()}


def check_rows(
    rows: Iterable[Mapping[str, Any] | InterviewUpdate],
) -> Iterator[tuple[int, InterviewUpdate | UpdateResult]]:
    """Validate and de-duplicate bulk rows lazily, numbering them from 1.

    Yields ``(position, update)`` for a row to send and ``(position, failed UpdateResult)`` for a
    row that must not be sent: invalid, or an id already seen in this run.
    """
    seen: set[int] = set()
    for position, row in enumerate(rows, start=1):
        try:
            update = row if isinstance(row, InterviewUpdate) else interview_update_from_row(row)
        except HindsightValidationError as error:
            yield position, UpdateResult(position, _row_id(row), False, None, error.code, error.message)
            continue
        except Exception as error:  # a row object that breaks while read must not end the whole run
            message = f"could not read this row: {type(error).__name__}: {error}"
            yield position, UpdateResult(position, _row_id(row), False, None, "invalid_row", message)
            continue
        if update.interview_request_id in seen:
            yield (
                position,
                UpdateResult(
                    position,
                    update.interview_request_id,
                    False,
                    None,
                    "duplicate_id",
                    "interview_request_id appears more than once in this run; only the first row was sent. "
                    "Deduplicate the rows (contact_context overwrites, so only one version can win).",
                ),
            )
            continue
        seen.add(update.interview_request_id)
        yield position, update


def _base_url(host: str | None, port: int | None, schema: str | None, extra: Mapping[str, Any], conn_id: str) -> str:
    """The API base URL from the connection: default, a full URL as is, or a bare host name."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        url = host.rstrip("/")
    else:
        netloc = f"{host}:{port}" if port else host
        url = f"https://{netloc}/api/v1"
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
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _positive_number(name: str, value: Any) -> float | None:
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


def _non_negative_int(name: str, value: Any) -> int | None:
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


def _row_id(row: object) -> Any:
    """The id a row claims, for reporting a row that failed validation (JSON-safe)."""
    value = row.get("interview_request_id") if isinstance(row, Mapping) else None
    return value if value is None or isinstance(value, (int, str)) else json.dumps(value, default=repr)
