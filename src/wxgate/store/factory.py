"""open_store(url): the one place a store URL becomes a backend (imported lazily)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from wxgate.clock import Clock
from wxgate.errors import ConfigError
from wxgate.settings.redis_urls import SCHEMES, is_redis_url, parse_redis_url
from wxgate.store.base import Store

SQLITE_PREFIX = "sqlite://"
_SQLITE_OPTIONS = frozenset({"synchronous"})


def sqlite_path(url: str) -> str:
    """The file path of a sqlite:// URL, SQLAlchemy style.

    sqlite:///relative/path.db -> relative/path.db; sqlite:////abs/path.db -> /abs/path.db.
    In-memory databases are refused: they would lose every accepted message on exit.
    """
    return _parse_sqlite(url)[0]


def _parse_sqlite(url: str) -> tuple[str, dict[str, str]]:
    rest = url[len(SQLITE_PREFIX) :]
    if not rest.startswith("/"):
        raise ConfigError(
            f"store.url {url!r}: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path, _, query = rest[1:].partition("?")
    if not path or path == ":memory:" or path.startswith("file::memory:") or path.endswith("/"):
        raise ConfigError(f"store.url {url!r}: needs a database file (in-memory is not durable)")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - _SQLITE_OPTIONS
    if unknown:
        raise ConfigError(f"store.url: unknown SQLite option(s) {', '.join(sorted(unknown))}")
    return path, options


POSTGRES_PREFIXES = ("postgresql://", "postgres://")
DEFAULT_POOL_SIZE = 10


def open_store(
    url: str,
    clock: Clock,
    retention_s: float,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    min_replica_acks: int = 0,
    replica_ack_timeout_ms: int = 1000,
) -> Store:
    """A store for `url`, not opened yet (call `await store.open()`).

    sqlite:///wxgate.db (add ?synchronous=FULL to fsync every commit); a Redis URL of one of
    the three topologies (settings/redis_urls.py: redis://, rediss://, unix://, redis+sentinel://,
    redis+cluster://); or postgresql://user:pass@host:port/db (libpq parameters such as sslmode,
    target_session_attrs and several host:port pairs go to asyncpg as libpq reads them).
    `pool_size` bounds the PostgreSQL connections of this process; `min_replica_acks` (Redis
    only, settings refuse it elsewhere): see RedisConnection.
    """
    if url.startswith(SQLITE_PREFIX):
        from wxgate.store.sqlite import SQLiteStore

        if min_replica_acks:
            raise ConfigError("store.min_replica_acks: SQLite has no replicas")
        path, options = _parse_sqlite(url)
        synchronous = options.get("synchronous", "NORMAL")
        return SQLiteStore(path, clock, retention_s=retention_s, synchronous=synchronous)
    if is_redis_url(url):
        parse_redis_url(url)  # a config error before anything is imported or opened
        # Written alongside this module; the ignore only matters while it is absent.
        from wxgate.store.redis import RedisStore  # type: ignore[import-not-found, unused-ignore]

        store: Store = RedisStore(
            url,
            clock,
            retention_s=retention_s,
            min_replica_acks=min_replica_acks,
            replica_ack_timeout_ms=replica_ack_timeout_ms,
        )
        return store
    if url.startswith(POSTGRES_PREFIXES):
        from wxgate.store.postgres import PostgresStore

        return PostgresStore(url, clock, retention_s=retention_s, pool_size=pool_size)
    raise ConfigError(
        "store.url: must start with sqlite://, postgresql:// or one of " + ", ".join(SCHEMES)
    )
