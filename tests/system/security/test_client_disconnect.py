"""A caller that hangs up mid-body costs one debug line, not a 500 and a traceback (the review
found `read_limited` logging an unhandled error per dropped upload, which anyone can repeat)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from aiohttp import web

from support.api import AUTH, make_settings
from wxgate.api.app import create_app
from wxgate.api.connections import ConnectionLimits, LimitedRunner
from wxgate.clock import FakeClock
from wxgate.store.sqlite import SQLiteStore

WAIT_S = 10.0


async def _hang_up_mid_body(port: int) -> None:
    """Headers, then (once the gateway says 100 Continue: the handler runs) part of the body,
    then close: a hang-up the handler is sure to see, with no sleep to time it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = "".join(f"{k}: {v}\r\n" for k, v in AUTH.items())
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        + auth.encode()
        + b"Expect: 100-continue\r\nContent-Length: 1000\r\n\r\n"
    )
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), WAIT_S)
    assert line.startswith(b"HTTP/1.1 100"), line
    writer.write(b'{"touser": "o_')
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_a_dropped_body_is_not_an_unhandled_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "wxgate.api")
    clock = FakeClock()
    settings = make_settings()
    store = SQLiteStore(str(tmp_path / "wx.db"), clock, retention_s=3600)
    await store.open()
    # The server the gateway runs (aiohttp's TestServer would cancel the handler on hang-up).
    runner = LimitedRunner(
        create_app(settings, store, clock), ConnectionLimits.from_settings(settings.server)
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert isinstance(site._server, asyncio.Server)
        port = site._server.sockets[0].getsockname()[1]
        for _ in range(3):
            await _hang_up_mid_body(port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        seen = ("client went away", "unhandled error")  # the hang-up answered, either way
        while sum(r.getMessage().startswith(seen) for r in caplog.records) < 3:
            assert loop.time() < deadline, "the handlers never saw the hang-ups"
            await asyncio.sleep(0.02)
        unhandled = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert unhandled == []
        assert sum((await store.stats()).by_status.values()) == 0  # nothing half-stored
    finally:
        await runner.cleanup()
        await store.close()
