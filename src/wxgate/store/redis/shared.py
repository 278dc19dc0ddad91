"""RedisStore's SharedState role: what every process shares through Redis, access tokens,
locks, app pauses, daily quota counters, rate buckets, callback nonces and receipt links.

Keys under the deployment's prefix P (one slot on Cluster: take_rates updates several
apps' buckets in one script): P:token:{app} (TokenEntry JSON), P:lock:{name} (hash owner + until),
P:pauses (hash app -> AppPause JSON), P:quota:{app}:{day} (counter, 2 days), P:rate:{app}
(hash tokens + ts), P:nonce:{app}:{nonce} (hash digest + until: a WeChat callback's nonce),
P:link:{app}:{key} (hash v + blob + until: sends awaiting a receipt without a msgid),
P:choice:{app} / P:suppressed:{app} / P:suppressed_apps (users' accepts and rejects of
subscribe templates, and the rejected pairs).
Expiry that the contract judges by the store's clock (locks, pauses, nonces) is stored as a
time and compared in Lua; Redis TTLs only collect what is abandoned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import msgspec

from wxgate.metrics import throughput
from wxgate.models import AppPause, TokenEntry
from wxgate.store.coalesce import Coalescer
from wxgate.store.redis.connection import RedisConnection, maps_redis_errors, text
from wxgate.store.redis.scripts import script

_TOKEN_SLACK_S = 300
_QUOTA_TTL_S = 2 * 86400
_RATE_TTL_S = 3600
RATE_TAKES_PER_CALL = 256

TAKE_RATES = script("take_rates", RATE_TTL_S=_RATE_TTL_S)
INVALIDATE_TOKEN = script("invalidate_token")
ACQUIRE_LOCK = script("acquire_lock")
REMEMBER_NONCE = script("remember_nonce")
PUT_LINK = script("put_link")
SET_CHOICE = script("set_choice")
INCR_QUOTA = script("incr_quota")
SET_PAUSE = script("set_pause")
RELEASE_LOCK = script("release_lock")


class RedisSharedState(RedisConnection):
    """The SharedState methods of RedisStore (store/base.py)."""

    def _init_shared(self) -> None:
        self._rate_takes: Coalescer[tuple[str, str, str, int, str], float] = Coalescer(
            self._run_rate_takes, RATE_TAKES_PER_CALL
        )

    async def _drain_shared(self) -> None:
        await self._rate_takes.wait_idle()

    # ------------------------------------------------------------------ tokens and locks

    # ------------------------------------------------------------------ chart history

    @maps_redis_errors
    async def add_throughput(self, buckets: Mapping[int, Sequence[int]]) -> None:
        """P:tp:{minute} hashes, fields "{second}:{kind}", each kept for the ring's hour
        (and a minute) by its TTL: no prune, no script (counters need no atomic group)."""
        if not buckets:
            return
        async with self._r.pipeline(transaction=False) as pipe:
            minutes: set[int] = set()
            for second, counts in buckets.items():
                key = f"{self._p}:tp:{second // 60}"
                minutes.add(second // 60)
                for kind, n in enumerate(counts[:4]):
                    if n:
                        pipe.hincrby(key, f"{second}:{kind}", int(n))
            for minute in minutes:
                pipe.expire(f"{self._p}:tp:{minute}", throughput.KEEP_S + 120)
            await pipe.execute()

    @maps_redis_errors
    async def throughput(self, since: int) -> list[tuple[int, int, int, int, int]]:
        # The ring holds an hour: the hour from `since` is all there can be (62 keys).
        first, last = since // 60, (since + throughput.KEEP_S) // 60 + 1
        async with self._r.pipeline(transaction=False) as pipe:
            for minute in range(first, last + 1):
                pipe.hgetall(f"{self._p}:tp:{minute}")
            hashes = await pipe.execute()
        rows: dict[int, list[int]] = {}
        for fields in hashes:
            for field, value in fields.items():
                second, _, kind = text(field).partition(":")
                if int(second) >= since:
                    rows.setdefault(int(second), [0, 0, 0, 0])[int(kind)] = int(value)
        return [(s, *c) for s, c in sorted(rows.items())]  # type: ignore[misc]

    @maps_redis_errors
    async def get_token(self, app: str) -> TokenEntry | None:
        raw = await self._r.get(f"{self._p}:token:{app}")
        return None if raw is None else msgspec.json.decode(raw, type=TokenEntry)

    @maps_redis_errors
    async def set_token(self, app: str, entry: TokenEntry) -> None:
        # The TTL only collects it; the broker judges expiry by expires_at.
        ttl_s = max(1, math.ceil(entry.expires_at - self._clock.now()) + _TOKEN_SLACK_S)
        await self._r.set(f"{self._p}:token:{app}", msgspec.json.encode(entry), ex=ttl_s)

    @maps_redis_errors
    async def invalidate_token(self, app: str, access_token: str) -> bool:
        done = await self._script(INVALIDATE_TOKEN, [f"{self._p}:token:{app}"], [access_token])
        return bool(done)

    @maps_redis_errors
    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.now()
        done = await self._script(
            ACQUIRE_LOCK,
            [f"{self._p}:lock:{name}"],
            [owner, repr(now), repr(now + ttl_s), max(1, math.ceil(ttl_s * 1000))],
        )
        return bool(done)

    @maps_redis_errors
    async def release_lock(self, name: str, owner: str) -> None:
        await self._script(RELEASE_LOCK, [f"{self._p}:lock:{name}"], [owner])

    @maps_redis_errors
    async def remember_nonce(
        self, app: str, nonce: str, digest: str, ttl_s: float, now: float
    ) -> bool:
        done = await self._script(
            REMEMBER_NONCE,
            [f"{self._p}:nonce:{app}:{nonce}"],
            [digest, repr(now), repr(now + ttl_s), max(1, math.ceil(ttl_s * 1000))],
        )
        return bool(done)

    # ------------------------------------------------------------------ receipt links

    @maps_redis_errors
    async def get_link(self, app: str, key: str, now: float) -> tuple[int, bytes | None]:
        v, blob, until = await self._r.hmget(f"{self._p}:link:{app}:{key}", "v", "blob", "until")
        if v is None or blob is None or until is None or float(until) <= now:
            return 0, None
        return int(v), blob if isinstance(blob, bytes) else blob.encode()

    @maps_redis_errors
    async def put_link(
        self, app: str, key: str, version: int, blob: bytes | None, ttl_s: float, now: float
    ) -> bool:
        done = await self._script(
            PUT_LINK,
            [f"{self._p}:link:{app}:{key}"],
            [version, blob or b"", repr(now + ttl_s), repr(now), max(1, math.ceil(ttl_s * 1000))],
        )
        return bool(done)

    # ------------------------------------------------------------------ suppressions

    @maps_redis_errors
    async def set_choice(
        self, app: str, openid: str, template_id: str, accepted: bool, at: float
    ) -> bool:
        p = self._p
        if not accepted:  # listed first: suppression_counts may then find the app with none
            await self._r.sadd(f"{p}:suppressed_apps", app)
        keys = [f"{p}:choice:{app}", f"{p}:suppressed:{app}"]
        args = [f"{openid}:{template_id}", repr(at), 0 if accepted else 1]
        return bool(await self._script(SET_CHOICE, keys, args))

    @maps_redis_errors
    async def is_suppressed(self, app: str, openid: str, template_id: str) -> bool:
        found = await self._r.sismember(f"{self._p}:suppressed:{app}", f"{openid}:{template_id}")
        return bool(found)

    @maps_redis_errors
    async def suppression_counts(self) -> dict[str, int]:
        apps = sorted(text(a) for a in await self._r.smembers(f"{self._p}:suppressed_apps"))
        counts = {app: int(await self._r.scard(f"{self._p}:suppressed:{app}")) for app in apps}
        return {app: n for app, n in counts.items() if n}

    # ------------------------------------------------------------------ pauses, quota, rate

    @maps_redis_errors
    async def get_pauses(self) -> list[AppPause]:
        raw = await self._r.hvals(f"{self._p}:pauses")
        now = self._clock.now()
        pauses = [msgspec.json.decode(v, type=AppPause) for v in raw]
        return [p for p in pauses if p.until > now]

    @maps_redis_errors
    async def set_pause(self, pause: AppPause) -> None:
        manual = "1" if pause.by is not None else "0"
        await self._script(
            SET_PAUSE,
            [f"{self._p}:pauses"],
            [pause.app, msgspec.json.encode(pause), manual, repr(self._clock.now())],
        )

    @maps_redis_errors
    async def clear_pause(self, app: str) -> None:
        await self._r.hdel(f"{self._p}:pauses", app)

    @maps_redis_errors
    async def incr_quota(self, app: str, day: str, n: int = 1) -> int:
        key = f"{self._p}:quota:{app}:{day}"
        return int(await self._script(INCR_QUOTA, [key], [n, _QUOTA_TTL_S]))

    @maps_redis_errors
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
