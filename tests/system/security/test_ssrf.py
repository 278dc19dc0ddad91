"""Issue 11, High 1: SSRF through callback_url. A `send` key names a callback_url on a
message or a batch and the gateway POSTs status events to it; these replay the attack
against the real gateway and the real sender, with loopback listeners as the targets.

Every connection a test could make goes to loopback: the addresses of other internal
ranges are covered as literals in tests/policy/test_egress.py, never connected to. A name that
must resolve to loopback is answered by a resolver of the test's own (`Answers`), so no
real DNS is asked either.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from support.e2e import API_KEY, TEMPLATE, Api, running_rig
from support.store import HOOK, LEASE_S, enqueue_one
from support.wait import wait_until
from support.webhooks import SECRET, Receiver
from wxgate.clock import FakeClock, SystemClock
from wxgate.delivery.webhooks import WebhookSender
from wxgate.models import Message, SendResult, new_id
from wxgate.sandbox import free_port
from wxgate.settings import AppSettings, WebhookSettings
from wxgate.store.base import Store
from wxgate.store.postgres import PostgresStore
from wxgate.store.redis import RedisStore
from wxgate.store.sqlite import SQLiteStore

FAST = {"base_s": 0.05, "cap_s": 0.2, "poll_s": 0.02, "timeout_s": 2.0, "connect_timeout_s": 1.0}
PARTNER_KEY = "partner-key-0123456789"
NAMED_KEY = "named-key-0123456789"


# ---------------------------------------------------------------- the targets


@dataclass
class Listener:
    """Records every request of any method on 127.0.0.1, 127.0.0.2 and ::1, all on one port
    (so one URL template reaches whichever the name or spelling means)."""

    hits: list[tuple[str, str, str, Mapping[str, str]]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = str(sockname[0]) if sockname else "?"
        self.hits.append((local, request.method, request.path_qs, dict(request.headers)))
        return web.Response(status=204)

    async def start(self, hosts: Sequence[str] = ("127.0.0.1", "127.0.0.2", "::1")) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        first = web.TCPSite(self._runner, hosts[0], 0)
        await first.start()
        self.port = self._runner.addresses[0][1]
        for host in hosts[1:]:
            await web.TCPSite(self._runner, host, self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    target = Listener()
    await target.start()
    yield target
    await target.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.close()


def spellings(port: int) -> list[str]:
    """Loopback, as the attack spelled it."""
    return [
        f"http://localhost:{port}/_sim/reset",
        f"http://127.0.0.1:{port}/x",
        f"http://0.0.0.0:{port}/x",
        f"http://0x7f000001:{port}/x",
        f"http://2130706433:{port}/x",
        f"http://127.1:{port}/x",
        f"http://[::ffff:127.0.0.1]:{port}/x",
        f"http://[::1]:{port}/x",
    ]


# ---------------------------------------------------------------- at intake


async def test_no_caller_url_is_taken_without_an_allowlist(
    tmp_path: Path, listener: Listener
) -> None:
    """Messages, JSON batches and streamed batches (NDJSON header, CSV query) with their own
    callback_url are refused naming the field, store nothing, and nothing reaches the target."""
    async with running_rig(tmp_path, workers={"idle_poll_s": 0.02}, webhooks=FAST) as rig:
        api = rig.api
        for url in spellings(listener.port):
            status, body = await api.post(
                "/v1/messages",
                {"touser": "o_user", "template_id": TEMPLATE, "data": {}, "callback_url": url},
            )
            assert status in (400, 403), (url, status, body)
            assert body["field"] == "callback_url", body
        url = f"http://127.0.0.1:{listener.port}/x"
        status, body = await api.post(
            "/v1/batches",
            {
                "template_id": TEMPLATE,
                "callback_url": url,
                "recipients": [{"touser": f"o_{i}"} for i in range(50)],
            },
        )
        assert (status, body["field"]) == (403, "callback_url"), body
        assert "callback_hosts" in body["message"]  # says how to enable it
        ndjson = f'{{"header": {{"callback_url": "{url}"}}}}\n{{"touser": "o_1"}}\n'
        async with api.session.post(
            f"/v1/batches?template_id={TEMPLATE}",
            data=ndjson.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        ) as resp:
            assert resp.status == 403, await resp.text()
            assert (await resp.json())["field"] == "callback_url"
        async with api.session.post(
            "/v1/batches",
            params={"template_id": TEMPLATE, "callback_url": url},
            data=b"touser\no_1\no_2\n",
            headers={"Content-Type": "text/csv"},
        ) as resp:
            assert resp.status == 403, await resp.text()
        stats = await api.stats()
        assert sum(stats["by_status"].values()) == 0, stats
        status, batches = await api.get("/v1/batches")
        assert (status, batches["items"]) == (200, [])
    assert listener.hits == []


# ---------------------------------------------------------------- at connect time


class Answers(AbstractResolver):
    """A resolver that answers each name with the addresses it was given (and fails any
    other name, so no real DNS is asked)."""

    def __init__(self, names: Mapping[str, Sequence[str]]) -> None:
        self.names = dict(names)
        self.asked: Counter[str] = Counter()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked[host] += 1
        if host not in self.names:
            raise OSError(f"no test answer for {host}")
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in self.names[host]
        ]

    async def close(self) -> None:
        pass


class Results:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def on_webhook(self, result: str) -> None:
        self.counts[result] += 1


@asynccontextmanager
async def sender_on(
    tmp_path: Path,
    urls: Sequence[str],
    *,
    app_url: str | None = None,
    allow: Sequence[str] = (),
    resolver: AbstractResolver | None = None,
    max_attempts: int = 12,
) -> AsyncIterator[tuple[SQLiteStore, WebhookSender, Results]]:
    """The real sender on a real SQLite outbox holding one cancelled message's event per URL
    (as a store written before intake checked anything would hold them)."""
    clock = SystemClock()
    store = SQLiteStore(str(tmp_path / "w.db"), clock)
    await store.open()
    now = clock.now()
    msgs = [
        Message(
            id=new_id(),
            app="a",
            touser="o_x",
            template_id="t",
            data={},
            created_at=now,
            not_before=now + 3600,
            callback_url=url,
        )
        for url in urls
    ]
    await store.enqueue(msgs)
    for m in msgs:
        await store.cancel(m.id)
    app = AppSettings(
        name="a", appid="wx_a", secret="s", webhook_secret=SECRET, callback_url=app_url
    )
    settings = WebhookSettings(
        **FAST,
        allow_private_networks=list(allow),
        max_attempts=max_attempts,
    )
    results = Results()
    sender = WebhookSender(store, {"a": app}, settings, clock, results, resolver=resolver)
    await sender.start()
    try:
        yield store, sender, results
    finally:
        await sender.close()
        await store.close()


async def settled(store: SQLiteStore, n: int) -> None:
    async def done() -> bool:
        stats = await store.webhook_stats()
        return stats.pending == 0 and stats.failed + stats.delivered == n

    await wait_until(done, 20, f"{n} events delivered or given up")


def outbox(tmp_path: Path) -> list[tuple[str, int, str | None]]:
    with sqlite3.connect(tmp_path / "w.db") as conn:
        return list(conn.execute("SELECT url, attempts, last_error FROM webhooks ORDER BY seq"))


async def test_the_sender_never_reaches_loopback_through_a_caller_url(
    tmp_path: Path, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever got into the outbox, a caller-chosen URL to loopback is refused before any
    connection, in every spelling: at once, for good (one attempt), counted and logged once."""
    urls = spellings(listener.port)
    caplog.set_level(logging.WARNING, "wxgate.webhooks")
    async with sender_on(tmp_path, urls) as (store, sender, results):
        await settled(store, len(urls))
        assert sender.refused == len(urls)
        assert results.counts == {"refused": len(urls)}
    assert listener.hits == []
    rows = outbox(tmp_path)
    assert [r[1] for r in rows] == [1] * len(urls), "refused once, never retried"
    for url, _, error in rows:
        assert error is not None and error.startswith("refused"), (url, error)
    assert any("127.0.0.1 (loopback)" in (r[2] or "") for r in rows)
    assert any("::1 (loopback)" in (r[2] or "") for r in rows)
    assert any("an IPv6 form of 127.0.0.1" in (r[2] or "") for r in rows)
    assert any("0.0.0.0 (unspecified" in (r[2] or "") for r in rows)
    refusals = [r for r in caplog.records if "not sent" in r.getMessage()]
    hosts = {"localhost", "127.0.0.1", "0.0.0.0", "0x7f000001", "2130706433"}
    hosts |= {"127.1", "::ffff:7f00:1", "::1"}
    assert len(refusals) == len(hosts), [r.getMessage() for r in refusals]  # one per host


