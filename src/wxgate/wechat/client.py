"""The pooled aiohttp client: the thin I/O shell around `protocol.py`.

aiohttp's exceptions are mapped to ours here, once: NotSent when the request cannot have left,
OutcomeUnknown when it may have reached WeChat. The access_token rides in the query string, so
no URL and no aiohttp message that could contain one ever leaves this module unscrubbed.
"""

from __future__ import annotations

import re
import ssl
from collections import Counter
from types import TracebackType
from typing import Self
from urllib.parse import quote

import aiohttp

from wxgate.clock import Clock
from wxgate.errors import NotSent, OutcomeUnknown, TransportError
from wxgate.models import Message, TokenEntry
from wxgate.settings import AppSettings, WeChatSettings
from wxgate.wechat import protocol

_SECRET_QUERY = re.compile(r"(access_token|secret)=[^&\s'\"<>]*", re.IGNORECASE)
_JSON = {"Content-Type": "application/json"}
_USERINFO = re.compile(r"//[^/@]*@")


def scrub(text: str) -> str:
    """Replace access_token / secret query values with ***."""
    return _SECRET_QUERY.sub(r"\1=***", text)


def _transport_error(exc: BaseException, path: str) -> TransportError:
    """Classify an aiohttp / asyncio failure; the message names the path, never the URL."""
    detail = scrub(str(exc))[:200]
    what = f"{type(exc).__name__} on {path}" + (f": {detail}" if detail else "")
    # Cannot have left: connect refused, DNS, TLS handshake, or no pooled connection in time
    # (ClientTimeout.connect covers the wait for a pool slot as well as the TCP connect).
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return NotSent(what)
    # Everything else may have been written: read timeout, total timeout, reset, disconnect,
    # a truncated body. WeChat may have acted on it; the same client_msg_id makes a re-send safe.
    return OutcomeUnknown(what)


class WeChatClient:
    """One aiohttp session and connector per client, created inside the running loop."""

    def __init__(self, settings: WeChatSettings, clock: Clock, *, pooled: bool = True) -> None:
        self._settings = settings
        self._clock = clock
        self._pooled = pooled
        self._base = settings.base_url.rstrip("/")
        # For error messages: a base_url may carry proxy credentials (user:pass@host).
        self._public_base = _USERINFO.sub("//", self._base)
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None
        self.in_flight = 0
        self.sends = 0
        self.transport_errors = 0
        self.fetch_count: Counter[str] = Counter()  # token fetches (HTTP calls) per appid
        self._queries: dict[str, str] = {}

    # ---------------------------------------------------------------- lifecycle

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self._base.startswith("https://"):
            return True  # aiohttp's default; unused for plain http
        if not self._settings.verify_tls:
            return False
        ctx = ssl.create_default_context()
        if self._settings.ca_file:
            ctx.load_verify_locations(cafile=self._settings.ca_file)
        return ctx

    async def start(self) -> None:
        if self._session is not None:
            return
        s = self._settings
        limit = max(1, s.pool_size)
        per_host = s.pool_size_per_host or limit
        if self._pooled:
            self._connector = aiohttp.TCPConnector(
                limit=limit,
                limit_per_host=per_host,
                keepalive_timeout=s.keepalive_timeout_s,
                ttl_dns_cache=s.dns_cache_s,
                ssl=self._ssl(),
            )
        else:
            # A new connection per request: the baseline the pooled mode is benchmarked against.
            self._connector = aiohttp.TCPConnector(
                limit=limit,
                limit_per_host=per_host,
                force_close=True,
                ttl_dns_cache=s.dns_cache_s,
                ssl=self._ssl(),
            )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(
                total=s.total_timeout_s,
                connect=s.connect_timeout_s,
                sock_read=s.read_timeout_s,
            ),
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session, self._connector = self._session, None, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---------------------------------------------------------------- I/O

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: bytes | None = None,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("WeChatClient is not started")
        url = f"{self._base}{path}?{query}" if query else f"{self._base}{path}"
        self.in_flight += 1
        try:
            async with self._session.request(
                method, url, data=body, headers=_JSON if body is not None else None
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.transport_errors += 1
            # `from None`: aiohttp's exception text may hold the URL and its access_token.
            raise _transport_error(exc, path) from None
        finally:
            self.in_flight -= 1

    def _token_query(self, access_token: str) -> str:
        # One token per app is live at a time, so the quoted form is worth keeping.
        query = self._queries.get(access_token)
        if query is None:
            if len(self._queries) >= 64:
                self._queries.clear()
            query = self._queries[access_token] = f"access_token={quote(access_token, safe='')}"
        return query

    async def send(self, message: Message, access_token: str) -> int | None:
        """Send one message; return WeChat's msgid. Raises WeChatError (with .disposition)."""
        path, body = protocol.build_send(message)
        self.sends += 1
        status, answer = await self._request(
            "POST", path, query=self._token_query(access_token), body=body
        )
        return protocol.check_send(protocol.parse_send(status, answer))

    async def api_get(self, path: str, access_token: str) -> tuple[int, bytes]:
        """GET an API path with the token in the query: (HTTP status, body). For the reads
        beside sending (template lists); raises TransportError like every call here."""
        return await self._request("GET", path, query=self._token_query(access_token))

    async def fetch_token(self, app: AppSettings, force_refresh: bool = False) -> TokenEntry:
        """A fresh token from stable_token (default) or the classic endpoint (app.token_mode)."""
        self.fetch_count[app.appid] += 1
        if app.token_mode == "classic":
            path, params = protocol.build_classic_token(app)
            query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
            status, answer = await self._request("GET", path, query=query)
        else:
            path, body = protocol.build_stable_token(app, force_refresh)
            status, answer = await self._request("POST", path, body=body)
        url = f"{self._public_base}{path}"
        return protocol.parse_token(status, answer, self._clock.now(), url)

    # ---------------------------------------------------------------- introspection

    @property
    def pooled(self) -> bool:
        return self._pooled

    def __repr__(self) -> str:
        limit = self._connector.limit if self._connector is not None else self._settings.pool_size
        state = "" if self._session is not None else " closed"
        return (
            f"<WeChatClient base={self._base} pool={limit} active={self.in_flight} "
            f"pooled={self._pooled} sends={self.sends} "
            f"transport_errors={self.transport_errors}{state}>"
        )
