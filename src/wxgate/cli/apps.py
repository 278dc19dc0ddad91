"""`wxgate apps`: see every app's state, and pause or resume one by hand.

`wxgate apps` (or `apps list`) prints a table: state, the pause's reason, errcode, end and who
set it, the breaker, the live rate and today's quota use. `apps pause APP --reason R` stops
sending for the app in every process until `--until` (ISO 8601 or epoch seconds), `--for`
(90s, 30m, 2h, 1d) or a resume; `apps resume APP` ends any pause, the gateway's own quota or
config pauses included. Both need a key with the `admin` scope. `--json` prints the API's JSON.
"""

from __future__ import annotations

import datetime
import re
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from wxgate.api.schemas import AppView
from wxgate.cli.common import (
    DEFAULT_KEY,
    DEFAULT_URL,
    Gateway,
    KeyOpt,
    UrlOpt,
    console,
    err,
    with_gateway,
)
from wxgate.cli.output import JsonOpt, emit
from wxgate.clock import iso8601

apps_app = typer.Typer(
    help="Apps: state, pauses, rate and quota; pause or resume one by hand.",
    invoke_without_command=True,
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_until(text: str) -> float:
    """Epoch seconds from `--until`: a number (epoch s) or ISO 8601 with a zone."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: give epoch seconds or ISO 8601 with a zone (2026-12-05T08:00+08:00)"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no zone: add one (+08:00, Z)")
    return moment.timestamp()


def parse_duration(text: str) -> float:
    """Seconds from `--for`: a number with s, m, h or d (90s, 30m, 2h, 1d)."""
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise typer.BadParameter(f"{text!r}: give a positive duration like 90s, 30m, 2h or 1d")
    return float(match[1]) * _UNIT_S[match[2]]


_HEADERS = ("app", "state", "reason", "errcode", "until", "by", "breaker", "rate", "quota")


def _rows(apps: list[AppView]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for a in apps:
        p = a.pause
        until = ""
        if p is not None:
            until = "until resumed" if p.until is None else iso8601(p.until, tz=None)
        quota = ", ".join(f"{k} {q.used}/{q.limit}" for k, q in a.quota.items())
        rows.append(
            (
                a.name,
                a.state,
                p.reason if p else "",
                str(p.errcode) if p and p.errcode is not None else "",
                until,
                (p.by or "gateway") if p else "",
                a.breaker or "",
                f"{a.rate_per_s:g}/{a.max_rate_per_s:g}/s",
                quota,
            )
        )
    return rows


def _print_table(apps: list[AppView]) -> None:
    """Every cell whole: wider than the terminal if need be (the terminal wraps it)."""
    rows = _rows(apps)
    table = Table(*_HEADERS)
    for row in rows:
        table.add_row(*row)
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(_HEADERS)]
    needed = sum(widths) + 3 * len(widths) + 1
    wide = console if needed <= console.width else Console(width=needed, soft_wrap=True)
    wide.print(table)


@apps_app.callback()
def apps_main(
    ctx: typer.Context,
    url: UrlOpt = DEFAULT_URL,
    key: KeyOpt = DEFAULT_KEY,
    as_json: JsonOpt = False,
) -> None:
    """Without a subcommand: list every app (same as `wxgate apps list`)."""
    if ctx.invoked_subcommand is None:
        _list(Gateway(url, key), as_json)


@apps_app.command("list")
@with_gateway
def apps_list(gateway: Gateway, as_json: JsonOpt = False) -> None:
    """List every app: state, pause (reason, errcode, until, by), breaker, rate, quota."""
    _list(gateway, as_json)


def _list(gateway: Gateway, as_json: bool) -> None:
    with gateway.client() as gw:
        found = gw.apps()
    if as_json:
        emit(found, True)
    else:
        _print_table(found.apps)


@apps_app.command("pause")
@with_gateway
def apps_pause(
    gateway: Gateway,
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app to pause")],
    reason: Annotated[str, typer.Option("--reason", help="Why (logged, shown to others)")],
    until: Annotated[
        str | None,
        typer.Option("--until", help="End: ISO 8601 with zone, or epoch seconds"),
    ] = None,
    lasting: Annotated[
        str | None, typer.Option("--for", help="End after this long: 90s, 30m, 2h, 1d")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Pause an app in every process (admin scope); its messages stay queued."""
    if until is not None and lasting is not None:
        err.print("[red]give --until or --for, not both[/red]")
        raise typer.Exit(2)
    end = parse_until(until) if until is not None else None
    if lasting is not None:
        end = datetime.datetime.now(datetime.UTC).timestamp() + parse_duration(lasting)
    with gateway.client() as gw:
        view = gw.pause_app(app_name, reason, end)
    if as_json:
        emit(view, True)
        return
    p = view.pause
    shown = "until resumed"
    if p is not None and p.until is not None:
        shown = f"until {iso8601(p.until, tz=None)}"
    console.print(f"paused {view.name} {shown}: {reason}")


@apps_app.command("resume")
@with_gateway
def apps_resume(
    gateway: Gateway,
    app_name: Annotated[str, typer.Argument(metavar="APP", help="The app to resume")],
    as_json: JsonOpt = False,
) -> None:
    """End an app's pause, by hand or the gateway's own (quota, throttle, config)."""
    with gateway.client() as gw:
        view = gw.resume_app(app_name)
    if as_json:
        emit(view, True)
    else:
        console.print(f"resumed {view.name}: {view.state}")