async def test_credentials_in_a_caller_url_are_never_sent(
    tmp_path: Path, listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    """Even where the network is allowed, user:pass@ is refused, so it never becomes an
    Authorization header, and the password is in no log line or stored error."""
    url = f"http://user:hunter2-secret@127.0.0.1:{listener.port}/x"
    caplog.set_level(logging.DEBUG)
    async with sender_on(tmp_path, [url], allow=["127.0.0.0/8"]) as (store, sender, _):
        await settled(store, 1)
        assert sender.refused == 1
    assert listener.hits == []
    [(_, attempts, error)] = outbox(tmp_path)
    assert attempts == 1 and error == "refused: credentials in a caller-chosen URL"
    assert "hunter2" not in caplog.text


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(
    tmp_path: Path, listener: Listener
) -> None:
    """DNS rebinding: a name that passed the allowlist answers loopback, or an allowed
    address and loopback together. Nothing is connected to, not even the allowed address;
    the control name that answers only the allowed address is delivered (so the resolver
    the test gave is the one deciding)."""
    port = listener.port
    resolver = Answers(
        {
            "hooks.rebind.test": ["127.0.0.2", "127.0.0.1"],
            "hooks.local.test": ["127.0.0.1"],
            "hooks.ok.test": ["127.0.0.2"],
        }
    )
    urls = [f"http://hooks.{name}.test:{port}/{name}" for name in ("rebind", "local", "ok")]
    allow = ["127.0.0.2/32"]
    async with sender_on(tmp_path, urls, allow=allow, resolver=resolver) as (store, _, results):
        await settled(store, 3)
        assert results.counts == {"refused": 2, "delivered": 1}
    assert [(h[0], h[2]) for h in listener.hits] == [("127.0.0.2", "/ok")]
    errors = {url.rsplit("/", 1)[1]: error for url, _, error in outbox(tmp_path)}
    assert errors == {
        "rebind": "refused: hooks.rebind.test resolves to 127.0.0.1 (loopback)",
        "local": "refused: hooks.local.test resolves to 127.0.0.1 (loopback)",
    }
    assert resolver.asked["hooks.rebind.test"] == 1, "refused for good, never asked again"


async def test_the_operators_app_callback_url_may_point_anywhere(
    tmp_path: Path, listener: Listener
) -> None:
    """The app's own callback_url is the operator's: loopback is fine there, unchecked."""
    url = f"http://127.0.0.1:{listener.port}/operator"
    async with sender_on(tmp_path, [url, url], app_url=url) as (store, _, results):
        await settled(store, 2)
        assert results.counts == {"delivered": 2}
    assert [h[2] for h in listener.hits] == ["/operator", "/operator"]


async def test_a_failing_webhook_url_is_logged_without_its_query_or_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Callers put tokens in query strings: the give-up warning shows the URL without them."""
    url = f"http://127.0.0.1:{free_port()}/hook?token=s3cr3t-query"  # nothing listens there
    caplog.set_level(logging.WARNING, "wxgate.webhooks")
    async with sender_on(tmp_path, [url], app_url=url, max_attempts=1) as (store, sender, _):
        await settled(store, 1)
        assert sender.failed == 1
    assert "giving up" in caplog.text and "/hook" in caplog.text
    assert "s3cr3t" not in caplog.text


# ---------------------------------------------------------------- end to end, opted in


def _opted_in(receiver: Receiver, *, network: bool) -> dict[str, Any]:
    return {
        "app_overrides": {
            "callback_url": f"{receiver.url}/operator",
            "webhook_secret": SECRET,
            "callback_hosts": ["127.0.0.1"],
        },
        "webhooks": {**FAST, "allow_private_networks": ["127.0.0.0/8"] if network else []},
        "server": {
            "api_keys": [API_KEY],
            "keys": [
                {
                    "name": "partner",
                    "key": PARTNER_KEY,
                    "scopes": ["send", "read"],
                    "callback_hosts": ["127.0.0.1"],
                },
                {"name": "named", "key": NAMED_KEY, "scopes": ["send", "read"]},
            ],
        },
    }


@pytest.mark.parametrize("network", [True, False], ids=["network-allowed", "host-only"])
async def test_an_allowlisted_caller_url_is_delivered_once_per_status_where_allowed(
    tmp_path: Path, receiver: Receiver, network: bool
) -> None:
    """With the host allowlisted (app and key) and loopback allowed, a caller's URL gets one
    event per message per status, a batch's recipients one each. With the host allowlisted
    but the network not, the events are refused at connect time; the operator's URL (also
    loopback) gets its events either way."""
    receiver.fail_first = 1  # a retry path: still one accepted event per status
    async with running_rig(tmp_path, **_opted_in(receiver, network=network)) as rig:
        partner = Api(rig.runtime.url, key=PARTNER_KEY)
        named = Api(rig.runtime.url, key=NAMED_KEY)
        try:
            own_url = f"{receiver.url}/own"
            own = await partner.send("o_user_own", callback_url=own_url)
            status, body = await partner.post(
                "/v1/batches",
                {
                    "template_id": TEMPLATE,
                    "data": {"thing1": "x"},
                    "callback_url": own_url,
                    "recipients": [{"touser": f"o_b{i}"} for i in range(5)],
                },
            )
            assert status == 202, body
            operator = await rig.api.send("o_user_op")
            # A named key without callback_hosts cannot choose one, even an allowed host.
            status, body = await named.post(
                "/v1/messages",
                {"touser": "o", "template_id": TEMPLATE, "data": {}, "callback_url": own_url},
            )
            assert (status, body["field"]) == (403, "callback_url"), body
        finally:
            await partner.close()
            await named.close()
        own_events = 6 * 2  # sent and delivered for the message and each recipient

        async def settled() -> bool:
            hooks = (await rig.api.stats())["webhooks"]
            return hooks["pending"] == 0 and hooks["delivered"] + hooks["failed"] == 2 + own_events

        await wait_until(settled, 30, "every event delivered or refused")
        events = receiver.final_events()  # asserts one accepted event per (message, status)
        ops = {k for k, d in events.items() if d.path == "/operator"}
        assert ops == {(operator, "sent"), (operator, "delivered")}
        owned = {k for k, d in events.items() if d.path == "/own"}
        hooks = (await rig.api.stats())["webhooks"]
        metrics = await rig.api.metrics_text()
        if network:
            assert len(owned) == own_events and (own, "delivered") in owned
            assert hooks["failed"] == 0
        else:
            assert owned == set()
            assert not [d for d in receiver.deliveries if d.path == "/own"], "never connected"
            assert hooks["failed"] == own_events
            assert f'wxgate_webhooks_total{{result="refused"}} {float(own_events)}' in metrics


# ---------------------------------------------------------------- one event per status


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, FakeClock]]:
    clock = FakeClock()
    store: Store
    if request.param == "sqlite":
        store = SQLiteStore(str(tmp_path / "s.db"), clock)
    elif request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        store = RedisStore(redis_url, clock, retention_s=3600, key_prefix=f"ssrf{new_id()}")
    else:
        schema = f"ssrf{new_id().lower()}"
        store = PostgresStore(
            request.getfixturevalue("postgres_url"), clock, retention_s=3600, schema=schema
        )
    await store.open()
    yield store, clock
    await store.close()


async def test_receipts_never_make_a_second_event_for_a_status(
    any_store: tuple[Store, FakeClock],
) -> None:
    """Amplification: the same receipt pushed again under a new event key, a contradicting
    later receipt, and a receipt that beat its ack arriving twice each leave one event per
    message per status."""
    store, clock = any_store
    acked = await enqueue_one(store, clock, callback_url=HOOK)
    early = await enqueue_one(store, clock, callback_url=HOOK)
    held = {m.id: m for m in await store.lease(10, LEASE_S, clock.now())}
    assert await store.ack(acked, held[acked].lease_token, SendResult(71, clock.now()))
    for key, receipt in (("ev-1", "success"), ("ev-2", "success"), ("ev-3", "failed:user block")):
        await store.record_receipt("app_a", 71, receipt, key)
    for key in ("ev-4", "ev-5"):  # before its ack: kept for it
        await store.record_receipt("app_a", 72, "success", key)
    assert await store.ack(early, held[early].lease_token, SendResult(72, clock.now()))
    await store.record_receipt("app_a", 72, "failed:system failed", "ev-6")
    events = await store.lease_webhooks(100, LEASE_S, clock.now())
    per_status = Counter((e.message_id, e.status) for e in events)
    assert per_status == {(acked, "sent"): 1, (acked, "delivered"): 1, (early, "delivered"): 1}
