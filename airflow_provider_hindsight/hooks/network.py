"""What each transport's failures are called: one of :data:`~airflow_provider_hindsight.hooks.request.NETWORK_CAUSES`.

The request core (:func:`~airflow_provider_hindsight.hooks.request.network_error`) turns the cause into
the message and says whether the request may have arrived; these functions only read each library's
exceptions.
"""

from __future__ import annotations

import httpx
import requests


def network_cause(error: requests.RequestException) -> str:
    """Which :data:`~airflow_provider_hindsight.hooks.request.NETWORK_CAUSES` a ``requests`` failure is."""
    text = str(error).lower()
    if isinstance(error, requests.exceptions.SSLError):
        return "tls"
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "connect_timeout"
    if isinstance(error, requests.Timeout):
        return "read_timeout"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "broken_read"
    if _caused_by(error, ConnectionRefusedError) or "refused" in text:
        return "refused"
    if "resolve" in text or "name or service not known" in text:
        return "dns"
    return "dropped"


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


def httpx_cause(error: httpx.TransportError) -> str:
    """Which :data:`~airflow_provider_hindsight.hooks.request.NETWORK_CAUSES` an ``httpx`` failure is."""
    text = str(error).lower()
    if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect_timeout"
    if isinstance(error, httpx.TimeoutException):
        return "read_timeout"
    if isinstance(error, httpx.ConnectError):
        if "ssl" in text or "certificate" in text or "tls" in text:
            return "tls"
        if "name or service" in text or "nodename" in text or "resolve" in text or "getaddrinfo" in text:
            return "dns"
        return "refused"
    return "dropped"  # the request may have been read: a read error, the server hanging up
