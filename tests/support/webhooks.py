"""A caller's webhook receiver, as a real aiohttp server on loopback: it records every POST,
checks its signature with wxgate.sdk.verify_webhook, and can be told to fail (HTTP 500) the
first tries of each event, or to hang without answering."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from wxgate.sdk import verify_webhook

SECRET = "whsec-test-secret"


@dataclass
class Delivery:
    event_id: str
    body: dict[str, Any]
    path: str
    signature_ok: bool
    answered: int  # the HTTP status we gave (0: none, the request hung)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Receiver:
    """`fail_first`: answer 500 to the first n POSTs of every event id. `hang`: answer
    nothing until released (POSTs pile up in flight)."""

    fail_first: int = 0
    hang: bool = False
    deliveries: list[Delivery] = field(default_factory=list)
    tries: Counter[str] = field(default_factory=Counter)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        event_id = request.headers.get("X-Wxgate-Event-Id", "")
        ok = verify_webhook(SECRET, dict(request.headers), raw)
        self.tries[event_id] += 1
        entry = Delivery(event_id, json.loads(raw), request.path, ok, 0, dict(request.headers))
        self.deliveries.append(entry)
        if self.hang:
            await self.released.wait()
            return web.Response(status=503)
        status = 500 if self.tries[event_id] <= self.fail_first else 204
        entry.answered = status
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        self.released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- what arrived

    def accepted(self, *, once: bool = True) -> dict[str, Delivery]:
        """Event id -> the delivery we answered 2xx: the receiver's dedupe by event id.
        `once`: assert no event was accepted twice (true unless the sender crashed between
        our answer and recording it, which at-least-once allows)."""
        out: dict[str, Delivery] = {}
        for d in self.deliveries:
            if 200 <= d.answered < 300:
                assert not once or d.event_id not in out, f"{d.event_id} accepted twice"
                out.setdefault(d.event_id, d)
        return out

    def final_events(self, *, once: bool = True) -> dict[tuple[str, str], Delivery]:
        """(message id, status) -> its accepted event; asserts one event id for each."""
        out: dict[tuple[str, str], Delivery] = {}
        for d in self.accepted(once=once).values():
            key = (d.body["message_id"], d.body["status"])
            assert key not in out, f"two events for {key}"
            out[key] = d
        return out
