"""A real Redis for tests: the local one on 6379 (a spare DB claimed for the session) when it
answers, else a redis-server of our own; and RedisServer, a server a test may kill and restart
on the same port and directory (the chaos tests' "Redis restart loses nothing").

Debian's redis-server is installed when the binary is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 6379
# Spare DBs of a developer's local Redis that a test session may claim; db 0 is never touched
# beyond one claim key per DB.
SPARE_DBS = range(9, 16)
CLAIM_TTL_S = 6 * 3600


def answers_ping(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """Path of redis-server, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
        check=True,
        env=env,
        capture_output=True,
    )
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is still missing after apt-get install")
    return found


class RedisServer:
    """A redis-server of our own on 127.0.0.1:<port> with its files in `dir`.

    `appendonly=True` runs it with AOF and appendfsync always, so a SIGKILL loses nothing that
    was acknowledged. `kill()` / `shutdown()` stop it; `start()` brings it back on the same port
    and directory, loading what it had.
    """

    def __init__(self, *, appendonly: bool = False, port: int | None = None) -> None:
        self.appendonly = appendonly
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="wxgate-redis-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not self._ready():
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def _ready(self) -> bool:
        if not answers_ping("127.0.0.1", self.port):
            return False
        # Still loading the AOF answers PING with -LOADING on some versions: wait for real data.
        try:
            client = redis.Redis(port=self.port, socket_timeout=1)
            with contextlib.closing(client):
                return client.info("persistence").get("loading") == 0
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: the crash. With appendfsync always, nothing acknowledged is lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def shutdown(self) -> None:
        """A clean SHUTDOWN (what a restart by an operator does)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):
                redis.Redis(port=self.port, socket_timeout=5).shutdown(nosave=not self.appendonly)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self, *, kill: bool = True) -> None:
        if kill:
            self.kill()
        else:
            self.shutdown()
        self.start()

    def close(self) -> None:
        self.kill()
        self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.proc is not None and self.proc.poll() is None else "stopped"
        return f"<RedisServer port={self.port} appendonly={self.appendonly} {state}>"


def _claim_local_db() -> int | None:
    """Claim a spare DB of the local Redis for this session (NX keys in db 0, with a TTL)."""
    admin = redis.Redis(host=LOCAL_HOST, port=LOCAL_PORT, db=0, socket_timeout=2)
    with contextlib.closing(admin):
        for db in SPARE_DBS:
            if admin.set(f"wxgate-tests:claim:{db}", os.getpid(), nx=True, ex=CLAIM_TTL_S):
                return db
    return None


def _release_local_db(db: int) -> None:
    admin = redis.Redis(host=LOCAL_HOST, port=LOCAL_PORT, db=0, socket_timeout=2)
    with contextlib.closing(admin), contextlib.suppress(redis.RedisError):
        admin.delete(f"wxgate-tests:claim:{db}")


@contextlib.contextmanager
def session_redis_url() -> Iterator[str]:
    """A Redis URL whose DB is empty and ours for the session; cleaned up on exit."""
    db = _claim_local_db() if answers_ping(LOCAL_HOST, LOCAL_PORT) else None
    if db is None:
        with RedisServer() as server:
            yield server.url()
        return
    client = redis.Redis(host=LOCAL_HOST, port=LOCAL_PORT, db=db, socket_timeout=5)
    try:
        client.flushdb()
        yield f"redis://{LOCAL_HOST}:{LOCAL_PORT}/{db}"
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()
        _release_local_db(db)
