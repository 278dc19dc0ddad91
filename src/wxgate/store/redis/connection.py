"""The connection every role of RedisStore shares: one pool, the script runner, and the mapping
of Redis failures to wxgate's errors (maps_redis_errors)."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wxgate.clock import Clock
from wxgate.errors import StoreError, StoreUnavailable

# BusyLoadingError (Redis still loading its data after a restart) is a ConnectionError. A Redis
# at its maxmemory (OOM, with the noeviction policy it must run with) refuses writes until
# memory frees up: unavailable for now, not a bug (503 + Retry-After, not 500).
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    ConnectionError,
    TimeoutError,
)
_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="RedisConnection")


def maps_redis_errors(
    fn: Callable[Concatenate[_S, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """Map Redis failures to ours, once for every public method: unreachable, still loading
    its data, a read-only replica after a failover, or full (OOM) -> StoreUnavailable (the API
    answers 503 and callers retry); anything else Redis says -> StoreError."""

    @functools.wraps(fn)
    async def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(self, *args, **kwargs)
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    return wrapper


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisConnection:
    """One connection pool (redis-py asyncio, hiredis, bytes replies) and the settings every
    role's scripts read: key prefix, consumer group, retention."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        retention_s: float,
        group: str,
        key_prefix: str,
        max_connections: int,
        socket_timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self._url = url
        self._clock = clock
        self._p = key_prefix
        self._group = group
        self._retention_s = retention_s
        # Redis drops a finished message (or a failed webhook event) a day after prune should
        # have: only if prune stalls.
        self._finished_ttl_s = max(1, math.ceil(retention_s + 86400))
        self._pool_kwargs: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": socket_timeout_s,  # waiting for a free connection
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": connect_timeout_s,
            # Fail fast while Redis is down (a 503 now beats a hung request); a connection
            # that died idle in the pool is replaced by the pool itself.
            "retry": Retry(NoBackoff(), 0),
        }
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    @property
    def _r(self) -> Redis:
        if self._redis is None:
            raise StoreUnavailable("redis store is closed")
        return self._redis

    @maps_redis_errors
    async def open(self) -> None:
        if self._redis is not None:
            return
        pool = BlockingConnectionPool.from_url(self._url, **self._pool_kwargs)
        redis = Redis(connection_pool=pool, decode_responses=False)
        try:
            await redis.ping()
        except BaseException:
            await redis.aclose(close_connection_pool=True)
            raise
        self._redis = redis

    async def _close_connection(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose(close_connection_pool=True)

    @maps_redis_errors
    async def ping(self) -> None:
        await self._r.ping()

    async def _script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA `source`, loading it again if Redis lost it (a restart empties the cache)."""
        redis = self._r
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = redis.register_script(source)
        return await script(keys=keys, args=args, client=redis)

    async def _msg_script(self, source: str, *args: Any) -> Any:
        """Run a message script with the shared leading arguments (see scripts/prelude.lua)."""
        return await self._script(
            source,
            (),
            [self._p, self._group, repr(self._clock.now()), self._finished_ttl_s, *args],
        )
