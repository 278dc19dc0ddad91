"""The `wxgate` command: serve | sim | send | batch (send, follow, pause, resume, cancel, rate,
results) | status | messages (list, cancel) | dlq | apps (list, pause, resume) | config | db
(status, migrate) | demo.
One module per command group; this one assembles them."""

from __future__ import annotations

import typer

from wxgate.cli.apps import apps_app
from wxgate.cli.batch import batch_app
from wxgate.cli.db import db_app
from wxgate.cli.dlq import dlq_app
from wxgate.cli.find import messages_app
from wxgate.cli.help_format import hide_flag_types
from wxgate.cli.messages import send, status
from wxgate.cli.server import config_app, demo, serve
from wxgate.sim.cli import sim_command

hide_flag_types()
app = typer.Typer(
    name="wxgate",
    help="A fast, durable push gateway for WeChat template messages.",
    no_args_is_help=True,
    add_completion=False,
)
# Registered in the order `wxgate --help` lists them (as before the split).
app.add_typer(dlq_app, name="dlq")
app.add_typer(batch_app, name="batch")
app.add_typer(apps_app, name="apps")
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")
app.command("sim", help="Run the WeChat simulator (api.weixin.qq.com stand-in).")(sim_command)
app.command()(serve)
app.command()(send)
app.command()(status)
app.command()(demo)


def main() -> None:
    app()
