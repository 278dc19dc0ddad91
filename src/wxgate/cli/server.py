"""`wxgate serve`, `wxgate demo` and `wxgate config show`: running the gateway itself."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer

from wxgate.cli.common import (
    ConfigOpt,
    config_errors,
    console,
    err,
    load,
    log_setup,
    store_errors,
)

config_app = typer.Typer(help="Settings.", no_args_is_help=True)


def serve(
    config: ConfigOpt = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (overrides the file)")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    store: Annotated[
        str | None, typer.Option(help="Store URL: sqlite:///f.db, redis:// or postgresql://")
    ] = None,
    sandbox: Annotated[
        bool, typer.Option(help="Start the built-in simulator and wire a sandbox app to it")
    ] = False,
    sim_latency_ms: Annotated[float, typer.Option(help="Simulator latency in sandbox mode")] = 0.0,
    role: Annotated[
        str,
        typer.Option(
            help="all | api (HTTP API, no delivery) | worker (delivery; serves only "
            "/healthz, /readyz and /metrics)"
        ),
    ] = "all",
    processes: Annotated[
        int,
        typer.Option(
            help="Gateway processes sharing the port, restarted if they die (needs a Redis or "
            "PostgreSQL store)"
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Run the gateway: HTTP API + delivery workers."""
    from wxgate.serve import ServeOptions, run_serve

    log_setup(log_level)
    base = load(config)
    if role not in ("api", "worker", "all"):
        err.print("[red]--role must be api, worker or all[/red]")
        raise typer.Exit(2)
    opts = ServeOptions(
        port=port,
        host=host,
        store=store,
        sandbox=sandbox,
        sim_latency_ms=sim_latency_ms,
        role=role,
        processes=processes,
    )
    with config_errors(), store_errors():
        run_serve(base, opts)


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings (file + WXGATE_* env + defaults), secrets masked."""
    s = load(config)
    console.print_json(json.dumps(s.masked()))


def demo(
    messages: Annotated[int, typer.Option(help="How many messages to push")] = 3000,
    sim_latency_ms: Annotated[float, typer.Option(help="Simulated WeChat latency")] = 20.0,
) -> None:
    """Start a sandbox gateway, push messages (some to failing test recipients), report."""
    from wxgate.demo import run_demo

    sys.exit(asyncio.run(run_demo(messages, sim_latency_ms, console)))
