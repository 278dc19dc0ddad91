"""Who may read /metrics: anyone (the default), or only a scraper with server.metrics_key.

The page names apps and API keys and shows queue sizes; a deployment that cannot keep the
port private sets a key (Prometheus: `authorization: {credentials: <key>}`), or serves it on
a listener of its own (server.metrics_bind, runtime.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from wxgate.api.errors import ApiError
from wxgate.settings import api_key_digest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wxgate-metrics"'}


def bearer_matches(header: str | None, digest: bytes) -> bool:
    """Whether `Authorization: Bearer <key>` carries the key whose SHA-256 is `digest`."""
    if header is None:
        return False
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(given, digest)


def metrics_route(handler: Handler, key: str | None) -> Handler:
    """`handler` as is when no key is set, else behind the key (401 without it)."""
    if key is None:
        return handler
    digest = api_key_digest(key, "server.metrics_key")

    async def protected(request: web.Request) -> web.StreamResponse:
        if not bearer_matches(request.headers.get("Authorization"), digest):
            return ApiError(
                401,
                "unauthorized",
                "/metrics needs the header 'Authorization: Bearer <server.metrics_key>'",
                headers=_CHALLENGE,
            ).response()
        return await handler(request)

    return protected
