"""The connection every role of PostgresStore shares: one asyncpg pool (prepared statements
cached per connection), transactions that retry a deadlock, and the mapping of PostgreSQL and
network failures to wxgate's errors (StoreUnavailable becomes 503 + Retry-After in the API)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from wxgate.clock import Clock
from wxgate.errors import StoreError, StoreUnavailable, WxgateError
from wxgate.store.postgres import migrate
from wxgate.store.postgres.dsn import libpq_url

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="PostgresConnection")
T = TypeVar("T")

# SQLSTATE classes that mean "not now" rather than "wrong": connection exceptions (08),
# insufficient resources (53: too many connections, disk full), operator intervention (57:
# shutdown, starting up), and a read-only standby after a failover (25006).
_UNAVAILABLE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_STATES = ("25006",)
# Deadlock and serialization failures: the transaction is rolled back whole; run it again.
_RETRY_STATES = ("40P01", "40001")
_TX_ATTEMPTS = 5
# What the driver raises when the link is gone or broken: an OS error, a timeout, a closed
# connection or pool (InterfaceError), or a connection whose server went away mid-protocol
# (InternalClientError: "another operation is in progress").
_LINK_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
DRIVER_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_LINK_ERRORS)


def map_error(exc: BaseException) -> BaseException:
    """asyncpg and OS errors become StoreUnavailable (try again later) or StoreError."""
    if isinstance(exc, WxgateError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        if state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES:
            return StoreUnavailable(f"postgresql unavailable: {exc}")
        return StoreError(f"postgresql: {exc}")
    if isinstance(exc, _LINK_ERRORS):
        return StoreUnavailable(f"postgresql unreachable: {exc}")
    return exc


def maps_pg_errors(
    fn: Callable[Concatenate[_S, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """Map failures once for every public method (see map_error)."""

    @functools.wraps(fn)
    async def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(self, *args, **kwargs)
        except DRIVER_ERRORS as e:
            raise map_error(e) from e

    return wrapper


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release, which here sends nothing: asyncpg's default sends
    `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every release, one
    round trip per store call (as many RESET ALLs as group commits in pg_stat_statements).
    Pool connections keep no session state to undo: advisory locks are transaction-scoped,
    no cursor outlives its transaction, LISTEN has its own connection (wakeups.py), settings
    are the connection's startup ones. A transaction left open is still rolled back (asyncpg
    does that before calling this)."""


class PostgresConnection:
    """The pool and the settings every role reads."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        retention_s: float,
        pool_size: int,
        schema: str,
        connect_timeout_s: float,
        command_timeout_s: float,
    ) -> None:
        self._url, self._connect_timeout_s = libpq_url(url, connect_timeout_s)
        self._clock = clock
        self._retention_s = retention_s
        self._pool_size = max(1, pool_size)
        self._schema = schema
        self._command_timeout_s = command_timeout_s
        self._pool: asyncpg.Pool | None = None

    @property
    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreUnavailable("postgresql store is closed")
        return self._pool

    @maps_pg_errors
    async def open(self) -> None:
        """Connect, apply pending migrations (refusing a newer schema), then open the pool."""
        if self._pool is not None:
            return
        conn = await self._connect()
        try:
            await migrate.migrate(conn, self._schema)
            await migrate.ensure_partitions(conn, self._schema, self._clock.now())
        finally:
            await conn.close()
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            timeout=self._connect_timeout_s,
            command_timeout=self._command_timeout_s,
            server_settings=self._settings(),
            # A connection idle this long is closed and replaced on demand: after a failover
            # the pool refills from the new primary instead of keeping dead sockets.
            max_inactive_connection_lifetime=60.0,
            reset=_keep_session,
        )

    def _settings(self) -> dict[str, str]:
        return {"search_path": f'"{self._schema}"', "application_name": "wxgate"}

    async def _connect(self) -> asyncpg.Connection:
        """One connection outside the pool (migrations, the CLI's `db` commands)."""
        conn: asyncpg.Connection = await asyncpg.connect(
            self._url,
            timeout=self._connect_timeout_s,
            command_timeout=self._command_timeout_s,
            server_settings=self._settings(),
        )
        return conn

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._command_timeout_s)
            except DRIVER_ERRORS:
                pool.terminate()

    @maps_pg_errors
    async def ping(self) -> None:
        async with self._p.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def _tx(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """fn(conn, *args) in one transaction, run again (whole) after a deadlock."""
        for attempt in range(_TX_ATTEMPTS):
            try:
                async with self._p.acquire() as conn, conn.transaction():
                    return await fn(conn, *args)
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) in _RETRY_STATES and attempt + 1 < _TX_ATTEMPTS:
                    await asyncio.sleep(0.001 * (attempt + 1))
                    continue
                raise map_error(exc) from exc
            except _LINK_ERRORS as exc:
                raise map_error(exc) from exc
        raise StoreError("postgresql: transaction kept deadlocking")  # unreachable

    async def _read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """fn(conn, *args) on a pooled connection (autocommit: one statement, one snapshot)."""
        try:
            async with self._p.acquire() as conn:
                return await fn(conn, *args)
        except DRIVER_ERRORS as e:
            raise map_error(e) from e
