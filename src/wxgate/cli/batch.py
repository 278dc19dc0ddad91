"""`wxgate batch`: stream a CSV as one campaign and follow it with live bars; pause, resume,
cancel, rate, results."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wxgate.cli.common import Gateway, console, data_arg, err, with_gateway
from wxgate.models import BatchProgress
from wxgate.sdk import GatewayClient

batch_app = typer.Typer(
    help="Campaigns: send a CSV, follow, pause, resume, cancel, rate, results.",
    no_args_is_help=True,
)

BatchId = Annotated[str, typer.Argument(help="Batch id")]

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


def _csv_blocks(
    path: Path, on_rows: Callable[[int], Any], block_bytes: int = 65536
) -> Iterator[bytes]:
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


def _summary(p: BatchProgress) -> str:
    return ", ".join(f"{n} {st}" for st, n in sorted(p.counts.items()) if n) or "empty"


def _follow(gw: GatewayClient, batch_id: str, timeout: float) -> BatchProgress:
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
@with_gateway
def batch_send(
    gateway: Gateway,
    template_id: Annotated[str, typer.Argument(help="Template id")],
    csv_file: Annotated[Path, typer.Option("--csv", help="CSV with a touser column")],
    data: Annotated[list[str] | None, typer.Option("--data", help="Shared key=value")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="This batch's msg/s")] = None,
    follow: Annotated[bool, typer.Option(help="Follow delivery until done")] = True,
    timeout: Annotated[float, typer.Option(help="Give up following after N s")] = 3600.0,
) -> None:
    """Stream a CSV (touser + one column per template field) as one batch, with live bars."""
    if not csv_file.is_file():
        err.print(f"[red]{csv_file}: no such file[/red]")
        raise typer.Exit(2)
    total = _count_rows(csv_file)
    opts: dict[str, Any] = {"app": app_name, "rate_per_s": rate}
    with gateway.client(timeout=120) as gw:
        with Progress(*_COLUMNS, console=console) as progress:
            task = progress.add_task("accepted", total=max(1, total))
            blocks = _csv_blocks(csv_file, lambda n: progress.advance(task, n))
            accepted = gw.upload_batch(
                template_id, blocks, "text/csv", data_arg(data or []), **opts
            )
            progress.update(task, total=max(1, accepted.total), completed=accepted.total)
        console.print(
            f"batch [bold]{accepted.id}[/bold]: {accepted.total} recipients, {accepted.status}"
        )
        if follow:
            final = _follow(gw, accepted.id, timeout)
            console.print(f"batch {accepted.id} {final.status}: {_summary(final)}")


@batch_app.command("follow")
@with_gateway
def batch_follow(
    gateway: Gateway,
    batch_id: BatchId,
    timeout: Annotated[float, typer.Option(help="Give up after N s")] = 3600.0,
) -> None:
    """Live progress of an existing batch (sent, delivered, not sent) until it is done."""
    with gateway.client() as gw:
        final = _follow(gw, batch_id, timeout)
    console.print(f"batch {batch_id} {final.status}: {_summary(final)}")


def _change(
    gateway: Gateway, batch_id: str, call: Callable[[GatewayClient], BatchProgress]
) -> None:
    """Pause, resume or cancel: one call, then the batch's status and counts on one line."""
    with gateway.client() as gw:
        p = call(gw)
    console.print(f"batch {batch_id} {p.status}: {_summary(p)}")


@batch_app.command("pause")
@with_gateway
def batch_pause(gateway: Gateway, batch_id: BatchId) -> None:
    """Stop sending the batch (in-flight sends finish); resume picks it up again."""
    _change(gateway, batch_id, lambda gw: gw.pause_batch(batch_id))


@batch_app.command("resume")
@with_gateway
def batch_resume(gateway: Gateway, batch_id: BatchId) -> None:
    """Send a paused (or incomplete) batch again."""
    _change(gateway, batch_id, lambda gw: gw.resume_batch(batch_id))


@batch_app.command("cancel")
@with_gateway
def batch_cancel(gateway: Gateway, batch_id: BatchId) -> None:
    """Cancel every message of the batch not sent yet."""
    _change(gateway, batch_id, lambda gw: gw.cancel_batch(batch_id))


@batch_app.command("rate")
@with_gateway
def batch_rate(
    gateway: Gateway,
    batch_id: BatchId,
    rate: Annotated[str, typer.Argument(help="msg/s for this batch, or 'none'")],
) -> None:
    """Change the batch's own send rate while it runs."""
    try:
        value = None if rate.lower() == "none" else float(rate)
    except ValueError:
        raise typer.BadParameter(f"{rate!r}: a number or 'none'") from None
    with gateway.client() as gw:
        p = gw.set_batch_rate(batch_id, value)
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
