"""Issue 11, medium 7: connections without bounds.

400 slow-loris connections and 10,000 idle ones were held for as long as their clients liked.
Now a request head has header_timeout_s, a stalled body read_timeout_s, an idle keep-alive
connection keepalive_timeout_s, and a listener takes max_connections at most (one more is
answered 503 and closed at once), while everyone else is served. Real gateway (runtime.Runtime)
on loopback, raw sockets for the misbehaving clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from support.e2e import API_KEY, DATA, TEMPLATE, build_settings
from support.wait import wait_until
from wxgate.errors import ConfigError
from wxgate.runtime import Role, Runtime

MARGIN_S = 3.0  # a loaded 2-core machine; the unbounded server held them for minutes
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@asynccontextmanager
async def gateway(tmp_path: Path, role: Role = "api", **server: Any) -> AsyncIterator[Runtime]:
    settings = build_settings(tmp_path, 1, "http://127.0.0.1:9", server=server)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with Runtime(settings, role=role, sock=sock) as runtime:
        yield runtime


async def connect(runtime: Runtime) -> Conn:
    return await asyncio.open_connection("127.0.0.1", runtime.port)


async def closed_within(conn: Conn, timeout_s: float) -> bytes:
    """What the server wrote before it closed the connection; fails if it stays open."""
    reader, writer = conn
    try:
        return await asyncio.wait_for(reader.read(), timeout_s)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def trickle(writer: asyncio.StreamWriter, data: bytes, gap_s: float) -> None:
    """Send `data` a byte at a time until it is all sent or the server hangs up."""
    with contextlib.suppress(OSError):
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(gap_s)


async def healthz(runtime: Runtime) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{runtime.url}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp,
    ):
        return resp.status


@pytest.mark.timeout(60)
async def test_slow_loris_heads_are_closed_and_others_served(tmp_path: Path) -> None:
    async with gateway(tmp_path, header_timeout_s=0.5, keepalive_timeout_s=30.0) as runtime:
        slow = [await connect(runtime) for _ in range(40)]
        silent = [await connect(runtime) for _ in range(10)]  # never send a byte
        head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
        senders = [asyncio.create_task(trickle(w, head, 0.05)) for _, w in slow]
        try:
            started = time.monotonic()
            assert await healthz(runtime) == 200  # served meanwhile
            answers = await asyncio.gather(*(closed_within(c, 0.5 + MARGIN_S) for c in slow))
            await asyncio.gather(*(closed_within(c, 0.5 + MARGIN_S) for c in silent))
            assert time.monotonic() - started < 0.5 + MARGIN_S
            assert all(a.startswith(b"HTTP/1.1 408") or a == b"" for a in answers), answers
            assert any(a.startswith(b"HTTP/1.1 408") for a in answers)
        finally:
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
        assert runtime.http is not None and runtime.http.head_timeouts >= 50
        assert await healthz(runtime) == 200


@pytest.mark.timeout(60)
async def test_idle_keepalive_connection_is_closed(tmp_path: Path) -> None:
    async with gateway(tmp_path, keepalive_timeout_s=0.5) as runtime:
        reader, writer = await connect(runtime)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 200"), status
        started = time.monotonic()
        await closed_within((reader, writer), 0.5 + MARGIN_S)  # idle after its response
        assert time.monotonic() - started < 0.5 + MARGIN_S


@pytest.mark.timeout(60)
async def test_stalled_body_is_closed_but_a_slow_steady_one_is_taken(tmp_path: Path) -> None:
    async with gateway(tmp_path, read_timeout_s=1.0) as runtime:
        body = msgspec.json.encode({"touser": "o_1", "template_id": TEMPLATE, "data": DATA})
        head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        stalled = await connect(runtime)
        stalled[1].write(head + body[:10])  # and nothing more
        started = time.monotonic()
        assert await closed_within(stalled, 1.0 + MARGIN_S) == b""
        assert time.monotonic() - started < 1.0 + MARGIN_S
        assert runtime.http is not None and runtime.http.body_timeouts == 1

        # Longer than read_timeout_s in all, but never silent for that long: accepted.
        reader, writer = await connect(runtime)
        writer.write(head)
        pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
        gap_s = 1.6 / len(pieces)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(gap_s)
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.startswith(b"HTTP/1.1 202"), status
        writer.close()
        assert runtime.store is not None
        assert sum((await runtime.store.stats()).by_status.values()) == 1


@pytest.mark.timeout(60)
async def test_connections_past_the_cap_are_refused_at_once(tmp_path: Path) -> None:
    async with gateway(tmp_path, max_connections=20, header_timeout_s=30.0) as runtime:
        assert runtime.http is not None
        held = [await connect(runtime) for _ in range(20)]
        await wait_until(
            lambda: runtime.http is not None and runtime.http.open == 20, 10, "20 open"
        )
        extra = [await connect(runtime) for _ in range(10)]
        started = time.monotonic()
        answers = await asyncio.gather(*(closed_within(c, MARGIN_S) for c in extra))
        assert time.monotonic() - started < MARGIN_S
        assert all(a.startswith(b"HTTP/1.1 503") or a == b"" for a in answers), answers
        assert runtime.http.refused >= 10 and runtime.http.open == 20
        # Capacity frees up: a normal client is served again.
        for _, writer in held[:5]:
            writer.close()
        await wait_until(lambda: runtime.http is not None and runtime.http.open <= 15, 10, "freed")
        assert await healthz(runtime) == 200
        for _, writer in held[5:]:
            writer.close()


@pytest.mark.timeout(60)
async def test_worker_ops_port_has_the_same_bounds(tmp_path: Path) -> None:
    async with gateway(tmp_path, role="worker", header_timeout_s=0.5, max_connections=5) as runtime:
        assert await healthz(runtime) == 200
        await closed_within(await connect(runtime), 0.5 + MARGIN_S)  # silent: closed
        assert runtime.http is not None and runtime.http.head_timeouts >= 1
        assert runtime.http.limits.max_connections == 5


@pytest.mark.parametrize(
    "bad",
    [
        {"header_timeout_s": 0},
        {"read_timeout_s": -1},
        {"keepalive_timeout_s": 0},
        {"store_timeout_s": 0},
        {"max_connections": 0},
    ],
)
def test_bounds_are_validated(tmp_path: Path, bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=f"server.{next(iter(bad))}"):
        build_settings(tmp_path, 1, "http://127.0.0.1:9", server=bad)
