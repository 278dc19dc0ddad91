"""Shared state on PostgreSQL (SharedState): token cache, locks, pauses, quota counters,
callback nonces and the rate buckets, all in tables every process and machine sees, so one
token is fetched per app and one rate holds across `--processes N` and every `--role`.

Locks are rows with an expiry (a lock must outlive the connection that took it and lapse on
its own if its owner dies); advisory locks guard what is only held within one transaction
(migrations, the pruning pass).
"""

from __future__ import annotations

import asyncpg

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


async def _take_rates(conn: Conn, takes: list[tuple[str, float, float, int, float]]) -> list[float]:
    # In app order, so two processes' coalesced takes lock bucket rows in one order.
    order = sorted(range(len(takes)), key=lambda i: takes[i][0])
    out = [0.0] * len(takes)
    for i in order:
        app, rate, burst, n, now = takes[i]
        tokens = float(await conn.fetchval(_TAKE_RATE, app, rate, burst, n, now))
        out[i] = 0.0 if tokens >= 0 else -tokens / rate
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


class PostgresSharedState(PostgresConnection):
    def _init_shared(self) -> None:
        self._rate_takes: Coalescer[tuple[str, float, float, int, float], float] = Coalescer(
            self._run_rate_takes, RATE_TAKES_PER_CALL
        )

    async def _drain_shared(self) -> None:
        await self._rate_takes.wait_idle()

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
