"""The one retry policy: what is retried, how long to wait, and when to give up."""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_when_event_set,
    wait_exponential_jitter,
)

from airflow_provider_hindsight.exceptions import HindsightError

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
        *,
        before_sleep: Callable[[RetryCallState], None],
        sleep: Callable[[float], None],
        stopped: threading.Event | None = None,
    ) -> Retrying:
        """A tenacity ``Retrying`` for one request; ``stopped`` being set ends the attempts early."""
        backoff = wait_exponential_jitter(initial=self.initial_backoff, max=self.max_wait, jitter=self.jitter)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            requested = error.retry_after if isinstance(error, HindsightError) else None
            return min(requested, self.max_wait) if requested is not None else backoff(state)

        def should_retry(error: BaseException) -> bool:
            if not is_retryable(error):
                return False
            retry_after = getattr(error, "retry_after", None)
            return retry_after is None or retry_after <= self.max_wait

        stop = stop_after_attempt(self.max_retries + 1)
        return Retrying(
            stop=stop if stopped is None else stop | stop_when_event_set(stopped),
            wait=wait,
            retry=retry_if_exception(should_retry),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )
