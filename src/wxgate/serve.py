"""`wxgate serve`: one gateway process, N processes sharing the port, and sandbox mode.

Sandbox mode runs the simulator in this (parent) process and points every gateway at it, so
`--sandbox --processes 4` is one simulator and four gateways, as in production.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import dataclass
from typing import cast

import msgspec

from wxgate.errors import ConfigError
from wxgate.runtime import Gateway, Role, install_uvloop, serve_until_signal
from wxgate.sandbox import (
    SANDBOX_APP,
    SANDBOX_APPID,
    SANDBOX_CALLBACK_TOKEN,
    SANDBOX_KEY,
    SANDBOX_ORIGINAL_ID,
    SANDBOX_SECRET,
    free_port,
    sandbox_settings,
)
from wxgate.settings import Settings, validate
from wxgate.sim.config import Faults, SimApp, SimConfig
from wxgate.sim.runner import Simulator

log = logging.getLogger("wxgate")


@dataclass(frozen=True)
class ServeOptions:
    port: int | None = None
    host: str | None = None
    store: str | None = None
    sandbox: bool = False
    sim_latency_ms: float = 0.0
    role: str = "all"
    processes: int = 1
    sim_port: int | None = None


def apply_overrides(base: Settings, opts: ServeOptions) -> Settings:
    server = base.server
    if opts.port is not None:
        server = msgspec.structs.replace(server, port=opts.port)
    if opts.host is not None:
        server = msgspec.structs.replace(server, host=opts.host)
    store = base.store
    if opts.store is not None:
        store = msgspec.structs.replace(store, url=opts.store)
    return validate(msgspec.structs.replace(base, server=server, store=store))


def _banner(gw: Gateway, sandbox: bool, sim_url: str | None, processes: int) -> None:
    s = gw.settings
    lines = [
        f"wxgate listening on {gw.url} (store {s.masked()['store']['url']}, "
        f"role {gw.role}, processes {processes})",
        f"  API:       {gw.url}/v1/messages   stats: {gw.url}/v1/stats   metrics: {gw.url}/metrics",
    ]
    if sandbox:
        lines += [
            f"  sandbox:   app '{SANDBOX_APP}', API key '{SANDBOX_KEY}', simulator at {sim_url}",
            f"  try:       curl -s -X POST {gw.url}/v1/messages -H 'Authorization: Bearer "
            f'{SANDBOX_KEY}\' -d \'{{"touser":"o_alice","template_id":"tpl_order",'
            f'"data":{{"thing1":"Your order shipped"}}}}\'',
        ]
    print("\n".join(lines), flush=True)


def _child_main(settings_raw: bytes, role: str, reuse_port: bool) -> None:
    """Entry point of a gateway child process (spawned, so no inherited event loop)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = msgspec.msgpack.decode(settings_raw, type=Settings)
    install_uvloop()
    gw = Gateway(settings, role=cast(Role, role), reuse_port=reuse_port)
    asyncio.run(serve_until_signal(gw, lambda _g: None))


async def _start_sandbox_sim(gateway_port: int, latency_ms: float, sim_port: int) -> Simulator:
    sim_app = SimApp(
        appid=SANDBOX_APPID,
        secret=SANDBOX_SECRET,
        callback_url=f"http://127.0.0.1:{gateway_port}/wechat/callback/{SANDBOX_APP}",
        callback_token=SANDBOX_CALLBACK_TOKEN,
        original_id=SANDBOX_ORIGINAL_ID,
        daily_quota=100_000_000,
    )
    cfg = SimConfig(apps=[sim_app], port=sim_port, faults=Faults(latency_ms=latency_ms))
    sim = Simulator(cfg)
    await sim.start(host="127.0.0.1", port=sim_port)
    return sim


async def _serve_async(base: Settings, opts: ServeOptions) -> None:
    settings = apply_overrides(base, opts)
    sim: Simulator | None = None
    if opts.sandbox:
        if settings.server.port == 0:
            settings = msgspec.structs.replace(
                settings, server=msgspec.structs.replace(settings.server, port=free_port())
            )
        sim = await _start_sandbox_sim(
            settings.server.port, opts.sim_latency_ms, opts.sim_port or free_port()
        )
        settings = sandbox_settings(settings, sim.base_url, opts.store)
    try:
        if opts.processes <= 1:
            gw = Gateway(settings, role=cast(Role, opts.role))
            await serve_until_signal(
                gw, lambda g: _banner(g, opts.sandbox, sim.base_url if sim else None, 1)
            )
        else:
            await _run_children(settings, opts, sim)
    finally:
        if sim is not None:
            await sim.close()


async def _run_children(settings: Settings, opts: ServeOptions, sim: Simulator | None) -> None:
    """N gateway processes on one port (SO_REUSEPORT); the parent forwards signals and waits."""
    if not settings.store.url.startswith(("redis://", "rediss://")):
        raise ConfigError("--processes > 1 needs a shared store: --store redis://host:port/db")
    ctx = multiprocessing.get_context("spawn")
    raw = msgspec.msgpack.encode(settings)
    children = [
        ctx.Process(target=_child_main, args=(raw, opts.role, True), daemon=False)
        for _ in range(opts.processes)
    ]
    for c in children:
        c.start()
    url = f"http://{settings.server.host}:{settings.server.port}"
    print(
        f"wxgate: {opts.processes} processes on {url} (store {settings.masked()['store']['url']})"
        + (
            f"; sandbox app '{SANDBOX_APP}', key '{SANDBOX_KEY}', simulator {sim.base_url}"
            if sim
            else ""
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    hits = 0

    def _forward() -> None:
        nonlocal hits
        hits += 1
        for c in children:
            if c.pid is not None and c.is_alive():
                os.kill(c.pid, signal.SIGTERM if hits == 1 else signal.SIGKILL)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _forward)
    while any(c.is_alive() for c in children) and not stop.is_set():
        await asyncio.sleep(0.2)
    for c in children:
        await asyncio.to_thread(c.join)
    if any(c.exitcode not in (0, None) for c in children) and not stop.is_set():
        raise SystemExit(1)


def run_serve(base: Settings, opts: ServeOptions) -> None:
    install_uvloop()
    try:
        asyncio.run(_serve_async(base, opts))
    except KeyboardInterrupt:
        sys.exit(130)
