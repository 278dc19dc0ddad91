"""Copies the WAL back into the database file on a thread of its own.

SQLite's automatic checkpoint runs inside whichever commit crosses the threshold, so one
unlucky group of callers would wait for a few MB of writes and an fsync. A PASSIVE
checkpoint from another connection runs alongside the writer instead (WAL allows that), and
the writer reuses the log from the start once everything in it has been copied.

A checkpoint that fails (a full disk cannot take the copied pages) is retried every `every_s`
but logged once, and once more when one succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger("wxgate.store.sqlite")


class Checkpointer:
    def __init__(self, connect: Callable[[], sqlite3.Connection], every_s: float = 0.25) -> None:
        self._connect = connect
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.failures = 0
        self.failing = False

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="wxgate-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join)

    def _run(self) -> None:
        try:
            conn = self._connect()
        except sqlite3.Error:
            log.exception("SQLite checkpointer could not connect; big commits will checkpoint")
            return
        try:
            while not self._stop.wait(self._every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    self._failed(exc)
                    continue
                self.runs += 1
                if self.failing:
                    self.failing = False
                    log.warning("SQLite checkpoint recovered")
        finally:
            conn.close()

    def _failed(self, exc: sqlite3.Error) -> None:
        self.failures += 1
        if not self.failing:
            self.failing = True
            log.error(
                "SQLite checkpoint failed (%s); retrying every %.2gs, logged again when it "
                "recovers",
                exc,
                self._every_s,
            )

    def __repr__(self) -> str:
        return (
            f"<Checkpointer running={self._thread is not None} runs={self.runs} "
            f"failures={self.failures} failing={self.failing}>"
        )
