"""The circuit breaker of a bulk run: stop sending when no further row can succeed.

A wrong API key fails every row the same way, and an API that is down fails each row only after
its retries: without a breaker, 50,000 rows would collect 50,000 401s, or hold a worker slot for
hours. The breaker trips on the first 401/403, on the first redirect (the connection's base URL is
wrong for every row), and on a sustained run of transient failures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airflow_provider_hindsight.bulk.rows import RowResult, RunStop

AUTH_STATUSES = frozenset({401, 403})
REDIRECT_CODE = "redirect"
"""The error code of a 3xx answer (:func:`~airflow_provider_hindsight.hooks.request.redirect_error`)."""
DEFAULT_MAX_CONSECUTIVE_TRANSIENT = 10
DEFAULT_MAX_OUTAGE_SECONDS = 60.0


class CircuitBreaker:
    """Watches row results and trips when the rest of the run cannot succeed.

    - the first 401 or 403: the key is wrong or not allowed, for every row (permanent);
    - the first redirect: the connection's base URL is wrong, for every row (permanent);
    - ``max_consecutive_transient`` rows in a row that failed transiently after their retries, or
      transient failures only for longer than ``max_outage_seconds`` since the last success (or
      the start): the API is down or unreachable (transient).

    Thread-safe; :attr:`stopped` is an event the sending threads check before each attempt.
    ``conn_id`` (the Hindsight connection) is named when the key is refused.
    """

    def __init__(
        self,
        *,
        max_consecutive_transient: int = DEFAULT_MAX_CONSECUTIVE_TRANSIENT,
        max_outage_seconds: float = DEFAULT_MAX_OUTAGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        conn_id: str | None = None,
    ) -> None:
        self._connection = f" {conn_id!r}" if conn_id else ""
        self.max_consecutive_transient = max_consecutive_transient
        self.max_outage_seconds = max_outage_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive_transient = 0
        self._last_success = clock()
        self.stopped = threading.Event()
        self.stop: RunStop | None = None
        self.aborted = False
        """Set by :meth:`abort`: the engine reads no further row, only collects the rows in flight."""

    def record(self, result: RowResult) -> None:
        """Count a sent row's result; trip when it shows the run cannot succeed."""
        with self._lock:
            if self.stop is not None:
                return
            if result.succeeded:
                self._consecutive_transient = 0
                self._last_success = self._clock()
            elif result.status_code in AUTH_STATUSES:
                self._trip(
                    f"the API refused the key (HTTP {result.status_code}) for row {result.row} ({result.key}): "
                    f"every other row would be refused too. Check the API key in the API key field of the "
                    f"connection{self._connection}",
                    "stopped_auth",
                    transient=False,
                )
            elif result.code == REDIRECT_CODE:
                self._trip(
                    f"the API answered row {result.row} ({result.key}) with a redirect (HTTP {result.status_code}), "
                    f"which is never followed: every other row would be redirected too. Set the host of the "
                    f"connection{self._connection} to the API's base URL itself",
                    "stopped_redirect",
                    transient=False,
                )
            elif result.transient:
                self._consecutive_transient += 1
                outage = self._clock() - self._last_success
                if self._consecutive_transient >= self.max_consecutive_transient or outage >= self.max_outage_seconds:
                    self._trip(
                        f"{self._consecutive_transient} rows in a row failed after their retries, and no row "
                        f"succeeded for {outage:.0f}s (last: {result.code or result.status_code}: {result.message})",
                        "stopped_outage",
                        transient=True,
                    )
            else:
                self._consecutive_transient = 0

    def halt(self, reason: str) -> None:
        """Stop the run now from outside (the task is being killed): no further request starts."""
        with self._lock:
            if self.stop is None:
                self._trip(reason, "stopped_killed", transient=True)

    def abort(self, reason: str) -> None:
        """Stop the run now and read no further row (the ledger failed): the rows in flight still end."""
        with self._lock:
            self.aborted = True
            if self.stop is None:
                self._trip(reason, "stopped_error", transient=True)

    def _trip(self, reason: str, code: str, *, transient: bool) -> None:
        self.stop = RunStop(reason, code, transient)
        self.stopped.set()
