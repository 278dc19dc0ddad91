"""Shared state on SQLite (SharedState): token cache, locks, pauses, quota counters, callback
nonces and receipt links, all in the file so every process opening it shares them; and the
rate buckets, which
are kept in this process (see SQLiteShared.take_rate).

Writes run on the writer thread like queue.py's; reads on the reader thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wxgate.models import AppPause, TokenEntry
from wxgate.store.sqlite import throughput
from wxgate.store.sqlite.core import SQLiteCore
from wxgate.store.sqlite.rows import Conn


class SQLiteShared(SQLiteCore):
    async def add_throughput(self, buckets: Mapping[int, Sequence[int]]) -> None:
        await self._write(throughput.add, dict(buckets))

    async def throughput(self, since: int) -> list[tuple[int, int, int, int, int]]:
        return await self._read(throughput.read, since)

    async def get_token(self, app: str) -> TokenEntry | None:
        return await self._read(get_token, app)

    async def set_token(self, app: str, entry: TokenEntry) -> None:
        await self._write(set_token, app, entry)

    async def invalidate_token(self, app: str, access_token: str) -> bool:
        return await self._write(invalidate_token, app, access_token)

    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        return await self._write(acquire_lock, name, owner, ttl_s, self._clock.now())

    async def release_lock(self, name: str, owner: str) -> None:
        await self._write(release_lock, name, owner)

    async def get_pauses(self) -> list[AppPause]:
        return await self._read(get_pauses, self._clock.now())

    async def set_pause(self, pause: AppPause) -> None:
        await self._write(set_pause, pause, self._clock.now())

    async def clear_pause(self, app: str) -> None:
        await self._write(clear_pause, app)

    async def remember_nonce(
        self, app: str, nonce: str, digest: str, ttl_s: float, now: float
    ) -> bool:
        return await self._write(remember_nonce, app, nonce, digest, ttl_s, now)

    async def get_link(self, app: str, key: str, now: float) -> tuple[int, bytes | None]:
        return await self._read(get_link, app, key, now)

    async def put_link(
        self, app: str, key: str, version: int, blob: bytes | None, ttl_s: float, now: float
    ) -> bool:
        return await self._write(put_link, app, key, version, blob, now + ttl_s, now)

    async def set_choice(
        self, app: str, openid: str, template_id: str, accepted: bool, at: float
    ) -> bool:
        return await self._write(set_choice, app, openid, template_id, accepted, at)

    async def is_suppressed(self, app: str, openid: str, template_id: str) -> bool:
        return await self._read(is_suppressed, app, openid, template_id)

    async def suppression_counts(self) -> dict[str, int]:
        return await self._read(suppression_counts)

    async def incr_quota(self, app: str, day: str, n: int = 1) -> int:
        return await self._write(incr_quota, app, day, n)

    async def take_rate(
        self, app: str, rate_per_s: float, burst: float, n: int, now: float
    ) -> float:
        """Process-local: processes sharing one file each get the full rate. A database round
        trip per send would cost more than the send budget, and an embedded deployment is one
        process, so the bucket lives in memory (policy.ratelimit.RateBuckets). Redis shares
        its bucket instead."""
        return self._buckets.take(app, rate_per_s, burst, n, now)


# ---------------------------------------------------------------- writes (writer thread)


def set_token(conn: Conn, app: str, entry: TokenEntry) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)",
        (app, entry.access_token, entry.expires_at, entry.fetched_at),
    )


def invalidate_token(conn: Conn, app: str, access_token: str) -> bool:
    cur = conn.execute("DELETE FROM tokens WHERE app = ? AND access_token = ?", (app, access_token))
    return cur.rowcount == 1


_ACQUIRE = (
    "INSERT INTO locks VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
    "owner = excluded.owner, expires_at = excluded.expires_at "
    "WHERE locks.expires_at <= ? OR locks.owner = excluded.owner"
)


def acquire_lock(conn: Conn, name: str, owner: str, ttl_s: float, now: float) -> bool:
    return conn.execute(_ACQUIRE, (name, owner, now + ttl_s, now)).rowcount == 1


def release_lock(conn: Conn, name: str, owner: str) -> None:
    conn.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))


_REMEMBER_NONCE = (
    "INSERT INTO nonces VALUES (?, ?, ?, ?) ON CONFLICT (app, nonce) DO UPDATE SET "
    "digest = excluded.digest, expires_at = excluded.expires_at WHERE nonces.expires_at <= ?"
)


# Each new nonce drops up to two expired ones, so expired rows cannot pile up between the
# writer's housekeeping slices however fast WeChat pushes.
_DROP_EXPIRED_NONCES = (
    "DELETE FROM nonces WHERE (app, nonce) IN "
    "(SELECT app, nonce FROM nonces WHERE expires_at < ? LIMIT 2)"
)


def remember_nonce(conn: Conn, app: str, nonce: str, digest: str, ttl_s: float, now: float) -> bool:
    if conn.execute(_REMEMBER_NONCE, (app, nonce, digest, now + ttl_s, now)).rowcount == 1:
        conn.execute(_DROP_EXPIRED_NONCES, (now,))
        return True
    row = conn.execute(
        "SELECT digest FROM nonces WHERE app = ? AND nonce = ?", (app, nonce)
    ).fetchone()
    return row is not None and row[0] == digest


def get_link(conn: Conn, app: str, key: str, now: float) -> tuple[int, bytes | None]:
    row = conn.execute(
        "SELECT version, blob FROM receipt_links WHERE app = ? AND key = ? AND expires_at > ?",
        (app, key, now),
    ).fetchone()
    return (0, None) if row is None else (int(row[0]), bytes(row[1]))


def put_link(
    conn: Conn,
    app: str,
    key: str,
    version: int,
    blob: bytes | None,
    expires_at: float,
    now: float,
) -> bool:
    """Compare-and-set on the row's version; an expired row counts as absent (version 0)."""
    row = conn.execute(
        "SELECT version, expires_at FROM receipt_links WHERE app = ? AND key = ?", (app, key)
    ).fetchone()
    current = 0 if row is None or row[1] <= now else int(row[0])
    if current != version:
        return False
    if blob is None:
        conn.execute("DELETE FROM receipt_links WHERE app = ? AND key = ?", (app, key))
    else:
        conn.execute(
            "INSERT OR REPLACE INTO receipt_links VALUES (?, ?, ?, ?, ?)",
            (app, key, version + 1, blob, expires_at),
        )
    conn.execute("DELETE FROM receipt_links WHERE expires_at <= ?", (now,))
    return True


