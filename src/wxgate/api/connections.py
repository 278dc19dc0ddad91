"""Bounds on the HTTP server's connections: header, body and idle timeouts, and a cap.

aiohttp closes idle keep-alive connections (keepalive_timeout) but has no header or body
timeout and no connection limit: 400 slow-loris connections and 10,000 idle ones were all held
(issue 11). LimitedRunner is web.AppRunner serving through LimitedServer (counts connections,
refuses past the cap) and LimitedRequestHandler (the timeouts). As Go's net/http does, a new
connection has header_timeout_s for its first request head, so connections that never send are
not kept as if they were idle keep-alives; between requests keepalive_timeout_s applies, and
once a later request's first bytes arrive its head has header_timeout_s again.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from wxgate.api.errors import ApiError
from wxgate.settings import ServerSettings

log = logging.getLogger("wxgate.http")

REFUSAL_LOG_EVERY_S = 60.0
_REFUSED_BODY = (
    b'{"error":"too_many_connections","message":"the gateway has as many connections open as '
    b'it takes (server.max_connections); try again","field":null}'
)
# Written before the request is read: the client may already be sending it, so it may see
# the connection reset instead; either way it is refused at once.
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSED_BODY), _REFUSED_BODY)
)
HEAD_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    read_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, server: ServerSettings) -> ConnectionLimits:
        return cls(
            server.header_timeout_s,
            server.read_timeout_s,
            server.keepalive_timeout_s,
            server.max_connections,
        )


def body_timed_out(read_timeout_s: float) -> ApiError:
    return ApiError(
        408, "request_timeout", f"no body bytes arrived for {read_timeout_s:g} s; closed"
    )


class LimitedServer(web.Server):
    """aiohttp's Server (the protocol factory) with a connection count and a cap."""

    def __init__(self, server: web.Server, limits: ConnectionLimits) -> None:
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,  # what AppRunner and the Application configured
        )
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.head_timeouts = 0
        self.body_timeouts = 0
        self._refusal_logged_at = -math.inf

    def __call__(self) -> web.RequestHandler:
        return LimitedRequestHandler(self, loop=self._loop, **self._kwargs)

    def admit(self) -> bool:
        """Count a new connection in, or refuse it (False) when the cap is reached."""
        if self.open < self.limits.max_connections:
            self.open += 1
            return True
        self.refused += 1
        now = self._loop.time()
        if now - self._refusal_logged_at >= REFUSAL_LOG_EVERY_S:
            self._refusal_logged_at = now
            log.warning(
                "refusing connections: %d open (server.max_connections); %d refused so far",
                self.open,
                self.refused,
            )
        return False

    def __repr__(self) -> str:
        return (
            f"<LimitedServer open={self.open} max={self.limits.max_connections} "
            f"refused={self.refused} head_timeouts={self.head_timeouts} "
            f"body_timeouts={self.body_timeouts}>"
        )


class LimitedRequestHandler(web.RequestHandler):
    """One connection, closed when a request head or body stalls, refused past the cap."""

    def __init__(self, manager: LimitedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limited = manager
        self._limits = manager.limits
        self._refused = False
        self._counted = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_since = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_data_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limited.admit():
            self._refused = True
            tr = cast(asyncio.Transport, transport)
            tr.write(REFUSED)
            tr.close()
            return
        self._counted = True
        super().connection_made(transport)
        self._arm_head(self._loop.time())

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._limited.open -= 1
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        now = self._last_data_at = self._loop.time()
        idle = not self._request_in_progress and not self._messages
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._head_done()
        elif idle and self._head_timer is None and self.transport is not None:
            self._arm_head(now)  # a new request's head has begun but not ended

    # ------------------------------------------------------------------ request heads

    def _arm_head(self, now: float) -> None:
        self._head_since = now
        self._head_timer = self._loop.call_at(
            now + self._limits.header_timeout_s, self._head_timed_out
        )

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is None and self._messages:
            payload = self._messages[-1][1]
            if not payload.is_eof():  # a body still to come (one-packet POSTs never get here)
                self._arm_body(self._last_data_at + self._limits.read_timeout_s)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._request_in_progress or self._messages or self.transport is None:
            return
        self._limited.head_timeouts += 1
        if self._last_data_at >= self._head_since:  # part of a head came: say why
            self.transport.write(HEAD_TIMED_OUT)
        self.force_close()

    # ------------------------------------------------------------------ request bodies

    def _arm_body(self, at: float) -> None:
        self._body_timer = self._loop.call_at(at, self._check_body)

    def _check_body(self) -> None:
        self._body_timer = None
        if self.transport is None:
            return
        if self._current_request is not None:
            payload = self._current_request.content
        elif self._messages:
            payload = self._messages[0][1]  # queued, its handler about to start
        else:
            return  # the request is done with
        if payload.is_eof():
            return
        now = self._loop.time()
        if self._reading_paused or self._buffer_paused:
            # Our handler is behind and reading is paused: the client cannot send.
            self._last_data_at = now
        due = self._last_data_at + self._limits.read_timeout_s
        if now < due:
            self._arm_body(due)
            return
        self._limited.body_timeouts += 1
        # The handler's read fails with a 408 of ours (a clean answer, not a 500 for a reset
        # connection); it cannot reach the client, which is cut off at once.
        payload.set_exception(body_timed_out(self._limits.read_timeout_s))
        self.force_close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


class LimitedRunner(web.AppRunner):
    """web.AppRunner whose connections are bounded by `limits` (keepalive_timeout included)."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=limits.keepalive_timeout_s, **kwargs)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        return LimitedServer(await super()._make_server(), self.limits)

    @property
    def limited(self) -> LimitedServer | None:
        server = self.server
        return server if isinstance(server, LimitedServer) else None
