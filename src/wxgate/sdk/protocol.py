"""Python client for the gateway's HTTP API: `Client` (sync, stdlib http.client) and
`AsyncClient` (aiohttp).

Both build requests and read answers through the same sans-IO helpers below, so they cannot
disagree. A non-2xx answer raises GatewayError(status, error, message, field).

    with Client("http://127.0.0.1:8080", api_key) as gw:
        accepted = gw.send("o_user", "tpl_order", {"first": "Paid", "amount": "12.50"})
        gw.wait_for(accepted.id)
"""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote, urlencode, urlsplit

import msgspec

from wxgate.api.schemas import AccessToken, DeadLetterPage, MessageView, Requeued, Stats
from wxgate.errors import WxgateError
from wxgate.models import (
    FINAL_STATUSES,
    Accepted,
    BatchAccepted,
    BatchProgress,
    ErrorBody,
    MiniProgram,
    Status,
)
from wxgate.policy import webhook_signature

if TYPE_CHECKING:  # aiohttp is imported only when an AsyncClient is used
    import aiohttp

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder()
_FINAL = frozenset(FINAL_STATUSES)


class GatewayError(WxgateError):
    """The gateway answered non-2xx (or, as GatewayUnreachable, not at all)."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {error}: {message}{where}")
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s


class GatewayUnreachable(GatewayError):
    """No answer: connection refused, reset or timed out (status 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "unreachable", message)


class SendOptions(TypedDict, total=False):
    app: str
    kind: str  # "template" | "subscribe"
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


# ---------------------------------------------------------------- status webhooks


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = webhook_signature.DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether a status webhook wxgate POSTed to you is genuine and recent.

    `headers` are the request's (any case); `body` its raw bytes, exactly as received (parse
    the JSON only after this returns True). Checks X-Wxgate-Signature, an HMAC-SHA256 of
    "{X-Wxgate-Timestamp}.{body}" under the app's webhook_secret, and that the timestamp is
    within `tolerance_s` of `now` (default: the current time). Dedupe deliveries by the
    event's `id` (also in X-Wxgate-Event-Id): a retry carries the same one.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return webhook_signature.verify(
        secret,
        lower.get(webhook_signature.TIMESTAMP_HEADER.lower()),
        lower.get(webhook_signature.SIGNATURE_HEADER.lower()),
        raw,
        time.time() if now is None else now,
        tolerance_s,
    )


# ---------------------------------------------------------------- sans-IO requests and answers


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    path: str
    type: type[Any]
    body: bytes | None = None
    # Safe to repeat after a connection failure: reads, and writes the gateway dedupes.
    retry_safe: bool = True


def _seg(value: str) -> str:
    return quote(value, safe="")


def _send_call(touser: str, template_id: str, data: Mapping[str, Any], **options: Any) -> _Call:
    body = {"touser": touser, "template_id": template_id, "data": data, **options}
    # A generated key makes a retry after a lost answer return the same message, not a second.
    body.setdefault("idempotency_key", uuid.uuid4().hex)
    return _Call("POST", "/v1/messages", Accepted, _ENCODER.encode(body))


def _batch_call(
    template_id: str,
    recipients: Iterable[str | Mapping[str, Any]],
    data: Mapping[str, Any] | None,
    **options: Any,
) -> _Call:
    rcpts = [{"touser": r} if isinstance(r, str) else r for r in recipients]
    body = {"template_id": template_id, "recipients": rcpts, "data": data or {}, **options}
    return _Call("POST", "/v1/batches", BatchAccepted, _ENCODER.encode(body), retry_safe=False)


def _batch_action(batch_id: str, action: str) -> _Call:
    return _Call("POST", f"/v1/batches/{_seg(batch_id)}/{action}", BatchProgress)


def _rate_call(batch_id: str, rate_per_s: float | None) -> _Call:
    body = _ENCODER.encode({"rate_per_s": rate_per_s})
    return _Call("PATCH", f"/v1/batches/{_seg(batch_id)}", BatchProgress, body)


def _upload_path(template_id: str, data: Mapping[str, Any] | None, **options: Any) -> str:
    """POST /v1/batches for a streamed body: the shared settings travel in the query."""
    query: dict[str, Any] = {"template_id": template_id, **options}
    if data:
        query["data"] = _ENCODER.encode(dict(data)).decode()
    return "/v1/batches?" + urlencode({k: v for k, v in query.items() if v is not None})