_SET_CHOICE = (
    "INSERT INTO suppressions VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (app, openid, template_id) DO UPDATE SET rejected = excluded.rejected, "
    "at = excluded.at WHERE excluded.at >= suppressions.at"
)


def set_choice(
    conn: Conn, app: str, openid: str, template_id: str, accepted: bool, at: float
) -> bool:
    rejected = 0 if accepted else 1
    return conn.execute(_SET_CHOICE, (app, openid, template_id, rejected, at)).rowcount == 1


def is_suppressed(conn: Conn, app: str, openid: str, template_id: str) -> bool:
    row = conn.execute(
        "SELECT rejected FROM suppressions WHERE app = ? AND openid = ? AND template_id = ?",
        (app, openid, template_id),
    ).fetchone()
    return row is not None and row[0] == 1


def suppression_counts(conn: Conn) -> dict[str, int]:
    rows = conn.execute(
        "SELECT app, count(*) FROM suppressions WHERE rejected = 1 GROUP BY app"
    ).fetchall()
    return {str(app): int(n) for app, n in rows}


_SET_PAUSE = (
    "INSERT INTO pauses (app, until, reason, errcode, by_whom) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (app) DO UPDATE SET until = excluded.until, reason = excluded.reason, "
    "errcode = excluded.errcode, by_whom = excluded.by_whom "
    "WHERE excluded.by_whom IS NOT NULL OR pauses.by_whom IS NULL OR pauses.until <= ?"
)


def set_pause(conn: Conn, pause: AppPause, now: float) -> None:
    """Replace the app's pause, unless an automatic one would replace a hand-made one."""
    conn.execute(_SET_PAUSE, (pause.app, pause.until, pause.reason, pause.errcode, pause.by, now))


def clear_pause(conn: Conn, app: str) -> None:
    conn.execute("DELETE FROM pauses WHERE app = ?", (app,))


def incr_quota(conn: Conn, app: str, day: str, n: int) -> int:
    rows = conn.execute(
        "INSERT INTO quota VALUES (?, ?, ?) ON CONFLICT (app, day) DO UPDATE "
        "SET n = n + excluded.n RETURNING n",
        (app, day, n),
    ).fetchall()
    return int(rows[0][0])


# ---------------------------------------------------------------- reads (reader thread)


def get_token(conn: Conn, app: str) -> TokenEntry | None:
    rows = conn.execute(
        "SELECT access_token, expires_at, fetched_at FROM tokens WHERE app = ?", (app,)
    ).fetchall()
    if not rows:
        return None
    token, expires_at, fetched_at = rows[0]
    return TokenEntry(access_token=token, expires_at=expires_at, fetched_at=fetched_at)


def get_pauses(conn: Conn, now: float) -> list[AppPause]:
    rows = conn.execute(
        "SELECT app, until, reason, errcode, by_whom FROM pauses WHERE until > ? ORDER BY app",
        (now,),
    ).fetchall()
    return [AppPause(app=a, until=u, reason=r, errcode=e, by=b) for a, u, r, e, b in rows]


# ---------------------------------------------------------------- retention

_PRUNE_NONCES = (
    "DELETE FROM nonces WHERE (app, nonce) IN "
    "(SELECT app, nonce FROM nonces WHERE expires_at < ? LIMIT ?)"
)


def prune(conn: Conn, now: float, limit: int) -> None:
    """Drop expired locks, and up to `limit` expired nonces."""
    conn.execute("DELETE FROM locks WHERE expires_at < ?", (now,))
    conn.execute(_PRUNE_NONCES, (now, limit))
