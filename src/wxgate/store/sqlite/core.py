"""What every role part of SQLiteStore shares: its state and the two ways to the file, `_write`
(the group-commit writer thread) and `_read` (the reader thread). SQLiteStore (store.py) sets
it up; each role (queue.py, outcomes.py, batches.py, shared.py, outbox.py) is a subclass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from wxgate.clock import Clock
from wxgate.errors import StoreUnavailable
from wxgate.policy.ratelimit import RateBuckets
from wxgate.store.batch_shared import SharedCache
from wxgate.store.sqlite.writer import GroupCommitWriter, map_error

T = TypeVar("T")


class SQLiteCore:
    """The store's state (set by SQLiteStore.__init__) and its plumbing."""

    _clock: Clock
    _writer: GroupCommitWriter
    _reader: concurrent.futures.ThreadPoolExecutor | None
    _read_conn: sqlite3.Connection | None
    _buckets: RateBuckets
    _shared: SharedCache

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
