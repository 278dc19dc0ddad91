"""A real Redis Sentinel for tests: one sentinel process on a free loopback port watching a
primary (quorum 1, a primary is down after 1 s without answers), so a failover test sees a
promotion within seconds.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from support.redis_server import free_port, redis_server_binary

SERVICE = "wxprimary"
_TIMEOUT_S = 60.0


class RedisSentinel:
    """`redis-server sentinel.conf --sentinel` monitoring 127.0.0.1:`primary_port` as SERVICE."""

    def __init__(self, primary_port: int) -> None:
        self.primary_port = primary_port
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="wxgate-sentinel-")
        self.dir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{SERVICE}"

    def start(self) -> None:
        conf = self.dir / "sentinel.conf"  # Sentinel rewrites it: a file of its own
        conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "protected-mode no\n"
            f"dir {self.dir}\n"
            f"logfile {self.dir / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n",
            encoding="utf-8",
        )
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait(lambda: self.client().ping(), "the sentinel to answer")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def primary(self) -> int:
        """The port Sentinel names as the primary now."""
        with contextlib.closing(self.client()) as c:
            _host, port = c.sentinel_get_master_addr_by_name(SERVICE)
            return int(port)

    def replicas_known(self) -> int:
        with contextlib.closing(self.client()) as c:
            return sum(
                1 for r in c.sentinel_slaves(SERVICE) if "s_down" not in str(r.get("flags", ""))
            )

    def wait(self, ready: object, what: str, timeout_s: float = _TIMEOUT_S) -> None:
        """A blocking bounded wait (setup only, before anything else runs)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                if ready():  # type: ignore[operator]
                    return
            if time.monotonic() > deadline:
                log = (self.dir / "sentinel.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"sentinel: timed out waiting for {what}: {log}")
            time.sleep(0.05)

    def log(self) -> str:
        return (self.dir / "sentinel.log").read_text(errors="replace")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
        self._tmp.cleanup()

    def __enter__(self) -> RedisSentinel:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
