"""`wxgate db`: the PostgreSQL store's schema (status, migrate). A gateway migrates by itself at
start; `db migrate` lets a deploy do it first, as one step it can watch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from wxgate.cli.common import ConfigOpt, console, err, load, store_errors
from wxgate.store.factory import POSTGRES_PREFIXES

T = TypeVar("T")
db_app = typer.Typer(help="The PostgreSQL store's schema: status, migrate.", no_args_is_help=True)
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="postgresql:// URL (overrides the settings)")
]


def _url(config: ConfigOpt, store: str | None) -> str:
    url = store or load(config).store.url
    if not url.startswith(POSTGRES_PREFIXES):
        err.print(
            "[red]store.url is not postgresql://: SQLite and Redis keep their schema "
            "themselves[/red]"
        )
        raise typer.Exit(2)
    return url


def _run(call: Callable[[], Awaitable[T]]) -> T:
    """Run the call; a store that cannot be reached (or refuses) is one red line, exit 2.
    The error never carries the URL, so no password reaches the terminal."""
    from wxgate.store.postgres.connection import map_error

    async def go() -> T:
        try:
            return await call()
        except Exception as exc:
            raise map_error(exc) from None

    with store_errors():
        return asyncio.run(go())


@db_app.command("status")
def db_status(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """The database's schema version, this code's, and the migrations still to apply."""
    from wxgate.store.postgres.migrate import database_status

    url = _url(config, store)
    got = _run(lambda: database_status(url))
    console.print(
        f"schema version {got.database_version} (code {got.code_version}); "
        f"pending: {', '.join(got.pending) if got.pending else 'none'}"
    )
    if got.database_version > got.code_version:
        err.print("[red]the database is newer than this wxgate: upgrade wxgate[/red]")
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Apply the pending migrations (under an advisory lock; safe beside running gateways)."""
    from wxgate.store.postgres.migrate import migrate_database

    url = _url(config, store)
    applied = _run(lambda: migrate_database(url))
    console.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