def _results_path(batch_id: str, fmt: str) -> str:
    return f"/v1/batches/{_seg(batch_id)}/results?{urlencode({'format': fmt})}"


def _dead_call(app: str | None, errcode: int | None, cursor: str | None, limit: int) -> _Call:
    query = {"app": app, "errcode": errcode, "cursor": cursor, "limit": limit}
    qs = urlencode({k: v for k, v in query.items() if v is not None})
    return _Call("GET", f"/v1/dead-letters?{qs}", DeadLetterPage)


def _requeue_call(ids: Iterable[str] | None, app: str | None, errcode: int | None) -> _Call:
    body = {"ids": list(ids) if ids is not None else None, "app": app, "errcode": errcode}
    payload = _ENCODER.encode({k: v for k, v in body.items() if v is not None})
    return _Call("POST", "/v1/dead-letters/requeue", Requeued, payload)


def _parse(call: _Call, status: int, body: bytes, retry_after: str | None) -> Any:
    if 200 <= status < 300:
        return msgspec.json.decode(body, type=call.type)
    try:
        err = msgspec.json.decode(body, type=ErrorBody)
    except msgspec.DecodeError:
        text = body[:200].decode("utf-8", "replace")
        err = ErrorBody(f"http_{status}", text or "no body")
    try:
        wait = float(retry_after) if retry_after is not None else None
    except ValueError:
        wait = None
    raise GatewayError(status, err.error, err.message, err.field, wait)


def _headers(api_key: str, has_body: bool) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


def _waited_out(msg_id: str, last: MessageView | None, timeout_s: float) -> TimeoutError:
    status = last.status.value if last is not None else "unknown"
    return TimeoutError(f"message {msg_id} still {status} after {timeout_s} s")


