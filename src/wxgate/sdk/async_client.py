"""AsyncGatewayClient: the gateway's HTTP API over aiohttp. The source of sync_client.py,
which scripts/unasync.py generates from it (`make sdk`); `make check` fails if it is stale."""

from __future__ import annotations

import time
from asyncio import sleep
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, Unpack

from wxgate.api.schemas import (
    AccessToken,
    AppList,
    AppView,
    DeadLetterPage,
    MessagePage,
    MessageView,
    Stats,
)
from wxgate.models import Accepted, BatchAccepted, BatchProgress, Status
from wxgate.sdk import protocol
from wxgate.sdk.aiohttp_transport import AiohttpTransport, AsyncBody
from wxgate.sdk.protocol import BatchOptions, SendOptions


class AsyncGatewayClient:
    """One method per API call; a non-2xx answer raises GatewayError, no answer
    GatewayUnreachable. Requests are built and answers parsed in protocol.py."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        self._transport = AiohttpTransport(base_url, api_key, timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._transport.state()}>"

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> Self:
        self._transport.open()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- messages
    async def send(
        self, touser: str, template_id: str, data: Mapping[str, Any], **options: Unpack[SendOptions]
    ) -> Accepted:
        return await self._transport.request(protocol.send(touser, template_id, data, **options))

    async def get_message(self, msg_id: str) -> MessageView:
        return await self._transport.request(protocol.get_message(msg_id))

    async def cancel(self, msg_id: str) -> Accepted:
        return await self._transport.request(protocol.cancel(msg_id))

    async def wait_for(
        self,
        msg_id: str,
        statuses: Iterable[Status | str] = protocol.FINAL,
        timeout: float = 30.0,
        poll_s: float = 0.1,
    ) -> MessageView:
        """Poll until the message reaches one of `statuses`; TimeoutError after `timeout` s."""
        wanted = {Status(s) for s in statuses}
        deadline = time.monotonic() + timeout
        while True:
            last = await self.get_message(msg_id)
            if last.status in wanted:
                return last
            if time.monotonic() >= deadline:
                raise protocol.waited_out(msg_id, last, timeout)
            await sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            poll_s = min(poll_s * 1.5, 2.0)

    # ---- batches
    async def send_batch(
        self,
        template_id: str,
        recipients: Iterable[str | Mapping[str, Any]],
        data: Mapping[str, Any] | None = None,
        **options: Unpack[BatchOptions],
    ) -> BatchAccepted:
        call = protocol.send_batch(template_id, recipients, data, **options)
        return await self._transport.request(call)

    async def upload_batch(
        self,
        template_id: str,
        body: AsyncBody,
        content_type: str = "text/csv",
        data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> BatchAccepted:
        """A streamed batch: `body` (CSV or NDJSON bytes, any chunking) is sent as it is
        produced (chunked encoding); the gateway commits it in chunks as it arrives. Never
        retried automatically."""
        call = protocol.upload_batch(template_id, data, **options)
        return await self._transport.upload(call, body, content_type)

    def batch_results(self, batch_id: str, fmt: str = "csv") -> AsyncIterator[bytes]:
        """The batch's per-recipient results (CSV or NDJSON) as the gateway streams them."""
        return self._transport.stream(protocol.batch_results(batch_id, fmt))

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        return await self._transport.request(protocol.batch_progress(batch_id))

    async def cancel_batch(self, batch_id: str) -> BatchProgress:
        return await self._transport.request(protocol.batch_action(batch_id, "cancel"))

    async def pause_batch(self, batch_id: str) -> BatchProgress:
        return await self._transport.request(protocol.batch_action(batch_id, "pause"))

    async def resume_batch(self, batch_id: str) -> BatchProgress:
        return await self._transport.request(protocol.batch_action(batch_id, "resume"))

    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> BatchProgress:
        return await self._transport.request(protocol.set_batch_rate(batch_id, rate_per_s))

    # ---- dead letters, stats, tokens
    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> DeadLetterPage:
        return await self._transport.request(protocol.dead_letters(app, errcode, cursor, limit))

    async def find_messages(
        self,
        *,
        touser: str | None = None,
        status: Status | str | None = None,
        app: str | None = None,
        batch: str | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> MessagePage:
        """One page of GET /v1/messages (newest first). A page may be short, or empty, and
        still carry next_cursor: page on until it is None."""
        call = protocol.find_messages(
            touser=touser,
            status=None if status is None else Status(status).value,
            app=app,
            batch=batch,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
        return await self._transport.request(call)

    async def requeue(
        self, ids: Iterable[str] | None = None, app: str | None = None, errcode: int | None = None
    ) -> int:
        out = await self._transport.request(protocol.requeue(ids, app, errcode))
        return out.requeued

    async def stats(self) -> Stats:
        return await self._transport.request(protocol.stats())

    # ---- apps
    async def apps(self) -> AppList:
        return await self._transport.request(protocol.apps())

    async def pause_app(self, app: str, reason: str, until: float | None = None) -> AppView:
        """Pause an app by hand (admin scope): until `until` (epoch s), or until resumed."""
        return await self._transport.request(protocol.pause_app(app, reason, until))

    async def resume_app(self, app: str) -> AppView:
        """End the app's pause, whoever or whatever set it (admin scope)."""
        return await self._transport.request(protocol.resume_app(app))

    async def access_token(self, app: str) -> AccessToken:
        return await self._transport.request(protocol.access_token(app))

    async def invalidate_access_token(self, app: str, access_token: str) -> None:
        await self._transport.request(protocol.invalidate_access_token(app, access_token))
