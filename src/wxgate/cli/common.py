"""What every command shares: the consoles, the settings loader, and the gateway connection
(--url/--key declared once, gateway errors turned into one red line and exit code 1)."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Concatenate, ParamSpec
from urllib.parse import urlsplit

import typer
from rich.console import Console

from wxgate import invocation, logs
from wxgate import settings as settings_mod
from wxgate.errors import ConfigError, StoreError
from wxgate.models import MessageKind
from wxgate.sdk import GatewayClient, GatewayError, GatewayUnreachable

P = ParamSpec("P")

# soft_wrap: a line is never broken at the terminal's width (ids, URLs and JSON stay whole
# when copied or read by a script); the terminal wraps them for display.
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML settings file (default wxgate.toml)")
]
# template (Official Account template message), subscribe (mini program), oa_subscribe
# (Official Account subscription notification): the gateway refuses fields a kind lacks.
KindOpt = Annotated[
    MessageKind,
    typer.Option("--kind", help="template, subscribe or oa_subscribe", case_sensitive=False),
]
UrlOpt = Annotated[str, typer.Option("--url", envvar="WXGATE_URL", help="Gateway base URL")]
KeyOpt = Annotated[str, typer.Option("--key", envvar="WXGATE_API_KEY", help="API key (Bearer)")]
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_KEY = "sandbox-key"


@contextmanager
def config_errors() -> Iterator[None]:
    """A ConfigError becomes one red line and exit code 2."""
    try:
        yield
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from None


@contextmanager
def store_errors() -> Iterator[None]:
    """A store that cannot be reached or refuses to start (a schema newer than this code)
    becomes one red line and exit code 2, not a traceback: the error names the host, never
    the URL's password."""
    try:
        yield
    except StoreError as exc:
        err.print(f"[red]store unavailable:[/red] {exc}")
        raise typer.Exit(2) from None


def load(config: Path | None, extra_env: Mapping[str, str] | None = None) -> settings_mod.Settings:
    """The settings file (default ./wxgate.toml) with WXGATE_* overrides, `extra_env` under
    them; a ConfigError is one red line and exit 2."""
    with config_errors():
        return settings_mod.load(config or Path("wxgate.toml"), {**(extra_env or {}), **os.environ})


def log_setup(level: str, fmt: logs.LogFormat = "text") -> None:
    """Logs to stderr at `level` (debug | info | warning) in `fmt` (text | json)."""
    logs.setup(getattr(logging, level.upper(), logging.INFO), fmt)


def data_arg(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p:
            raise typer.BadParameter(f"{p!r}: use key=value")
        k, v = p.split("=", 1)
        out[k] = v
    return out


@dataclass(frozen=True, slots=True)
class Gateway:
    """The gateway a command talks to, from its --url and --key."""

    url: str
    key: str

    @contextmanager
    def client(self, timeout: float = 10.0) -> Iterator[GatewayClient]:
        """An open GatewayClient; a GatewayError (or GatewayUnreachable) raised while it is
        in use becomes one red line on stderr and exit code 1. A --url without a scheme is
        refused before any connection (exit code 2): it is a mistake in the command."""
        check_url(self.url)
        try:
            with GatewayClient(self.url, self.key, timeout) as gw:
                yield gw
        except GatewayUnreachable:
            err.print(unreachable_hint(self.url), soft_wrap=True)
            raise typer.Exit(1) from None
        except GatewayError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None


def check_url(url: str) -> None:
    """Refuse a gateway URL the client could only misread (no scheme, no host): exit 2."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        err.print(
            f"[red]--url {url!r} is not a gateway URL:[/red] give the scheme and host, "
            f"e.g. --url {DEFAULT_URL} (or set WXGATE_URL)",
            soft_wrap=True,
        )
        raise typer.Exit(2)


def unreachable_hint(url: str) -> str:
    """What to do when nothing answers at `url`: the two usual causes and their fixes."""
    wxgate = invocation.command()
    return (
        f"[red]no gateway answering at {url}[/red]: start one with `{wxgate} serve` "
        f"(or `{wxgate} serve --sandbox` to try it), or point the CLI at yours with --url or "
        "WXGATE_URL"
    )


def with_gateway(fn: Callable[Concatenate[Gateway, P], None]) -> Callable[P, None]:
    """Give a command the --url and --key options (defaults, WXGATE_URL / WXGATE_API_KEY) and
    call it with the Gateway they name as its first argument.

    Options after the command name (`wxgate status ID --url U`), as before: a typer callback
    would take them before it (`wxgate --url U status ID`) and break every existing script.
    """
    sig = inspect.signature(fn, eval_str=True)
    params = list(sig.parameters.values())[1:]  # all but the Gateway
    kw = inspect.Parameter.KEYWORD_ONLY
    shared = [
        inspect.Parameter("url", kw, default=DEFAULT_URL, annotation=UrlOpt),
        inspect.Parameter("key", kw, default=DEFAULT_KEY, annotation=KeyOpt),
    ]

    @functools.wraps(fn)
    def command(*args: P.args, **kwargs: P.kwargs) -> None:
        url, key = kwargs.pop("url"), kwargs.pop("key")
        assert isinstance(url, str) and isinstance(key, str)
        fn(Gateway(url, key), *args, **kwargs)

    # typer reads the command's options from its signature and resolved annotations.
    new_sig = sig.replace(parameters=[*params, *shared])
    command.__signature__ = new_sig  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in new_sig.parameters.values()}
    command.__annotations__["return"] = None
    return command
