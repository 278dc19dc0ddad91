"""store.url as libpq writes it, made fit for asyncpg (no I/O)."""

from __future__ import annotations

from wxgate.errors import ConfigError


def libpq_url(url: str, connect_timeout_s: float) -> tuple[str, float]:
    """(the URL for asyncpg, the connect timeout): libpq's `connect_timeout` parameter, which
    asyncpg would send to the server as a setting, becomes the timeout instead. Everything
    else (sslmode, target_session_attrs, several hosts) asyncpg reads as libpq does."""
    base, sep, query = url.partition("?")
    if not sep:
        return url, connect_timeout_s
    kept = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "connect_timeout":
            try:
                connect_timeout_s = float(value)
            except ValueError:
                raise ConfigError("store.url: connect_timeout must be a number") from None
        elif pair:
            kept.append(pair)
    return (f"{base}?{'&'.join(kept)}" if kept else base), connect_timeout_s
