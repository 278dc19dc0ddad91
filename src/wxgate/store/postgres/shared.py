"""Shared state on PostgreSQL (SharedState): token cache, locks, pauses, quota counters,
callback nonces and the rate buckets, all in tables every process and machine sees, so one
token is fetched per app and one rate holds across `--processes N` and every `--role`.

Locks are rows with an expiry (a lock must outlive the connection that took it and lapse on
its own if its owner dies); advisory locks guard what is only held within one transaction
(migrations, the pruning pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from wxgate.metrics import throughput
from wxgate.models import AppPause, TokenEntry
from wxgate.store.coalesce import Coalescer
from wxgate.store.postgres.connection import PostgresConnection, maps_pg_errors

Conn = asyncpg.Connection

RATE_TAKES_PER_CALL = 256
_ACQUIRE = (
    "INSERT INTO locks VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET "
    "owner = excluded.owner, expires_at = excluded.expires_at "
    "WHERE locks.expires_at <= $4 OR locks.owner = excluded.owner RETURNING 1"
)
_REMEMBER_NONCE = (
    "INSERT INTO nonces VALUES ($1, $2, $3, $4) ON CONFLICT (app, nonce) DO UPDATE SET "
    "digest = excluded.digest, expires_at = excluded.expires_at "
    "WHERE nonces.expires_at <= $5 RETURNING 1"
)
# A reserving token bucket (policy.ratelimit's rules): refilled up to burst since `at`, n
# taken, time never moving back. The row lock orders concurrent takes of one app.
_TAKE_RATE = (
    "INSERT INTO rate_buckets AS b (app, tokens, at) VALUES ($1, $3::float8 - $4::int8, $5) "
    "ON CONFLICT (app) DO UPDATE SET tokens = CASE WHEN $5::float8 > b.at "
    "THEN least($3::float8, b.tokens + ($5::float8 - b.at) * $2::float8) ELSE b.tokens END"
    " - $4::int8, at = greatest(b.at, $5::float8) RETURNING tokens"
)


# A group of takes in three statements instead of one each: seed missing buckets full (what
# _TAKE_RATE's INSERT arm amounts to), lock them in app order, compute the takes here in the
# same float8 arithmetic as _TAKE_RATE, write the buckets back.
_SEED_RATES = (
    "INSERT INTO rate_buckets (app, tokens, at) SELECT * FROM unnest($1::text[], "
    "$2::float8[], $3::float8[]) ORDER BY 1 ON CONFLICT (app) DO NOTHING"
)
_LOCK_RATES = (
    "SELECT app, tokens, at FROM rate_buckets WHERE app = ANY($1::text[]) ORDER BY app FOR UPDATE"
)
_STORE_RATES = (
    "UPDATE rate_buckets b SET tokens = u.tokens, at = u.at FROM unnest($1::text[], "
    "$2::float8[], $3::float8[]) AS u(app, tokens, at) WHERE b.app = u.app"
)
_TAKES_ONE_BY_ONE = 2  # up to this many takes, one statement each is fewer round trips


async def _take_rates(conn: Conn, takes: list[tuple[str, float, float, int, float]]) -> list[float]:
    # In app order, so two processes' coalesced takes lock bucket rows in one order.
    order = sorted(range(len(takes)), key=lambda i: takes[i][0])
    out = [0.0] * len(takes)
    if len(takes) <= _TAKES_ONE_BY_ONE:
        for i in order:
            app, rate, burst, n, now = takes[i]
            tokens = float(await conn.fetchval(_TAKE_RATE, app, rate, burst, n, now))
            out[i] = 0.0 if tokens >= 0 else -tokens / rate
        return out
    first: dict[str, tuple[float, float]] = {}  # app -> (burst, now) of its first take
    for i in order:
        first.setdefault(takes[i][0], (takes[i][2], takes[i][4]))
    apps = list(first)
    seeds = [first[a] for a in apps]
    await conn.execute(_SEED_RATES, apps, [b for b, _ in seeds], [x for _, x in seeds])
    buckets = {r[0]: (float(r[1]), float(r[2])) for r in await conn.fetch(_LOCK_RATES, apps)}
    for i in order:
        app, rate, burst, n, now = takes[i]
        tokens, at = buckets[app]
        if now > at:
            tokens = min(burst, tokens + (now - at) * rate)
        tokens -= n
        buckets[app] = (tokens, max(at, now))
        out[i] = 0.0 if tokens >= 0 else -tokens / rate
    await conn.execute(
        _STORE_RATES, apps, [buckets[a][0] for a in apps], [buckets[a][1] for a in apps]
    )
    return out


async def _remember_nonce(
    conn: Conn, app: str, nonce: str, digest: str, expires_at: float, now: float
) -> bool:
    if await conn.fetchval(_REMEMBER_NONCE, app, nonce, digest, expires_at, now) is not None:
        return True
    found = await conn.fetchval(
        "SELECT digest FROM nonces WHERE app = $1 AND nonce = $2", app, nonce
    )
    return found is not None and found == digest


_GET_LINK = (
    "SELECT version, blob FROM receipt_links WHERE app = $1 AND key = $2 AND expires_at > $3"
)
# Compare-and-set on the version; an expired row counts as absent (version 0).
_CREATE_LINK = (
    "INSERT INTO receipt_links VALUES ($1, $2, 1, $3, $4) ON CONFLICT (app, key) DO UPDATE "
    "SET version = 1, blob = excluded.blob, expires_at = excluded.expires_at "
    "WHERE receipt_links.expires_at <= $5 RETURNING 1"
)
_UPDATE_LINK = (
    "UPDATE receipt_links SET version = version + 1, blob = $4, expires_at = $5 "
    "WHERE app = $1 AND key = $2 AND version = $3 AND expires_at > $6 RETURNING 1"
)
_DELETE_LINK = (
    "DELETE FROM receipt_links WHERE app = $1 AND key = $2 AND version = $3 "
    "AND expires_at > $4 RETURNING 1"
)


async def _put_link(
    conn: Conn,
    app: str,
    key: str,
    version: int,
    blob: bytes | None,
    expires_at: float,
    now: float,
) -> bool:
    if version == 0:
        if blob is None:  # deleting what is absent: true while it still is
            return not await conn.fetchval(_GET_LINK, app, key, now)
        done = await conn.fetchval(_CREATE_LINK, app, key, blob, expires_at, now)
    elif blob is None:
        done = await conn.fetchval(_DELETE_LINK, app, key, version, now)
    else:
        done = await conn.fetchval(_UPDATE_LINK, app, key, version, blob, expires_at, now)
    await conn.execute("DELETE FROM receipt_links WHERE expires_at <= $1", now)
    return done is not None


_SET_CHOICE = (
    "INSERT INTO suppressions VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (app, openid, template_id) DO UPDATE SET rejected = excluded.rejected, "
    "at = excluded.at WHERE excluded.at >= suppressions.at RETURNING 1"
)


_ADD_THROUGHPUT = (
    "INSERT INTO throughput SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], "
    "$4::int8[], $5::int8[]) ON CONFLICT (second) DO UPDATE SET "
    "accepted = throughput.accepted + excluded.accepted, sent = throughput.sent + excluded.sent, "
    "delivered = throughput.delivered + excluded.delivered, "
    "failed = throughput.failed + excluded.failed"
)


class PostgresSharedState(PostgresConnection):
    def _init_shared(self) -> None:
        self._rate_takes: Coalescer[tuple[str, float, float, int, float], float] = Coalescer(
            self._run_rate_takes, RATE_TAKES_PER_CALL
        )

    async def _drain_shared(self) -> None:
        await self._rate_takes.wait_idle()

    @maps_pg_errors
    async def add_throughput(self, buckets: Mapping[int, Sequence[int]]) -> None:
        """One statement: the seconds as column arrays, upserted, and the ring's old end
        dropped in the same transaction."""
        if not buckets:
            return
        seconds = list(buckets)
        cols = [[int(buckets[s][k]) for s in seconds] for k in range(4)]
        async with self._p.acquire() as conn, conn.transaction():
            await conn.execute(_ADD_THROUGHPUT, seconds, *cols)
            await conn.execute(
                "DELETE FROM throughput WHERE second < $1", max(seconds) - throughput.KEEP_S
            )

    @maps_pg_errors
    async def throughput(self, since: int) -> list[tuple[int, int, int, int, int]]:
        rows = await self._p.fetch(
            "SELECT second, accepted, sent, delivered, failed FROM throughput "
            "WHERE second >= $1 ORDER BY second",
            since,
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @maps_pg_errors
    async def get_token(self, app: str) -> TokenEntry | None:
        row = await self._p.fetchrow(
            "SELECT access_token, expires_at, fetched_at FROM tokens WHERE app = $1", app
        )
        if row is None:
            return None
        return TokenEntry(access_token=row[0], expires_at=row[1], fetched_at=row[2])

    @maps_pg_errors
    async def set_token(self, app: str, entry: TokenEntry) -> None:
        await self._p.execute(
            "INSERT INTO tokens VALUES ($1, $2, $3, $4) ON CONFLICT (app) DO UPDATE SET "
            "access_token = excluded.access_token, expires_at = excluded.expires_at, "
            "fetched_at = excluded.fetched_at",
            app,
            entry.access_token,
            entry.expires_at,
            entry.fetched_at,
        )

    @maps_pg_errors
    async def invalidate_token(self, app: str, access_token: str) -> bool:
        done = await self._p.fetchval(
            "DELETE FROM tokens WHERE app = $1 AND access_token = $2 RETURNING 1",
            app,
            access_token,
        )
        return done is not None

    @maps_pg_errors
    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        now = self._clock.now()
        return await self._p.fetchval(_ACQUIRE, name, owner, now + ttl_s, now) is not None

    @maps_pg_errors
    async def release_lock(self, name: str, owner: str) -> None:
        await self._p.execute("DELETE FROM locks WHERE name = $1 AND owner = $2", name, owner)

    @maps_pg_errors
    async def get_pauses(self) -> list[AppPause]:
        rows = await self._p.fetch(
            "SELECT app, until, reason, errcode, by_whom FROM pauses WHERE until > $1 ORDER BY app",
            self._clock.now(),
        )
        return [AppPause(app=a, until=u, reason=r, errcode=e, by=b) for a, u, r, e, b in rows]

    @maps_pg_errors
    async def set_pause(self, pause: AppPause) -> None:
        await self._p.execute(
            # An automatic pause (by NULL) never replaces a hand-made one still in force.
            "INSERT INTO pauses (app, until, reason, errcode, by_whom) VALUES ($1, $2, $3, $4, "
            "$5) ON CONFLICT (app) DO UPDATE SET until = excluded.until, reason = "
            "excluded.reason, errcode = excluded.errcode, by_whom = excluded.by_whom "
            "WHERE excluded.by_whom IS NOT NULL OR pauses.by_whom IS NULL OR pauses.until <= $6",
            pause.app,
            pause.until,
            pause.reason,
            pause.errcode,
            pause.by,
            self._clock.now(),
        )

    @maps_pg_errors
    async def clear_pause(self, app: str) -> None:
        await self._p.execute("DELETE FROM pauses WHERE app = $1", app)

    @maps_pg_errors
    async def remember_nonce(
        self, app: str, nonce: str, digest: str, ttl_s: float, now: float
    ) -> bool:
        return await self._tx(_remember_nonce, app, nonce, digest, now + ttl_s, now)

    @maps_pg_errors
    async def get_link(self, app: str, key: str, now: float) -> tuple[int, bytes | None]:
        row = await self._p.fetchrow(_GET_LINK, app, key, now)
        return (0, None) if row is None else (int(row[0]), bytes(row[1]))

    @maps_pg_errors
    async def put_link(
        self, app: str, key: str, version: int, blob: bytes | None, ttl_s: float, now: float
    ) -> bool:
        return await self._tx(_put_link, app, key, version, blob, now + ttl_s, now)

    @maps_pg_errors
    async def set_choice(
        self, app: str, openid: str, template_id: str, accepted: bool, at: float
    ) -> bool:
        done = await self._p.fetchval(_SET_CHOICE, app, openid, template_id, not accepted, at)
        return done is not None

    @maps_pg_errors
    async def is_suppressed(self, app: str, openid: str, template_id: str) -> bool:
        rejected = await self._p.fetchval(
            "SELECT rejected FROM suppressions WHERE app = $1 AND openid = $2 AND template_id = $3",
            app,
            openid,
            template_id,
        )
        return rejected is True

    @maps_pg_errors
    async def suppression_counts(self) -> dict[str, int]:
        rows = await self._p.fetch(
            "SELECT app, count(*) FROM suppressions WHERE rejected GROUP BY app"
        )
        return {str(r[0]): int(r[1]) for r in rows}

    @maps_pg_errors
    async def incr_quota(self, app: str, day: str, n: int = 1) -> int:
        total = await self._p.fetchval(
            "INSERT INTO quota VALUES ($1, $2, $3) ON CONFLICT (app, day) DO UPDATE "
            "SET n = quota.n + excluded.n RETURNING n",
            app,
            day,
            n,
        )
        return int(total)

    @maps_pg_errors
    async def take_rate(
        self, app: str, rate_per_s: float, burst: float, n: int, now: float
    ) -> float:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError("rate_per_s and burst must be > 0")
        # Every send takes from its app's bucket: concurrent takes share one transaction.
        return await self._rate_takes.submit((app, float(rate_per_s), float(burst), n, now))

    async def _run_rate_takes(
        self, takes: list[tuple[str, float, float, int, float]]
    ) -> list[float]:
        return await self._tx(_take_rates, takes)


async def prune(conn: Conn, now: float) -> None:
    """Drop expired locks and nonces."""
    await conn.execute("DELETE FROM locks WHERE expires_at < $1", now)
    await conn.execute("DELETE FROM nonces WHERE expires_at < $1", now)
