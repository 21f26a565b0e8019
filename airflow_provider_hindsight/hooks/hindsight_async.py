"""``HindsightAsyncHook``: the Hindsight API from an event loop (triggers), over ``httpx.AsyncClient``.

The same request core as :class:`~airflow_provider_hindsight.hooks.hindsight.HindsightHook` (it is
a subclass): the same connection parsing, retry rules, answer interpretation and error mapping; only
the transport and the waits differ. Nothing here blocks the event loop: the connection is read with
the async API, waits are awaited, and the pacer is one per connection and pace in the process
(:class:`~airflow_provider_hindsight.hooks.pacing.SharedPacers`), so every trigger of a connection
in one triggerer shares one budget.

``HTTPS_PROXY``/``NO_PROXY`` and ``SSL_CERT_FILE`` are honoured by httpx itself; ``REQUESTS_CA_BUNDLE``
(which the sync hook honours through requests) is honoured here too.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable
from functools import cached_property
from typing import Any

import httpx
from airflow.providers.common.compat.sdk import AirflowNotFoundException

from airflow_provider_hindsight import __version__
from airflow_provider_hindsight.budget.permits import BudgetNews, SharedBudget
from airflow_provider_hindsight.exceptions import HindsightError
from airflow_provider_hindsight.hooks.connection import ConnectionSettings
from airflow_provider_hindsight.hooks.hindsight import HindsightHook
from airflow_provider_hindsight.hooks.network import httpx_cause
from airflow_provider_hindsight.hooks.pacing import SHARED_PACERS, RatePacer, SharedPacers, connection_budget
from airflow_provider_hindsight.hooks.request import ApiRequest, get_request, network_error
from airflow_provider_hindsight.resources.interviews import validate_interview_request_id


class HindsightAsyncHook(HindsightHook):
    """The async twin of :class:`HindsightHook` for triggers: ``await hook.aget_interview(id)``.

    Call :meth:`aclose` (or use ``async with``) when done, to close the HTTP client.
    """

    def __init__(self, hindsight_conn_id: str = HindsightHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(hindsight_conn_id, **kwargs)
        self._client: httpx.AsyncClient | None = None
        self.transport: httpx.AsyncBaseTransport | None = None
        """The client's transport; tests put an ``httpx.MockTransport`` here."""
        self.async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How retries wait on the event loop; tests replace it."""
        self.pacers: SharedPacers = SHARED_PACERS
        """Where the shared pacer comes from; tests put a registry on a fake clock here."""

    async def asettings(self) -> ConnectionSettings:
        """The connection's settings, read without blocking the event loop (then cached as ``settings``)."""
        if "settings" not in self.__dict__:
            try:
                conn = await _aget_connection(self.hindsight_conn_id)
            except AirflowNotFoundException:
                raise self.missing_connection() from None
            self.__dict__["settings"] = self.settings_from(conn)
        return self.settings

    @cached_property
    def pacer(self) -> RatePacer:
        """One pacer per connection, base URL and pace in this process, shared by every trigger using it
        (and, with ``budget_conn_id``, taking permits from the key's budget shared by every process)."""
        return self.pacers.get(
            self.hindsight_conn_id,
            self.settings.base_url,
            self.settings.requests_per_minute,
            permits=lambda: connection_budget(self.settings),
        )

    @cached_property
    def budget_news(self) -> BudgetNews | None:
        """What this trigger's log was told of the key's shared budget: its own, as each deferred task has a log."""
        budget = self.pacer.permits
        return BudgetNews(budget) if isinstance(budget, SharedBudget) else None

    async def arequest(self, request: ApiRequest) -> dict[str, Any]:
        """:meth:`HindsightHook.request` for the event loop: the same rule, pace and errors, awaited."""
        await self.asettings()
        if self._client is None:
            await asyncio.to_thread(self._open_client)
        retrying = self.retry_policy.async_retrying(request.rule, before_sleep=self._log_retry, sleep=self.async_sleep)
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._asend_once(request)
        except HindsightError as error:
            raise request.rule.final_error(error, request.subject).with_traceback(None) from None
        raise AssertionError("the retry loop ended without an outcome")  # pragma: no cover

    async def _asend_once(self, request: ApiRequest) -> dict[str, Any]:
        await self.pacer.acquire_async(self.log_pace_change)
        self.tell_budget_news()
        self.count_request()
        try:
            response = await self.client.request(
                request.method, self.settings.base_url + request.path, content=request.body
            )
        except httpx.TransportError as error:
            raise network_error(httpx_cause(error), self.settings, request.subject) from None
        return self.read_answer(request, response.status_code, response.headers, response.text)

    async def aget_interview(self, interview_request_id: int | str) -> dict[str, Any]:
        """``GET /interviews/{id}``, awaited."""
        return await self.arequest(get_request(validate_interview_request_id(interview_request_id)))

    def _open_client(self) -> None:
        """Make the client, in a thread: it loads the CA bundle from disk (30 to 150 ms), and the first request
        of a process imports anyio's asyncio backend (about 150 ms, lazily, from httpcore). Neither may
        happen on the triggerer's event loop."""
        import anyio._backends._asyncio  # noqa: F401
        import httpcore._backends.anyio  # noqa: F401

        _ = self.client

    @property
    def client(self) -> httpx.AsyncClient:
        """The keep-alive async client, with auth and JSON headers (:meth:`arequest` makes it in a thread)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={
                    "Authorization": f"Bearer {self.settings.api_key}",
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": f"airflow-provider-hindsight/{__version__}",
                },
                timeout=self.settings.timeout,
                verify=_verify(),
                follow_redirects=False,
                transport=self.transport,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client; safe to call twice."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> HindsightAsyncHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _aget_connection(conn_id: str) -> Any:
    """The Airflow connection, read with the async API on 3.x and in a thread on 2.11."""
    aget = getattr(HindsightHook, "aget_connection", None)
    if aget is not None:
        return await aget(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(HindsightHook.get_connection)(conn_id)


def _verify() -> ssl.SSLContext | bool:
    """TLS verification: a CA bundle from ``REQUESTS_CA_BUNDLE`` (as requests does), else httpx's default."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    return ssl.create_default_context(cafile=bundle) if bundle else True
