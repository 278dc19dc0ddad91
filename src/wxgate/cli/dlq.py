"""`wxgate dlq`: list and requeue dead letters."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from wxgate.cli.common import Gateway, console, err, with_gateway

dlq_app = typer.Typer(help="Dead letters: list and requeue.", no_args_is_help=True)


@dlq_app.command("list")
@with_gateway
def dlq_list(
    gateway: Gateway,
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    errcode: Annotated[int | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """List dead letters, newest first."""
    with gateway.client() as gw:
        page = gw.dead_letters(app=app_name, errcode=errcode, limit=limit)
    table = Table("id", "app", "touser", "errcode", "errmsg", "attempts")
    for m in page.items:
        table.add_row(
            m.id, m.app, m.touser, str(m.last_errcode), (m.last_errmsg or "")[:60], str(m.attempts)
        )
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@dlq_app.command("requeue")
@with_gateway
def dlq_requeue(
    gateway: Gateway,
    ids: Annotated[list[str] | None, typer.Argument(help="Message ids")] = None,
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    errcode: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Move dead letters back to the queue, by ids or by filter."""
    if not ids and app_name is None and errcode is None:
        err.print("[red]give ids, --app or --errcode[/red]")
        raise typer.Exit(2)
    with gateway.client() as gw:
        n = gw.requeue(ids=ids or None, app=app_name, errcode=errcode)
    console.print(f"requeued {n}")
