"""The connection every role of RedisStore shares: one client for the topology the URL names
(one Redis, Sentinel's primary, or Redis Cluster: settings/redis_urls.py), the script runner, and
the mapping of Redis failures to wxgate's errors (maps_redis_errors).

Sentinel: every new connection asks the Sentinels for the primary and then asks that node its
ROLE, refusing it unless it answers `master` (a node Sentinel has just demoted, or an old
primary restarted with its stale data, never gets a write); a READONLY reply drops the
connection (redis-py), so nothing is cached past a failover.

Keyspaces (the same on every topology; braces are plain characters outside Cluster):
- an app's own, `{prefix:app}:...` (`_a(app)`): its messages, queue, indexes, counters,
  batches and outbox. Every message script runs on one app's keys only and declares the
  app's anchor `{prefix:app}:counts`, so on Cluster each app lives in one hash slot and
  different apps spread over the shards;
- the deployment's, under `_p` (`{prefix}` on Cluster, one slot; `prefix` otherwise): the
  small shared structures written outside message scripts (the apps registry, batch -> app,
  tokens, locks, pauses, quotas, rates, the chart ring).
The cluster client routes a script to the shard of its declared key and follows MOVED/ASK
after a resharding or failover.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wxgate.clock import Clock
from wxgate.errors import StoreError, StoreUnavailable
from wxgate.settings.redis_urls import RedisTarget, parse_redis_url
from wxgate.store.coalesce import Coalescer
from wxgate.store.redis.layout import Migration
from wxgate.store.redis.refusals import UNAVAILABLE_REPLIES

# BusyLoadingError (Redis still loading its data after a restart) is a ConnectionError. A Redis
# at its maxmemory (OOM, with the noeviction policy it must run with) refuses writes until
# memory frees up: unavailable for now, not a bug (503 + Retry-After, not 500). ClusterError
# covers CLUSTERDOWN and MASTERDOWN; AskError (MovedError too) is a redirect the client gave up
# following, TryAgainError a slot being migrated, SlotNotCoveredError a slot no node owns.
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    ClusterError,
    AskError,
    TryAgainError,
    SlotNotCoveredError,
    ConnectionError,
    TimeoutError,
)
_APPS_TTL_S = 1.0  # how stale this process's copy of the apps registry may be
_LEASE_ROUNDS = 3  # share-outs per lease call: an app that runs dry leaves its share to others
_READY_TTL_MS = 60_000  # the readiness probe's key only needs to outlive the probe
_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T")
_S = TypeVar("_S", bound="RedisConnection")
Call = tuple[str, Sequence[str], Sequence[Any]]  # a script's source, keys and arguments


def maps_redis_errors(
    fn: Callable[Concatenate[_S, _P], Awaitable[_R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """Map Redis failures to ours, once for every public method: unreachable, still loading
    its data, a read-only replica after a failover, too few replicas (NOREPLICAS), a cluster
    that is down or resharding, or full (OOM) -> StoreUnavailable (the API answers 503 and
    callers retry); anything else Redis says -> StoreError."""

    @functools.wraps(fn)
    async def wrapper(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await fn(self, *args, **kwargs)
        except MasterNotFoundError as exc:  # its text is the repr of every Sentinel client
            raise StoreUnavailable(
                "redis: no Sentinel named a reachable primary for the service"
            ) from exc
        except _UNREACHABLE as exc:
            raise StoreUnavailable(f"redis unreachable: {exc}") from exc
        except ResponseError as exc:
            if str(exc).startswith(UNAVAILABLE_REPLIES):
                raise StoreUnavailable(f"redis cannot take writes: {exc}") from exc
            raise StoreError(f"redis: {exc}") from exc
        except RedisError as exc:
            raise StoreError(f"redis: {exc}") from exc

    return wrapper


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _close_client(redis: Redis | RedisCluster) -> None:
    """Close a client and its connections (a Redis given its pool keeps it open otherwise)."""
    if isinstance(redis, RedisCluster):
        await redis.aclose()
    else:
        await redis.aclose(close_connection_pool=True)


class PrimaryOnlyConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that asks the node its ROLE before first use and gives
    up on it unless it is a primary: Sentinel's answer can be a moment old (the node demoted
    since, or an old primary back with stale data before Sentinel reconfigures it)."""

    async def connect_to(self, address: Any) -> None:
        await super().connect_to(address)  # type: ignore[no-untyped-call]
        if not self.connection_pool.is_master:
            return
        await self.send_command("ROLE")
        role = await self.read_response()
        if not role or text(role[0]) != "master":
            await self.disconnect()
            raise RedisConnectionError(f"{address[0]}:{address[1]} is not the primary (ROLE)")


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (the primary's address asked per connection) with the blocking pool's
    bound: a burst waits up to `timeout` for a free connection instead of failing at once."""


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
        min_replica_acks: int = 0,
        replica_ack_timeout_ms: int = 1000,
    ) -> None:
        self._target: RedisTarget = parse_redis_url(url)
        self._url = url
        self._clock = clock
        # Cluster: the deployment's shared keys under one hash tag, so they share a slot.
        cluster = self._target.topology == "cluster"
        if cluster and ("{" in key_prefix or "}" in key_prefix):
            raise StoreError("redis key prefix must not contain { or } (the store adds its tag)")
        self._p = f"{{{key_prefix}}}" if cluster else key_prefix
        self._key_prefix = key_prefix
        # The apps registry as this process last read it (or wrote it): lease, stats and the
        # other fan-out reads walk it; re-read at most every _APPS_TTL_S.
        self._apps: set[str] = set()
        self._apps_read_at = -math.inf
        self._registrations: Coalescer[frozenset[str], None] = Coalescer(self._add_apps, 256)
        self._shas: dict[str, str] = {}
        if min_replica_acks and cluster:
            raise StoreError("min_replica_acks is not supported on Redis Cluster")
        self._min_replica_acks = min_replica_acks
        self._replica_ack_timeout_ms = replica_ack_timeout_ms
        self._group = group
        self._retention_s = retention_s
        # Redis drops a finished message (or a failed webhook event) a day after prune should
        # have: only if prune stalls.
        self._finished_ttl_s = max(1, math.ceil(retention_s + 86400))
        self._timeouts: dict[str, Any] = {
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": connect_timeout_s,
        }
        self._max_connections = max_connections
        self._pool_kwargs: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": socket_timeout_s,  # waiting for a free connection
            **self._timeouts,
            # Fail fast while Redis is down (a 503 now beats a hung request); a connection
            # that died idle in the pool is replaced by the pool itself.
            "retry": Retry(NoBackoff(), 0),
        }
        self._redis: Redis | RedisCluster | None = None
        self._sentinel: Sentinel | None = None
        self._scripts: dict[str, AsyncScript] = {}

    @property
    def _r(self) -> Redis | RedisCluster:
        if self._redis is None:
            raise StoreUnavailable("redis store is closed")
        return self._redis

    @maps_redis_errors
    async def open(self) -> None:
        if self._redis is not None:
            return
        redis = self._client()
        try:
            await redis.ping()
            await Migration(redis, self._p, self._a).ensure()
        except BaseException:
            self._redis = redis
            await self._close_connection()
            raise
        self._redis = redis

    def _client(self) -> Redis | RedisCluster:
        """A client for the URL's topology (not connected yet)."""
        t = self._target
        if t.topology == "cluster":
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in t.nodes],
                username=t.username,
                password=t.password,
                decode_responses=False,
                max_connections=self._max_connections,
                # One more try after a connection error or CLUSTERDOWN (with the slot map read
                # again): enough to follow a failover, few enough that a request fails within
                # the API's store deadline. MOVED/ASK are followed apart from this.
                retry=Retry(NoBackoff(), 1),
                **self._timeouts,
            )
        if t.topology == "sentinel":
            sentinel = self._sentinel = Sentinel(
                list(t.nodes), sentinel_kwargs=dict(self._timeouts)
            )
            primary: Redis = sentinel.master_for(
                t.service,
                redis_class=Redis,
                connection_pool_class=BlockingSentinelPool,
                connection_class=PrimaryOnlyConnection,
                db=t.db,
                username=t.username,
                password=t.password,
                decode_responses=False,
                **self._pool_kwargs,
            )
            return primary
        pool = BlockingConnectionPool.from_url(self._url, **self._pool_kwargs)
        return Redis(connection_pool=pool, decode_responses=False)

    async def _close_connection(self) -> None:
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await _close_client(redis)
        if self._sentinel is not None:  # its clients of the Sentinels themselves
            sentinel, self._sentinel = self._sentinel, None
            for client in sentinel.sentinels:
                await client.aclose()

    @maps_redis_errors
    async def ping(self) -> None:
        """Ready = can take a write, not only answers: a tiny write (a key of the prefix's
        slot, expiring) fails on a replica (READONLY), a primary short of replicas
        (NOREPLICAS), a cluster whose slot is uncovered (CLUSTERDOWN) or resharding
        (TRYAGAIN), a Sentinel-less primary (MASTERDOWN) or one still loading (LOADING),
        each mapped to StoreUnavailable: /readyz says 503 and the balancer looks elsewhere."""
        await self._r.set(f"{self._p}:ready", repr(self._clock.now()), px=_READY_TTL_MS)

    async def _script(self, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """EVALSHA `source`, loading it again if Redis lost it (a restart empties the cache)."""
        redis = self._r
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = AsyncScript(redis, source)
        return await script(keys=keys, args=args, client=redis)

    async def _msg_script(self, app: str, source: str, *args: Any) -> Any:
        """Run a message script on `app`'s keys with the shared leading arguments (see
        scripts/prelude.lua)."""
        return await self._script(source, (self._anchor_of(app),), self._msg_args(app, args))

    def _msg_call(self, app: str, source: str, *args: Any) -> Call:
        """A message script call for `_run_scripts`."""
        return source, (self._anchor_of(app),), self._msg_args(app, args)

    def _msg_args(self, app: str, args: Sequence[Any]) -> list[Any]:
        return [self._a(app), self._group, repr(self._clock.now()), self._finished_ttl_s, *args]

    # ------------------------------------------------------------------ keyspaces

    def _a(self, app: str) -> str:
        """The prefix of `app`'s own keys: one hash tag per app (see the module docstring)."""
        return f"{{{self._key_prefix}:{app}}}"

    def _anchor_of(self, app: str) -> str:
        return f"{self._a(app)}:counts"

    async def _share_out(
        self,
        apps: Sequence[str],
        turn: int,
        n: int,
        take: Callable[[list[tuple[str, int]]], Awaitable[list[list[_T]]]],
    ) -> list[_T]:
        """Up to `n` items leased from `apps` round-robin (message and webhook leases): the
        start rotated by `turn`, each app asked for an equal share in one `take` round trip
        (app, want pairs -> each app's items), then the apps that filled their share asked
        for what is still missing, up to _LEASE_ROUNDS rounds."""
        if not apps:
            return []
        start = turn % len(apps)
        active = [*apps[start:], *apps[:start]]
        out: list[_T] = []
        for _ in range(_LEASE_ROUNDS):
            remaining = n - len(out)
            if remaining <= 0 or not active:
                break
            share = math.ceil(remaining / len(active))
            wants: list[tuple[str, int]] = []
            for app in active:
                want = min(share, remaining)
                if want <= 0:
                    break
                wants.append((app, want))
                remaining -= want
            active = []
            for (app, want), items in zip(wants, await take(wants), strict=True):
                out += items
                if len(items) == want:  # may have more: a share of the next round
                    active.append(app)
        return out

    async def _app_names(self, fresh: bool = False) -> list[str]:
        """Every app that ever had a message here (sorted): the registry, cached."""
        now = time.monotonic()
        if fresh or now - self._apps_read_at > _APPS_TTL_S:
            self._apps_read_at = now
            self._apps |= {text(a) for a in await self._r.smembers(f"{self._p}:apps")}
        return sorted(self._apps)

    async def _register_apps(self, apps: Iterable[str]) -> None:
        """Add apps to the registry before their first message is written, so a message is
        never in an app the fan-out reads do not walk."""
        new = frozenset(apps) - self._apps
        if new:
            # Coalesced: one write for a burst of first messages, whose callers all resume
            # together (a lock would let them on one per loop turn, splitting the group
            # commits that follow into small ones for good).
            await self._registrations.submit(new)

    async def _add_apps(self, batches: list[frozenset[str]]) -> list[None]:
        new = frozenset().union(*batches) - self._apps
        if new:
            await self._r.sadd(f"{self._p}:apps", *sorted(new))
            self._apps |= new
        return [None] * len(batches)

    async def _locate(self, ids: Sequence[str], kind: str = "msg") -> dict[str, str]:
        """Id -> app for the ids whose `{app prefix}:{kind}:{id}` key exists (messages, or
        "wh" webhook events), asking every app (one pipeline; calls that name only an id:
        cancel, requeue by id, a webhook outcome this process did not lease). Linear in the
        apps, and no write per message: a locator key per message cost every enqueue more
        than these calls."""
        apps = await self._app_names()
        if not ids or not apps:
            return {}
        async with self._r.pipeline(transaction=False) as pipe:
            for one in ids:
                for app in apps:
                    pipe.exists(f"{self._a(app)}:{kind}:{one}")
            found = await pipe.execute()
        out: dict[str, str] = {}
        for i, one in enumerate(ids):
            for j, app in enumerate(apps):
                if found[i * len(apps) + j]:
                    out[one] = app
                    break
        return out

    async def _run_scripts(
        self, calls: Sequence[Call], *, replicate: bool = False, keep_errors: bool = False
    ) -> list[Any]:
        """Several script calls in one round trip (see `_pipeline`)."""
        if not calls:
            return []
        return (await self._pipeline((), calls, replicate=replicate, keep_errors=keep_errors))[1]

    async def _pipeline(
        self,
        first: Sequence[tuple[Any, ...]],
        calls: Sequence[Call],
        *,
        replicate: bool = False,
        keep_errors: bool = False,
    ) -> tuple[list[Any], list[Any]]:
        """Commands (`first`), then script calls, in one round trip: one pipeline on one
        Redis, in order (then, with min_replica_acks and `replicate`, WAIT on the same
        connection). On Cluster the commands go first as one pipeline (the client splits it
        per node, in no set order between nodes), then the scripts concurrently, each to the
        shard of its key. A script Redis lost (a restart empties its cache) is loaded and the
        scripts (not the commands) run again when none of them ran. Returns both replies;
        with `keep_errors`, a script's error is its reply (the calls of one round trip are
        separate commits: one app's failure is not another's)."""
        redis = self._r
        wait = replicate and self._min_replica_acks > 0
        if len(calls) == 1 and not first and not wait:  # one app's call: no pipeline needed
            try:
                return [], [await self._script(*calls[0])]
            except Exception as exc:
                if not keep_errors:
                    raise
                return [], [exc]
        if not isinstance(redis, Redis):
            done: list[Any] = []
            if first:
                async with redis.pipeline(transaction=False) as cpipe:
                    for command in first:
                        cpipe.execute_command(*command)
                    done = await cpipe.execute()
            each: list[Any] = await asyncio.gather(
                *(self._script(s, k, a) for s, k, a in calls), return_exceptions=keep_errors
            )
            return done, each
        head: list[Any] = []
        for attempt in range(2):
            async with redis.pipeline(transaction=False) as pipe:
                if attempt == 0:
                    for command in first:
                        pipe.execute_command(*command)
                for source, keys, args in calls:
                    pipe.evalsha(self._sha(source), len(keys), *keys, *args)
                if wait:
                    pipe.execute_command(
                        "WAIT", self._min_replica_acks, self._replica_ack_timeout_ms
                    )
                replies = await pipe.execute(raise_on_error=False)
            if attempt == 0:
                head, replies = replies[: len(first)], replies[len(first) :]
            lost = [r for r in replies[: len(calls)] if isinstance(r, NoScriptError)]
            if attempt == 0 and lost and len(lost) == len(calls):
                for source in {c[0] for c in calls}:
                    await redis.script_load(source)
                continue
            break
        for reply in (*head, *replies[len(calls) :], *([] if keep_errors else replies)):
            if isinstance(reply, Exception):
                raise reply
        if wait and int(replies[-1]) < self._min_replica_acks:
            raise StoreUnavailable(
                f"redis: {replies[-1]} of {self._min_replica_acks} replica(s) confirmed the "
                f"write within {self._replica_ack_timeout_ms} ms"
            )
        return head, replies[: len(calls)]

    def _sha(self, source: str) -> str:
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = hashlib.sha1(source.encode()).hexdigest()
        return sha
