"""The worker pool: a lease loop feeding a fixed set of worker tasks, capped globally and per app.

Leased messages wait in a per-app lane until the app has a free slot, then go to one shared
ready queue (both in lanes.py) that `concurrency` worker tasks read (a queue hand-off measured
~2 us a message against ~20 us for a task per message). The lease loop leases no more than the
free global capacity plus a prefetch (PREFETCH_DIVISOR), and leaves out apps that are paused,
whose breaker is open, whose rate limit is saturated or that hold their cap, so one app's
backlog never blocks another's. The store is fair across apps but takes no per-app limits, so a
lease can bring one app more than its free slots: the extra wait in its lane, holding no worker
(so other apps' leases go on), and the app sits out the next leases. Lanes hold at most
`concurrency` messages in all.

Leases are not renewed. The invariant that makes that safe: lease_s > the dispatcher's send
budget (2 x the client's total timeout) + the rate-limit look-ahead; a message whose lease
is too close to its end when its turn comes is released instead of sent late.

When the invariant is broken anyway (lease_s set below the budget, or a store call that hangs
through a failover after the send), the store hands an expired lease out again, possibly to
this same process while its first copy is still in a lane or a worker. The pool knows every
message it holds by id: such a re-lease is not dispatched a second time, its newer lease token
is handed to the copy already held (so that copy's outcome lands under the live lease instead
of being fenced off), and the re-lease is counted in `released_again`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from wxgate import logs
from wxgate.clock import Clock
from wxgate.delivery.app_state import RATE_LOOKAHEAD_S
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.delivery.lanes import Lanes
from wxgate.errors import StoreUnavailable
from wxgate.models import Message
from wxgate.settings import WorkerSettings
from wxgate.store.base import Store

log = logging.getLogger("wxgate.delivery")

# Idle polling doubles from idle_poll_s up to this while nothing is due.
IDLE_POLL_CAP_S = 0.5
# After a store error in the lease loop, wait this long before trying again.
LEASE_ERROR_PAUSE_S = 1.0
# While capacity is the limit, gather finished sends this long before leasing again, so a
# busy pool makes one lease per handful of sends instead of one per send.
LEASE_COALESCE_S = 0.005
WAKE_COALESCE_S = 0.002
# Beyond its free slots, the pool leases up to 1/PREFETCH_DIVISOR of its concurrency (and each
# app of its cap) ahead, to wait in the lanes: a worker that finishes a send takes the next
# message at once instead of waiting for the next lease's round trip to the store. Without it
# a lease's sends, answered together, left the pool empty until the next lease came back
# (P3 at 50 ms: 68 ms a cycle against the bare client's 54).
PREFETCH_DIVISOR = 2
# A drain waits at least this long for a lease call in progress to return.
LEASE_FINISH_S = 1.0


class WorkerPool:
    """Leases due messages and runs them through the dispatcher; `drain` stops it cleanly."""

    def __init__(
        self, store: Store, dispatcher: Dispatcher, worker_settings: WorkerSettings, clock: Clock
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._settings = worker_settings
        self._clock = clock
        self._concurrency = worker_settings.concurrency
        self._lanes = Lanes(dispatcher)
        self._running: dict[str, Message] = {}  # inside dispatcher.handle, by message id
        self._holding: dict[str, Message] = {}  # leased and not finished (lane or worker), by id
        self._aborted: list[Message] = []  # cancelled mid-handle by a drain timeout
        self._capacity_bound = False  # the lease loop waits for slots to free up
        self._refill_at_n: int | None = None
        self._prefetch = min(self._concurrency, worker_settings.lease_batch) // PREFETCH_DIVISOR
        self._wake = asyncio.Event()
        self._idle_done = asyncio.Event()  # set whenever nothing is running
        self._idle_done.set()
        self._workers: list[asyncio.Task[None]] = []
        self._lease_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._drain_abort = asyncio.Event()
        self.leased_total = 0
        self.leases = 0
        self.released_again = 0  # leases of a message this pool still held (see the docstring)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        need_s = self._dispatcher.send_budget_s + RATE_LOOKAHEAD_S
        if self._settings.lease_s <= need_s:
            log.warning(
                "workers.lease_s=%.1f is not above the send budget + rate look-ahead (%.1f s): "
                "messages will be released instead of sent",
                self._settings.lease_s,
                need_s,
            )
        self._workers = [
            asyncio.create_task(self._worker(), name=f"wxgate-worker-{i}")
            for i in range(self._concurrency)
        ]
        self._lease_task = asyncio.create_task(self._lease_loop(), name="wxgate-lease-loop")

    async def drain(self, timeout_s: float) -> None:
        """Stop leasing, let in-flight sends finish for up to `timeout_s`, release the rest.

        A second call (or a cancel of the first) stops waiting at once. Messages released
        here go back unharmed: no error, no attempt counted.
        """
        if self._stopping:
            self._drain_abort.set()
            return
        self._stopping = True
        self._wake.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            if self._lease_task is not None:
                # Let a lease in progress finish, so what it took is released, not orphaned
                # until its lease expires; a store that hangs does not hold up the drain.
                task = self._lease_task
                await self._wait_or_abort(task, max(timeout_s, LEASE_FINISH_S))
                task.cancel()
                await asyncio.wait({task})
            await self._release_all(self._lanes.take_waiting())
            if self._running:
                idle = asyncio.ensure_future(self._idle_done.wait())
                try:
                    await self._wait_or_abort(idle, deadline - loop.time())
                finally:
                    idle.cancel()
            await self._stop_workers()
            await self._release_all(self._aborted + self._lanes.take_waiting())
            self._aborted.clear()
        except asyncio.CancelledError:
            self._cancel_all()
            raise

    async def _wait_or_abort(self, fut: asyncio.Future[Any], timeout_s: float) -> None:
        if timeout_s <= 0 or self._drain_abort.is_set():
            return
        abort = asyncio.ensure_future(self._drain_abort.wait())
        try:
            await asyncio.wait({fut, abort}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abort.cancel()

    def wake(self) -> None:
        """Lease now instead of at the next idle poll (call after an enqueue in this process)."""
        self._wake.set()

    # ------------------------------------------------------------------ views

    @property
    def held(self) -> int:
        return self._lanes.held

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def app_states(self) -> dict[str, dict[str, Any]]:
        """Per configured app: breaker, pause, in-flight and held counts, rate (for /v1/stats)."""
        return self._dispatcher.app_states()

    def __repr__(self) -> str:
        state = "draining" if self._stopping else "running"
        return (
            f"<WorkerPool {state} workers={len(self._workers)} held={self._lanes.held} "
            f"in_flight={len(self._running)} ready={self._lanes.ready.qsize()} "
            f"waiting={self._lanes.waiting} "
            f"leased={self.leased_total} leases={self.leases}>"
        )

    # ------------------------------------------------------------------ leasing

    def _plan(self) -> tuple[int, frozenset[str]]:
        """How many to lease now, and which apps to leave out."""
        excluded = set(self._dispatcher.blocked_apps())
        room = 0
        for name, st in self._dispatcher.states.items():
            held = self._lanes.held_by(name)
            limit = st.max_held + st.max_held // PREFETCH_DIVISOR
            if name in excluded or held >= limit:
                excluded.add(name)
            else:
                room += limit - held
        # Workers free now plus a prefetch, but never more than `concurrency` messages waiting
        # in lanes on top.
        lanes = self._lanes
        active = lanes.held - lanes.waiting
        free = min(self._concurrency + self._prefetch - active, 2 * self._concurrency - lanes.held)
        n = min(free, room, self._settings.lease_batch)
        return n, frozenset(excluded)

    def _refill_at(self) -> int:
        """Wait for this many freed slots before leasing again while busy (fewer, larger leases)."""
        if self._refill_at_n is None:
            cap = sum(st.max_held for st in self._dispatcher.states.values())
            self._refill_at_n = max(1, min(self._concurrency, cap, self._settings.lease_batch) // 4)
        return self._refill_at_n

    async def _lease_loop(self) -> None:
        idle_s = self._settings.idle_poll_s
        backlog = False  # the last lease got all it asked for: more is probably due
        store_down = False
        while not self._stopping:
            try:
                await self._dispatcher.refresh_pauses()
                n, excluded = self._plan()
                if n <= 0 or (backlog and n < self._refill_at()):
                    # More is due than we can take: wait once for room for a decent batch,
                    # then lease whatever room there is. Waiting for the full refill again
                    # could stall for good when blocked apps keep the room below it.
                    await self._wait_for_capacity()
                    backlog = False
                    continue
                now = self._clock.now()
                deadline = self._clock.monotonic() + self._settings.lease_s
                messages = await self._store.lease(n, self._settings.lease_s, now, excluded)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                # An outage is one event, not one traceback a second: say it once, then quietly
                # keep trying until the store answers again.
                if not store_down:
                    log.warning("store unavailable, leasing paused until it answers: %s", exc)
                    store_down = True
                await self._clock.sleep(LEASE_ERROR_PAUSE_S)
                continue
            except Exception:
                log.exception("lease failed; trying again in %.1f s", LEASE_ERROR_PAUSE_S)
                await self._clock.sleep(LEASE_ERROR_PAUSE_S)
                continue
            if store_down:
                log.warning("store answers again, leasing resumed")
                store_down = False
            self._lanes.freed = 0
            self.leases += 1
            self.leased_total += len(messages)
            self._lanes.accept(self._adopt(messages), deadline)
            backlog = len(messages) >= n
            if backlog:
                idle_s = self._settings.idle_poll_s
                continue
            # Everything due was taken: poll again later (sooner if woken by wake()).
            await self._sleep_or_wake(idle_s)
            if messages:
                idle_s = self._settings.idle_poll_s
            else:
                idle_s = min(idle_s * 2, max(IDLE_POLL_CAP_S, self._settings.idle_poll_s))

    def _adopt(self, messages: list[Message]) -> list[Message]:
        """The leased messages this pool does not hold yet; a message it still holds (its first
        lease expired under it) takes the new lease token instead of being dispatched twice."""
        fresh: list[Message] = []
        for message in messages:
            held = self._holding.get(message.id)
            if held is None:
                self._holding[message.id] = message
                fresh.append(message)
                continue
            held.lease_token = message.lease_token
            self.released_again += 1
            if self.released_again == 1:
                log.warning(
                    "message %s was leased again while this process still held it: its lease "
                    "(workers.lease_s=%.1f) ran out before its send finished; raise lease_s",
                    message.id,
                    self._settings.lease_s,
                    extra=logs.fields(message_id=message.id, app=message.app),
                )
        return fresh

    async def _wait_for_capacity(self) -> None:
        """Wait for a send to finish (at most idle_poll_s), then gather a few more for a moment,
        so a busy pool leases in batches but a free slot never stays empty for long.

        Always sleeps (or consumes a wake-up) first: with slots free but every app blocked
        (paused, breaker open, at its cap) the loop would otherwise spin without yielding.
        """
        self._capacity_bound = True
        try:
            await self._sleep_or_wake(self._settings.idle_poll_s)
            if 0 < self._lanes.freed < self._refill_at():
                await self._sleep_or_wake(LEASE_COALESCE_S)
        finally:
            self._capacity_bound = False

    async def _sleep_or_wake(self, seconds: float) -> None:
        if self._stopping:
            return
        if not self._wake.is_set():
            sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
            if not self._wake.is_set():
                return
        # Woken by an enqueue: give the requests of the same burst a moment to commit too,
        # so a stream of POSTs costs one lease per few milliseconds, not one per request.
        await asyncio.sleep(WAKE_COALESCE_S)
        self._wake.clear()

    # ------------------------------------------------------------------ working

    async def _worker(self) -> None:
        while True:
            message, deadline = await self._lanes.ready.get()
            if self._stopping:
                self._aborted.append(message)  # a drain releases it
                self._finish(message)
                continue
            self._running[message.id] = message
            self._idle_done.clear()
            try:
                await self._dispatcher.handle(message, lease_deadline=deadline)
            except asyncio.CancelledError:
                self._aborted.append(message)
                raise
            except Exception:  # handle() catches its own; this keeps the worker alive anyway
                log.exception(
                    "worker: unexpected error on message %s",
                    message.id,
                    extra=logs.fields(
                        message_id=message.id, app=message.app, batch=message.batch_id
                    ),
                )
            finally:
                del self._running[message.id]
                if not self._running:
                    self._idle_done.set()
                self._finish(message)

    def _finish(self, message: Message) -> None:
        self._holding.pop(message.id, None)
        if self._lanes.finish(message.app, hand_on=not self._stopping):
            self._wake.set()  # the app's lane ran dry: lease more of it now
        freed = self._lanes.freed
        if self._capacity_bound and (freed == 1 or freed >= self._refill_at()):
            self._wake.set()

    # ------------------------------------------------------------------ draining

    async def _release_all(self, messages: list[Message]) -> None:
        for message in messages:
            self._holding.pop(message.id, None)
        if not messages:
            return
        calls: list[Awaitable[object]] = [self._dispatcher.release(m, "drain") for m in messages]
        results = await asyncio.gather(*calls, return_exceptions=True)
        failed = sum(isinstance(r, BaseException) for r in results)
        if failed:
            log.warning("drain: %d releases failed; those leases will expire instead", failed)

    async def _stop_workers(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    def _cancel_all(self) -> None:
        for task in self._workers:
            task.cancel()
        if self._lease_task is not None:
            self._lease_task.cancel()
