"""Versioned schema migrations: the SQL files in migrations/ (package data), applied in order at
start under a transaction-scoped advisory lock, so processes starting at once apply each one
exactly once. A schema newer than this code is refused: an older wxgate must not write rows it
does not understand."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from importlib import resources

import asyncpg

from wxgate.errors import StoreError
from wxgate.store.postgres.dsn import libpq_url

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_VERSIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version integer PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)


DAY_S = 86400
PARTITIONS_AHEAD_DAYS = 3


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with this code, oldest first."""
    found = []
    for entry in resources.files("wxgate.store.postgres.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def code_version() -> int:
    return max(m.version for m in migrations())


def lock_key(schema: str) -> int:
    """The advisory lock of one schema's migrations (a signed 64-bit key)."""
    return zlib.crc32(f"wxgate-migrate:{schema}".encode()) - (1 << 31)


@dataclass(frozen=True)
class SchemaStatus:
    database_version: int
    code_version: int
    pending: list[str]


async def _applied(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    found = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    return int(found or 0)


async def status(conn: asyncpg.Connection) -> SchemaStatus:
    current = await _applied(conn)
    pending = [f"{m.version:04d}_{m.name}" for m in migrations() if m.version > current]
    return SchemaStatus(current, code_version(), pending)


async def migrate(conn: asyncpg.Connection, schema: str) -> list[str]:
    """Apply what is missing, in one transaction under the lock (all or nothing); the names
    applied. StoreError when the database is newer than this code."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(_VERSIONS_DDL)
        current = await _applied(conn)
        newest = code_version()
        if current > newest:
            raise StoreError(
                f"database schema is version {current}, newer than this wxgate's {newest}: "
                "upgrade wxgate (or point it at another database)"
            )
        for m in migrations():
            if m.version <= current:
                continue
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name
            )
            applied.append(f"{m.version:04d}_{m.name}")
    return applied


async def ensure_partitions(conn: asyncpg.Connection, schema: str, now: float) -> None:
    """The finished messages' day partitions from today to a few days ahead (at open and
    after every pruning pass; cheap when they exist). Made ahead of time because creating one
    briefly locks `messages` and checks the default partition holds none of its rows. A
    transaction of its own under the migrations' lock: two processes creating partitions at
    once would deadlock on the table locks."""
    today = int(now // DAY_S)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        await conn.fetchval(
            "SELECT wx_ensure_partitions($1, $2)", today, today + PARTITIONS_AHEAD_DAYS
        )


async def _admin_connect(url: str, schema: str, timeout_s: float) -> asyncpg.Connection:
    dsn, timeout_s = libpq_url(url, timeout_s)
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, timeout=timeout_s, server_settings={"search_path": f'"{schema}"'}
    )
    return conn


async def database_status(url: str, schema: str = "public", timeout_s: float = 5.0) -> SchemaStatus:
    """`wxgate db status`: the database's schema version beside this code's."""
    conn = await _admin_connect(url, schema, timeout_s)
    try:
        return await status(conn)
    finally:
        await conn.close()


async def migrate_database(url: str, schema: str = "public", timeout_s: float = 5.0) -> list[str]:
    """`wxgate db migrate`: apply what is pending (what every gateway also does at start)."""
    conn = await _admin_connect(url, schema, timeout_s)
    try:
        return await migrate(conn, schema)
    finally:
        await conn.close()
