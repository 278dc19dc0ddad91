"""`wxgate dlq`: list and requeue dead letters.

The list never shortens an id (the table grows wider than the terminal instead, which then
wraps it for display), `--ids-only` prints one id a line for `xargs wxgate dlq requeue`, and
`--json` prints the API's page as is.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from wxgate.cli.common import Gateway, console, err, with_gateway
from wxgate.cli.output import JsonOpt, emit, print_table
from wxgate.clock import iso8601

dlq_app = typer.Typer(help="Dead letters: list and requeue.", no_args_is_help=True)

AppOpt = Annotated[str | None, typer.Option("--app", help="Only this app's dead letters")]
ErrcodeOpt = Annotated[
    int | None, typer.Option(help="Only those that died with this WeChat errcode")
]
ERRMSG_WIDTH = 60  # the one column that is cut: WeChat's errmsg can be long ("rid: ...")


@dlq_app.command("list")
@with_gateway
def dlq_list(
    gateway: Gateway,
    app_name: AppOpt = None,
    errcode: ErrcodeOpt = None,
    limit: Annotated[int, typer.Option(help="At most this many (the page size)")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="Where the previous page ended (printed after it)")
    ] = None,
    ids_only: Annotated[
        bool, typer.Option("--ids-only", help="Print only the ids, one a line")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, newest first."""
    with gateway.client() as gw:
        page = gw.dead_letters(app=app_name, errcode=errcode, cursor=cursor, limit=limit)
    if as_json:
        emit(page, True)
        return
    if ids_only:
        sys.stdout.write("".join(f"{m.id}\n" for m in page.items))
        return
    headers = ("id", "app", "touser", "errcode", "errmsg", "attempts", "rounds", "dead since")
    rows = [
        (
            m.id,
            m.app,
            m.touser,
            str(m.last_errcode),
            (m.last_errmsg or "")[:ERRMSG_WIDTH],
            str(m.attempts),
            str(m.redrive_rounds),  # of the app's scheduled redrive
            iso8601(m.finished_at, tz=None) if m.finished_at is not None else "",
        )
        for m in page.items
    ]
    print_table(headers, rows)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}")


@dlq_app.command("requeue")
@with_gateway
def dlq_requeue(
    gateway: Gateway,
    ids: Annotated[list[str] | None, typer.Argument(help="Message ids")] = None,
    app_name: AppOpt = None,
    errcode: ErrcodeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"requeued": N}')] = False,
) -> None:
    """Move dead letters back to the queue, by ids or by filter."""
    if not ids and app_name is None and errcode is None:
        err.print("[red]give ids, --app or --errcode[/red]")
        raise typer.Exit(2)
    with gateway.client() as gw:
        n = gw.requeue(ids=ids or None, app=app_name, errcode=errcode)
    if as_json:
        emit({"requeued": n}, True)
    else:
        console.print(f"requeued {n}")
