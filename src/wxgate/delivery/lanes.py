"""Where the worker pool's leased messages wait: a lane per app, one shared ready queue.

A message goes to the ready queue (read by the worker tasks) while its app has a free slot,
and waits in its app's lane otherwise, holding no worker; a finished send hands its slot to
the next message of its lane. The counts here drive the pool's lease planning (workers.py).
"""

from __future__ import annotations

import asyncio
from collections import deque

from wxgate.delivery.dispatcher import Dispatcher
from wxgate.models import Message

Item = tuple[Message, float]  # the message and its lease deadline (clock.monotonic())


class Lane:
    """One app's leased messages: `active` are queued for or inside a worker, `waiting` are not."""

    __slots__ = ("active", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[Item] = deque()
        self.active = 0

    @property
    def held(self) -> int:
        return self.active + len(self.waiting)


class Lanes:
    """Every app's lane and the ready queue, with the counts the pool plans its leases by."""

    __slots__ = ("_dispatcher", "_lanes", "freed", "held", "ready", "waiting")

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._lanes: dict[str, Lane] = {}
        self.ready: asyncio.Queue[Item] = asyncio.Queue()
        self.held = 0  # leased and not finished: waiting in a lane, ready, or running
        self.waiting = 0  # of those, waiting in a lane for their app's slot
        self.freed = 0  # slots freed since the pool last reset it (at each lease)

    def held_by(self, app: str) -> int:
        lane = self._lanes.get(app)
        return lane.held if lane is not None else 0

    def accept(self, messages: list[Message], deadline: float) -> None:
        for message in messages:
            lane = self._lanes.get(message.app)
            if lane is None:
                lane = self._lanes[message.app] = Lane()
            self.held += 1
            if lane.active < self._cap(message.app):
                lane.active += 1
                self.ready.put_nowait((message, deadline))
            else:
                lane.waiting.append((message, deadline))
                self.waiting += 1
            self._set_app_held(message.app, lane)

    def finish(self, app: str, *, hand_on: bool) -> bool:
        """A message of `app` is done with its slot; `hand_on`: give the slot to the next one
        waiting in the lane. True when that emptied the lane (time to lease more of it)."""
        lane = self._lanes[app]
        lane.active -= 1
        self.held -= 1
        self.freed += 1
        ran_dry = False
        if lane.waiting and hand_on:
            lane.active += 1
            self.ready.put_nowait(lane.waiting.popleft())
            self.waiting -= 1
            ran_dry = not lane.waiting
        self._set_app_held(app, lane)
        return ran_dry

    def take_waiting(self) -> list[Message]:
        """Everything leased that no worker has started, removed from the books."""
        taken: list[Message] = []
        while not self.ready.empty():
            message, _ = self.ready.get_nowait()
            self._lanes[message.app].active -= 1
            taken.append(message)
        for app, lane in self._lanes.items():
            taken.extend(m for m, _ in lane.waiting)
            self.waiting -= len(lane.waiting)
            lane.waiting.clear()
            self._set_app_held(app, lane)
        self.held -= len(taken)
        return taken

    def _cap(self, app: str) -> int:
        st = self._dispatcher.app_state(app)
        return st.max_held if st is not None else 1

    def _set_app_held(self, app: str, lane: Lane) -> None:
        st = self._dispatcher.app_state(app)
        if st is not None:
            st.held = lane.held

    def __repr__(self) -> str:
        return (
            f"<Lanes apps={len(self._lanes)} held={self.held} ready={self.ready.qsize()} "
            f"waiting={self.waiting}>"
        )
