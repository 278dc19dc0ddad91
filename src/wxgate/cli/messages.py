"""`wxgate send` and `wxgate status`: one message at a time.

Exit codes of `send --wait` (and of every command): 0 the message was sent (or delivered);
1 the gateway refused the request or could not be reached; 2 a mistake in the command;
3 the message ended without reaching the user (blocked, failed, dead, expired, cancelled);
4 it was still not final when --timeout ran out.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from wxgate.cli.common import Gateway, KindOpt, data_arg, err, with_gateway
from wxgate.cli.output import JsonOpt, emit
from wxgate.models import MessageKind, Status

EXIT_NOT_DELIVERED = 3
EXIT_NOT_FINAL = 4
# Final, but the user did not get the message.
NOT_DELIVERED = frozenset(
    {Status.BLOCKED, Status.FAILED, Status.DEAD, Status.EXPIRED, Status.CANCELLED}
)


@with_gateway
def send(
    gateway: Gateway,
    touser: Annotated[str, typer.Argument(help="Recipient openid")],
    template_id: Annotated[str, typer.Argument(help="Template id")],
    data: Annotated[list[str] | None, typer.Argument(help="key=value fields")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
    kind: KindOpt = MessageKind.TEMPLATE,
    link: Annotated[
        str | None,
        typer.Option("--link", help="URL the message opens (template, oa_subscribe)"),
    ] = None,
    page: Annotated[
        str | None, typer.Option("--page", help="Mini-program page path (kind=subscribe)")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency key")] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait for a final status, print the message, exit 3 if it did not reach the "
            "user (blocked, failed, dead, expired, cancelled), 4 if not final in time",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after N s")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Send one message: prints its id and status (or, with --wait, the final message)."""
    opts: dict[str, Any] = {"kind": kind.value}
    if app_name:
        opts["app"] = app_name
    if link:
        opts["url"] = link
    if page:
        opts["page"] = page
    if idempotency_key:
        opts["idempotency_key"] = idempotency_key
    with gateway.client() as gw:
        accepted = gw.send(touser, template_id, data_arg(data or []), **opts)
        if not wait:
            if as_json:
                emit(accepted, as_json)
            else:
                print(f"accepted {accepted.id} ({accepted.status.value})")
            return
        print(f"accepted {accepted.id}, waiting for a final status", file=sys.stderr)
        try:
            view = gw.wait_for(accepted.id, timeout=timeout)
        except TimeoutError as exc:
            err.print(str(exc), markup=False)
            emit(gw.get_message(accepted.id), as_json)
            raise typer.Exit(EXIT_NOT_FINAL) from None
    emit(view, as_json)
    if view.status in NOT_DELIVERED:
        raise typer.Exit(EXIT_NOT_DELIVERED)


@with_gateway
def status(
    gateway: Gateway,
    msg_id: Annotated[str, typer.Argument(help="Message id")],
    as_json: JsonOpt = False,
) -> None:
    """Show one message: status, attempts, last error, WeChat msgid, receipt."""
    with gateway.client() as gw:
        view = gw.get_message(msg_id)
    emit(view, as_json)
