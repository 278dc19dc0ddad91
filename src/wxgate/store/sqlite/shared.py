"""SQLite writes of the state processes share: token cache, locks, pauses, quota counters,
callback nonces.

Run by the writer thread like sqlite_ops (inside its transaction); reads are in sqlite_reads.
"""

from __future__ import annotations

import sqlite3

from wxgate.models import AppPause, TokenEntry

Conn = sqlite3.Connection


PROBE_BYTES = 16384


def probe(conn: Conn) -> None:
    """Whether writes that need new pages commit (SQLiteStore.ping): a row of PROBE_BYTES,
    deleted in the same transaction, so the file keeps no more than a few free pages."""
    conn.execute("INSERT INTO meta VALUES ('probe', zeroblob(?))", (PROBE_BYTES,))
    conn.execute("DELETE FROM meta WHERE key = 'probe'")


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


def set_pause(conn: Conn, pause: AppPause) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO pauses VALUES (?, ?, ?, ?)",
        (pause.app, pause.until, pause.reason, pause.errcode),
    )


def clear_pause(conn: Conn, app: str) -> None:
    conn.execute("DELETE FROM pauses WHERE app = ?", (app,))


def incr_quota(conn: Conn, app: str, day: str, n: int) -> int:
    rows = conn.execute(
        "INSERT INTO quota VALUES (?, ?, ?) ON CONFLICT (app, day) DO UPDATE "
        "SET n = n + excluded.n RETURNING n",
        (app, day, n),
    ).fetchall()
    return int(rows[0][0])
