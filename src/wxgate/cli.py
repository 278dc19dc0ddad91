"""The `wxgate` command: serve | sim | send | batch | status | dlq | config | demo."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wxgate import settings as settings_mod
from wxgate.client import Client, GatewayError
from wxgate.errors import ConfigError
from wxgate.sim.cli import sim_command

app = typer.Typer(
    name="wxgate",
    help="A fast, durable push gateway for WeChat template messages.",
    no_args_is_help=True,
    add_completion=False,
)
dlq_app = typer.Typer(help="Dead letters: list and requeue.", no_args_is_help=True)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(config_app, name="config")
app.command("sim", help="Run the WeChat simulator (api.weixin.qq.com stand-in).")(sim_command)

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (default wxgate.toml)")
]
UrlOpt = Annotated[str, typer.Option("--url", envvar="WXGATE_URL", help="Gateway base URL")]
KeyOpt = Annotated[str, typer.Option("--key", envvar="WXGATE_API_KEY", help="API key (Bearer)")]


def _load(config: Path | None) -> settings_mod.Settings:
    try:
        return settings_mod.load(config or Path("wxgate.toml"), os.environ)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def _log_setup(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def serve(
    config: ConfigOpt = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (overrides the file)")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    store: Annotated[str | None, typer.Option(help="Store URL: sqlite:///f.db or redis://")] = None,
    sandbox: Annotated[
        bool, typer.Option(help="Start the built-in simulator and wire a sandbox app to it")
    ] = False,
    sim_latency_ms: Annotated[float, typer.Option(help="Simulator latency in sandbox mode")] = 0.0,
    role: Annotated[str, typer.Option(help="api | worker | all")] = "all",
    processes: Annotated[
        int, typer.Option(help="Gateway processes sharing the port (needs a Redis store)")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="debug | info | warning")] = "info",
) -> None:
    """Run the gateway: HTTP API + delivery workers."""
    from wxgate.serve import ServeOptions, run_serve

    _log_setup(log_level)
    base = _load(config)
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
    try:
        run_serve(base, opts)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


def _data_arg(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"{p!r}: use key=value")
        k, v = p.split("=", 1)
        out[k] = v
    return out


def _fail(exc: GatewayError) -> typer.Exit:
    err.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


@app.command()
def send(
    touser: Annotated[str, typer.Argument(help="Recipient openid")],
    template_id: Annotated[str, typer.Argument(help="Template id")],
    data: Annotated[list[str] | None, typer.Argument(help="key=value fields")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
    link: Annotated[str | None, typer.Option("--link", help="URL the message opens")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency key")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for a final status")] = False,
) -> None:
    """Send one message."""
    opts: dict[str, Any] = {}
    if app_name:
        opts["app"] = app_name
    if link:
        opts["url"] = link
    if idempotency_key:
        opts["idempotency_key"] = idempotency_key
    with Client(url, key) as gw:
        try:
            accepted = gw.send(touser, template_id, _data_arg(data or []), **opts)
            console.print(f"accepted [bold]{accepted.id}[/bold] ({accepted.status.value})")
            if wait:
                view = gw.wait_for(accepted.id, timeout=60)
                console.print(msgspec.json.encode(view).decode())
        except GatewayError as exc:
            raise _fail(exc) from None


@app.command()
def status(
    msg_id: Annotated[str, typer.Argument(help="Message id")],
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """Show one message: status, attempts, last error, WeChat msgid, receipt."""
    with Client(url, key) as gw:
        try:
            view = gw.get_message(msg_id)
        except GatewayError as exc:
            raise _fail(exc) from None
    console.print_json(msgspec.json.encode(view).decode())


def _read_csv(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of `touser,<field>,<field>...`; each other column fills that template field."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "touser" not in reader.fieldnames:
            raise typer.BadParameter(f"{path}: the first row must name a 'touser' column")
        fields = [c for c in reader.fieldnames if c != "touser"]
        rows = []
        for row in reader:
            touser = (row.get("touser") or "").strip()
            if not touser:
                continue
            data = {c: row[c] for c in fields if row.get(c) not in (None, "")}
            rows.append({"touser": touser, "data": data} if data else {"touser": touser})
    return rows, fields


@app.command()
def batch(
    template_id: Annotated[str, typer.Argument(help="Template id")],
    csv_file: Annotated[Path, typer.Option("--csv", help="CSV with a touser column")],
    data: Annotated[list[str] | None, typer.Option("--data", help="Shared key=value")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
    chunk: Annotated[int, typer.Option(help="Recipients per request")] = 5000,
    follow: Annotated[bool, typer.Option(help="Follow delivery until done")] = True,
    timeout: Annotated[float, typer.Option(help="Give up following after N s")] = 600.0,
) -> None:
    """Send one template to every recipient in a CSV, with a live progress bar."""
    rows, _ = _read_csv(csv_file)
    if not rows:
        err.print("[red]no recipients in the CSV[/red]")
        raise typer.Exit(1)
    shared = _data_arg(data or [])
    batch_ids: list[str] = []
    opts: dict[str, Any] = {"app": app_name} if app_name else {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Client(url, key, timeout=60) as gw, Progress(*columns, console=console) as progress:
        acc = progress.add_task("accepted", total=len(rows))
        try:
            for i in range(0, len(rows), chunk):
                part = rows[i : i + chunk]
                out = gw.send_batch(template_id, part, shared, **opts)
                batch_ids.append(out.id)
                progress.advance(acc, len(part))
            if not follow:
                return
            sent = progress.add_task("sent", total=len(rows))
            delivered = progress.add_task("delivered", total=len(rows))
            failed = progress.add_task("failed", total=len(rows))
            deadline = time.monotonic() + timeout
            while True:
                counts: dict[str, int] = {}
                for bid in batch_ids:
                    for st, n in gw.batch_progress(bid).counts.items():
                        counts[st] = counts.get(st, 0) + n
                done_sent = sum(
                    counts.get(s, 0) for s in ("sent", "delivered", "blocked", "failed")
                )
                bad = sum(counts.get(s, 0) for s in ("dead", "expired", "cancelled"))
                progress.update(sent, completed=done_sent)
                progress.update(delivered, completed=counts.get("delivered", 0))
                progress.update(failed, completed=bad + counts.get("failed", 0))
                if done_sent + bad >= len(rows) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        except GatewayError as exc:
            raise _fail(exc) from None
    console.print(f"batches: {', '.join(batch_ids)}")


@dlq_app.command("list")
def dlq_list(
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    errcode: Annotated[int | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """List dead letters, newest first."""
    with Client(url, key) as gw:
        try:
            page = gw.dead_letters(app=app_name, errcode=errcode, limit=limit)
        except GatewayError as exc:
            raise _fail(exc) from None
    table = Table("id", "app", "touser", "errcode", "errmsg", "attempts")
    for m in page.items:
        table.add_row(
            m.id, m.app, m.touser, str(m.last_errcode), (m.last_errmsg or "")[:60], str(m.attempts)
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@dlq_app.command("requeue")
def dlq_requeue(
    ids: Annotated[list[str] | None, typer.Argument(help="Message ids")] = None,
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    errcode: Annotated[int | None, typer.Option()] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """Move dead letters back to the queue, by ids or by filter."""
    if not ids and app_name is None and errcode is None:
        err.print("[red]give ids, --app or --errcode[/red]")
        raise typer.Exit(2)
    with Client(url, key) as gw:
        try:
            n = gw.requeue(ids=ids or None, app=app_name, errcode=errcode)
        except GatewayError as exc:
            raise _fail(exc) from None
    console.print(f"requeued {n}")


@config_app.command("show")
def config_show(config: ConfigOpt = None) -> None:
    """Print the effective settings (file + WXGATE_* env + defaults), secrets masked."""
    s = _load(config)
    console.print_json(json.dumps(s.masked()))


@app.command()
def demo(
    messages: Annotated[int, typer.Option(help="How many messages to push")] = 3000,
    sim_latency_ms: Annotated[float, typer.Option(help="Simulated WeChat latency")] = 20.0,
) -> None:
    """Start a sandbox gateway, push messages (some to failing test recipients), report."""
    from wxgate.demo import run_demo

    sys.exit(asyncio.run(run_demo(messages, sim_latency_ms, console)))


def main() -> None:
    app()
