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
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
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
    user postgres. As root it runs as the `postgres` user (initdb refuses root).

    fsync is off: these servers are for tests, and a kill -9 of a PostgreSQL process (what
    the chaos and failover tests do) keeps every write the kernel already has; only a crash
    of the machine would need fsync. `settings` are appended to postgresql.auto.conf."""

    def __init__(self, port: int | None = None, settings: Mapping[str, str] | None = None) -> None:
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="wxgate-pg-")
        self.dir = Path(self._tmp.name)
        self.data = self.dir / "data"
        self._settings = dict(settings or {})

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def run(self, program: str, *args: str) -> None:
        """A PostgreSQL program (initdb, pg_basebackup, ...) as the server's user."""
        self._run(_pg_bin(program), *args)

    def configure(self, settings: Mapping[str, str]) -> None:
        """Append settings to postgresql.auto.conf, read last (so they win over what
        initdb or `pg_basebackup -R` wrote)."""
        conf = self.data / "postgresql.auto.conf"
        with conf.open("a", encoding="utf-8") as f:
            f.writelines(f"{k} = '{v}'\n" for k, v in settings.items())
        if os.geteuid() == 0:
            shutil.chown(conf, "postgres")

    def start(self, timeout_s: float = 30.0) -> None:
        if not self.data.exists():
            self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust")
            self.configure(self._settings)
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts,
            "-w", "-t", str(int(timeout_s)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m `mode`: "immediate" is an abrupt stop (recovery at the next start)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def postmaster_pid(self) -> int | None:
        """The running postmaster of this data directory, None when there is none (a pid file
        left by a kill -9 names a process only while it is still ours: its command line
        names our data directory)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.data).encode() in cmdline and _alive(pid) else None

    def kill9(self) -> None:
        """SIGKILL the postmaster and every backend of it at once: the machine is gone."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(v) for v in victims) and time.monotonic() < deadline:
            time.sleep(0.02)

    def log(self, tail: int = 3000) -> str:
        try:
            return (self.dir / "log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def close(self) -> None:
        """Stop (immediately, killing what is left) and remove the directory."""
        if self.postmaster_pid() is not None:
            self.stop("immediate")
        self.kill9()
        self._tmp.cleanup()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a postmaster's backends), read from /proc."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2 :].split()[0] != "Z"


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
