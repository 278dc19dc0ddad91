"""`wxgate send` and `wxgate status`: one message at a time."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import typer

from wxgate.cli.common import Gateway, console, data_arg, with_gateway


@with_gateway
def send(
    gateway: Gateway,
    touser: Annotated[str, typer.Argument(help="Recipient openid")],
    template_id: Annotated[str, typer.Argument(help="Template id")],
    data: Annotated[list[str] | None, typer.Argument(help="key=value fields")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="App name")] = None,
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
    with gateway.client() as gw:
        accepted = gw.send(touser, template_id, data_arg(data or []), **opts)
        console.print(f"accepted [bold]{accepted.id}[/bold] ({accepted.status.value})")
        if wait:
            view = gw.wait_for(accepted.id, timeout=60)
            console.print(msgspec.json.encode(view).decode())


@with_gateway
def status(gateway: Gateway, msg_id: Annotated[str, typer.Argument(help="Message id")]) -> None:
    """Show one message: status, attempts, last error, WeChat msgid, receipt."""
    with gateway.client() as gw:
        view = gw.get_message(msg_id)
    console.print_json(msgspec.json.encode(view).decode())
