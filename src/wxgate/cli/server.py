"""`wxgate serve`, `wxgate demo`, `wxgate config show` and `config init`: running the gateway."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from wxgate import invocation, logs
from wxgate import settings as settings_mod
from wxgate.cli.common import ConfigOpt, config_errors, console, err, load, log_setup
from wxgate.cli.startup_errors import explain
from wxgate.sandbox import SANDBOX_APP, SANDBOX_APPID, SANDBOX_SECRET

config_app = typer.Typer(help="Settings.", no_args_is_help=True)

DEFAULT_CONFIG = Path("wxgate.toml")
SANDBOX_APP_ENV = {
    f"WXGATE_APPS__{SANDBOX_APP}__APPID": SANDBOX_APPID,
    f"WXGATE_APPS__{SANDBOX_APP}__SECRET": SANDBOX_SECRET,
}


# `wxgate serve` with nothing to deliver for: it would answer 401 to everything and leave a
# ./wxgate.db behind, so it says what is missing and the two ways forward instead.
def nothing_to_serve(wxgate: str) -> str:
    """The refusal, with `wxgate` spelled as this process was started (invocation.py)."""
    return (
        "wxgate serve: nothing to serve. There is no wxgate.toml here (and no --config), and "
        "no app is set in the environment (WXGATE_APPS__<name>__APPID/SECRET), so no message "
        f"could be delivered. Run `{wxgate} config init` to write a commented wxgate.toml, "
        "fill in your app's appid and secret and an API key, and start again; or try wxgate "
        f"first with the built-in WeChat simulator: `{wxgate} serve --sandbox`."
    )


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
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text | json: one JSON object per line for a log pipeline "
            "(default: server.log_format, text)"
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="With --sandbox: keep its temporary store directory on exit"),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback when startup fails")
    ] = False,
) -> None:
    """Run the gateway: HTTP API + delivery workers."""
    from wxgate.serve import ServeOptions, apply_overrides, check_options, run_serve

    # --sandbox: the sandbox app exists while the file is checked, so a [[server.keys]] table
    # naming it (apps = ["sandbox"], as in the README's token example) is valid there.
    base = load(config, SANDBOX_APP_ENV if sandbox else None)
    try:
        fmt = logs.parse_format(log_format) if log_format is not None else base.server.log_format
    except ValueError as exc:
        err.print(f"[red]--{exc}[/red]")
        raise typer.Exit(2) from None
    # Into the settings too: supervised children (--processes N) set up their own logging.
    base = msgspec.structs.replace(
        base, server=msgspec.structs.replace(base.server, log_format=fmt)
    )
    log_setup(log_level, fmt)
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
        keep=keep,
    )
    with config_errors():  # mistakes in the command line first, then what is missing
        check_options(base, opts)
    if not sandbox and not base.apps and config is None and not DEFAULT_CONFIG.exists():
        err.print(nothing_to_serve(invocation.command()), soft_wrap=True)
        raise typer.Exit(2)
    try:
        run_serve(base, opts)
    except Exception as exc:
        if debug:
            raise
        with config_errors():  # the settings themselves may be what failed
            settings = apply_overrides(base, opts)
        err.print(explain(exc, settings), soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(2) from None


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings (file + WXGATE_* env + defaults), secrets masked."""
    s = load(config)
    console.print_json(json.dumps(s.masked()))


@config_app.command("init")
def config_init(
    path: Annotated[
        Path, typer.Argument(help="Where to write it (default ./wxgate.toml)")
    ] = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file")] = False,
) -> None:
    """Write a commented wxgate.toml listing every setting (the sandbox app as a start)."""
    if path.exists() and not force:
        err.print(f"[red]{path} already exists[/red]: keep it, or overwrite it with --force")
        raise typer.Exit(2)
    try:
        path.write_text(settings_mod.example_toml(), encoding="utf-8")
    except OSError as exc:
        err.print(f"[red]cannot write {path}:[/red] {exc.strerror}")
        raise typer.Exit(2) from None
    console.print(
        f"wrote {path}: set your app's appid and secret and an API key, then "
        f"`{invocation.command()} serve`",
        soft_wrap=True,
    )


def demo(
    messages: Annotated[int, typer.Option(help="How many messages to push")] = 3000,
    sim_latency_ms: Annotated[float, typer.Option(help="Simulated WeChat latency")] = 20.0,
) -> None:
    """Start a sandbox gateway, push messages (some to failing test recipients), report."""
    from wxgate.demo import run_demo

    sys.exit(asyncio.run(run_demo(messages, sim_latency_ms, console)))
