"""Reading a JSON request body: content type, size limit, one-pass msgspec decode.

msgspec's error text ("Expected `str`, got `int` - at `$.data.k`") is turned into a 400 whose
`field` is the dotted path ("data.k"), so callers see where without parsing prose. Every JSON
value the API decodes (bodies, NDJSON lines, JSON query parameters) goes through
`decode_value`, so nothing msgspec refuses, deep nesting included, is ever a 500.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from wxgate.api.errors import ApiError, invalid

T = TypeVar("T")

# Lenient on purpose: a missing type, and curl's default for -d, still decode as JSON.
_ACCEPTED_TYPES = frozenset(
    {
        "",
        "application/json",
        "text/json",
        "text/plain",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
    }
)

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]*)`")


def _check_type(request: web.Request) -> None:
    raw = request.headers.get("Content-Type")
    if raw is None:
        return
    mime = raw.split(";", 1)[0].strip().lower()
    if mime in _ACCEPTED_TYPES or mime.endswith("+json"):
        return
    raise ApiError(
        415, "unsupported_media_type", f"send Content-Type: application/json, not {mime!r}"
    )


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes")


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The raw body, never buffering more than `limit` bytes: refused with 413 by its
    Content-Length before reading, or as soon as a chunked body grows past the limit."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_body(request: web.Request, limit: int) -> bytes:
    """A JSON route's body: content type checked, size bounded."""
    _check_type(request)
    return await read_limited(request, limit)


def field_of(exc: msgspec.ValidationError) -> tuple[str | None, str]:
    """(field path, reason) from msgspec's message; the path is None for the whole body."""
    text = str(exc)
    m = _AT.match(text)
    msg, path = (m.group("msg"), m.group("path") or "") if m else (text, "")
    path = path.lstrip(".")
    named = _NAMED.search(msg)
    if named:
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    return (path or None), msg


def decode(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    if not body:
        raise invalid(None, "request body is empty; send a JSON object")
    return decode_value(decoder, body, None)


def decode_value(decoder: msgspec.json.Decoder[T], raw: bytes, field: str | None) -> T:
    """One JSON value; any refusal is a 400 naming `field` (None: the whole body), with
    msgspec's path appended for a value of the wrong shape."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        path, reason = field_of(exc)
        raise invalid(_join(field, path), reason) from None
    except msgspec.DecodeError as exc:
        reason = str(exc).removeprefix("JSON is malformed: ")
        raise invalid(field, f"malformed JSON: {reason}") from None
    except UnicodeDecodeError:  # msgspec raises this, not DecodeError, for invalid UTF-8
        raise invalid(field, "malformed JSON: not valid UTF-8") from None
    except RecursionError:
        # msgspec's C decoder stops at the interpreter's recursion limit (~1000 levels)
        # and unwinds cleanly; no valid body is nested more than a few levels.
        raise invalid(field, "malformed JSON: nested too deeply") from None


def _join(field: str | None, path: str | None) -> str | None:
    if field is None or path is None:
        return field or path
    return f"{field}.{path}"


def deeper_than(value: Any, limit: int) -> bool:
    """Whether a decoded JSON value nests more than `limit` arrays/objects, found without
    recursion (so without a RecursionError of its own) and stopping at the first too deep."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


async def read_json(request: web.Request, decoder: msgspec.json.Decoder[T], limit: int) -> T:
    return decode(decoder, await read_body(request, limit))
