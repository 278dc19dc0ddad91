"""LISTEN/NOTIFY instead of polling when idle: after a lease found nothing, the store knows the
earliest due_at of any message (an expired lease included) and skips the lease query until
then, unless a change made something due sooner. Changes in this process say so directly
(`changed`); other processes' arrive as notifications on `wxgate_due_<schema>`, sent at commit
by a trigger on messages_active (migrations/0001_init.sql). Without a listening connection
(lost, or not yet made) every lease queries, as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from wxgate.store.postgres.connection import DRIVER_ERRORS

_RELISTEN_EVERY_S = 5.0


class Wakeups:
    def __init__(self, schema: str) -> None:
        self.channel = f"wxgate_due_{schema}"[:63]
        self._conn: asyncpg.Connection | None = None  # its own, outside the pool
        self._next_try = 0.0
        self._dirty = True
        self._idle_until: float | None = None
        self._idle_excluded: frozenset[str] = frozenset()
        self.skipped = 0  # lease calls answered without a query (tests, repr)

    def changed(self) -> None:
        """Something may be due sooner: the next lease queries."""
        self._dirty = True

    def _notified(self, *_: object) -> None:
        self._dirty = True

    def _lost(self, *_: object) -> None:
        self._conn = None
        self._dirty = True

    def idle(self, now: float, exclude_apps: frozenset[str]) -> bool:
        """Whether a lease now would surely find nothing (see the module docstring)."""
        if self._dirty or self._conn is None or self._idle_until is None:
            return False
        if now >= self._idle_until or not exclude_apps >= self._idle_excluded:
            return False
        self.skipped += 1
        return True

    def leasing(self) -> None:
        """A lease query starts: changes from now on are seen by the next one."""
        self._dirty = False
        self._idle_until = None

    def went_idle(self, next_due: float | None, exclude_apps: frozenset[str]) -> None:
        self._idle_until = float("inf") if next_due is None else next_due
        self._idle_excluded = exclude_apps

    async def listen(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        """Hold a connection of its own listening (not one of the pool's, which a pool of
        one would then lack); made again at most every few seconds once lost. Best effort:
        without it leases simply query."""
        if self._conn is not None or time.monotonic() < self._next_try:
            return
        self._next_try = time.monotonic() + _RELISTEN_EVERY_S
        try:
            conn = await connect()
        except DRIVER_ERRORS:
            return
        try:
            await conn.add_listener(self.channel, self._notified)
        except DRIVER_ERRORS:
            conn.terminate()
            return
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self._dirty = True  # whatever happened before we listened

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await asyncio.wait_for(conn.close(), 5)
        except DRIVER_ERRORS:
            conn.terminate()

    def __repr__(self) -> str:
        return f"<Wakeups listening={self._conn is not None} skipped={self.skipped}>"
