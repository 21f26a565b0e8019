"""``HindsightHook``: the HTTP session, pacing, retries and the bulk engine for the Hindsight API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import cached_property
from typing import TYPE_CHECKING, Any

import requests
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret
from requests.adapters import HTTPAdapter

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.exceptions import (
    HindsightConfigurationError,
    HindsightConnectionError,
    HindsightError,
    HindsightResponseError,
    HindsightRunStoppedError,
    HindsightValidationError,
    error_from_response,
)
from airflow_provider_hindsight.hooks.circuit import CircuitBreaker, RunStop
from airflow_provider_hindsight.hooks.connection import (
    ConnectionSettings,
    non_negative_int,
    parse_connection,
    positive_number,
)
from airflow_provider_hindsight.hooks.connection_form import DEFAULT_REQUESTS_PER_MINUTE, form_widgets
from airflow_provider_hindsight.hooks.pacing import PaceChange, RatePacer
from airflow_provider_hindsight.hooks.retry import RetryPolicy, requested_wait
from airflow_provider_hindsight.payload import InterviewUpdate, UpdateResult, build_interview_update, check_rows

if TYPE_CHECKING:
    from tenacity import RetryCallState

DEFAULT_MAX_RETRY_WAIT = 60.0
DEFAULT_MAX_WORKERS = 16
MAX_WORKERS_LIMIT = 256
"""More threads than this only add contention: the pace, not the thread count, sets the rate."""


class HindsightHook(BaseHook):
    """Talks to the Hindsight API with the key and settings of an Airflow connection.

    One ``requests.Session`` (keep-alive, a connection pool as large as ``max_workers``) and one
    pacer per hook, shared by every thread that uses it; bounded retries that honour
    ``Retry-After``; typed errors from :mod:`airflow_provider_hindsight.exceptions`.

    :param hindsight_conn_id: the ``hindsight`` connection to use.
    :param requests_per_minute: pace; wins over the connection's ``requests_per_minute`` and ``plan``.
    :param max_retries: retries after the first attempt; wins over the connection's extra.
    :param timeout: seconds per request; wins over the connection's extra.
    :param max_retry_wait: the longest single wait between attempts. A longer ``Retry-After`` is
        raised at once as :class:`~airflow_provider_hindsight.exceptions.HindsightRateLimitError`
        with ``retry_after`` set.
    :param max_workers: concurrent requests of :meth:`update_interviews`, and the size of the
        session's connection pool.
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
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        super().__init__()
        self.hindsight_conn_id = hindsight_conn_id
        self.requests_per_minute = positive_number("requests_per_minute", requests_per_minute)
        self.max_retries = non_negative_int("max_retries", max_retries)
        self.timeout = positive_number("timeout", timeout)
        self.max_retry_wait = positive_number("max_retry_wait", max_retry_wait) or DEFAULT_MAX_RETRY_WAIT
        self.max_workers = validate_max_workers(max_workers)
        self.sleep: Callable[[float], None] = time.sleep
        """How the hook waits (pacing and retries); tests replace it with a fake clock's."""
        self.clock: Callable[[], float] = time.monotonic
        """The monotonic clock the pacer reads; tests replace it with a fake clock's."""
        self._rate_limited_lock = threading.Lock()
        self.rate_limited_count = 0
        """429 answers received so far by this hook (retried or not)."""

    # -- connection ---------------------------------------------------------------------------

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection's settings, validated once; hook arguments win over extras."""
        try:
            conn = self.get_connection(self.hindsight_conn_id)
        except AirflowNotFoundException:
            raise HindsightConfigurationError(
                f"Connection {self.hindsight_conn_id!r} does not exist. Create it (Admin > Connections, type "
                f"Hindsight, the API key as Password) or set AIRFLOW_CONN_{self.hindsight_conn_id.upper()}.",
                code="invalid_connection",
            ) from None
        if conn.password:
            mask_secret(conn.password)
        settings = parse_connection(
            self.hindsight_conn_id,
            host=conn.host,
            port=conn.port,
            password=conn.password,
            extra=conn.extra_dejson if conn.extra else {},
            requests_per_minute=self.requests_per_minute,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        if settings.paced_by_default:
            self.log.info(
                "Connection %r sets neither plan nor requests_per_minute: pacing at %s requests a minute "
                "(the Essentials limit). Set the extra `plan` or `requests_per_minute` to go faster.",
                self.hindsight_conn_id,
                DEFAULT_REQUESTS_PER_MINUTE,
            )
        return settings

    @cached_property
    def session(self) -> requests.Session:
        """The keep-alive session, with auth and JSON headers, its pool sized for ``max_workers``."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.max_workers, max_retries=0)
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
            clock=lambda: self.clock(),
            sleep=lambda seconds: self.sleep(seconds),
            on_change=self._log_pace_change,
        )

    def _log_pace_change(self, change: PaceChange) -> None:
        """One INFO line per change of pace: the pacer adapting is expected, retries are the WARNINGs."""
        if change.pause_seconds > 0:
            self.log.info("Pausing every request for %.1fs: %s.", change.pause_seconds, change.reason)
        else:
            self.log.info(
                "Pace %.0f -> %.0f requests a minute: %s.",
                change.old_requests_per_minute,
                change.new_requests_per_minute,
                change.reason,
            )

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        """Retries for this hook: the connection's ``max_retries`` and the hook's ``max_retry_wait``."""
        return RetryPolicy(max_retries=self.settings.max_retries, max_wait=self.max_retry_wait)

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
        :class:`~airflow_provider_hindsight.exceptions.HindsightValidationError` before anything is sent.
        """
        update = build_interview_update(
            interview_request_id,
            contact_context=contact_context,
            contact_name=contact_name,
            objective=objective,
        )
        return self.send_update(update)

    def send_update(self, update: InterviewUpdate, *, stopped: threading.Event | None = None) -> dict[str, Any]:
        """Send a validated update with pacing and the retry policy.

        ``stopped`` (a bulk run's circuit breaker) ends the attempts: a row not yet sent when it is set
        raises :class:`~airflow_provider_hindsight.exceptions.HindsightRunStoppedError`; a row being
        retried raises its last error.
        """
        retrying = self.retry_policy.retrying(before_sleep=self._log_retry, sleep=self.sleep, stopped=stopped)
        try:
            for attempt in retrying:
                with attempt:
                    return self._send_once(update, stopped, first_attempt=attempt.retry_state.attempt_number == 1)
        except HindsightError as error:
            raise error.with_traceback(None) from None  # a traceback of the cause, not of the retry loop
        raise AssertionError("the retry loop ended without an outcome")  # pragma: no cover

    def _send_once(
        self, update: InterviewUpdate, stopped: threading.Event | None, *, first_attempt: bool
    ) -> dict[str, Any]:
        self.pacer.acquire()
        if first_attempt and stopped is not None and stopped.is_set():
            raise HindsightRunStoppedError(update.interview_request_id)
        url = f"{self.settings.base_url}/interviews/{update.interview_request_id}"
        try:
            response = self.session.patch(url, data=update.payload, timeout=self.settings.timeout)
        except requests.RequestException as error:
            raise self._network_error(error, update.interview_request_id) from None
        return self._parse(response)

    def _network_error(self, error: requests.RequestException, interview_request_id: int) -> HindsightConnectionError:
        """Name what went wrong on the network (refused, DNS, TLS, timeout, dropped) and how to check it."""
        host = self.settings.host
        code = "connection_error"
        if isinstance(error, requests.exceptions.SSLError):
            cause = "TLS handshake failed"
            hint = "Check that the host serves HTTPS."
            if self.settings.host_without_scheme:
                hint = (
                    "The host was given without a scheme, so https:// is used. For a local test server put a "
                    "full URL such as http://127.0.0.1:9321/api/v1 in the host field (plain http is allowed "
                    "to loopback hosts, and elsewhere only with the extra allow_insecure_http)."
                )
        elif isinstance(error, requests.exceptions.ConnectTimeout):
            cause, code, hint = "connect timed out", "timeout", "Check the host and any firewall between."
        elif isinstance(error, requests.Timeout):
            cause, code = "read timed out", "timeout"
            hint = f"No answer within {self.settings.timeout:g}s; raise the connection's timeout if the API is slow."
        elif isinstance(error, requests.exceptions.ChunkedEncodingError):
            cause, hint = "the connection broke while reading the answer", ""
        elif _caused_by(error, ConnectionRefusedError) or "refused" in str(error).lower():
            cause, hint = "connection refused", "Nothing listens there: check the host and port."
        elif "resolve" in str(error).lower() or "name or service not known" in str(error).lower():
            cause, hint = "DNS lookup failed", "Check the host name in the connection."
        else:
            cause, hint = "the connection was dropped", ""
        if self.settings.is_loopback and code == "connection_error" and cause == "connection refused":
            hint = f"Is the Hindsight emulator (or your local server) running on {host}?"
        message = f"{cause} on {host} (interview {interview_request_id})." + (f" {hint}" if hint else "")
        return HindsightConnectionError(message, code=code, details={"cause": cause})

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
            self.pacer.pause(min(wait_for, self.max_retry_wait))
        self.pacer.slow_down()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, HindsightError) and error.status_code is not None:
            what = f"Hindsight answered HTTP {error.status_code}"
        elif isinstance(error, HindsightError):
            what = f"Request failed: {error.details.get('cause', error.code)} on {self.settings.host}"
        else:
            what = f"Request failed: {type(error).__name__}"
        self.log.warning(
            "%s; retry %d of %d in %.1fs.",
            what,
            state.attempt_number,
            self.settings.max_retries,
            state.upcoming_sleep,
        )

    # -- many updates -------------------------------------------------------------------------

    def update_interviews(
        self,
        rows: Iterable[Mapping[str, Any] | InterviewUpdate],
        *,
        breaker: CircuitBreaker | None = None,
    ) -> Iterator[UpdateResult]:
        """Send many updates at the hook's pace and yield one :class:`UpdateResult` per row.

        Rows are consumed lazily and at most ``2 * max_workers`` are in flight, so memory stays flat
        however many rows come. Invalid rows and repeated ids are reported, never sent. Results come
        in completion order; ``UpdateResult.row`` is the row's 1-based position in ``rows``.

        ``breaker`` (a new one by default) stops the run when no further row can succeed: rows not
        sent after it trips are still yielded, failed with the code ``not_sent``; read
        ``breaker.stop`` for why.
        """
        return self.send_checked(check_rows(rows), breaker=breaker)

    def send_checked(
        self,
        checked: Iterable[tuple[int, InterviewUpdate | UpdateResult]],
        *,
        breaker: CircuitBreaker | None = None,
    ) -> Iterator[UpdateResult]:
        """:meth:`update_interviews` for rows already checked (:func:`~airflow_provider_hindsight.payload.check_rows`).

        An ``UpdateResult`` in ``checked`` is a row that ended before sending (invalid, duplicate,
        unchanged): it is passed through as it is.
        """
        breaker = breaker or CircuitBreaker()
        # cached_property has no lock on Python 3.12+: create the shared session and pacer before the
        # threads start, or several threads could each build their own pacer and multiply the pace.
        _ = (self.session, self.pacer)
        in_flight: set[Future[UpdateResult]] = set()
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="hindsight") as pool:
            for position, item in checked:
                if isinstance(item, UpdateResult):
                    yield item
                elif breaker.stop is not None:
                    yield _not_sent(position, item.interview_request_id, breaker.stop)
                else:
                    in_flight.add(pool.submit(self._send_row, position, item, breaker))
                    if len(in_flight) >= 2 * self.max_workers:
                        yield from _collect(in_flight)
            while in_flight:
                yield from _collect(in_flight)

    def _send_row(self, position: int, update: InterviewUpdate, breaker: CircuitBreaker) -> UpdateResult:
        """Send one bulk row in a worker thread; the breaker hears of its result before any other row starts."""
        try:
            self.send_update(update, stopped=breaker.stopped)
        except HindsightRunStoppedError:
            assert breaker.stop is not None  # the event is set only after the stop is recorded
            return _not_sent(position, update.interview_request_id, breaker.stop)
        except Exception as error:  # a row's failure is its result, whatever it is
            result = UpdateResult.failed(position, update.interview_request_id, error)
        else:
            result = UpdateResult(position, update.interview_request_id, True)
        breaker.record(result)
        return result

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
            return False, str(self._network_error(error, 0))
        host = self.settings.host
        if response.status_code in (400, 404, 429) or response.ok:
            return True, f"Connected to {host}: the API key was accepted."
        if response.status_code in (401, 403):
            return False, f"{host} refused the API key (HTTP {response.status_code})."
        return False, f"{host} answered HTTP {response.status_code}; try again later."

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for the Airflow 2.11 connection form (3.x reads ``conn-fields``)."""
        return form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Labels, placeholders and hidden fields for the Airflow 2.11 form, from the provider info."""
        from airflow_provider_hindsight.get_provider_info import get_provider_info

        (connection_type,) = get_provider_info()["connection-types"]
        behaviour = connection_type["ui-field-behaviour"]
        return {key.replace("-", "_"): value for key, value in behaviour.items()}


def _collect(in_flight: set[Future[UpdateResult]]) -> Iterator[UpdateResult]:
    """Wait for at least one row in flight to end; yield the results of those that did."""
    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
    for future in done:
        in_flight.discard(future)
        yield future.result()


def validate_max_workers(value: object) -> int:
    """``max_workers`` as an int from 1 to :data:`MAX_WORKERS_LIMIT`, or an error naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS_LIMIT:
        raise HindsightValidationError(
            f"max_workers must be a whole number from 1 to {MAX_WORKERS_LIMIT} (concurrent requests), got "
            f"{value!r}. The default, {DEFAULT_MAX_WORKERS}, keeps up with 1,000 requests a minute at up to "
            "1 s of latency.",
            field="max_workers",
        )
    return value


def _not_sent(position: int, interview_request_id: int, stop: RunStop) -> UpdateResult:
    return UpdateResult(
        position,
        interview_request_id,
        False,
        None,
        "not_sent",
        f"not sent: the run stopped ({stop.code}) because {stop.reason}.",
        stop.transient,
    )


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is anywhere in ``error``'s chain of causes (urllib3 wraps the socket error)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = current.__cause__ or current.__context__ or nested or getattr(current, "reason", None)
    return False
