"""Why `wxgate serve` could not start, in one or two lines a person can act on.

A failure while starting (the port, the store, the settings) is an operator's problem, not a
bug: it gets its cause and its fix on stderr and exit code 2, never a traceback (`--debug`
shows one). Each kind of failure has one explainer here, registered with `@explains`; a new
store engine adds its own next to the SQLite and Redis ones, and `explain` falls back to the
exception's own text for anything not recognised.
"""

from __future__ import annotations

import errno
import re
import sqlite3
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from wxgate.errors import ConfigError, StoreError, StoreUnavailable
from wxgate.settings import Settings

# An explainer: the message for `exc` under `settings`, or None when it is not its kind.
Explainer = Callable[[BaseException, Settings], str | None]

_EXPLAINERS: list[tuple[type[BaseException], Explainer]] = []

# "error while attempting to bind on address ('127.0.0.1', 8080): address already in use"
_BIND_ADDRESS = re.compile(r"address \('([^']*)', (\d+)")
DEBUG_HINT = "(run again with --debug for the traceback)"


def explains(kind: type[BaseException]) -> Callable[[Explainer], Explainer]:
    """Register `fn` for exceptions of `kind`; the first registered that answers wins."""

    def register(fn: Explainer) -> Explainer:
        _EXPLAINERS.append((kind, fn))
        return fn

    return register


def explain(exc: BaseException, settings: Settings) -> str:
    """One or two lines: what failed and what to do about it."""
    for kind, fn in _EXPLAINERS:
        if isinstance(exc, kind):
            message = fn(exc, settings)
            if message is not None:
                return message
    return f"wxgate could not start: {type(exc).__name__}: {_masked(str(exc), settings)}\n" + (
        f"  {DEBUG_HINT}"
    )


def _masked(text: str, settings: Settings) -> str:
    """`text` with the store URL's password (if any) replaced by the mask."""
    password = urlsplit(settings.store.url).password
    return text.replace(password, "***") if password else text


@explains(ConfigError)
def _config(exc: BaseException, settings: Settings) -> str:
    return f"config error: {exc}"


@explains(OSError)
def _listen(exc: BaseException, settings: Settings) -> str | None:
    """Binding the HTTP port: errors without a file name (a file's errors are the store's)."""
    assert isinstance(exc, OSError)
    if exc.filename is not None:
        return None
    where, setting = f"{settings.server.host}:{settings.server.port}", "--port N (server.port)"
    bound = _BIND_ADDRESS.search(str(exc))  # asyncio names the address it tried
    if bound is not None and int(bound.group(2)) != settings.server.port:
        where, setting = f"{bound.group(1)}:{bound.group(2)}", "server.metrics_bind"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is already in use (another wxgate?).\n"
            f"  Stop what listens there, or choose another port with {setting}."
        )
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
        return (
            f"cannot listen on {where}: {exc.strerror}.\n"
            "  Use an address of this machine (--host, server.host) and a port above 1023."
        )
    return None


def _sqlite_path(settings: Settings) -> Path | None:
    from wxgate.store.factory import SQLITE_PREFIX, sqlite_path

    url = settings.store.url
    return Path(sqlite_path(url)).absolute() if url.startswith(SQLITE_PREFIX) else None


def _sqlite_message(path: Path | str, why: str) -> str:
    return (
        f"cannot open the SQLite store {path}: {why}.\n"
        "  Make its directory writable by this user, or choose another file with "
        "--store sqlite:///path/to/wxgate.db (store.url)."
    )


@explains(OSError)
def _sqlite_file(exc: BaseException, settings: Settings) -> str | None:
    """Creating the store's directory or file (PermissionError, NotADirectoryError, ...)."""
    assert isinstance(exc, OSError)
    path = _sqlite_path(settings)
    if exc.filename is None or path is None:
        return None
    culprit = Path(exc.filename).absolute()
    if culprit != path and culprit not in path.parents:
        return None  # another file's error (a CA bundle, say)
    why = exc.strerror or str(exc)
    return _sqlite_message(path, why if culprit == path else f"{culprit}: {why}")


@explains(ssl.SSLError)
@explains(OSError)
def _ca_file(exc: BaseException, settings: Settings) -> str | None:
    """wechat.ca_file missing or not a CA bundle (ssl names no file when it fails)."""
    assert isinstance(exc, OSError)  # ssl.SSLError is an OSError
    ca = settings.wechat.ca_file
    if ca is None or exc.filename not in (None, ca):
        return None
    if not isinstance(exc, ssl.SSLError) and exc.errno != errno.ENOENT:
        return None
    why = "no such file" if exc.errno == errno.ENOENT else f"not a PEM CA bundle ({exc})"
    return (
        f"cannot load wechat.ca_file {ca}: {why}.\n"
        "  Give the path of a PEM CA bundle (e.g. the one `wxgate sim --tls` prints), or "
        "remove the setting."
    )


@explains(OSError)
def _any_file(exc: BaseException, settings: Settings) -> str | None:
    """Any other file that could not be read or made: named, with the system's reason."""
    assert isinstance(exc, OSError)
    if exc.filename is None:
        return None
    return f"cannot use {Path(exc.filename).absolute()}: {exc.strerror}.\n  {DEBUG_HINT}"


@explains(sqlite3.Error)
@explains(StoreError)
def _sqlite_open(exc: BaseException, settings: Settings) -> str | None:
    """SQLite's own errors, raw or as the store maps them (StoreError, StoreUnavailable)."""
    path = _sqlite_path(settings)
    if path is None:
        return None
    text = str(exc).removeprefix("SQLite store failed: ")
    text = text.removeprefix("SQLite store unavailable: ")
    if "not a database" in text or "malformed" in text:
        return (
            f"cannot open the SQLite store {path}: {text} (not a wxgate store, or damaged).\n"
            "  Move it away, or choose another file with --store sqlite:///path/to/wxgate.db."
        )
    return _sqlite_message(path, text)


@explains(StoreUnavailable)
def _redis(exc: BaseException, settings: Settings) -> str | None:
    url = settings.store.url
    parts = urlsplit(url)
    if parts.scheme in ("redis+sentinel", "redis+cluster"):
        kind = "Sentinel" if parts.scheme == "redis+sentinel" else "Cluster"
        hosts = parts.netloc.rsplit("@", 1)[-1]  # never the password
        return (
            f"cannot reach the Redis {kind} at {hosts} (store.url): "
            f"{_masked(str(exc), settings)}\n"
            f"  Start it, or point wxgate at yours with --store {parts.scheme}://host:port,... "
            "(store.url, WXGATE_STORE__URL)."
        )
    if parts.scheme not in ("redis", "rediss", "unix"):
        return None
    where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
    return (
        f"cannot reach Redis at {where} (store.url): is it running and reachable from here?\n"
        "  Start it, or point wxgate at yours with --store redis://host:port/db "
        "(store.url, WXGATE_STORE__URL)."
    )


@explains(StoreError)
def _postgres(exc: BaseException, settings: Settings) -> str | None:
    """PostgreSQL unreachable or refusing us: the store's own words name the host (never the
    password); the schema check's refusal needs a newer wxgate, not a running server."""
    if urlsplit(settings.store.url).scheme not in ("postgresql", "postgres"):
        return None
    text = _masked(str(exc), settings)
    if "newer than" in text:
        return (
            f"store unavailable: {text}\n"
            "  Run the wxgate release that migrated this database (or a newer one)."
        )
    return (
        f"store unavailable: {text}\n"
        "  Start PostgreSQL, or point wxgate at yours with --store postgresql://user@host:port/db "
        "(store.url, WXGATE_STORE__URL)."
    )
