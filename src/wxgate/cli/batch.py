"""`wxgate batch`: stream a CSV or NDJSON file as one campaign and follow it (live bars on a
terminal, plain lines elsewhere); pause, resume, cancel, rate, results."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from wxgate.cli.common import Gateway, KindOpt, console, data_arg, err, with_gateway
from wxgate.cli.output import JsonOpt, emit
from wxgate.cli.progress import Bars
from wxgate.models import BatchProgress, MessageKind
from wxgate.sdk import GatewayClient

batch_app = typer.Typer(
    help="Campaigns: send a CSV or NDJSON file, follow, pause, resume, cancel, rate, results.",
    no_args_is_help=True,
)

BatchId = Annotated[str, typer.Argument(help="Batch id")]

_SENT = ("sent", "delivered", "blocked", "failed")
# Once a batch is done, `follow` waits for receipts until none came for this long.
RECEIPT_GRACE_S = 5.0
_GAVE_UP = ("dead", "expired", "cancelled")


def _blocks(
    path: Path, on_rows: Callable[[int], Any], header: bool, block_bytes: int = 65536
) -> Iterator[bytes]:
    """The file in blocks, reporting the rows each one completes (rows = lines after the
    CSV header; a quoted field spanning lines counts extra, which only the bar notices)."""
    header_seen = not header
    with path.open("rb") as f:
        while block := f.read(block_bytes):
            rows = block.count(b"\n")
            if not header_seen and rows:
                rows -= 1
                header_seen = True
            yield block
            on_rows(rows)


def _count_rows(path: Path, header: bool) -> int:
    n = 0
    last = b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return max(0, n - header + (last != b"\n"))


def _summary(p: BatchProgress) -> str:
    return ", ".join(f"{n} {st}" for st, n in sorted(p.counts.items()) if n) or "empty"


def _follow(gw: GatewayClient, batch_id: str, timeout: float, shown: Console) -> BatchProgress:
    """Progress of a batch on `shown` until every message is final (or cancelled/held)."""
    current = gw.batch_progress(batch_id)
    with Bars(shown, ("sent", "delivered", "not sent")) as bars:
        deadline = time.monotonic() + timeout
        last_receipts, quiet_since = -1, time.monotonic()
        while True:
            counts, total = current.counts, current.total
            bars.set("sent", sum(counts.get(st, 0) for st in _SENT), total, current.status)
            bars.set("delivered", counts.get("delivered", 0), total)
            bad = sum(counts.get(st, 0) for st in _GAVE_UP)
            errs = ", ".join(f"{code}: {n}" for code, n in current.errcodes.items())
            bars.set("not sent", bad, total, errs)
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
@with_gateway
def batch_send(
    gateway: Gateway,
    template_id: Annotated[str, typer.Argument(help="Template id")],
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="CSV: a touser column, then one column per template field"),
    ] = None,
    ndjson_file: Annotated[
        Path | None,
        typer.Option(
            "--ndjson",
            help='NDJSON: one recipient a line, {"touser": ..., "data": {...}} as in the API',
        ),
    ] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="Shared key=value")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
    kind: KindOpt = MessageKind.TEMPLATE,
    rate: Annotated[float | None, typer.Option("--rate", help="This batch's msg/s")] = None,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Follow delivery until done")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Give up following after N s")] = 3600.0,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Progress on stderr; the batch's final progress as JSON on stdout"
        ),
    ] = False,
) -> None:
    """Stream a CSV or NDJSON file of recipients as one batch, then follow its delivery."""
    if rate is not None and rate <= 0:
        err.print(f"[red]--rate {rate:g}: give a rate above 0 msg/s[/red]")
        raise typer.Exit(2)
    if (csv_file is None) == (ndjson_file is None):
        err.print("[red]give the recipients as --csv FILE or as --ndjson FILE (one of them)[/red]")
        raise typer.Exit(2)
    path = csv_file or ndjson_file
    assert path is not None
    if not path.is_file():
        err.print(f"[red]{path}: no such file[/red]")
        raise typer.Exit(2)
    is_csv = csv_file is not None
    content_type = "text/csv" if is_csv else "application/x-ndjson"
    total = _count_rows(path, header=is_csv)
    opts: dict[str, Any] = {"app": app_name, "rate_per_s": rate, "kind": kind.value}
    shown = err if as_json else console
    with gateway.client(timeout=120) as gw:
        with Bars(shown, ("accepted",)) as bars:
            bars.set("accepted", 0, total)
            blocks = _blocks(path, lambda n: bars.advance("accepted", n), header=is_csv)
            shared = data_arg(data or [])
            accepted = gw.upload_batch(template_id, blocks, content_type, shared, **opts)
            bars.set("accepted", accepted.total, accepted.total)
        shown.print(
            f"batch [bold]{accepted.id}[/bold]: {accepted.total} recipients, {accepted.status}"
        )
        if not follow:
            if as_json:
                emit(accepted, True)
            return
        final = _follow(gw, accepted.id, timeout, shown)
    if as_json:
        emit(final, True)
    else:
        console.print(f"batch {accepted.id} {final.status}: {_summary(final)}")


@batch_app.command("follow")
@with_gateway
def batch_follow(
    gateway: Gateway,
    batch_id: BatchId,
    timeout: Annotated[float, typer.Option(help="Give up after N s")] = 3600.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Progress on stderr; the final progress as JSON on stdout"),
    ] = False,
) -> None:
    """Live progress of an existing batch (sent, delivered, not sent) until it is done."""
    with gateway.client() as gw:
        final = _follow(gw, batch_id, timeout, err if as_json else console)
    if as_json:
        emit(final, True)
    else:
        console.print(f"batch {batch_id} {final.status}: {_summary(final)}")


def _change(
    gateway: Gateway,
    batch_id: str,
    call: Callable[[GatewayClient], BatchProgress],
    as_json: bool,
) -> None:
    """Pause, resume or cancel: one call, then the batch's status and counts on one line
    (or, with --json, its progress as the API answered it)."""
    with gateway.client() as gw:
        p = call(gw)
    if as_json:
        emit(p, True)
    else:
        console.print(f"batch {batch_id} {p.status}: {_summary(p)}")


@batch_app.command("pause")
@with_gateway
def batch_pause(gateway: Gateway, batch_id: BatchId, as_json: JsonOpt = False) -> None:
    """Stop sending the batch (in-flight sends finish); resume picks it up again."""
    _change(gateway, batch_id, lambda gw: gw.pause_batch(batch_id), as_json)


@batch_app.command("resume")
@with_gateway
def batch_resume(gateway: Gateway, batch_id: BatchId, as_json: JsonOpt = False) -> None:
    """Send a paused (or incomplete) batch again."""
    _change(gateway, batch_id, lambda gw: gw.resume_batch(batch_id), as_json)


@batch_app.command("cancel")
@with_gateway
def batch_cancel(gateway: Gateway, batch_id: BatchId, as_json: JsonOpt = False) -> None:
    """Cancel every message of the batch not sent yet."""
    _change(gateway, batch_id, lambda gw: gw.cancel_batch(batch_id), as_json)


# ignore_unknown_options: `batch rate B -5` reaches the command as the rate (and gets a clear
# error) instead of click's "No such option: -5".
@batch_app.command("rate", context_settings={"ignore_unknown_options": True})
@with_gateway
def batch_rate(
    gateway: Gateway,
    batch_id: BatchId,
    rate: Annotated[
        str, typer.Argument(help="msg/s for this batch (above 0), or 'none' for the app's rate")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Change the batch's own send rate while it runs."""
    try:
        value = None if rate.lower() == "none" else float(rate)
    except ValueError:
        value = -1.0
    if value is not None and not value > 0:
        err.print(f"[red]rate {rate!r}: give msg/s above 0 (e.g. 50), or 'none'[/red]")
        raise typer.Exit(2)
    with gateway.client() as gw:
        p = gw.set_batch_rate(batch_id, value)
    if as_json:
        emit(p, True)
    else:
        console.print(f"batch {batch_id} {p.status}, rate {p.rate_per_s or 'the app rate'}")


@batch_app.command("results")
@with_gateway
def batch_results(
    gateway: Gateway,
    batch_id: BatchId,
    fmt: Annotated[str, typer.Option("--format", help="csv or ndjson")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File (- = stdout)")] = None,
) -> None:
    """One row per recipient: final status, errcode, errmsg, WeChat msgid, receipt."""
    with gateway.client(timeout=120) as gw:
        if output is None or str(output) == "-":
            for block in gw.batch_results(batch_id, fmt):
                sys.stdout.buffer.write(block)
            sys.stdout.flush()
        else:
            with output.open("wb") as f:
                for block in gw.batch_results(batch_id, fmt):
                    f.write(block)
            err.print(f"wrote {output}")
