"""The async client's I/O: one aiohttp session, made inside the running loop on first use."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from wxgate.sdk import protocol
from wxgate.sdk.errors import GatewayUnreachable
from wxgate.sdk.protocol import Call

if TYPE_CHECKING:  # aiohttp is imported only when an AsyncGatewayClient is used
    import aiohttp

T = TypeVar("T")

# What upload_batch accepts: CSV or NDJSON bytes in any chunking, produced sync or async.
AsyncBody = AsyncIterable[bytes] | Iterable[bytes]


async def _aiter(blocks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


class AiohttpTransport:
    """Sends a protocol.Call on the session's pool; retries once a dropped kept-alive one."""

    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        protocol.check_base_url(base_url)
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def state(self) -> str:
        return f"{self._base} open={self._session is not None}"

    def __repr__(self) -> str:
        return f"<AiohttpTransport {self.state()}>"

    def open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        return self._session

    async def request(self, call: Call[T]) -> T:
        import aiohttp

        session = self.open()
        headers = {"Content-Type": "application/json"} if call.body is not None else None
        attempts = 2 if call.retry_safe else 1
        for attempt in range(attempts):
            try:
                async with session.request(
                    call.method, self._base + call.path, data=call.body, headers=headers
                ) as resp:
                    body = await resp.read()
                    return protocol.parse(call, resp.status, body, resp.headers.get("Retry-After"))
            except aiohttp.ServerDisconnectedError as exc:
                # A kept-alive connection the server had closed; retry where that is harmless.
                if attempt + 1 < attempts:
                    continue
                raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None
        raise AssertionError("unreachable")

    async def upload(self, call: Call[T], body: AsyncBody, content_type: str) -> T:
        """`body` streamed as it is produced; never retried."""
        import aiohttp

        payload: Any = body if isinstance(body, AsyncIterable) else _aiter(body)
        try:
            async with self.open().request(
                call.method, self._base + call.path, data=payload,
                headers={"Content-Type": content_type},
            ) as resp:  # fmt: skip
                answer = await resp.read()
                return protocol.parse(call, resp.status, answer, resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayUnreachable(f"POST /v1/batches: {exc!r}") from None

    async def stream(self, call: Call[bytes]) -> AsyncIterator[bytes]:
        """The answer's body in blocks as it arrives; a non-200 answer raises GatewayError."""
        import aiohttp

        try:
            async with self.open().request(call.method, self._base + call.path) as resp:
                if resp.status != 200:
                    raise protocol.error(resp.status, await resp.read(), None)
                async for block in resp.content.iter_chunked(protocol.BLOCK_BYTES):
                    yield block
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayUnreachable(f"{call.method} {call.path}: {exc!r}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
