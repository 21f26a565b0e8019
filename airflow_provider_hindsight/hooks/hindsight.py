"""``HindsightHook``: the Hindsight API from worker threads, over one ``requests`` session.

Every endpoint's method is a few lines over :meth:`HindsightHook.request`, the one request core:
pace, send, interpret the answer (:mod:`~airflow_provider_hindsight.hooks.request`), under the
request's retry rule. The async twin for triggers is :mod:`~airflow_provider_hindsight.hooks.hindsight_async`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret
from requests.adapters import HTTPAdapter

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.budget.permits import BudgetNews, SharedBudget
from airflow_provider_hindsight.exceptions import (
    HindsightAuthError,
    HindsightBadRequestError,
    HindsightConfigurationError,
    HindsightError,
    HindsightNotFoundError,
    HindsightRateLimitError,
    HindsightRunStoppedError,
    HindsightServerError,
    HindsightValidationError,
)
from airflow_provider_hindsight.hooks.connection import (
    ConnectionSettings,
    non_negative_int,
    parse_connection,
    positive_number,
)
from airflow_provider_hindsight.hooks.connection_form import (
    DEFAULT_REQUESTS_PER_MINUTE,
    form_widgets,
    ui_field_behaviour,
)
from airflow_provider_hindsight.hooks.network import network_cause
from airflow_provider_hindsight.hooks.pacing import RatePacer, connection_budget
from airflow_provider_hindsight.hooks.request import (
    ApiRequest,
    create_request,
    get_request,
    interpret_answer,
    key_check_request,
    network_error,
    update_request,
)
from airflow_provider_hindsight.hooks.retry import ONCE, RetryPolicy
from airflow_provider_hindsight.pace import PaceChange
from airflow_provider_hindsight.resources.interviews import (
    InterviewCreate,
    InterviewUpdate,
    build_interview_create,
    build_interview_update,
    validate_interview_request_id,
)

if TYPE_CHECKING:
    from tenacity import RetryCallState

DEFAULT_MAX_RETRY_WAIT = 60.0
DEFAULT_MAX_WORKERS = 16
MAX_WORKERS_LIMIT = 256
"""More threads than this only add contention: the pace, not the thread count, sets the rate."""

T = TypeVar("T")


class shared_by_threads(cached_property[T]):
    """``cached_property`` that builds its value once when several threads ask at once.

    ``functools.cached_property`` has no lock from Python 3.12: two worker threads reading ``pacer``
    together could each build one, and two pacers double the pace. One lock per hook, taken only until
    the value is cached (then the instance attribute answers without calling this).
    """

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        with instance.__dict__.setdefault("_shared_by_threads_lock", threading.RLock()):
            return super().__get__(instance, owner)


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
    :param max_workers: the size of the session's connection pool: the most threads that send through
        this hook at once (a bulk run's workers).
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
        self.warn_default_pace = True
        """Whether the default pace is worth a log line: not for one request, which the pace does not slow."""
        self._counts_lock = threading.Lock()
        self.rate_limited_count = 0
        """429 answers received so far by this hook (retried or not)."""
        self.request_count = 0
        """Requests sent so far by this hook, retries included (the run history's ``requests``)."""

    # -- connection ---------------------------------------------------------------------------

    @shared_by_threads
    def settings(self) -> ConnectionSettings:
        """The connection's settings, validated once; hook arguments win over extras."""
        try:
            conn = self.get_connection(self.hindsight_conn_id)
        except AirflowNotFoundException:
            raise self.missing_connection() from None
        return self.settings_from(conn)

    def missing_connection(self) -> HindsightConfigurationError:
        """The error for a connection id that does not exist, naming it and how to create it."""
        return HindsightConfigurationError(
            f"Connection {self.hindsight_conn_id!r} does not exist. Create it (Admin > Connections, type "
            f"Hindsight, the API key in the API key field) or set AIRFLOW_CONN_{self.hindsight_conn_id.upper()}.",
            code="invalid_connection",
        )

    def settings_from(self, conn: Any) -> ConnectionSettings:
        """Validate an Airflow connection's fields into settings (the key masked in logs from here on)."""
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
        if conn.conn_type != self.conn_type:
            self.log.warning(
                "Connection %r is of type %r, not %r: it is read as a Hindsight connection and paces at %g "
                "requests a minute%s. Set its type to Hindsight (and its plan) so that the pace is the one you chose.",
                self.hindsight_conn_id,
                conn.conn_type,
                self.conn_type,
                settings.requests_per_minute,
                " (the default: it sets neither plan nor requests_per_minute)" if settings.paced_by_default else "",
            )
        elif settings.paced_by_default and self.warn_default_pace:
            self.log.info(
                "Connection %r sets neither plan nor requests_per_minute: pacing at %s requests a minute "
                "(the Essentials limit). Set the extra `plan` or `requests_per_minute` to go faster.",
                self.hindsight_conn_id,
                DEFAULT_REQUESTS_PER_MINUTE,
            )
        return settings

    @shared_by_threads
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

    @shared_by_threads
    def pacer(self) -> RatePacer:
        """The pace shared by every thread using this hook, taking permits from the key's shared budget if any."""
        return RatePacer(
            self.settings.requests_per_minute,
            clock=lambda: self.clock(),
            sleep=lambda seconds: self.sleep(seconds),
            permits=connection_budget(self.settings),
        )

    @shared_by_threads
    def budget_news(self) -> BudgetNews | None:
        """What the task's log was told of the key's shared budget, if any: the process's (a worker runs one task)."""
        budget = self.pacer.permits
        return budget.news if isinstance(budget, SharedBudget) else None

    def tell_budget_news(self) -> None:
        """After each permit, on the caller's side: the budget in use, or fallen back to pacing alone, in this log."""
        news = self.budget_news
        if news is not None:
            news.tell(self.log)

    def log_pace_change(self, change: PaceChange) -> None:
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

    @shared_by_threads
    def retry_policy(self) -> RetryPolicy:
        """Retries for this hook: the connection's ``max_retries`` and the hook's ``max_retry_wait``."""
        return RetryPolicy(max_retries=self.settings.max_retries, max_wait=self.max_retry_wait)

    def get_conn(self) -> requests.Session:
        """The hook's HTTP session (Airflow's usual hook entry point)."""
        return self.session

    # -- the request core ---------------------------------------------------------------------

    def request(
        self,
        request: ApiRequest,
        *,
        stopped: threading.Event | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Send ``request`` paced and under its retry rule; return the parsed answer or raise the typed error.

        ``stopped`` (a bulk run's circuit breaker) ends the attempts: a request not yet sent when it
        is set raises :class:`~airflow_provider_hindsight.exceptions.HindsightRunStoppedError`; one
        being retried raises its last error. ``before_send`` runs once, after the first attempt's
        turn at the pace and right before it is sent (the create-once ledger commits its claim
        there); what it raises ends the request unsent.
        """
        retrying = self.retry_policy.retrying(
            request.rule, before_sleep=self._log_retry, sleep=self.sleep, stopped=stopped
        )
        try:
            for attempt in retrying:
                with attempt:
                    first = attempt.retry_state.attempt_number == 1
                    return self._send_once(request, stopped, first_attempt=first, before_send=before_send)
        except HindsightError as error:
            final = request.rule.final_error(error, request.subject)
            raise final.with_traceback(None) from None  # a traceback of the cause, not of the retry loop
        raise AssertionError("the retry loop ended without an outcome")  # pragma: no cover

    def _send_once(
        self,
        request: ApiRequest,
        stopped: threading.Event | None,
        *,
        first_attempt: bool,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        self.pacer.acquire(self.log_pace_change)
        self.tell_budget_news()
        if first_attempt and stopped is not None and stopped.is_set():
            raise HindsightRunStoppedError(request.subject)
        if first_attempt and before_send is not None:
            before_send()
        self.count_request()
        try:
            response = self.session.request(
                request.method,
                self.settings.base_url + request.path,
                data=request.body,
                timeout=self.settings.timeout,
                allow_redirects=False,  # a redirected PATCH or POST arrives as a GET: see redirect_error
            )
        except requests.RequestException as error:
            raise network_error(network_cause(error), self.settings, request.subject) from None
        return self.read_answer(request, response.status_code, response.headers, response.text)

    def read_answer(self, request: ApiRequest, status: int, headers: Mapping[str, str], text: str) -> dict[str, Any]:
        """The answer's body, or its typed error; a 429 first pauses and slows the pacer for every caller."""
        try:
            return interpret_answer(request, status, headers, text, conn_id=self.hindsight_conn_id)
        except HindsightRateLimitError as error:
            self.on_rate_limited(error.retry_after)
            raise

    def count_request(self) -> None:
        """One more request about to be sent (both transports call it, right before sending)."""
        with self._counts_lock:
            self.request_count += 1

    def on_rate_limited(self, wait_for: float | None) -> None:
        """Every caller holds back for what the API asked, and the pace drops below its limit."""
        with self._counts_lock:
            self.rate_limited_count += 1
        if wait_for is not None:
            self.pacer.pause(min(wait_for, self.max_retry_wait), self.log_pace_change)
        self.pacer.slow_down(self.log_pace_change)

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

    # -- the endpoints ------------------------------------------------------------------------

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
        """Send a validated update (idempotent: every transient error is retried)."""
        return self.request(update_request(update), stopped=stopped)

    def create_interview(
        self,
        *,
        contact_email: str,
        sequence_id: str | None = None,
        interview_type_id: str | None = None,
        contact_name: str | None = None,
        contact_context: str | Mapping[str, Any] | None = None,
        deal_id: str | None = None,
        objective: str | None = None,
    ) -> dict[str, Any]:
        """``POST /interviews``; returns the 201 body (``interview_request_id``, ``survey_url``, ``status``, ...).

        Not idempotent, so retried only when it cannot have reached Hindsight (a 429, a connection
        never made). Once it may have arrived (a read timeout, a dropped connection, a 5xx, a 2xx that
        is not the documented JSON) it raises
        :class:`~airflow_provider_hindsight.exceptions.HindsightUnknownOutcomeError` and is not sent
        again. For create-once across retries and reruns, use the create operators' ledger.
        """
        create = build_interview_create(
            contact_email=contact_email,
            sequence_id=sequence_id,
            interview_type_id=interview_type_id,
            contact_name=contact_name,
            contact_context=contact_context,
            deal_id=deal_id,
            objective=objective,
        )
        return self.send_create(create, subject="the create")

    def send_create(
        self,
        create: InterviewCreate,
        *,
        subject: str,
        stopped: threading.Event | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        """Send a validated create under the create rule; ``subject`` names it in messages (a request key).

        ``before_send`` runs right before the POST leaves, after its turn at the pace (see :meth:`request`).
        """
        return self.request(create_request(create, subject), stopped=stopped, before_send=before_send)

    def get_interview(
        self, interview_request_id: int | str, *, stopped: threading.Event | None = None
    ) -> dict[str, Any]:
        """``GET /interviews/{id}``: status, survey link, dates and the transcript (``None`` until completed)."""
        return self.request(get_request(validate_interview_request_id(interview_request_id)), stopped=stopped)

    # -- Airflow UI ---------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Check the key without changing anything, for the UI's Test button: one empty PATCH to interview 0.

        Sent once through the request core (no retries: someone is waiting). 401 or 403 means the key
        was refused; 400 or 404 means it was accepted (there is no interview 0 and an empty body
        changes nothing), and so does a 429 (the key is checked before the rate limit).
        """
        try:
            self.request(key_check_request(ONCE))
        except (HindsightBadRequestError, HindsightNotFoundError, HindsightRateLimitError):
            pass
        except HindsightAuthError as error:
            return False, f"{self.settings.host} refused the API key (HTTP {error.status_code})."
        except HindsightServerError as error:
            return False, f"{self.settings.host} answered HTTP {error.status_code}; try again later."
        except HindsightError as error:  # no key, a redirect, the network, an answer that is not the API's
            return False, str(error)
        return True, f"Connected to {self.settings.host}: the API key was accepted."

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for the Airflow 2.11 connection form (3.x reads ``conn-fields``)."""
        return form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Labels, placeholders and hidden fields for the Airflow 2.11 form (3.x reads the provider info)."""
        return {key.replace("-", "_"): value for key, value in ui_field_behaviour().items()}


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
