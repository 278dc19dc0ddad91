"""Scheduled redrive: each app's `[[apps.redrive]]` policies run by one process at a time.

Every `check_s` the loop tries the store lock `redrive` (SharedState.acquire_lock, held for
twice the period, renewed by the holder each time): whichever process holds it runs one
round, the others wait for the next tick, so a deployment of many processes re-drives each
dead letter once. A round asks the store, per policy, to move the app's dead letters whose
last errcode the policy lists, that died at least `every_s` ago and have had fewer than
`rounds` rounds (MessageQueue.redrive: bounded, oldest death first, at most ROUND_LIMIT per
policy and round, the rest at the next tick). Each round that moves any is logged at INFO
and counted in wxgate_redrive_messages_total{app}; the workers are woken for the moved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping

from wxgate.clock import Clock
from wxgate.errors import StoreError
from wxgate.metrics import Metrics
from wxgate.settings import AppSettings
from wxgate.store.base import MessageQueue, SharedState

log = logging.getLogger("wxgate.redrive")

LOCK = "redrive"
CHECK_S = 60.0
ROUND_LIMIT = 1000


class Redriver:
    def __init__(
        self,
        store: MessageQueue,
        locks: SharedState,
        apps: Mapping[str, AppSettings],
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        wake: Callable[[], None] = lambda: None,
        check_s: float = CHECK_S,
        owner: str | None = None,
    ) -> None:
        self._store = store
        self._locks = locks
        self._apps = {name: app for name, app in apps.items() if app.redrive}
        self._clock = clock
        self._metrics = metrics
        self._wake = wake
        self._check_s = check_s
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._apps)

    async def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="wxgate-redrive")

    async def close(self) -> None:
        """Stop the loop and give up the lock, so another process takes over at its next
        tick rather than after the lock runs out."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.enabled:
            with contextlib.suppress(StoreError, OSError):
                await self._locks.release_lock(LOCK, self.owner)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreError as exc:  # the store is down: try again next tick
                log.warning(
                    "redrive: store unavailable, next try in %.0f s: %s", self._check_s, exc
                )
            except Exception:  # a bug must not end the loop for good: log it, go on
                log.exception("redrive: the round failed")
            await asyncio.sleep(self._check_s)

    async def tick(self) -> int:
        """One round if this process holds the lock; how many messages moved."""
        if not await self._locks.acquire_lock(LOCK, self.owner, 2 * self._check_s):
            return 0
        total = 0
        for name, app in self._apps.items():
            moved = 0
            for policy in app.redrive:
                died_before = self._clock.now() - policy.every_s
                n = await self._store.redrive(
                    name, policy.errcodes, died_before, policy.rounds, ROUND_LIMIT
                )
                moved += n
                if n:
                    log.info(
                        "redrive: app %s: %d dead letters back in the queue "
                        "(errcodes %s, dead for %.0f s or more, at most %d rounds)",
                        name,
                        n,
                        ", ".join(map(str, policy.errcodes)),
                        policy.every_s,
                        policy.rounds,
                    )
            if moved:
                if self._metrics is not None:
                    self._metrics.on_redrive(name, moved)
                total += moved
        if total:
            self._wake()
        return total
