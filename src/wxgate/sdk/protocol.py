"""The SDK's sans-IO core: typed request builders (`Call[T]`) and the answer parser, shared by
both clients so they cannot disagree; no I/O here (httpx over h11, in miniature)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import msgspec

from wxgate.api.schemas import (
    AccessToken,
    AppList,
    AppView,
    DeadLetterPage,
    MessagePage,
    MessageView,
    Requeued,
    Stats,
)
from wxgate.models import (
    FINAL_STATUSES,
    Accepted,
    BatchAccepted,
    BatchProgress,
    ErrorBody,
    MiniProgram,
)
from wxgate.sdk.errors import GatewayError

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()
FINAL = frozenset(FINAL_STATUSES)
# Streamed bodies (batch uploads, results) are read and written in blocks of this size.
BLOCK_BYTES = 65536


class SendOptions(TypedDict, total=False):
    app: str
    kind: str  # "template" | "subscribe" | "oa_subscribe"
    url: str
    miniprogram: MiniProgram | Mapping[str, str]
    page: str
    miniprogram_state: str
    lang: str
    send_at: float
    expire_at: float
    idempotency_key: str
    callback_url: str
    priority: str  # "urgent" | "normal" | "low": only urgent goes out during quiet hours


class BatchOptions(TypedDict, total=False):
    app: str
    kind: str
    url: str
    miniprogram: MiniProgram | Mapping[str, str]
    page: str
    send_at: float
    expire_at: float
    callback_url: str
    priority: str


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the Struct its 2xx answer decodes into."""

    method: str
    path: str
    type: type[T]
    body: bytes | None = None
    # Safe to repeat after a connection failure: reads, and writes the gateway dedupes.
    retry_safe: bool = True


def check_base_url(base_url: str) -> None:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be http(s)://host[:port][/prefix]")


def _seg(value: str) -> str:
    return quote(value, safe="")


def send(touser: str, template_id: str, data: Mapping[str, Any], **options: Any) -> Call[Accepted]:
    body = {"touser": touser, "template_id": template_id, "data": data, **options}
    # A generated key makes a retry after a lost answer return the same message, not a second.
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return Call("POST", "/v1/messages", Accepted, _ENCODER.encode(body))


def send_batch(
    template_id: str,
    recipients: Iterable[str | Mapping[str, Any]],
    data: Mapping[str, Any] | None,
    **options: Any,
) -> Call[BatchAccepted]:
    rcpts = [{"touser": r} if isinstance(r, str) else r for r in recipients]
    body = {"template_id": template_id, "recipients": rcpts, "data": data or {}, **options}
    return Call("POST", "/v1/batches", BatchAccepted, _ENCODER.encode(body), retry_safe=False)


def get_message(msg_id: str) -> Call[MessageView]:
    return Call("GET", f"/v1/messages/{_seg(msg_id)}", MessageView)


def cancel(msg_id: str) -> Call[Accepted]:
    return Call("DELETE", f"/v1/messages/{_seg(msg_id)}", Accepted)


def batch_progress(batch_id: str) -> Call[BatchProgress]:
    return Call("GET", f"/v1/batches/{_seg(batch_id)}", BatchProgress)


def batch_action(batch_id: str, action: str) -> Call[BatchProgress]:
    """POST /v1/batches/{id}/{action}: cancel, pause or resume."""
    return Call("POST", f"/v1/batches/{_seg(batch_id)}/{action}", BatchProgress)


def set_batch_rate(batch_id: str, rate_per_s: float | None) -> Call[BatchProgress]:
    body = _ENCODER.encode({"rate_per_s": rate_per_s})
    return Call("PATCH", f"/v1/batches/{_seg(batch_id)}", BatchProgress, body)


