"""`wxgate serve`: one gateway process, N processes sharing the port, and sandbox mode.

Sandbox mode runs the simulator in this (parent) process and points every gateway at it, so
`--sandbox --processes 4` is one simulator and four gateways, as in production. N processes are
kept by supervisor.Supervisor (restarts, drains); they need a shared store (Redis or PostgreSQL).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import msgspec

from wxgate.clock import SystemClock
from wxgate.errors import ConfigError
from wxgate.process import install_uvloop, serve_until_signal
from wxgate.runtime import Runtime, parse_role
from wxgate.sandbox import (
    SANDBOX_APP,
    SANDBOX_APPID,
    SANDBOX_CALLBACK_TOKEN,
    SANDBOX_KEY,
    SANDBOX_ORIGINAL_ID,
    SANDBOX_SECRET,
    free_port,
    sandbox_settings,
    temp_store,
)
from wxgate.settings import Settings, validate
from wxgate.settings.redis_urls import is_redis_url
from wxgate.sim.config import Faults, SimApp, SimConfig
from wxgate.sim.runner import Simulator
from wxgate.store.factory import open_store
from wxgate.supervisor import Supervisor, check_port_free
from wxgate.tracing.build import check_available as check_tracing

log = logging.getLogger("wxgate")
# Stores every process (and machine) shares: what --processes N needs.
_POSTGRES_STORES = ("postgresql://", "postgres://")


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
    keep: bool = False  # --sandbox: keep the temporary store directory on exit


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


def _where(s: Settings, url: str, role: str, metrics: str) -> list[str]:
    """The banner lines after the first: where the API, dashboard, store and WeChat are.

    server.public_url (when set) is the address people use, so the banner shows that one.
    """
    public = (s.server.public_url or url).rstrip("/")
    lines = (
        [
            f"  API:       {public}/v1/messages   stats: {public}/v1/stats   metrics: {metrics}",
            f"  dashboard: {public}/dashboard",
        ]
        if role != "worker"
        else [f"  probes:    {url}/healthz  {url}/readyz  {metrics} (no API here)"]
    )
    return [
        *lines,
        f"  store:     {s.masked()['store']['url']}",
        f"  WeChat:    {s.wechat.base_url}",
    ]


def _sandbox_lines(url: str, sim_url: str | None) -> list[str]:
    return [
        f"  sandbox:   app '{SANDBOX_APP}', API key '{SANDBOX_KEY}', simulator at {sim_url}",
        f"  try:       curl -s -X POST {url}/v1/messages -H 'Authorization: Bearer "
        f'{SANDBOX_KEY}\' -d \'{{"touser":"o_alice","template_id":"tpl_order",'
        f'"data":{{"thing1":"Your order shipped"}}}}\'',
    ]


def _banner(runtime: Runtime, sandbox: bool, sim_url: str | None, processes: int) -> None:
    s, url = runtime.settings, runtime.url
    metrics = f"{url}/metrics"
    if runtime.metrics_port is not None and s.server.metrics_bind is not None:
        metrics = (
            f"http://{s.server.metrics_bind.rpartition(':')[0]}:{runtime.metrics_port}/metrics"
        )
    lines = [
        f"wxgate listening on {url} (role {runtime.role}, processes {processes})",
        *_where(s, url, runtime.role, metrics),
    ]
    if sandbox:
        lines += _sandbox_lines(url, sim_url)
    print("\n".join(lines), flush=True)


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


def check_options(base: Settings, opts: ServeOptions) -> Settings:
    """The settings `opts` make of `base`, or ConfigError before anything has started."""
    parse_role(opts.role)
    if opts.processes < 1:
        raise ConfigError("--processes must be >= 1")
    settings = apply_overrides(base, opts)
    check_tracing(settings.tracing)
    if opts.processes > 1:
        store_url = opts.store if opts.sandbox else settings.store.url
        if store_url is None and opts.sandbox:
            raise ConfigError(
                "--sandbox --processes N needs --store redis://host:port/db or postgresql://"
            )
        if store_url is None or not (
            store_url.startswith(_POSTGRES_STORES) or is_redis_url(store_url)
        ):
            raise ConfigError(
                "--processes > 1 needs a shared store: --store redis://host:port/db "
                "(or redis+sentinel://, redis+cluster://) or postgresql://user@host/db"
            )
        check_port_free(settings.server.host, settings.server.port)
    return settings


async def _serve_async(settings: Settings, opts: ServeOptions) -> int:
    sim: Simulator | None = None
    tmp: Path | None = None
    try:
        if opts.sandbox:
            sim = await _start_sandbox_sim(
                settings.server.port, opts.sim_latency_ms, opts.sim_port or free_port()
            )
            store_url = opts.store
            if store_url is None:
                tmp, store_url = temp_store()
            settings = sandbox_settings(settings, sim.base_url, store_url)
        if opts.processes == 1:
            runtime = Runtime(settings, role=parse_role(opts.role))
            await serve_until_signal(
                runtime, lambda g: _banner(g, opts.sandbox, sim.base_url if sim else None, 1)
            )
            return 0
        return await _run_group(settings, opts, sim)
    finally:
        if sim is not None:
            await sim.close()
        if tmp is not None:
            _end_temp_store(tmp, opts.keep)


def _end_temp_store(tmp: Path, keep: bool) -> None:
    """The sandbox's temporary store: removed (a sandbox leaves nothing behind) or, with
    --keep, named so it can be opened again (`--store sqlite:///<dir>/wxgate.db`)."""
    if keep:
        print(f"sandbox store kept in {tmp} (--store sqlite:///{tmp / 'wxgate.db'})", flush=True)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def _group_banner(sup: Supervisor, sandbox: bool, sim_url: str | None) -> None:
    lines = [
        f"wxgate listening on {sup.url} (role {sup.role}, "
        f"processes {len(sup.pids)}: pids {' '.join(map(str, sup.pids))})",
        *_where(sup.settings, sup.url, sup.role, f"{sup.url}/metrics"),
    ]
    if sandbox:
        lines += _sandbox_lines(sup.url, sim_url)
    print("\n".join(lines), flush=True)


async def _probe_store(settings: Settings) -> None:
    """Open and close the shared store once here, so an unreachable one fails in this process
    (explained by cli/startup_errors.py) rather than as N children exiting one by one."""
    store = open_store(settings.store.url, SystemClock(), settings.store.retention_s)
    try:
        await store.open()
    finally:
        await store.close()


async def _run_group(settings: Settings, opts: ServeOptions, sim: Simulator | None) -> int:
    """N gateway processes on one port (SO_REUSEPORT), kept by a Supervisor in this process."""
    await _probe_store(settings)
    sup = Supervisor(
        settings,
        opts.role,
        opts.processes,
        log_level=logging.getLogger().getEffectiveLevel(),
        on_ready=lambda s: _group_banner(s, opts.sandbox, sim.base_url if sim else None),
    )
    return await sup.run()


def run_serve(base: Settings, opts: ServeOptions) -> None:
    """Serve until a signal; exits with the group's code (1 if a process could not start or
    had to be killed)."""
    settings = check_options(base, opts)
    install_uvloop()
    try:
        code = asyncio.run(_serve_async(settings, opts))
    except KeyboardInterrupt:
        sys.exit(130)
    if code:
        sys.exit(code)
