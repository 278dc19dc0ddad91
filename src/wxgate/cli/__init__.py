"""The `wxgate` command: serve | sim | send | batch (send, follow, pause, resume, cancel, rate,
results) | status | dlq | config | demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wxgate import settings as settings_mod
from wxgate.errors import ConfigError
from wxgate.models import BatchProgress
from wxgate.sdk import GatewayClient as Client
from wxgate.sdk import GatewayError
from wxgate.sim.cli import sim_command

app = typer.Typer(
    name="wxgate",
    help="A fast, durable push gateway for WeChat template messages.",
    no_args_is_help=True,
    add_completion=False,
)
dlq_app = typer.Typer(help="Dead letters: list and requeue.", no_args_is_help=True)
batch_app = typer.Typer(
    help="Campaigns: send a CSV, follow, pause, resume, cancel, rate, results.",
    no_args_is_help=True,
)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(batch_app, name="batch")
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
            help="Gateway processes sharing the port, restarted if they die (needs a Redis store)"
        ),
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


def _csv_blocks(path: Path, on_rows: Any, block_bytes: int = 65536) -> Iterator[bytes]:
    """The file in blocks, reporting the rows each one completes (rows = lines after the
    header; a quoted field spanning lines counts extra, which only the bar notices)."""
    header_seen = False
    with path.open("rb") as f:
        while block := f.read(block_bytes):
            rows = block.count(b"\n")
            if not header_seen and rows:
                rows -= 1
                header_seen = True
            yield block
            on_rows(rows)


def _count_rows(path: Path) -> int:
    n = 0
    last = b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return max(0, n - 1 + (last != b"\n"))


_SENT = ("sent", "delivered", "blocked", "failed")
# Once a batch is done, `follow` waits for receipts until none came for this long.
RECEIPT_GRACE_S = 5.0
_GAVE_UP = ("dead", "expired", "cancelled")
_COLUMNS = (
    TextColumn("{task.description:>10}"),
    BarColumn(),
    MofNCompleteColumn(),
    TimeElapsedColumn(),
)


def _follow(gw: Client, batch_id: str, timeout: float) -> BatchProgress:
    """Live bars for a batch until every message is final (or it is cancelled/held)."""
    first = gw.batch_progress(batch_id)
    with Progress(*_COLUMNS, TextColumn("{task.fields[note]}"), console=console) as progress:
        total = max(1, first.total)
        sent = progress.add_task("sent", total=total, note="")
        delivered = progress.add_task("delivered", total=total, note="")
        failed = progress.add_task("not sent", total=total, note="")
        deadline = time.monotonic() + timeout
        current = first
        last_receipts, quiet_since = -1, time.monotonic()
        while True:
            counts = current.counts
            progress.update(
                sent,
                total=max(1, current.total),
                completed=sum(counts.get(st, 0) for st in _SENT),
                note=current.status,
            )
            progress.update(
                delivered, total=max(1, current.total), completed=counts.get("delivered", 0)
            )
            bad = sum(counts.get(st, 0) for st in _GAVE_UP)
            errs = ", ".join(f"{code}: {n}" for code, n in current.errcodes.items())
            progress.update(failed, total=max(1, current.total), completed=bad, note=errs)
            if current.status in ("cancelled", "paused", "incomplete"):
                break
            if current.status == "done":
                # Every message is final; receipts (sent -> delivered) trail the sends. Wait
                # for them while they still come in.
                receipts = sum(counts.get(st, 0) for st in ("delivered", "blocked", "failed"))
                if receipts != last_receipts:
                    last_receipts, quiet_since = receipts, time.monotonic()
                if not counts.get("sent") or time.monotonic() - quiet_since > RECEIPT_GRACE_S:
                    break
            if time.monotonic() > deadline:
                err.print(f"[yellow]still {current.status} after {timeout:.0f} s[/yellow]")
                break
            time.sleep(0.5)
            current = gw.batch_progress(batch_id)
    return current


@batch_app.command("send")
def batch_send(
    template_id: Annotated[str, typer.Argument(help="Template id")],
    csv_file: Annotated[Path, typer.Option("--csv", help="CSV with a touser column")],
    data: Annotated[list[str] | None, typer.Option("--data", help="Shared key=value")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="This batch's msg/s")] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
    follow: Annotated[bool, typer.Option(help="Follow delivery until done")] = True,
    timeout: Annotated[float, typer.Option(help="Give up following after N s")] = 3600.0,
) -> None:
    """Stream a CSV (touser + one column per template field) as one batch, with live bars."""
    if not csv_file.is_file():
        err.print(f"[red]{csv_file}: no such file[/red]")
        raise typer.Exit(2)
    total = _count_rows(csv_file)
    opts: dict[str, Any] = {"app": app_name, "rate_per_s": rate}
    with Client(url, key, timeout=120) as gw:
        try:
            with Progress(*_COLUMNS, console=console) as progress:
                task = progress.add_task("accepted", total=max(1, total))
                blocks = _csv_blocks(csv_file, lambda n: progress.advance(task, n))
                accepted = gw.upload_batch(
                    template_id, blocks, "text/csv", _data_arg(data or []), **opts
                )
                progress.update(task, total=max(1, accepted.total), completed=accepted.total)
            console.print(
                f"batch [bold]{accepted.id}[/bold]: {accepted.total} recipients, {accepted.status}"
            )
            if follow:
                final = _follow(gw, accepted.id, timeout)
                console.print(f"batch {accepted.id} {final.status}: {_summary(final)}")
        except GatewayError as exc:
            raise _fail(exc) from None


def _summary(p: BatchProgress) -> str:
    return ", ".join(f"{n} {st}" for st, n in sorted(p.counts.items()) if n) or "empty"


@batch_app.command("follow")
def batch_follow(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
    timeout: Annotated[float, typer.Option(help="Give up after N s")] = 3600.0,
) -> None:
    """Live progress of an existing batch (sent, delivered, not sent) until it is done."""
    with Client(url, key) as gw:
        try:
            final = _follow(gw, batch_id, timeout)
        except GatewayError as exc:
            raise _fail(exc) from None
    console.print(f"batch {batch_id} {final.status}: {_summary(final)}")


def _batch_action(action: str, batch_id: str, url: str, key: str) -> None:
    with Client(url, key) as gw:
        try:
            p = getattr(gw, f"{action}_batch")(batch_id)
        except GatewayError as exc:
            raise _fail(exc) from None
    console.print(f"batch {batch_id} {p.status}: {_summary(p)}")


@batch_app.command("pause")
def batch_pause(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """Stop sending the batch (in-flight sends finish); resume picks it up again."""
    _batch_action("pause", batch_id, url, key)


@batch_app.command("resume")
def batch_resume(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """Send a paused (or incomplete) batch again."""
    _batch_action("resume", batch_id, url, key)


@batch_app.command("cancel")
def batch_cancel(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """Cancel every message of the batch not sent yet."""
    _batch_action("cancel", batch_id, url, key)


@batch_app.command("rate")
def batch_rate(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    rate: Annotated[str, typer.Argument(help="msg/s for this batch, or 'none'")],
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """Change the batch's own send rate while it runs."""
    try:
        value = None if rate.lower() == "none" else float(rate)
    except ValueError:
        raise typer.BadParameter(f"{rate!r}: a number or 'none'") from None
    with Client(url, key) as gw:
        try:
            p = gw.set_batch_rate(batch_id, value)
        except GatewayError as exc:
            raise _fail(exc) from None
    console.print(f"batch {batch_id} {p.status}, rate {p.rate_per_s or 'the app rate'}")


@batch_app.command("results")
def batch_results(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    fmt: Annotated[str, typer.Option("--format", help="csv or ndjson")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (- = stdout)")] = None,
    url: UrlOpt = "http://127.0.0.1:8080",
    key: KeyOpt = "sandbox-key",
) -> None:
    """One row per recipient: final status, errcode, errmsg, WeChat msgid, receipt."""
    with Client(url, key, timeout=120) as gw:
        try:
            if output is None or str(output) == "-":
                for block in gw.batch_results(batch_id, fmt):
                    sys.stdout.buffer.write(block)
                sys.stdout.flush()
            else:
                with output.open("wb") as f:
                    for block in gw.batch_results(batch_id, fmt):
                        f.write(block)
                err.print(f"wrote {output}")
        except GatewayError as exc:
            raise _fail(exc) from None


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
