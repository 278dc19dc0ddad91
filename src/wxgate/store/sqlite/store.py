"""The embedded store: one SQLite file in WAL mode, worked by three threads.

The writer thread owns the only write connection and commits concurrent callers' writes
together (sqlite_writer.py); a reader thread serves reads from its own connection, which WAL
never blocks; a checkpoint thread copies the log back into the file (sqlite_checkpoint.py).

Durability: with WAL, `synchronous=NORMAL` loses nothing when the *process* dies (kill -9 at
any moment: every commit is in the WAL file, which the OS keeps), which is the promise
"accepted means durable" makes. It can lose the last commits if the *machine* loses power
or the OS crashes before a checkpoint; pass synchronous="FULL" to fsync every commit (group
commit keeps that affordable) when that matters more than latency.

Every piece of shared state (tokens, locks, pauses, quota) lives in the file, so processes
opening the same file share it. Only `take_rate` is process-local (see ratebucket.py). The
file holds access tokens, so `open()` creates it mode 0600 (SQLite gives its -wal and -shm
files the database file's mode).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from wxgate.clock import Clock
from wxgate.errors import ConfigError, StoreUnavailable
from wxgate.models import (
    AppPause,
    Batch,
    EnqueueResult,
    ErrorInfo,
    Message,
    SendResult,
    SharedFields,
    Status,
    StoreStats,
    TokenEntry,
    WebhookEvent,
    WebhookStats,
)
from wxgate.store import sqlite_ops as ops
from wxgate.store import sqlite_reads as reads
from wxgate.store import sqlite_state as state
from wxgate.store import sqlite_webhooks as webhooks
from wxgate.store.batch_shared import SharedCache
from wxgate.store.ratebucket import RateBuckets
from wxgate.store.sqlite_checkpoint import Checkpointer
from wxgate.store.sqlite_schema import connect, create_schema
from wxgate.store.sqlite_writer import GroupCommitWriter, map_error

T = TypeVar("T")

log = logging.getLogger("wxgate.store.sqlite")

_SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
# Rows deleted per pruning transaction: small enough that callers queued behind it wait
# only milliseconds; the writer comes back for the rest right after their groups.
PRUNE_BATCH = 1000


# An enqueue this large goes to the writer at once (GroupCommitWriter.submit_now).
BIG_ENQUEUE = 100
# After commits failed, ping reports ready again only with this much free on the file's disk.
READY_HEADROOM_BYTES = 1 << 20


class SQLiteStore:
    """Store on one SQLite file. Bound to the event loop that ran `open()`."""

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
            batched=ops.BATCHED,
            housekeeping=self._housekeep,
            housekeeping_every_s=prune_every_s,
        )
        self._checkpointer = Checkpointer(self._connect_checkpointer)
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
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
        pages to commit (state.probe), which clears the failure."""
        if not self._writer.alive:
            raise StoreUnavailable("SQLite store is closed")
        if self._writer.failing is not None:
            free = _free_bytes(self.path)
            if free < READY_HEADROOM_BYTES:
                raise StoreUnavailable(f"SQLite store's disk is full ({free} bytes free)")
            await self._write(state.probe)
        await self._read(reads.ping)

    # ---------------------------------------------------------------- plumbing

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._writer.submit(fn, *args)
        return result

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        reader, conn = self._reader, self._read_conn
        if reader is None or conn is None:
            raise StoreUnavailable("SQLite store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(reader, functools.partial(fn, conn, *args))
        except sqlite3.Error as exc:
            raise map_error(exc) from None
        except RuntimeError as exc:  # executor shut down between the check and the call
            raise StoreUnavailable("SQLite store is closed") from exc

    async def _load_shared(self, batch_ids: Sequence[str]) -> dict[str, SharedFields]:
        return await self._read(reads.batch_shared, list(batch_ids))

    async def _filled(self, messages: list[Message]) -> list[Message]:
        """Batch messages as read (own data only) with their batch's shared fields back."""
        await self._shared.fill(messages)
        return messages

    async def _filled_one(self, message: Message | None) -> Message | None:
        if message is not None and message.shared is not None:
            await self._shared.fill((message,))
        return message

    def _housekeep(self, conn: sqlite3.Connection) -> bool:
        now = self._clock.now()
        return ops.prune(conn, now - self._retention_s, now, PRUNE_BATCH) >= PRUNE_BATCH

    async def prune(self) -> int:
        """Delete finished messages older than retention_s now; how many went.

        The writer also does this every `prune_every_s`, a bounded slice at a time.
        """
        now = self._clock.now()
        total = 0
        while True:
            n = await self._write(ops.prune, now - self._retention_s, now, PRUNE_BATCH)
            total += n
            if n < PRUNE_BATCH:
                return total

    # ---------------------------------------------------------------- messages

    async def enqueue(
        self, messages: Sequence[Message], batch: Batch | None = None
    ) -> list[EnqueueResult]:
        writer = self._writer
        submit = writer.submit_now if len(messages) >= BIG_ENQUEUE else writer.submit
        result: list[EnqueueResult] = await submit(ops.enqueue, messages, batch, self._clock.now())
        if batch is not None and batch.shared is not None:
            self._shared.put(batch.id, batch.shared)  # its first leases need no read
        return result

    async def lease(
        self, n: int, lease_s: float, now: float, exclude_apps: frozenset[str] = frozenset()
    ) -> list[Message]:
        return await self._filled(await self._write(ops.lease, n, lease_s, now, exclude_apps))

    async def ack(self, msg_id: str, lease_token: int, result: SendResult) -> Status | None:
        return await self._write(ops.ack, msg_id, lease_token, result, self._clock.now())

    async def retry(
        self,
        msg_id: str,
        lease_token: int,
        at: float,
        error: ErrorInfo | None,
        count_attempt: bool,
    ) -> bool:
        now = self._clock.now()
        return await self._write(ops.retry, msg_id, lease_token, at, error, count_attempt, now)

    async def dead(self, msg_id: str, lease_token: int, error: ErrorInfo) -> bool:
        return await self._write(ops.dead, msg_id, lease_token, error, self._clock.now())

    async def expire(self, msg_id: str, lease_token: int) -> bool:
        return await self._write(ops.expire, msg_id, lease_token, self._clock.now())

    async def cancel(self, msg_id: str) -> str:
        return await self._write(ops.cancel, msg_id, self._clock.now())

    async def get(self, msg_id: str) -> Message | None:
        return await self._filled_one(await self._read(reads.get, msg_id))

    async def find_by_wechat_msgid(self, app: str, wechat_msgid: int) -> Message | None:
        return await self._filled_one(
            await self._read(reads.find_by_wechat_msgid, app, wechat_msgid)
        )

    async def record_receipt(
        self, app: str, wechat_msgid: int, receipt: str, event_key: str, openid: str | None = None
    ) -> Message | None:
        now = self._clock.now()
        return await self._filled_one(
            await self._write(
                ops.record_receipt, app, wechat_msgid, receipt, event_key, openid, now
            )
        )

    async def stats(self) -> StoreStats:
        return await self._read(reads.stats)

    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await self._read(reads.dead_letters, app, errcode, cursor, limit)
        return await self._filled(page), next_cursor

    async def requeue(
        self,
        ids: Sequence[str] | None = None,
        app: str | None = None,
        errcode: int | None = None,
    ) -> int:
        ids = None if ids is None else list(ids)
        return await self._write(ops.requeue, ids, app, errcode, self._clock.now())

    # ---------------------------------------------------------------- batches

    async def get_batch(self, batch_id: str) -> Batch | None:
        return await self._read(reads.get_batch, batch_id)

    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        return await self._read(reads.batch_counts, batch_id)

    async def recent_batches(self, limit: int = 20) -> list[Batch]:
        return await self._read(reads.recent_batches, limit)

    async def set_batch_status(self, batch_id: str, status: str, expect: str | None = None) -> bool:
        if status not in ops.BATCH_STATUSES:
            raise ValueError(f"batch status must be one of {sorted(ops.BATCH_STATUSES)}")
        now = self._clock.now()
        return await self._write(ops.set_batch_status, batch_id, status, expect, now)

    async def set_batch_total(self, batch_id: str, total: int) -> bool:
        return await self._write(ops.set_batch_total, batch_id, total)

    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> bool:
        return await self._write(ops.set_batch_rate, batch_id, rate_per_s, self._clock.now())

    async def batch_rates(self) -> dict[str, float]:
        return await self._read(reads.batch_rates)

    async def batch_messages(
        self, batch_id: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await self._read(reads.batch_messages, batch_id, cursor, limit)
        return await self._filled(page), next_cursor

    async def batch_errcodes(self, batch_id: str) -> dict[int, int]:
        return await self._read(reads.batch_errcodes, batch_id)

    # ---------------------------------------------------------------- shared state

    async def get_token(self, app: str) -> TokenEntry | None:
        return await self._read(reads.get_token, app)

    async def set_token(self, app: str, entry: TokenEntry) -> None:
        await self._write(state.set_token, app, entry)

    async def invalidate_token(self, app: str, access_token: str) -> bool:
        return await self._write(state.invalidate_token, app, access_token)

    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool:
        return await self._write(state.acquire_lock, name, owner, ttl_s, self._clock.now())

    async def release_lock(self, name: str, owner: str) -> None:
        await self._write(state.release_lock, name, owner)

    async def get_pauses(self) -> list[AppPause]:
        return await self._read(reads.get_pauses, self._clock.now())

    async def set_pause(self, pause: AppPause) -> None:
        await self._write(state.set_pause, pause)

    async def clear_pause(self, app: str) -> None:
        await self._write(state.clear_pause, app)

    async def remember_nonce(
        self, app: str, nonce: str, digest: str, ttl_s: float, now: float
    ) -> bool:
        return await self._write(state.remember_nonce, app, nonce, digest, ttl_s, now)

    async def incr_quota(self, app: str, day: str, n: int = 1) -> int:
        return await self._write(state.incr_quota, app, day, n)

    async def take_rate(
        self, app: str, rate_per_s: float, burst: float, n: int, now: float
    ) -> float:
        """Process-local: processes sharing one file each get the full rate (see module doc)."""
        return self._buckets.take(app, rate_per_s, burst, n, now)

    # ---------------------------------------------------------------- status webhooks

    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        return await self._write(webhooks.lease, n, lease_s, now)

    async def webhook_delivered(self, event_id: str) -> bool:
        return await self._write(webhooks.delivered, event_id)

    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        return await self._write(webhooks.retry, event_id, at, error)

    async def webhook_failed(self, event_id: str, error: str) -> bool:
        return await self._write(webhooks.failed, event_id, error, self._clock.now())

    async def webhook_stats(self) -> WebhookStats:
        return await self._read(webhooks.stats)

    def __repr__(self) -> str:
        return f"<SQLiteStore path={self.path!r} open={self._open} writer={self._writer!r}>"


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