def upload_batch(
    template_id: str, data: Mapping[str, Any] | None, **options: Any
) -> Call[BatchAccepted]:
    """POST /v1/batches for a streamed body: the shared settings travel in the query. The body
    is the transport's to send; never retried automatically."""
    query: dict[str, Any] = {"template_id": template_id, **options}
    if data:
        query["data"] = _ENCODER.encode(dict(data)).decode()
    qs = urlencode({k: v for k, v in query.items() if v is not None})
    return Call("POST", "/v1/batches?" + qs, BatchAccepted, retry_safe=False)


def batch_results(batch_id: str, fmt: str) -> Call[bytes]:
    """GET the results stream; `type` is bytes because the answer is streamed, not decoded."""
    return Call("GET", f"/v1/batches/{_seg(batch_id)}/results?{urlencode({'format': fmt})}", bytes)


def dead_letters(
    app: str | None, errcode: int | None, cursor: str | None, limit: int
) -> Call[DeadLetterPage]:
    query = {"app": app, "errcode": errcode, "cursor": cursor, "limit": limit}
    qs = urlencode({k: v for k, v in query.items() if v is not None})
    return Call("GET", f"/v1/dead-letters?{qs}", DeadLetterPage)


def find_messages(
    *,
    touser: str | None = None,
    status: str | None = None,
    app: str | None = None,
    batch: str | None = None,
    since: float | None = None,
    until: float | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Call[MessagePage]:
    query = {
        "touser": touser,
        "status": status,
        "app": app,
        "batch": batch,
        "since": since,
        "until": until,
        "cursor": cursor,
        "limit": limit,
    }
    qs = urlencode({k: v for k, v in query.items() if v is not None})
    return Call("GET", f"/v1/messages?{qs}", MessagePage)


def requeue(ids: Iterable[str] | None, app: str | None, errcode: int | None) -> Call[Requeued]:
    body = {"ids": list(ids) if ids is not None else None, "app": app, "errcode": errcode}
    payload = _ENCODER.encode({k: v for k, v in body.items() if v is not None})
    return Call("POST", "/v1/dead-letters/requeue", Requeued, payload)


def stats() -> Call[Stats]:
    return Call("GET", "/v1/stats", Stats)


def apps() -> Call[AppList]:
    return Call("GET", "/v1/apps", AppList)


def pause_app(app: str, reason: str, until: float | None) -> Call[AppView]:
    body: dict[str, Any] = {"reason": reason}
    if until is not None:
        body["until"] = until
    return Call("POST", f"/v1/apps/{_seg(app)}/pause", AppView, _ENCODER.encode(body))


def resume_app(app: str) -> Call[AppView]:
    return Call("POST", f"/v1/apps/{_seg(app)}/resume", AppView)


def access_token(app: str) -> Call[AccessToken]:
    return Call("GET", f"/v1/apps/{_seg(app)}/access-token", AccessToken)


def invalidate_access_token(app: str, access_token: str) -> Call[dict[str, Any]]:
    body = _ENCODER.encode({"access_token": access_token})
    return Call("POST", f"/v1/apps/{_seg(app)}/access-token/invalidate", dict[str, Any], body)


def error(status: int, body: bytes, retry_after: str | None) -> GatewayError:
    """The GatewayError for a non-2xx answer (a JSON ErrorBody, or whatever text came)."""
    try:
        err = msgspec.json.decode(body, type=ErrorBody)
    except msgspec.DecodeError:
        text = body[:200].decode("utf-8", "replace")
        err = ErrorBody(f"http_{status}", text or "no body")
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    return GatewayError(status, err.error, err.message, err.field, wait)


def parse(call: Call[T], status: int, body: bytes, retry_after: str | None) -> T:
    if 200 <= status < 300:
        return msgspec.json.decode(body, type=call.type)
    raise error(status, body, retry_after)


def headers(api_key: str, content_type: str | None) -> dict[str, str]:
    out = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    if content_type is not None:
        out["Content-Type"] = content_type
    return out


def waited_out(msg_id: str, last: MessageView | None, timeout_s: float) -> TimeoutError:
    status = last.status.value if last is not None else "unknown"
    return TimeoutError(f"message {msg_id} still {status} after {timeout_s} s")
