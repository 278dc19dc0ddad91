"""JSON responses encoded with one reused msgspec Encoder (the hot path builds no dicts twice)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

_ENCODER = msgspec.json.Encoder()
JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_ENCODER.encode(body), status=status, content_type=JSON, headers=headers
    )


def encode(body: Any) -> bytes:
    return _ENCODER.encode(body)
