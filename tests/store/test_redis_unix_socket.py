"""`unix://` reaches a Redis over its socket, the same store as over TCP (a real redis-server
listening on a socket only)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from support.redis_server import redis_server_binary
from support.store import make_message
from wxgate.clock import FakeClock
from wxgate.store.redis import RedisStore


async def test_unix_socket_url(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    args = [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(sock),
        "--dir", str(tmp_path),
        "--save", "",
        "--appendonly", "no",
        "--logfile", str(tmp_path / "redis.log"),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert time.monotonic() < deadline, "redis-server made no socket"
            assert proc.poll() is None, (tmp_path / "redis.log").read_text()
            time.sleep(0.02)
        clock = FakeClock()
        store = RedisStore(f"unix://{sock}?db=2", clock, retention_s=3600, key_prefix="wxunix")
        await store.open()
        try:
            await store.ping()
            [result] = await store.enqueue((make_message(clock),))
            found = await store.get(result.id)
            assert found is not None and found.id == result.id
        finally:
            await store.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)
