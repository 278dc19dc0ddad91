"""Helpers for the API tests: the real app on the real SQLiteStore (tmp file), served on a
loopback port. Time is a FakeClock shared by the app and the store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from wxgate.api.app import create_app
from wxgate.api.context import StatsExtra, TokenSource
from wxgate.clock import FakeClock
from wxgate.settings import AppSettings, ServerSettings, Settings
from wxgate.store.sqlite import SQLiteStore

T = TypeVar("T")

KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 chars
SHOP = AppSettings(
    name="shop",
    appid="wx_shop",
    secret="shop_secret",
    callback_token="cb_token",
    encoding_aes_key=AES_KEY,
)
NEWS = AppSettings(name="news", appid="wx_news", secret="news_secret", callback_token="news_tok")


def make_settings(apps: list[AppSettings] | None = None, **server: Any) -> Settings:
    server.setdefault("api_keys", [KEY])
    return Settings(server=ServerSettings(**server), apps=apps if apps is not None else [SHOP])


def msg_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": "o_user_1",
        "template_id": "tpl_order",
        "data": {"first": "Paid", "amount": {"value": "12.50", "color": "#173177"}},
    }
    body.update(overrides)
    return body


@dataclass
class ApiRig:
    client: TestClient[web.Request, web.Application]
    store: SQLiteStore
    clock: FakeClock
    settings: Settings

    async def snapshot(self) -> Any:
        """What is stored, to assert that a refused request stored nothing."""
        return msgspec.to_builtins(await self.store.stats())

    async def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        headers = {**AUTH, **kw.pop("headers", {})}
        resp = await self.client.post(path, json=body, headers=headers, **kw)
        return resp.status, await _body(resp)

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        headers = {**AUTH, **kw.pop("headers", {})}
        resp = await self.client.get(path, headers=headers, **kw)
        return resp.status, await _body(resp)


async def _body(resp: Any) -> Any:
    raw = await resp.read()
    if resp.content_type == "application/json":
        return msgspec.json.decode(raw)
    return raw.decode()


@asynccontextmanager
async def running_gateway(
    db: Path,
    settings: Settings | None = None,
    *,
    clock: FakeClock | None = None,
    broker: TokenSource | None = None,
    stats_extra: StatsExtra | None = None,
) -> AsyncIterator[ApiRig]:
    clock = clock or FakeClock()
    settings = settings or make_settings()
    store = SQLiteStore(str(db), clock, retention_s=3600)
    await store.open()
    app = create_app(settings, store, clock, broker=broker, stats_extra=stats_extra)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
            yield ApiRig(client, store, clock, settings)
    finally:
        await store.close()


class ThreadServer:
    """The gateway on its own event loop in a thread, for blocking callers (the sync client,
    hypothesis). `run` executes a coroutine on that loop, e.g. to look at the store."""

    def __init__(self, db: Path, settings: Settings) -> None:
        self._db, self._settings = db, settings
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="gateway", daemon=True)
        self.base_url = ""
        self.clock = FakeClock()
        self.store: SQLiteStore | None = None
        self._error: BaseException | None = None

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.store = SQLiteStore(str(self._db), self.clock, retention_s=3600)
        await self.store.open()
        runner = web.AppRunner(create_app(self._settings, self.store, self.clock))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await self.store.close()

    def start(self) -> ThreadServer:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def call() -> T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
