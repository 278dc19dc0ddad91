"""The sync client's I/O: one keep-alive http.client connection, calls serialised by a lock."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

from wxgate.sdk import protocol
from wxgate.sdk.errors import GatewayUnreachable
from wxgate.sdk.protocol import Call

T = TypeVar("T")

# What upload_batch accepts: CSV or NDJSON bytes in any chunking.
Body = Iterable[bytes]
# The connection broke under a request: on a kept-alive one the server may have closed it.
_DROPPED = (ConnectionError, http.client.RemoteDisconnected, BrokenPipeError)


class HttpTransport:
    """Sends a protocol.Call on one connection, reopened when the server closed it."""

    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        protocol.check_base_url(base_url)
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def state(self) -> str:
        scheme = "https" if self._https else "http"
        return f"{scheme}://{self._host}:{self._port} connected={self._conn is not None}"

    def __repr__(self) -> str:
        return f"<HttpTransport {self.state()}>"

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout)

    def _once(
        self, conn: http.client.HTTPConnection, call: Call[T]
    ) -> tuple[int, bytes, str | None]:
        ctype = "application/json" if call.body is not None else None
        headers = protocol.headers(self._api_key, ctype)
        conn.request(call.method, self._prefix + call.path, body=call.body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Retry-After")

    def open(self) -> None:
        """Nothing to do: the connection is made on the first call."""

    def request(self, call: Call[T]) -> T:
        with self._lock:
            reused = self._conn is not None
            conn = self._conn or self._connect()
            try:
                try:
                    status, body, retry_after = self._once(conn, call)
                except _DROPPED:
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
        return protocol.parse(call, status, body, retry_after)

    def upload(self, call: Call[T], body: Body, content_type: str) -> T:
        """`body` sent as it is produced (chunked encoding); never retried."""
        headers = protocol.headers(self._api_key, content_type)
        with self._lock:
            conn = self._conn or self._connect()
            self._conn = None  # a failed upload leaves the connection in an unknown state
            try:
                conn.request(
                    call.method,
                    self._prefix + call.path,
                    body=body,
                    headers=headers,
                    encode_chunked=True,
                )
                resp = conn.getresponse()
                status, answer = resp.status, resp.read()
                retry_after = resp.getheader("Retry-After")
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise GatewayUnreachable(f"POST /v1/batches: {exc!r}") from None
            self._conn = conn
        return protocol.parse(call, status, answer, retry_after)

    def stream(self, call: Call[bytes]) -> Iterator[bytes]:
        """The answer's body in blocks as it arrives; a non-200 answer raises GatewayError."""
        with self._lock:
            conn = self._connect()  # its own connection: the caller reads at its own pace
        try:
            headers = protocol.headers(self._api_key, None)
            conn.request(call.method, self._prefix + call.path, headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise protocol.error(resp.status, resp.read(), None)
            while block := resp.read(protocol.BLOCK_BYTES):
                yield block
        except (OSError, http.client.HTTPException) as exc:
            raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
