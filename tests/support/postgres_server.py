"""A real PostgreSQL for tests: the local one on 127.0.0.1:5432 (user postgres, trust auth)
when it answers, else a private server of our own (Debian's `postgresql` package, initdb into
a temporary directory, started on a free port). Either way each test session works in a
database of its own, created at the start and dropped at the end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 5432


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop (a
    session fixture may first be asked for by an async test): on a thread of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _answers(host: str, port: int) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(
                host=host, port=port, user="postgres", database="postgres", timeout=2
            )
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return _sync(probe)


def _pg_bin(name: str) -> str:
    """Path of a PostgreSQL server program, installing Debian's package when it is missing."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
        check=True,
        env=env,
        capture_output=True,
    )
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} is still missing after apt-get install postgresql")
    return found[-1]


class PostgresServer:
    """A private server on 127.0.0.1:<port>, data in a temporary directory, trust auth for
    user postgres. As root it runs as the `postgres` user (initdb refuses root)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="wxgate-pg-")
        self.dir = Path(self._tmp.name)
        self.data = self.dir / "data"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def start(self, timeout_s: float = 30.0) -> None:
        if not self.data.exists():
            self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts,
            "-w", "-t", str(int(timeout_s)), "start",
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()


async def _admin(host: str, port: int, sql: str) -> None:
    conn = await asyncpg.connect(host=host, port=port, user="postgres", database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def session_postgres_url() -> Iterator[str]:
    """postgresql:// URL of a database of this session's own, dropped afterwards."""
    server: PostgresServer | None = None
    host, port = LOCAL_HOST, LOCAL_PORT
    if not _answers(host, port):
        server = PostgresServer()
        server.start()
        port = server.port
        deadline = time.monotonic() + 30
        while not _answers(host, port):
            if time.monotonic() > deadline:
                raise RuntimeError("private PostgreSQL did not answer")
            time.sleep(0.05)
    name = f"wxgate_test_{os.getpid()}_{secrets.token_hex(4)}"
    _sync(lambda: _admin(host, port, f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql://postgres@{host}:{port}/{name}"
    finally:
        _sync(lambda: _admin(host, port, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        if server is not None:
            server.close()


@contextlib.contextmanager
def fresh_database(session_url: str) -> Iterator[str]:
    """A new, empty database on the server of `session_url` (the `postgres_url` fixture's),
    dropped afterwards: for whole gateways, which keep their tables in the default schema."""
    rest = session_url.removeprefix("postgresql://postgres@")
    hostport, _, session_db = rest.partition("/")
    host, _, port_s = hostport.rpartition(":")
    name = f"{session_db}_{secrets.token_hex(3)}"
    _sync(lambda: _admin(host, int(port_s), f"CREATE DATABASE {name}"))
    try:
        yield f"postgresql://postgres@{hostport}/{name}"
    finally:
        _sync(lambda: _admin(host, int(port_s), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
