"""The emulator's fault-injection methods (a mixin of :class:`HindsightEmulator`)."""

from __future__ import annotations

from airflow_provider_hindsight.testing.emulator.faults import Fault, FaultBook, status_fault_headers


class FaultInjection:
    """``inject_*`` methods. Each fault applies to the next ``times`` matching requests (default 1).

    ``interview_request_id=`` limits a fault to one interview's ``GET``/``PATCH``; ``method=``
    (``"GET"``, ``"PATCH"`` or ``"POST"``) to one route, e.g. fault creates but not the polls.
    Faults apply after the key check and before the rate limit (an injected answer does not count
    against the limit), first injected first used.
    """

    _fault_book: FaultBook

    def inject_status(
        self,
        status: int,
        *,
        times: int = 1,
        interview_request_id: int | None = None,
        method: str | None = None,
        retry_after: float | str | None = None,
        ratelimit_reset: float | None = None,
        html: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (400-599).

        The body is the API's JSON error envelope, or an nginx-style HTML page with ``html=True``.
        ``retry_after`` becomes ``Retry-After`` and ``ratelimit_reset`` (Unix time) ``X-RateLimit-Reset``.
        Nothing is created or changed.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        headers = status_fault_headers(retry_after, ratelimit_reset)
        self._fault_book.add(
            Fault("status", times, interview_request_id, method, status=status, headers=headers, html=html)
        )

    def inject_invalid_json(
        self, *, times: int = 1, interview_request_id: int | None = None, method: str | None = None
    ) -> None:
        """Answer the next ``times`` matching requests with 200 and an HTML body that is not JSON (nothing changes)."""
        self._fault_book.add(Fault("invalid_json", times, interview_request_id, method))

    def inject_delay(
        self, seconds: float, *, times: int = 1, interview_request_id: int | None = None, method: str | None = None
    ) -> None:
        """Sleep ``seconds`` before handling the next ``times`` matching requests (to hit read timeouts).

        The request is handled after the delay, whether or not the client still waits.
        """
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        self._fault_book.add(Fault("delay", times, interview_request_id, method, delay=seconds))

    def inject_drop(
        self, *, times: int = 1, interview_request_id: int | None = None, method: str | None = None
    ) -> None:
        """Read the next ``times`` matching requests, then close the connection without an answer (nothing changes)."""
        self._fault_book.add(Fault("drop", times, interview_request_id, method))

    def inject_redirect(
        self,
        status: int = 302,
        *,
        location: str | None = None,
        times: int = 1,
        interview_request_id: int | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with a redirect (300-399) to ``location``.

        By default ``Location`` is the request's own path: a client that follows a 301/302/303 sends
        a GET there, and ``GET /interviews/{id}`` answers 200, as a wrong base URL behind a proxy
        would. Nothing is created or changed.
        """
        if not 300 <= status <= 399:
            raise ValueError("status must be an HTTP redirect status (300-399)")
        self._fault_book.add(Fault("redirect", times, interview_request_id, method, status=status, location=location))

    def inject_create_then_drop(self, *, times: int = 1, contact_email: str | None = None) -> None:
        """Let the next ``times`` valid ``POST /interviews`` create their interview, then drop the connection.

        The client sees a dropped connection; the interview exists (``created_interviews()``) and
        the request is recorded with status 0. Rate-limited or invalid creates do not use it up.
        ``contact_email`` (any case) limits it to creates for that address.
        """
        self._fault_book.add(Fault("create_then_drop", times, method="POST", contact_email=contact_email))

    def inject_create_then_delay(self, seconds: float, *, times: int = 1, contact_email: str | None = None) -> None:
        """Let the next ``times`` valid ``POST /interviews`` create their interview, then answer ``seconds`` late.

        Make ``seconds`` longer than the client's timeout: the client gives up, the interview exists
        and the request is recorded with its 201 at once. ``stop()`` cuts the wait short.
        """
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        fault = Fault("create_then_delay", times, method="POST", contact_email=contact_email, delay=seconds)
        self._fault_book.add(fault)

    def clear_faults(self) -> None:
        """Forget all pending faults."""
        self._fault_book.clear()
