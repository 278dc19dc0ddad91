"""Status webhooks end to end: the real simulator, an in-process gateway on each store, and a
receiver that fails the first two POSTs of every event. Every final status still arrives,
exactly once after the receiver's dedupe by event id, every retry carries the same id, and
every request verifies with wxgate.sdk.verify_webhook."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from support.e2e import APP_A, Api, build_settings, sim_config
from support.redis_server import RedisServer
from support.wait import wait_until
from support.webhooks import SECRET, Receiver
from wxgate.runtime import Runtime
from wxgate.sandbox import free_port
from wxgate.sim.testing import running_simulator

FAST_WEBHOOKS = {
    "base_s": 0.05,
    "cap_s": 0.2,
    "poll_s": 0.02,
    "lease_s": 5.0,
    "timeout_s": 2.0,
    "connect_timeout_s": 1.0,
}


@asynccontextmanager
async def rig(
    tmp_path: Path, receiver: Receiver, store_url: str | None, **webhooks: Any
) -> AsyncIterator[Api]:
    port = free_port()
    async with running_simulator(sim_config(port, [APP_A])) as sim:
        store = {"url": store_url} if store_url else {}
        settings = build_settings(
            tmp_path,
            port,
            sim.base_url,
            [APP_A],
            # The message with its own callback_url (a loopback receiver) needs both opt-ins:
            # the host allowlisted for callers, and loopback allowed for caller URLs.
            app_overrides={
                "callback_url": f"{receiver.url}/hooks",
                "webhook_secret": SECRET,
                "callback_hosts": ["127.0.0.1"],
            },
            webhooks={**FAST_WEBHOOKS, "allow_private_networks": ["127.0.0.0/8"], **webhooks},
            store=store,
        )
        async with Runtime(settings) as runtime:
            api = Api(runtime.url)
            try:
                yield api
            finally:
                await api.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


def _store_url(backend: str, private_redis: RedisServer) -> str | None:
    if backend == "sqlite":
        return None
    redis.Redis(port=private_redis.port).flushall()
    return private_redis.url()


def _metric(text: str, sample: str) -> float:
    """The value of one sample ("name" or 'name{label="v"}'); 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _counter(text: str, result: str) -> float:
    return _metric(text, f'wxgate_webhooks_total{{result="{result}"}}')


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_every_final_status_arrives_once_through_failing_receiver(
    tmp_path: Path, receiver: Receiver, private_redis: RedisServer, backend: str
) -> None:
    receiver.fail_first = 2
    async with rig(tmp_path, receiver, _store_url(backend, private_redis)) as api:
        expected: set[tuple[str, str]] = set()
        for i in range(6):
            mid = await api.send(f"o_user_{i}")
            expected |= {(mid, "sent"), (mid, "delivered")}
        own = await api.send("o_user_own", callback_url=f"{receiver.url}/own")
        expected |= {(own, "sent"), (own, "delivered")}
        for i in range(3):
            expected.add((await api.send(f"o_invalid_{i}"), "dead"))
        for i in range(2):
            mid = await api.send(f"o_blocked_{i}")
            expected |= {(mid, "sent"), (mid, "blocked")}
        expired = await api.send("o_user_late", expire_at=time.time() - 1)
        expected.add((expired, "expired"))
        later = await api.send("o_user_later", send_at=time.time() + 3600)
        async with api.session.delete(f"/v1/messages/{later}") as resp:
            assert resp.status == 200
        expected.add((later, "cancelled"))

        async def all_arrived() -> bool:
            stats = await api.stats()
            return expected <= set(receiver.final_events()) and stats["webhooks"]["pending"] == 0

        await wait_until(
            all_arrived, 30, "every final status event", progress=lambda: len(receiver.deliveries)
        )
        events = receiver.final_events()  # asserts one accepted delivery per event id
        assert set(events) == expected, "no event beyond the final statuses"
        for event_id in receiver.accepted():
            assert receiver.tries[event_id] == 3, "two 500s, then accepted; same id each time"
        assert all(d.signature_ok for d in receiver.deliveries)
        for (mid, status), d in events.items():
            body = d.body
            assert (body["id"], body["type"], body["app"]) == (d.event_id, "message.status", "a")
            assert (body["message_id"], body["status"]) == (mid, status)
            assert d.path == ("/own" if mid == own else "/hooks")
            if status == "dead":
                assert body["errcode"] == 40003
            elif status in ("sent", "delivered"):
                assert body["errcode"] is None and body["wechat_msgid"] > 0

        stats = (await api.stats())["webhooks"]
        assert stats == {"pending": 0, "failed": 0, "delivered": len(expected)}
        metrics = await api.metrics_text()
        assert _counter(metrics, "delivered") == len(expected)
        assert _counter(metrics, "retry") == 2 * len(expected)
        assert _metric(metrics, "wxgate_webhooks_pending") == 0


async def test_a_receiver_that_never_answers_2xx_is_given_up_and_counted(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.fail_first = 1_000
    async with rig(tmp_path, receiver, None, max_attempts=3) as api:
        ids = [await api.send(f"o_invalid_{i}") for i in range(4)]

        async def given_up() -> bool:
            return bool((await api.stats())["webhooks"]["failed"] == len(ids))

        await wait_until(given_up, 20, "the events to be given up on")
        assert {receiver.tries[e] for e in receiver.tries} == {3}
        assert (await api.stats())["webhooks"] == {"pending": 0, "failed": 4, "delivered": 0}
        metrics = await api.metrics_text()
        assert _counter(metrics, "failed") == 4
        assert _counter(metrics, "retry") == 8
        assert _metric(metrics, "wxgate_webhooks_failed") == 4
        # Message delivery went on regardless.
        assert (await api.by_status())["dead"] == 4
