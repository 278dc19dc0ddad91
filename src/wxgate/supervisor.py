"""`wxgate serve --processes N`: N gateway processes on one port, and the parent that keeps them.

Each child is a whole gateway (runtime.Runtime) bound to the same host:port with SO_REUSEPORT,
so the kernel spreads connections across them; they share all state through the Redis store.
The parent starts them, reports when all are ready, restarts one that dies unexpectedly (after
1 s, doubling to 30 s while it keeps dying; reset once it has stayed up 60 s), and on SIGTERM or
SIGINT forwards one SIGTERM (each child drains) and exits when they have. A second signal, or
children still running drain_timeout_s + 15 s later, get SIGKILL.

A child that exits before it was ever ready while the group starts (a bad store URL, Redis
down, a port it cannot bind) stops the whole group with exit code 1: a supervisor that restarts
a misconfiguration forever only hides it. Children are spawned, not forked, so none inherits
the parent's event loop (and, in sandbox mode, the simulator running in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent

import msgspec

from wxgate import logs
from wxgate.errors import ConfigError, WxgateError
from wxgate.process import install_uvloop, serve_until_signal
from wxgate.runtime import Runtime, parse_role
from wxgate.settings import Settings

log = logging.getLogger("wxgate.supervisor")

RESTART_FIRST_S = 1.0
RESTART_CAP_S = 30.0
STABLE_S = 60.0  # a child up this long starts its backoff over when it next dies
KILL_GRACE_S = 15.0  # on top of drain_timeout_s before a stopping child gets SIGKILL
POLL_S = 0.1


def restart_delay_s(failures: int) -> float:
    """Wait before the restart that follows `failures` deaths in a row (1, 2, 4 ... 30 s)."""
    return float(min(RESTART_CAP_S, RESTART_FIRST_S * 2 ** max(0, failures - 1)))


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on: SO_REUSEPORT would silently share it with
    anyone of the same user (a second `wxgate serve` on the same port, for one)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--processes > 1 needs SO_REUSEPORT (Linux or BSD)")
    for family, kind, proto, _, addr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(f"{host}:{port} is already in use") from None
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def child_main(
    settings_raw: bytes, role: str, index: int, ready: ProcessEvent, log_level: int
) -> None:
    """Entry point of child `index` (spawned: a fresh interpreter, no inherited event loop)."""
    # Ctrl-C reaches the whole process group; the parent turns it into one SIGTERM for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = msgspec.msgpack.decode(settings_raw, type=Settings)
    logs.setup(log_level, settings.server.log_format, process_index=index)
    install_uvloop()
    parent = multiprocessing.parent_process()
    runtime = Runtime(settings, role=parse_role(role), reuse_port=True)
    try:
        asyncio.run(
            serve_until_signal(
                runtime,
                lambda _g: ready.set(),
                supervised=True,
                parent_fd=parent.sentinel if parent is not None else None,
            )
        )
    except (WxgateError, OSError) as exc:
        log.error("gateway process %d stopped: %s", index, exc)
        sys.exit(1)


class _Child:
    """One slot of the group: the process running in it now, and its restart bookkeeping."""

    __slots__ = ("booted", "failures", "index", "proc", "ready", "restart_at", "started")

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: SpawnProcess | None = None
        self.ready: ProcessEvent | None = None
        self.started = 0.0  # monotonic
        self.booted = False  # the current process has reported ready
        self.failures = 0  # unexpected exits in a row
        self.restart_at: float | None = None  # monotonic; set while the slot is empty

    def alive(self) -> bool:
        return self.proc is not None and self.proc.exitcode is None


class Supervisor:
    """Runs `processes` gateways on settings.server.host:port until a signal; see the module doc.

    `run()` returns the exit code for the parent: 0 when every child drained and exited
    cleanly, 1 when the group could not start or a child had to be killed.
    """

    def __init__(
        self,
        settings: Settings,
        role: str,
        processes: int,
        *,
        log_level: int = logging.INFO,
        on_ready: Callable[[Supervisor], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ConfigError("--processes must be >= 1")
        self.settings = settings
        self.role = parse_role(role)
        self._raw = msgspec.msgpack.encode(settings)
        self._log_level = log_level
        self._on_ready = on_ready
        self._ctx = multiprocessing.get_context("spawn")
        self._children = [_Child(i) for i in range(processes)]
        self._signals = 0
        self._wake = asyncio.Event()
        self._all_ready = False
        self._failed = False
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"http://{self.settings.server.host}:{self.settings.server.port}"

    @property
    def pids(self) -> list[int]:
        """Pids of the children running now."""
        return [c.proc.pid for c in self._children if c.alive() and c.proc and c.proc.pid]

    def __repr__(self) -> str:
        alive = sum(c.alive() for c in self._children)
        state = "stopping" if self._signals else "ready" if self._all_ready else "starting"
        return (
            f"<Supervisor {state} {self.url} role={self.role} alive={alive}/"
            f"{len(self._children)} restarts={self.restarts}>"
        )

    # ------------------------------------------------------------------ running

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            for child in self._children:
                self._spawn(child)
            await self._supervise()
            return await self._shutdown()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            for child in self._children:  # only if run() itself was cancelled
                if child.alive() and child.proc is not None:
                    child.proc.kill()

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("signal received: draining %d gateway processes", len(self.pids))
        else:
            log.warning("second signal: killing the gateway processes now")
            self._kill_all()
        self._wake.set()

    def _spawn(self, child: _Child) -> None:
        ready = self._ctx.Event()
        proc = self._ctx.Process(
            target=child_main,
            args=(self._raw, self.role, child.index, ready, self._log_level),
            name=f"wxgate-{child.index}",
            daemon=False,
        )
        proc.start()
        child.proc, child.ready = proc, ready
        child.started = time.monotonic()
        child.booted = False
        child.restart_at = None

    async def _supervise(self) -> None:
        while not self._signals:
            now = time.monotonic()
            for child in self._children:
                self._check(child, now)
                if self._failed:
                    return
            if not self._all_ready and all(c.booted for c in self._children):
                self._all_ready = True
                if self._on_ready is not None:
                    self._on_ready(self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()

    def _check(self, child: _Child, now: float) -> None:
        if child.proc is None:
            if child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
            return
        if not child.booted and child.ready is not None and child.ready.is_set():
            child.booted = True
            if self._all_ready:
                log.info("gateway process %d is back (pid %s)", child.index, child.proc.pid)
        code = child.proc.exitcode
        if code is None:
            if child.booted and child.failures and now - child.started >= STABLE_S:
                child.failures = 0
            return
        pid, booted = child.proc.pid, child.booted
        child.proc.join()
        child.proc, child.ready = None, None
        if not self._all_ready and not booted:
            log.error(
                "gateway process %d (pid %s) exited before it was ready (%s): stopping",
                child.index,
                pid,
                describe_exit(code),
            )
            self._failed = True
            return
        child.failures += 1
        delay = restart_delay_s(child.failures)
        child.restart_at = now + delay
        self.restarts += 1
        log.log(
            logging.WARNING if code == 0 else logging.ERROR,
            "gateway process %d (pid %s) exited unexpectedly (%s); restarting it in %.0f s",
            child.index,
            pid,
            describe_exit(code),
            delay,
        )

    # ------------------------------------------------------------------ stopping

    async def _shutdown(self) -> int:
        """SIGTERM every child still running, wait for their drains, SIGKILL what is left."""
        stopping = [c for c in self._children if c.alive()]
        for child in stopping:
            assert child.proc is not None and child.proc.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.workers.drain_timeout_s + KILL_GRACE_S
        killed = False
        while any(c.alive() for c in stopping):
            if time.monotonic() > deadline and not killed:
                log.error("gateway processes still running after the drain timeout: killing")
                self._kill_all()
                killed = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
        clean = True
        for child in stopping:
            assert child.proc is not None
            child.proc.join()
            code = child.proc.exitcode
            # Killed by our SIGTERM before it could install its handler: it held nothing yet.
            if code not in (0, -signal.SIGTERM):
                clean = False
                log.error(
                    "gateway process %d (pid %s) ended with %s",
                    child.index,
                    child.proc.pid,
                    describe_exit(code),
                )
        return 0 if clean and not killed and not self._failed and self._signals < 2 else 1

    def _kill_all(self) -> None:
        for child in self._children:
            if child.alive() and child.proc is not None:
                child.proc.kill()
