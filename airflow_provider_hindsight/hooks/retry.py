"""The retry policy: what is retried for each kind of request, how long to wait, and when to give up.

Three rules: :data:`IDEMPOTENT` (PATCH and GET: retry every transient error), :data:`CREATE`
(``POST /interviews``: retry only what cannot have reached the API; once it may have arrived, the
outcome is unknown and is never sent again) and :data:`ONCE` (the UI's connection test: one
attempt). :class:`RetryPolicy` builds a tenacity loop for worker threads and one for the event loop
from the same decisions.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from airflow_provider_hindsight.exceptions import (
    HindsightConnectionError,
    HindsightError,
    HindsightRateLimitError,
    HindsightUnknownOutcomeError,
)

_EPOCH_THRESHOLD = 1_000_000_000.0  # X-RateLimit-Reset above this is a Unix time, below it a delay


def requested_wait(headers: Mapping[str, str], *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the API asked us to wait: ``Retry-After`` first, then ``X-RateLimit-Reset``.

    ``Retry-After`` may be seconds or an HTTP date. ``X-RateLimit-Reset`` is read as a Unix time
    when it is that large, else as seconds to wait. Unparseable values count as absent.
    """
    retry_after = headers.get("Retry-After")
    if retry_after:
        seconds = _parse_number(retry_after)
        if seconds is None:
            try:
                seconds = email.utils.parsedate_to_datetime(retry_after).timestamp() - now()
            except (TypeError, ValueError, IndexError):
                seconds = None
        if seconds is not None:
            return max(seconds, 0.0)
    reset = _parse_number(headers.get("X-RateLimit-Reset") or "")
    if reset is not None:
        return max(reset - now() if reset > _EPOCH_THRESHOLD else reset, 0.0)
    return None


def _parse_number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_retryable(error: BaseException) -> bool:
    """Transient errors are retried (429, 5xx, network, a 2xx that is not the API's JSON); others are final."""
    return isinstance(error, HindsightError) and error.transient


def cannot_have_arrived(error: BaseException) -> bool:
    """A 429 (the limiter answered) or a connection that was never made: the request created nothing."""
    return isinstance(error, HindsightRateLimitError) or (
        isinstance(error, HindsightConnectionError) and not error.may_have_arrived
    )


def _unchanged(error: HindsightError, subject: str) -> HindsightError:
    return error


def _unknown_outcome(error: HindsightError, subject: str) -> HindsightError:
    """A create's last error once it may have reached the API: the outcome is unknown, never resent."""
    if cannot_have_arrived(error) or not error.transient:
        return error
    return HindsightUnknownOutcomeError(
        f"{subject}: the outcome is unknown ({error.message.rstrip('.')}). The request may have created the "
        "interview, so it is not sent again: check in Hindsight whether it exists.",
        status_code=error.status_code,
        details={"cause": error.details.get("cause", error.code)},
    )


@dataclass(frozen=True)
class RetryRule:
    """What one kind of request may retry, and what its last error becomes when it gives up."""

    name: str
    should_retry: Callable[[BaseException], bool]
    final_error: Callable[[HindsightError, str], HindsightError]


IDEMPOTENT = RetryRule("idempotent", is_retryable, _unchanged)
"""PATCH and GET: the same request twice has the same effect, so every transient error is retried."""
CREATE = RetryRule("create", cannot_have_arrived, _unknown_outcome)
"""POST /interviews is not idempotent: retried only when it cannot have reached the API."""
ONCE = RetryRule("once", lambda error: False, _unchanged)
"""The connection test: someone waits at the UI's Test button, so its first answer is the verdict."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with jittered exponential backoff that honours the API's requested wait.

    ``max_retries`` counts retries after the first attempt; ``max_wait`` bounds any single wait.
    When the API asks for a longer wait than ``max_wait``, retrying early cannot succeed, so the
    :class:`HindsightRateLimitError` is raised at once with ``retry_after`` set: the operator can
    then defer, or let Airflow's task retries take over.
    """

    max_retries: int = 5
    max_wait: float = 60.0
    initial_backoff: float = 1.0
    jitter: float = 1.0

    def retrying(
        self,
        rule: RetryRule,
        *,
        before_sleep: Callable[[RetryCallState], None],
        sleep: Callable[[float], None],
        stopped: threading.Event | None = None,
    ) -> Retrying:
        """A tenacity loop for one request in a thread; ``stopped`` being set ends the attempts early."""
        return Retrying(sleep=sleep, **self._loop(rule, before_sleep, stopped))

    def async_retrying(
        self,
        rule: RetryRule,
        *,
        before_sleep: Callable[[RetryCallState], None],
        sleep: Callable[[float], Awaitable[None]],
    ) -> AsyncRetrying:
        """The same loop for a coroutine: it awaits between attempts."""
        return AsyncRetrying(sleep=sleep, **self._loop(rule, before_sleep, None))

    def _loop(
        self, rule: RetryRule, before_sleep: Callable[[RetryCallState], None], stopped: threading.Event | None
    ) -> dict[str, Any]:
        backoff = wait_exponential_jitter(initial=self.initial_backoff, max=self.max_wait, jitter=self.jitter)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            requested = error.retry_after if isinstance(error, HindsightError) else None
            return min(requested, self.max_wait) if requested is not None else backoff(state)

        def should_retry(error: BaseException) -> bool:
            if not rule.should_retry(error):
                return False
            retry_after = getattr(error, "retry_after", None)
            return retry_after is None or retry_after <= self.max_wait

        stop = stop_after_attempt(self.max_retries + 1)
        return {
            "stop": stop if stopped is None else stop | stop_when_event_set(stopped),
            "wait": wait,
            "retry": retry_if_exception(should_retry),
            "before_sleep": before_sleep,
            "reraise": True,
        }