async def _aiter(blocks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


# ---------------------------------------------------------------- sync


class Client:
    """Blocking client on one keep-alive connection; thread-safe (calls are serialised)."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be http(s)://host[:port][/prefix]")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        scheme = "https" if self._https else "http"
        return f"<Client {scheme}://{self._host}:{self._port} connected={self._conn is not None}>"

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout)

    def _once(self, conn: http.client.HTTPConnection, call: _Call) -> tuple[int, bytes, str | None]:
        headers = _headers(self._api_key, call.body is not None)
        conn.request(call.method, self._prefix + call.path, body=call.body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Retry-After")

    def _do(self, call: _Call) -> Any:
        with self._lock:
            reused = self._conn is not None
            conn = self._conn or self._connect()
            try:
                try:
                    status, body, retry_after = self._once(conn, call)
                except (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError):
                    conn.close()
                    # A kept-alive connection the server had closed: try once more on a new one.
                    if not (reused and call.retry_safe):
                        raise
                    conn = self._connect()
                    status, body, retry_after = self._once(conn, call)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._conn = None
                raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None
            self._conn = conn
        return _parse(call, status, body, retry_after)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- API
    def send(
        self, touser: str, template_id: str, data: Mapping[str, Any], **options: Unpack[SendOptions]
    ) -> Accepted:
        accepted: Accepted = self._do(_send_call(touser, template_id, data, **options))
        return accepted

    def send_batch(
        self,
        template_id: str,
        recipients: Iterable[str | Mapping[str, Any]],
        data: Mapping[str, Any] | None = None,
        **options: Unpack[BatchOptions],
    ) -> BatchAccepted:
        out: BatchAccepted = self._do(_batch_call(template_id, recipients, data, **options))
        return out

    def get_message(self, msg_id: str) -> MessageView:
        out: MessageView = self._do(_Call("GET", f"/v1/messages/{_seg(msg_id)}", MessageView))
        return out

    def cancel(self, msg_id: str) -> Accepted:
        out: Accepted = self._do(_Call("DELETE", f"/v1/messages/{_seg(msg_id)}", Accepted))
        return out

    def batch_progress(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = self._do(_Call("GET", f"/v1/batches/{_seg(batch_id)}", BatchProgress))
        return out

    def cancel_batch(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = self._do(
            _Call("POST", f"/v1/batches/{_seg(batch_id)}/cancel", BatchProgress)
        )
        return out

    def pause_batch(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = self._do(_batch_action(batch_id, "pause"))
        return out

    def resume_batch(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = self._do(_batch_action(batch_id, "resume"))
        return out

    def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> BatchProgress:
        out: BatchProgress = self._do(_rate_call(batch_id, rate_per_s))
        return out

    def upload_batch(
        self,
        template_id: str,
        body: Iterable[bytes],
        content_type: str = "text/csv",
        data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> BatchAccepted:
        """A streamed batch: `body` (CSV or NDJSON bytes, any chunking) is sent as it is
        produced (chunked encoding); the gateway commits it in chunks as it arrives."""
        path = _upload_path(template_id, data, **options)
        headers = {**_headers(self._api_key, False), "Content-Type": content_type}
        with self._lock:
            conn = self._conn or self._connect()
            self._conn = None  # a failed upload leaves the connection in an unknown state
            try:
                conn.request(
                    "POST", self._prefix + path, body=body, headers=headers, encode_chunked=True
                )
                resp = conn.getresponse()
                status, answer = resp.status, resp.read()
                retry_after = resp.getheader("Retry-After")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise GatewayUnreachable(f"POST /v1/batches: {exc!r}") from None
            self._conn = conn
        out: BatchAccepted = _parse(_Call("POST", path, BatchAccepted), status, answer, retry_after)
        return out

    def batch_results(self, batch_id: str, fmt: str = "csv") -> Iterator[bytes]:
        """The batch's per-recipient results (CSV or NDJSON) as the gateway streams them."""
        path = _results_path(batch_id, fmt)
        with self._lock:
            conn = self._connect()  # its own connection: the caller reads at its own pace
        try:
            conn.request("GET", self._prefix + path, headers=_headers(self._api_key, False))
            resp = conn.getresponse()
            if resp.status != 200:
                _parse(_Call("GET", path, dict), resp.status, resp.read(), None)
            while block := resp.read(65536):
                yield block
        except (OSError, http.client.HTTPException) as exc:
            raise GatewayUnreachable(f"GET {path}: {exc!r}") from None
        finally:
            conn.close()

    def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> DeadLetterPage:
        out: DeadLetterPage = self._do(_dead_call(app, errcode, cursor, limit))
        return out

    def requeue(
        self, ids: Iterable[str] | None = None, app: str | None = None, errcode: int | None = None
    ) -> int:
        out: Requeued = self._do(_requeue_call(ids, app, errcode))
        return out.requeued

    def stats(self) -> Stats:
        out: Stats = self._do(_Call("GET", "/v1/stats", Stats))
        return out

    def access_token(self, app: str) -> AccessToken:
        out: AccessToken = self._do(_Call("GET", f"/v1/apps/{_seg(app)}/access-token", AccessToken))
        return out

    def invalidate_access_token(self, app: str, access_token: str) -> None:
        body = _ENCODER.encode({"access_token": access_token})
        self._do(_Call("POST", f"/v1/apps/{_seg(app)}/access-token/invalidate", dict, body))

    def wait_for(
        self,
        msg_id: str,
        statuses: Iterable[Status | str] = _FINAL,
        timeout: float = 30.0,
        poll_s: float = 0.1,
    ) -> MessageView:
        """Poll until the message reaches one of `statuses`; TimeoutError after `timeout` s."""
        wanted = {Status(s) for s in statuses}
        deadline = time.monotonic() + timeout
        last: MessageView | None = None
        while True:
            last = self.get_message(msg_id)
            if last.status in wanted:
                return last
            if time.monotonic() >= deadline:
                raise _waited_out(msg_id, last, timeout)
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
            poll_s = min(poll_s * 1.5, 2.0)


# ---------------------------------------------------------------- async


class AsyncClient:
    """The same API over aiohttp; the session is made inside the running loop on first use."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be http(s)://host[:port][/prefix]")
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<AsyncClient {self._base} open={self._session is not None}>"

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        return self._session

    async def _do(self, call: _Call) -> Any:
        import aiohttp

        session = self._open()
        headers = {"Content-Type": "application/json"} if call.body is not None else None
        attempts = 2 if call.retry_safe else 1
        for attempt in range(attempts):
            try:
                async with session.request(
                    call.method, self._base + call.path, data=call.body, headers=headers
                ) as resp:
                    body = await resp.read()
                    return _parse(call, resp.status, body, resp.headers.get("Retry-After"))
            except aiohttp.ServerDisconnectedError as exc:
                # A kept-alive connection the server had closed; retry where that is harmless.
                if attempt + 1 < attempts:
                    continue
                raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---- API
    async def send(
        self, touser: str, template_id: str, data: Mapping[str, Any], **options: Unpack[SendOptions]
    ) -> Accepted:
        out: Accepted = await self._do(_send_call(touser, template_id, data, **options))
        return out

    async def send_batch(
        self,
        template_id: str,
        recipients: Iterable[str | Mapping[str, Any]],
        data: Mapping[str, Any] | None = None,
        **options: Unpack[BatchOptions],
    ) -> BatchAccepted:
        out: BatchAccepted = await self._do(_batch_call(template_id, recipients, data, **options))
        return out

    async def get_message(self, msg_id: str) -> MessageView:
        out: MessageView = await self._do(_Call("GET", f"/v1/messages/{_seg(msg_id)}", MessageView))
        return out

    async def cancel(self, msg_id: str) -> Accepted:
        out: Accepted = await self._do(_Call("DELETE", f"/v1/messages/{_seg(msg_id)}", Accepted))
        return out

    async def batch_progress(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = await self._do(
            _Call("GET", f"/v1/batches/{_seg(batch_id)}", BatchProgress)
        )
        return out

    async def cancel_batch(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = await self._do(
            _Call("POST", f"/v1/batches/{_seg(batch_id)}/cancel", BatchProgress)
        )
        return out

    async def pause_batch(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = await self._do(_batch_action(batch_id, "pause"))
        return out

    async def resume_batch(self, batch_id: str) -> BatchProgress:
        out: BatchProgress = await self._do(_batch_action(batch_id, "resume"))
        return out

    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> BatchProgress:
        out: BatchProgress = await self._do(_rate_call(batch_id, rate_per_s))
        return out

    async def upload_batch(
        self,
        template_id: str,
        body: AsyncIterable[bytes] | Iterable[bytes],
        content_type: str = "text/csv",
        data: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> BatchAccepted:
        """A streamed batch (see Client.upload_batch); never retried automatically."""
        import aiohttp

        path = _upload_path(template_id, data, **options)
        payload: Any = body if isinstance(body, AsyncIterable) else _aiter(body)
        try:
            async with self._open().post(
                self._base + path, data=payload, headers={"Content-Type": content_type}
            ) as resp:
                answer = await resp.read()
                call = _Call("POST", path, BatchAccepted)
                out: BatchAccepted = _parse(
                    call, resp.status, answer, resp.headers.get("Retry-After")
                )
                return out
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayUnreachable(f"POST /v1/batches: {exc!r}") from None

    async def batch_results(self, batch_id: str, fmt: str = "csv") -> AsyncIterator[bytes]:
        """The batch's per-recipient results (CSV or NDJSON) as the gateway streams them."""
        import aiohttp

        path = _results_path(batch_id, fmt)
        try:
            async with self._open().get(self._base + path) as resp:
                if resp.status != 200:
                    _parse(_Call("GET", path, dict), resp.status, await resp.read(), None)
                async for block in resp.content.iter_chunked(65536):
                    yield block
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayUnreachable(f"GET {path}: {exc!r}") from None

    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> DeadLetterPage:
        out: DeadLetterPage = await self._do(_dead_call(app, errcode, cursor, limit))
        return out

    async def requeue(
        self, ids: Iterable[str] | None = None, app: str | None = None, errcode: int | None = None
    ) -> int:
        out: Requeued = await self._do(_requeue_call(ids, app, errcode))
        return out.requeued

    async def stats(self) -> Stats:
        out: Stats = await self._do(_Call("GET", "/v1/stats", Stats))
        return out

    async def access_token(self, app: str) -> AccessToken:
        out: AccessToken = await self._do(
            _Call("GET", f"/v1/apps/{_seg(app)}/access-token", AccessToken)
        )
        return out

    async def invalidate_access_token(self, app: str, access_token: str) -> None:
        body = _ENCODER.encode({"access_token": access_token})
        await self._do(_Call("POST", f"/v1/apps/{_seg(app)}/access-token/invalidate", dict, body))

    async def wait_for(
        self,
        msg_id: str,
        statuses: Iterable[Status | str] = _FINAL,
        timeout: float = 30.0,
        poll_s: float = 0.1,
    ) -> MessageView:
        """Poll until the message reaches one of `statuses`; TimeoutError after `timeout` s."""
        wanted = {Status(s) for s in statuses}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            last = await self.get_message(msg_id)
            if last.status in wanted:
                return last
            if loop.time() >= deadline:
                raise _waited_out(msg_id, last, timeout)
            await asyncio.sleep(min(poll_s, max(0.0, deadline - loop.time())))
            poll_s = min(poll_s * 1.5, 2.0)
