"""One gateway process's main loop around a Runtime: uvloop, GC tuning and signals.

startup (`async with Runtime`) -> main loop (wait for a signal) -> shutdown (drain, close), as
uvicorn runs. `wxgate serve` (serve.py) and each child of the supervisor run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Callable

from wxgate.runtime import Runtime

log = logging.getLogger("wxgate")

# The collector's young-generation threshold while serving (see tune_gc).
GC_GEN0_THRESHOLD = 7_000


def tune_gc() -> None:
    """Set the collector up for serving, once everything long-lived has been built.

    Startup's objects live as long as the process: frozen, the collections that batch
    ingest's allocations trigger do not walk them again and again (callgrind: -4%
    instructions per batch recipient). A young generation of 700 (the default) is collected
    every few requests, walking objects that a request frees a moment later anyway; 10x
    fewer collections keep a few hundred kB of cyclic garbage a little longer (-5% per batch
    recipient and per leased message).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


async def serve_until_signal(
    runtime: Runtime,
    on_ready: Callable[[Runtime], None],
    *,
    supervised: bool = False,
    parent_fd: int | None = None,
) -> None:
    """Run until SIGTERM/SIGINT; the first signal drains, a second one exits at once.

    `supervised` (a child of `wxgate serve --processes N`): SIGTERM drains, SIGINT and repeated
    signals are ignored. Ctrl-C reaches the whole process group, and systemd may signal every
    process of the unit; the parent forwards one SIGTERM and escalates to SIGKILL itself, so
    a second signal must not cut the drain short. `parent_fd` turning readable (the parent's
    end of a pipe closed: it died) drains too, so no child outlives its supervisor.
    """
    stop = _stop_event(supervised, parent_fd)
    async with runtime:  # startup; leaving the block is shutdown (drain, close in reverse)
        on_ready(runtime)
        tune_gc()
        await stop.wait()  # the main loop: the runtime's tasks run until a signal


def _stop_event(supervised: bool, parent_fd: int | None) -> asyncio.Event:
    """An event set by the first signal (or the parent's death); see serve_until_signal."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hits = 0

    def _on_signal() -> None:
        nonlocal hits
        hits += 1
        if hits == 1:
            log.info(
                "signal received: draining%s",
                "" if supervised else " (send it again to exit at once)",
            )
            stop.set()
        elif not supervised:
            log.warning("second signal: exiting now; leases expire and redeliver")
            os._exit(1)

    def _on_parent_gone(fd: int) -> None:
        nonlocal hits
        loop.remove_reader(fd)
        if not stop.is_set():
            log.warning("the supervising process is gone: draining")
            hits += 1
            stop.set()

    if supervised:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_signal_handler(signal.SIGTERM, _on_signal)
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal)
    if parent_fd is not None:
        loop.add_reader(parent_fd, _on_parent_gone, parent_fd)
    return stop
