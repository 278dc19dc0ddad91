"""`wxgate messages`: find messages (list) and cancel one.

`list` asks GET /v1/messages page after page until it has --limit messages or the gateway
says there are no more: a page of a rare filter may come back short (each looks at a bounded
number of messages), and a person wants the matches, not the paging. It stops after
MAX_CALLS pages and prints where to go on (`more: --cursor ...`). Times are taken as ISO 8601
(with or without a zone: none means this machine's) or epoch seconds.
"""

from __future__ import annotations

import datetime
import sys
from typing import Annotated

import typer

from wxgate.api.schemas import MessagePage, MessageView
from wxgate.cli.common import Gateway, console, with_gateway
from wxgate.cli.output import JsonOpt, emit, print_table
from wxgate.clock import iso8601
from wxgate.models import Status

messages_app = typer.Typer(help="Messages: find (list) and cancel.", no_args_is_help=True)

MAX_CALLS = 20  # pages one `list` asks for before it hands the cursor to the person
ERRMSG_WIDTH = 40


def parse_time(raw: str | None, name: str) -> float | None:
    """ISO 8601 or epoch seconds -> epoch seconds; a clear error for anything else."""
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(raw)
    except ValueError:
        raise typer.BadParameter(
            "expected ISO 8601 (2026-12-04T10:00:00+08:00) or epoch seconds", param_hint=name
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # this machine's zone, as the output shows times
    return moment.timestamp()


def _row(m: MessageView) -> tuple[str, ...]:
    error = "" if m.last_errcode is None else f"{m.last_errcode} {m.last_errmsg or ''}".strip()
    return (
        m.id,
        m.app,
        m.touser,
        m.status.value,
        str(m.attempts),
        error[:ERRMSG_WIDTH],
        iso8601(m.created_at, tz=None),
    )


@messages_app.command("list")
@with_gateway
def messages_list(
    gateway: Gateway,
    touser: Annotated[str | None, typer.Option(help="Only this recipient's (openid)")] = None,
    status: Annotated[Status | None, typer.Option(help="Only messages in this status now")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="Only this app's")] = None,
    batch: Annotated[str | None, typer.Option(help="Only this batch's")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after (ISO 8601 or epoch s)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Created before (ISO 8601 or epoch s)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many")] = 50,
    cursor: Annotated[
        str | None, typer.Option(help="Where the previous list ended (printed after it)")
    ] = None,
    ids_only: Annotated[
        bool, typer.Option("--ids-only", help="Print only the ids, one a line")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Find messages, newest first."""
    since_s, until_s = parse_time(since, "--since"), parse_time(until, "--until")
    found: list[MessageView] = []
    with gateway.client() as gw:
        for _ in range(MAX_CALLS):
            page = gw.find_messages(
                touser=touser,
                status=status,
                app=app_name,
                batch=batch,
                since=since_s,
                until=until_s,
                cursor=cursor,
                limit=limit - len(found),
            )
            found += page.items
            cursor = page.next_cursor
            if cursor is None or len(found) >= limit:
                break
    if as_json:
        emit(MessagePage(found, cursor), True)
        return
    if ids_only:
        sys.stdout.write("".join(f"{m.id}\n" for m in found))
        return
    headers = ("id", "app", "touser", "status", "attempts", "last error", "created")
    print_table(headers, [_row(m) for m in found])
    if cursor:
        print(f"more: --cursor {cursor}")
    elif not found:
        console.print("no messages found")


@messages_app.command("cancel")
@with_gateway
def messages_cancel(
    gateway: Gateway,
    msg_id: Annotated[str, typer.Argument(help="Message id")],
    as_json: JsonOpt = False,
) -> None:
    """Cancel one message that is still waiting (queued, scheduled or retrying)."""
    with gateway.client() as gw:
        accepted = gw.cancel(msg_id)
    if as_json:
        emit(accepted, True)
    else:
        print(f"{accepted.id} {accepted.status.value}")
