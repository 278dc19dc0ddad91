"""A real Redis Cluster for tests: three masters (no replicas) on free loopback ports, made by
`redis-cli --cluster create`, each node's files in a temporary directory of its own.

`fail_slot_owner()` kills the master owning a key's slot: with no replica to promote, that
slot stays uncovered (CLUSTERDOWN on the other nodes once they notice) for the readiness test.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from support.redis_server import free_port, redis_server_binary

_NODES = 3
_TIMEOUT_S = 60.0


def _two_free_ports() -> tuple[int, int]:
    """A client port and a cluster-bus port, both free now."""
    a = free_port()
    b = free_port()
    while b == a:
        b = free_port()
    return a, b


class RedisCluster:
    """Three cluster-enabled masters joined into one cluster covering all 16384 slots, each
    with `replicas` replicas of its own (promoted by the cluster when its master fails)."""

    def __init__(self, replicas: int = 0) -> None:
        self.replicas = replicas
        self._tmp = tempfile.TemporaryDirectory(prefix="wxgate-cluster-")
        self.dir = Path(self._tmp.name)
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        binary = redis_server_binary()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is missing (it comes with redis-server's package)")
        for i in range(_NODES * (1 + self.replicas)):
            port, bus = _two_free_ports()
            node_dir = self.dir / str(i)
            node_dir.mkdir()
            args = [
                binary,
                "--port", str(port),
                "--cluster-port", str(bus),
                "--bind", "127.0.0.1",
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "no",
                "--daemonize", "no",
                "--logfile", str(node_dir / "redis.log"),
            ]  # fmt: skip
            self.ports.append(port)
            self.procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in self.ports:
            self._wait(lambda p=port: self._client(p).ping(), f"node {port} to answer")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=_TIMEOUT_S,
        )
        for port in self.ports:
            self._wait(
                lambda p=port: self._client(p).cluster("info")["cluster_state"] == "ok",
                f"node {port} to see the cluster ok",
            )

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + _TIMEOUT_S
        while True:
            with contextlib.suppress(redis.RedisError, OSError, KeyError):
                if ready():  # type: ignore[operator]
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster: timed out waiting for {what}")
            time.sleep(0.05)

    def slot_owner(self, key: str) -> int:
        """The port of the master serving `key`'s slot, as a live node sees it now."""
        alive = next(
            p for p, proc in zip(self.ports, self.procs, strict=True) if proc.poll() is None
        )
        slot = int(self._client(alive).cluster("keyslot", key))
        for start, end, (_, port, *_rest), *_ in self._client(alive).execute_command(
            "CLUSTER", "SLOTS"
        ):
            if int(start) <= slot <= int(end):
                return int(port)
        raise RuntimeError(f"no node owns slot {slot}")

    def kill(self, port: int) -> None:
        proc = self.procs[self.ports.index(port)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def fail_slot_owner(self, key: str) -> int:
        """SIGKILL the master owning `key`'s slot; returns the port of a surviving node once
        it reports the cluster down (no replica: the slot has no owner)."""
        owner = self.slot_owner(key)
        self.kill(owner)
        survivor = next(p for p in self.ports if p != owner)
        self._wait(
            lambda: self._client(survivor).cluster("info")["cluster_state"] == "fail",
            "the cluster to notice the failed master",
        )
        return survivor

    def wait_replicated(self, master: int) -> None:
        """Until every replica of `master` has all it wrote (offsets equal)."""

        def caught_up() -> bool:
            info = self._client(master).info("replication")
            offset = info["master_repl_offset"]
            slaves = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            return bool(slaves) and all(int(s["offset"]) >= offset for s in slaves)

        self._wait(caught_up, f"the replicas of {master} to catch up")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        self._tmp.cleanup()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
