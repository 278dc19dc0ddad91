"""The Redis connection behind RedisStore, and the state every process shares through it:
access tokens, locks, app pauses, daily quota counters, rate buckets and callback nonces.

Keys under the prefix P: P:token:{app} (TokenEntry JSON), P:lock:{name} (hash owner + until),
P:pauses (hash app -> AppPause JSON), P:quota:{app}:{day} (counter, 2 days), P:rate:{app}
(hash tokens + ts), P:nonce:{app}:{nonce} (hash digest + until: a WeChat callback's nonce).
Expiry that the contract judges by the store's clock (locks, pauses, nonces) is stored as a
time and compared in Lua; Redis TTLs only collect what is abandoned.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import msgspec
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wxgate.clock import Clock
from wxgate.errors import StoreError, StoreUnavailable
from wxgate.models import AppPause, TokenEntry
from wxgate.store.coalesce import Coalescer

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
_S = TypeVar("_S", bound="RedisSharedState")

_TOKEN_SLACK_S = 300
_QUOTA_TTL_S = 2 * 86400
_RATE_TTL_S = 3600
RATE_TAKES_PER_CALL = 256

# KEYS: one bucket hash per take; ARGV: rate, burst, n, now for each in turn. A reserving token
# bucket (policy.ratelimit's TokenBucket rules) shared by every process; the takes of one call
# are applied in order, as if made one by one (the callers of one coalesced round trip).
# Time is the callers' `now` and never moves back: a process whose clock runs ahead only makes
# the others wait for real time to catch up, so clock skew costs at most one burst of
# skew * rate, not a lasting error (keep NTP on). Returns each wait as a decimal string (Lua
# numbers would come back truncated to integers).
TAKE_RATES = rf"""#!lua
local out = {{}}
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 4
  local rate, burst = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local n, now = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local s = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(s[1]) or burst, tonumber(s[2]) or now
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
  end
  tokens = tokens - n
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts',
    string.format('%.17g', ts))
  redis.call('EXPIRE', key, {_RATE_TTL_S})
  if tokens >= 0 then out[i] = '0' else out[i] = string.format('%.17g', -tokens / rate) end
end
return out
"""

# KEYS[1] token key; ARGV[1] the access_token that failed. Compare-and-delete.
INVALIDATE_TOKEN = r"""#!lua
local v = redis.call('GET', KEYS[1])
if not v or cjson.decode(v)['access_token'] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""

# KEYS[1] lock hash; ARGV owner, now, until, ttl_ms. The owner may take its own lock again.
ACQUIRE_LOCK = r"""#!lua
local f = redis.call('HMGET', KEYS[1], 'owner', 'until')
if f[1] and f[1] ~= ARGV[1] and tonumber(f[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] nonce hash; ARGV digest, now, until, ttl_ms. 1 if the nonce is new (or its entry
# expired by `now`) or is remembered with this digest, else 0.
REMEMBER_NONCE = r"""#!lua
local f = redis.call('HMGET', KEYS[1], 'digest', 'until')
if f[1] and tonumber(f[2]) > tonumber(ARGV[2]) then
  if f[1] == ARGV[1] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS[1] lock hash; ARGV[1] owner. Compare-and-delete.
RELEASE_LOCK = r"""#!lua
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def guarded(
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


class RedisSharedState:
    """One connection pool (redis-py asyncio, hiredis, bytes replies) and the shared state."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        key_prefix: str = "wxgate",
        max_connections: int = 64,
        socket_timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._url = url
        self._clock = clock
        self._p = key_prefix
        self._rate_takes: Coalescer[tuple[str, str, str, int, str], float] = Coalescer(
            self._run_rate_takes, RATE_TAKES_PER_CALL
        )
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

    @guarded
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

    async def close(self) -> None:
        if self._redis is not None:
            await self._rate_takes.wait_idle()
            redis, self._redis = self._redis, None
            await redis.aclose(close_connection_pool=True)

    @guarded
    async def ping(self) -> None:
        await self._r.ping()

    async def _script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA `source`, loading it again if Redis lost it (a restart empties the cache)."""
        redis = self._r
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = redis.register_script(source)
        return await script(keys=keys, args=args, client=redis)

    # ------------------------------------------------------------------ tokens and locks

    @guarded
    async def get_token(self, app: str) -> TokenEntry | None:
        raw = await self._r.get(f"{self._p}:token:{app}")
        return None if raw is None else msgspec.json.decode(raw, type=TokenEntry)

    @guarded
    async def set_token(self, app: str, entry: TokenEntry) -> None:
        # The TTL only collects it; the broker judges expiry by expires_at.
        ttl_s = max(1, math.ceil(entry.expires_at - self._clock.now()) + _TOKEN_SLACK_S)
        await self._r.set(f"{self._p}:token:{app}", msgspec.json.encode(entry), ex=ttl_s)

    @guarded
    async def invalidate_token(self, app: str, access_token: str) -> bool:
        done = await self._script(INVALIDATE_TOKEN, [f"{self._p}:token:{app}"], [access_token])
        return bool(done)

    @guarded
    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.now()
        done = await self._script(
            ACQUIRE_LOCK,
            [f"{self._p}:lock:{name}"],
            [owner, repr(now), repr(now + ttl_s), max(1, math.ceil(ttl_s * 1000))],
        )
        return bool(done)

    @guarded
    async def release_lock(self, name: str, owner: str) -> None:
        await self._script(RELEASE_LOCK, [f"{self._p}:lock:{name}"], [owner])

    @guarded
    async def remember_nonce(
        self, app: str, nonce: str, digest: str, ttl_s: float, now: float
    ) -> bool:
        done = await self._script(
            REMEMBER_NONCE,
            [f"{self._p}:nonce:{app}:{nonce}"],
            [digest, repr(now), repr(now + ttl_s), max(1, math.ceil(ttl_s * 1000))],
        )
        return bool(done)

    # ------------------------------------------------------------------ pauses, quota, rate

    @guarded
    async def get_pauses(self) -> list[AppPause]:
        raw = await self._r.hvals(f"{self._p}:pauses")
        now = self._clock.now()
        pauses = [msgspec.json.decode(v, type=AppPause) for v in raw]
        return [p for p in pauses if p.until > now]

    @guarded
    async def set_pause(self, pause: AppPause) -> None:
        await self._r.hset(f"{self._p}:pauses", pause.app, msgspec.json.encode(pause))

    @guarded
    async def clear_pause(self, app: str) -> None:
        await self._r.hdel(f"{self._p}:pauses", app)

    @guarded
    async def incr_quota(self, app: str, day: str, n: int = 1) -> int:
        key = f"{self._p}:quota:{app}:{day}"
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.incrby(key, n)
            pipe.expire(key, _QUOTA_TTL_S)
            total, _ = await pipe.execute()
        return int(total)

    @guarded
    async def take_rate(
        self, app: str, rate_per_s: float, burst: float, n: int, now: float
    ) -> float:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be > 0")
        # Every send takes from its app's bucket: concurrent takes share one round trip.
        return await self._rate_takes.submit(
            (f"{self._p}:rate:{app}", repr(rate_per_s), repr(burst), n, repr(now))
        )

    async def _run_rate_takes(self, takes: list[tuple[str, str, str, int, str]]) -> list[float]:
        args = [arg for take in takes for arg in take[1:]]
        waits = await self._script(TAKE_RATES, [take[0] for take in takes], args)
        return [float(w) for w in waits]
