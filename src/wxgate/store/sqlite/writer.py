"""Group commit: one thread owns the write connection and runs everyone's writes together.

Callers put (operation, args, future) on a queue. The writer takes everything queued (up to a
cap), runs it in ONE transaction, commits, and only then resolves the futures, in one hop back
to the event loop. Concurrent callers thus share a commit: throughput grows with load instead
of each caller paying for its own. If one operation fails, the group is rolled back and rerun
one operation per transaction, so a bad call never fails its neighbours. Consecutive calls of
an operation that has a batched form (enqueue) run as one call, one executemany for all.

`failing` says whether the last commit that mattered failed for want of the store (a full
disk, a lock held too long): set by a write refused as unavailable, cleared by the next commit
that changed rows. Each change is logged once, not once per refused write.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from wxgate.errors import StoreError, StoreUnavailable, WxgateError

log = logging.getLogger("wxgate.store.sqlite")

T = TypeVar("T")
Op = Callable[..., Any]
# op -> the same op over a list of calls' args, returning one result per call
BatchedOps = Mapping[Op, Callable[[sqlite3.Connection, list[tuple[Any, ...]]], list[Any]]]
_Item = tuple[Op, tuple[Any, ...], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

HOUSEKEEPING_SLICE_GAP_S = 0.05
_UNAVAILABLE_HINTS = ("locked", "busy", "disk i/o", "unable to open", "readonly", "full", "closed")


def map_error(exc: BaseException) -> BaseException:
    """sqlite3 errors become StoreError / StoreUnavailable; our own errors pass through."""
    if isinstance(exc, WxgateError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"SQLite store rejected the write: {exc}")
    if isinstance(exc, (sqlite3.OperationalError, sqlite3.ProgrammingError)):
        text = str(exc).lower()
        if any(h in text for h in _UNAVAILABLE_HINTS):
            return StoreUnavailable(f"SQLite store unavailable: {exc}")
        return StoreError(f"SQLite store failed: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"SQLite store failed: {exc}")
    return exc


class _Stop:
    pass


_STOP = _Stop()


class GroupCommitWriter:
    """The single writer thread. `submit` is called from the event loop thread only."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        max_group: int = 2048,
        batched: BatchedOps | None = None,
        housekeeping: Callable[[sqlite3.Connection], bool] | None = None,
        housekeeping_every_s: float = 60.0,
    ) -> None:
        self._connect = connect
        self._max_group = max_group
        self._batched = dict(batched or {})
        self._housekeeping = housekeeping
        self._housekeeping_every_s = housekeeping_every_s
        # Items submitted during one event-loop iteration travel as one list: one queue put
        # and one writer wake-up per iteration instead of one per caller.
        self._queue: queue.SimpleQueue[list[_Item] | _Stop] = queue.SimpleQueue()
        self._pending: list[_Item] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = True
        self.groups = 0
        self.ops = 0
        self.failed_groups = 0
        self.failing: str | None = None  # why commits fail now; None while they succeed

    async def start(self) -> None:
        """Start the thread and wait until its connection is open (errors surface here)."""
        self._loop = asyncio.get_running_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="wxgate-sqlite-writer", daemon=True
        )
        self._thread.start()
        await asyncio.wrap_future(ready)
        self._closed = False

    @property
    def alive(self) -> bool:
        return not self._closed and self._thread is not None and self._thread.is_alive()

    def submit(self, fn: Op, *args: Any) -> asyncio.Future[Any]:
        if not self.alive or self._loop is None:
            raise StoreUnavailable("SQLite store is closed")
        fut: asyncio.Future[Any] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append((fn, args, fut))
        return fut

    def submit_now(self, fn: Op, *args: Any) -> asyncio.Future[Any]:
        """`submit`, handing the work to the writer at once rather than at the end of this
        loop iteration: for big operations (a batch's thousand rows), so the writer starts on
        one while the event loop is still decoding the next request's body."""
        fut = self.submit(fn, *args)
        self._flush()
        return fut

    def _flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._queue.put(batch)

    async def stop(self) -> None:
        """Finish what was queued, then stop the thread and close its connection."""
        if self._thread is None:
            return
        self._closed = True
        self._flush()
        self._queue.put(_STOP)
        thread, self._thread = self._thread, None
        await asyncio.to_thread(thread.join)
        self._fail_leftovers()

    # ---------------------------------------------------------------- the thread

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            ready.set_exception(map_error(exc))
            return
        ready.set_result(None)
        try:
            self._serve(conn)
        except BaseException:
            # A bug, not a database error (those are handed to callers). Refuse new work and
            # fail what is queued rather than leave callers waiting forever.
            log.exception("SQLite writer crashed")
            self._closed = True
            self._call_in_loop(self._fail_leftovers)
        finally:
            conn.close()

    def _serve(self, conn: sqlite3.Connection) -> None:
        next_housekeeping = time.monotonic() + self._housekeeping_every_s
        stop = False
        while not stop:
            timeout = max(0.0, next_housekeeping - time.monotonic())
            group, stop = self._next_group(timeout)
            if group:
                changes = conn.total_changes
                outcomes = self._commit_group(conn, group)
                self._note_health(outcomes, conn.total_changes != changes)
                self._call_in_loop(_resolve, outcomes)
            if time.monotonic() >= next_housekeeping:
                more = self._housekeep(conn)
                # A backlog is worked off in slices, letting callers' groups in between.
                pause_s = HOUSEKEEPING_SLICE_GAP_S if more else self._housekeeping_every_s
                next_housekeeping = time.monotonic() + pause_s

    def _next_group(self, timeout: float) -> tuple[list[_Item], bool]:
        """Wait for work, then take everything queued (up to the cap); True = stop after."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return [], False
        if isinstance(first, _Stop):
            return [], True
        group = first
        while len(group) < self._max_group:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Stop):
                return group, True
            group.extend(item)
        return group, False

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Item]) -> list[_Outcome]:
        self.groups += 1
        self.ops += len(group)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            err = map_error(exc)
            return [(fut, None, err) for _, _, fut in group]
        try:
            results = self._run_ops(conn, group)
        except BaseException:
            self.failed_groups += 1
            _rollback(conn)
            if len(group) == 1:
                return [self._run_one(conn, group[0])]
            return [self._run_one(conn, item) for item in group]
        try:
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            err = map_error(exc)
            return [(fut, None, err) for _, _, fut in group]
        return [(item[2], res, None) for item, res in zip(group, results, strict=True)]

    def _run_ops(self, conn: sqlite3.Connection, group: list[_Item]) -> list[Any]:
        """Run a group's operations in order; a run of one batchable op goes as one call."""
        results: list[Any] = []
        i, end = 0, len(group)
        while i < end:
            fn = group[i][0]
            many = self._batched.get(fn)
            j = i + 1
            if many is not None:
                while j < end and group[j][0] is fn:
                    j += 1
            if many is None or j - i == 1:
                results.append(fn(conn, *group[i][1]))
            else:
                results.extend(many(conn, [item[1] for item in group[i:j]]))
            i = j
        return results

    def _run_one(self, conn: sqlite3.Connection, item: _Item) -> _Outcome:
        fn, args, fut = item
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            return (fut, None, map_error(exc))
        return (fut, result, None)

    def _note_health(self, outcomes: list[_Outcome], wrote: bool) -> None:
        """Track (and log once per change) whether commits go through. A group that wrote
        nothing (an empty lease) proves nothing: a full disk still commits those."""
        refused = next((e for _, _, e in outcomes if isinstance(e, StoreUnavailable)), None)
        if refused is not None:
            if self.failing is None:
                log.error(
                    "SQLite commits are failing (%s): writes are refused and /readyz is not "
                    "ready until one commits",
                    refused,
                )
            self.failing = str(refused)
        elif wrote and self.failing is not None and any(e is None for _, _, e in outcomes):
            self.failing = None
            log.warning("SQLite commits succeed again")

    def _housekeep(self, conn: sqlite3.Connection) -> bool:
        """Run the housekeeping slice in its own transaction; True when more is left to do."""
        if self._housekeeping is None:
            return False
        try:
            conn.execute("BEGIN IMMEDIATE")
            more = self._housekeeping(conn)
            conn.execute("COMMIT")
        except Exception:
            _rollback(conn)
            log.exception("SQLite housekeeping failed; will try again later")
            return False
        return more

    def _call_in_loop(self, fn: Callable[..., object], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop closed under us: nobody is waiting any more
            pass

    def _fail_leftovers(self) -> None:
        """Futures queued after the stop marker: fail them rather than leave callers hanging."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Stop):
                continue
            for _, _, fut in item:
                if not fut.done():
                    fut.set_exception(StoreUnavailable("SQLite store is closed"))

    def __repr__(self) -> str:
        return (
            f"<GroupCommitWriter alive={self.alive} queued_batches={self._queue.qsize()} "
            f"groups={self.groups} ops={self.ops} failed_groups={self.failed_groups} "
            f"failing={self.failing is not None}>"
        )


def _resolve(outcomes: list[_Outcome]) -> None:
    for fut, result, exc in outcomes:
        if fut.done():  # the caller gave up (cancelled); the write happened anyway
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("SQLite rollback failed")
