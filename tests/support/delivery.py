"""Helpers for the delivery tests: the real pieces wired together (delivery/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from support.wait import wait_until
from wxgate.clock import SystemClock
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.delivery.workers import WorkerPool
from wxgate.models import FINAL_STATUSES, Message, new_id
from wxgate.settings import (
    AdaptiveSettings,
    AppSettings,
    BreakerSettings,
    RetrySettings,
    WorkerSettings,
)
from wxgate.sim.testing import SimHandle
from wxgate.store.base import Store
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker

SEND_TIMEOUT_S = 2.0
SIM_APPS = {"a": ("wx_a", "secret_a"), "b": ("wx_b", "secret_b")}


def app_settings(name: str, **kw: Any) -> AppSettings:
    appid, secret = SIM_APPS[name]
    return AppSettings(name=name, appid=appid, secret=secret, **kw)


def worker_settings(**kw: Any) -> WorkerSettings:
    """Small and fast: tiny backoff so retries take milliseconds, not seconds."""
    base: dict[str, Any] = {
        "concurrency": 32,
        "lease_s": 30.0,
        "lease_batch": 64,
        "idle_poll_s": 0.01,
        "retry": RetrySettings(max_attempts=8, base_s=0.01, cap_s=0.05),
        "breaker": BreakerSettings(),
        # These tests fail a tenth or more of first tries on purpose (o_busy, o_5xx, o_reset),
        # which adaptive rate would rightly slow to its floor; test_aimd_e2e.py covers it.
        "adaptive": AdaptiveSettings(enabled=False),
    }
    base.update(kw)
    return WorkerSettings(**base)


@dataclass
class Rig:
    """The real pieces wired together, plus helpers to feed and watch them."""

    store: Store
    sim: SimHandle
    client: WeChatClient
    broker: TokenBroker
    clock: SystemClock
    dispatchers: list[Dispatcher] = field(default_factory=list)
    pools: list[WorkerPool] = field(default_factory=list)

    def dispatcher(
        self, apps: Iterable[AppSettings] | None = None, settings: WorkerSettings | None = None
    ) -> Dispatcher:
        apps = list(apps) if apps is not None else [app_settings("a"), app_settings("b")]
        d = Dispatcher(
            self.store,
            self.broker,
            {a.name: a for a in apps},
            settings or worker_settings(),
            self.clock,
            send_timeout_s=SEND_TIMEOUT_S,
        )
        self.dispatchers.append(d)
        return d

    async def pool(
        self, dispatcher: Dispatcher | None = None, settings: WorkerSettings | None = None
    ) -> WorkerPool:
        settings = settings or worker_settings()
        dispatcher = dispatcher or self.dispatcher(settings=settings)
        pool = WorkerPool(self.store, dispatcher, settings, self.clock)
        await pool.start()
        self.pools.append(pool)
        return pool

    async def enqueue(
        self,
        n: int = 1,
        app: str = "a",
        touser: str | Callable[[int], str] = "o_user",
        **kw: Any,
    ) -> list[str]:
        """n messages for `app`; `touser` is an openid, or a function of the index."""
        now = self.clock.now()
        messages = [
            Message(
                id=new_id(),
                app=app,
                touser=touser(i) if callable(touser) else touser,
                template_id="tpl_order",
                data={"first": {"value": "hello"}, "amount": {"value": "9.90"}},
                created_at=now,
                not_before=now,
                **kw,
            )
            for i in range(n)
        ]
        results = await self.store.enqueue(messages)
        return [r.id for r in results]

    async def wait_for(
        self, predicate: Callable[[], Any], timeout_s: float = 15.0, what: str = ""
    ) -> None:
        await wait_until(predicate, timeout_s, what or str(predicate), interval_s=0.02)

    async def messages(self, ids: Iterable[str]) -> list[Message]:
        found = [await self.store.get(i) for i in ids]
        assert all(m is not None for m in found)
        return [m for m in found if m is not None]

    async def wait_final(self, ids: list[str], timeout_s: float = 20.0) -> list[Message]:
        """Wait until every message reached a final status; return them in order."""

        async def done() -> bool:
            return all(m.status in FINAL_STATUSES for m in await self.messages(ids))

        await self.wait_for(done, timeout_s, f"{len(ids)} messages to finish")
        return await self.messages(ids)

    async def delivered_ids(self, app: str | None = None) -> list[str]:
        """client_msg_ids the simulator recorded as delivered (one row per real delivery)."""
        rows = await self.sim.deliveries(app=SIM_APPS[app][0] if app else None)
        return [str(r["client_msg_id"]) for r in rows]
