"""The embedded store: one SQLite file in WAL mode, worked by three threads.

The writer thread owns the only write connection and commits concurrent callers' writes
together (writer.py); a reader thread serves reads from its own connection, which WAL
never blocks; a checkpoint thread copies the log back into the file (checkpoint.py).

Durability: with WAL, `synchronous=NORMAL` loses nothing when the *process* dies (kill -9 at
any moment: every commit is in the WAL file, which the OS keeps), which is the promise
"accepted means durable" makes. It can lose the last commits if the *machine* loses power
or the OS crashes before a checkpoint; pass synchronous="FULL" to fsync every commit (group
commit keeps that affordable) when that matters more than latency.

Every piece of shared state (tokens, locks, pauses, quota) lives in the file, so processes
opening the same file share it. Only `take_rate` is process-local (see shared.py). The
file holds access tokens, so `open()` creates it mode 0600 (SQLite gives its -wal and -shm
files the database file's mode).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
from pathlib import Path

from wxgate.clock import Clock
from wxgate.errors import ConfigError, StoreUnavailable
from wxgate.policy.ratelimit import RateBuckets
from wxgate.store.batch_shared import SharedCache
from wxgate.store.sqlite import batches, outbox, outcomes, queue, shared
from wxgate.store.sqlite.batches import SQLiteBatches
from wxgate.store.sqlite.checkpoint import Checkpointer
from wxgate.store.sqlite.outbox import SQLiteOutbox
from wxgate.store.sqlite.outcomes import SQLiteOutcomes
from wxgate.store.sqlite.queue import SQLiteQueue
from wxgate.store.sqlite.rows import Conn
from wxgate.store.sqlite.schema import connect, create_schema
from wxgate.store.sqlite.shared import SQLiteShared
from wxgate.store.sqlite.writer import BatchedOps, GroupCommitWriter, map_error

log = logging.getLogger("wxgate.store.sqlite")

_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
# Rows deleted per pruning transaction: small enough that callers queued behind it wait
# only milliseconds; the writer comes back for the rest right after their groups.
PRUNE_BATCH = 1000
# After commits failed, ping reports ready again only with this much free on the file's disk.
READY_HEADROOM_BYTES = 1 << 20

# Operations with a batched form (each role lists its own): the writer runs consecutive
# calls of one as one call.
BATCHED: BatchedOps = {**queue.BATCHED, **outcomes.BATCHED}


class SQLiteStore(SQLiteQueue, SQLiteOutcomes, SQLiteBatches, SQLiteShared, SQLiteOutbox):
    """Store on one SQLite file. Bound to the event loop that ran `open()`.

    Each role's methods and their SQL live in the role's module (queue.py, outcomes.py,
    batches.py, shared.py, outbox.py); this class adds the lifecycle.
    """

    def __init__(
        self,
        path: str,
        clock: Clock,
        *,
        retention_s: float = 7 * 86400,
        synchronous: str = "NORMAL",
        max_group: int = 2048,
        prune_every_s: float = 60.0,
        busy_timeout_s: float = 5.0,
    ) -> None:
        if not path or path == ":memory:" or path.startswith("file::memory:"):
            raise ConfigError(
                "SQLite store needs a file path: an in-memory database is not durable"
            )
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path = path
        self._clock = clock
        self._retention_s = retention_s
        self._synchronous = synchronous.upper()
        self._busy_timeout_s = busy_timeout_s
        self._writer = GroupCommitWriter(
            self._connect_writer,
            max_group=max_group,
            batched=BATCHED,
            housekeeping=self._housekeep,
            housekeeping_every_s=prune_every_s,
        )
        self._checkpointer = Checkpointer(self._connect_checkpointer)
        self._reader = None
        self._read_conn = None
        self._buckets = RateBuckets()
        self._shared = SharedCache(self._load_shared)
        self._open = False

    # ---------------------------------------------------------------- lifecycle

    def _connect_writer(self) -> sqlite3.Connection:
        conn = connect(self.path, self._synchronous, self._busy_timeout_s, cache_kib=32768)
        create_schema(conn)
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        return connect(self.path, self._synchronous, self._busy_timeout_s)

    async def open(self) -> None:
        if self._open:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        _create_private(self.path)
        await self._writer.start()  # creates the schema before any reader looks
        try:
            self._read_conn = connect(
                self.path, self._synchronous, self._busy_timeout_s, read_only=True, cache_kib=16384
            )
        except sqlite3.Error as exc:
            await self._writer.stop()
            raise map_error(exc) from None
        self._reader = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="wxgate-sqlite-read"
        )
        self._checkpointer.start()
        self._open = True

    async def close(self) -> None:
        """Finish queued writes, then release the file. Safe to call twice."""
        if not self._open:
            return
        self._open = False
        await self._writer.stop()
        await self._checkpointer.stop()
        reader, self._reader = self._reader, None
        conn, self._read_conn = self._read_conn, None
        if reader is not None:
            await asyncio.to_thread(reader.shutdown, wait=True)
        if conn is not None:
            conn.close()

    async def ping(self) -> None:
        """Not ready while commits fail (a full disk leaves reads working). Once one has
        failed, each ping asks for READY_HEADROOM_BYTES free on the file's disk (a small write
        can still commit into the log's slack on a full one) and for a write that needs new
        pages to commit (probe), which clears the failure."""
        if not self._writer.alive:
            raise StoreUnavailable("SQLite store is closed")
        if self._writer.failing is not None:
            free = _free_bytes(self.path)
            if free < READY_HEADROOM_BYTES:
                raise StoreUnavailable(f"SQLite store's disk is full ({free} bytes free)")
            await self._write(probe)
        await self._read(ping)

    def _housekeep(self, conn: sqlite3.Connection) -> bool:
        now = self._clock.now()
        return prune(conn, now - self._retention_s, now, PRUNE_BATCH) >= PRUNE_BATCH

    async def prune(self) -> int:
        """Delete finished messages older than retention_s now; how many went.

        The writer also does this every `prune_every_s`, a bounded slice at a time.
        """
        now = self._clock.now()
        total = 0
        while True:
            n = await self._write(prune, now - self._retention_s, now, PRUNE_BATCH)
            total += n
            if n < PRUNE_BATCH:
                return total

    def __repr__(self) -> str:
        return f"<SQLiteStore path={self.path!r} open={self._open} writer={self._writer!r}>"


def prune(conn: Conn, cutoff: float, now: float, limit: int) -> int:
    """Delete up to `limit` finished messages older than `cutoff`, and every role's other stale
    rows; how many messages went. Bounded so the writer never stalls callers for long; called
    again until it returns < limit."""
    deleted = queue.prune(conn, cutoff, limit)
    outbox.prune(conn, cutoff, limit)
    shared.prune(conn, now, limit)
    batches.prune(conn, cutoff)  # after queue.prune: a batch goes with its last message
    queue.prune_counts(conn)
    return deleted


# ---------------------------------------------------------------- health (ping)

PROBE_BYTES = 16384


def probe(conn: Conn) -> None:
    """Whether writes that need new pages commit (SQLiteStore.ping): a row of PROBE_BYTES,
    deleted in the same transaction, so the file keeps no more than a few free pages."""
    conn.execute("INSERT INTO meta VALUES ('probe', zeroblob(?))", (PROBE_BYTES,))
    conn.execute("DELETE FROM meta WHERE key = 'probe'")


def ping(conn: Conn) -> None:
    conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()


def _free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the disk holding `path`."""
    st = os.statvfs(Path(path).parent)
    return st.f_bavail * st.f_frsize


def _create_private(path: str) -> None:
    """Create the database file mode 0600 (not by the umask): it holds access tokens. An
    existing file keeps the mode its operator gave it; a warning says if others can read it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "SQLite store %s is mode %o: other users may read its access tokens (chmod 600 it)",
                path,
                mode,
            )
        return
    except OSError as exc:
        raise StoreUnavailable(f"SQLite store cannot create {path}: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # the umask may have taken bits off O_CREAT's mode: exactly 0600
    os.close(fd)
