"""Status webhooks: POST each final status from the store's outbox to the caller, signed.

Durability comes from the store: the event is written in the same transaction as the status
change (store/base.py), so this sender only has to be at-least-once. It leases due events,
POSTs them and records the outcome; if the process dies mid-POST, the lease runs out and the
event is POSTed again, with the same id, which is what receivers dedupe by.

It never slows message delivery: its own loop, its own bounded concurrency and its own aiohttp
session with short timeouts (a hung receiver costs one slot for `timeout_s`, nothing more).
A POST costs about as much CPU as a WeChat send, so while the worker pool is saturated (`busy`)
it sends at most `busy_rate_per_s` events a second and catches up once sends slack off: the
events wait in the store (pending in /v1/stats), the sends do not wait for them.
Failed POSTs are retried with full-jitter backoff up to `max_attempts`, then the event is kept
as failed, counted in /v1/stats and in wxgate_webhooks_total{result="failed"}.

A URL the caller chose (any but its app's own callback_url) goes through a second session
whose resolver refuses internal addresses (egress_resolver.py, webhooks.allow_private_networks)
and is never sent credentials: a refusal fails the event at once, no retry, logged once per
host and counted as result="refused". The app's callback_url is the operator's and is
trusted. Which one an event has is read from its URL, so nothing extra is stored and events
written before this check existed are checked too; the cost: after the operator changes an
app's callback_url, events still waiting for the old URL are checked like a caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver
from yarl import URL

from wxgate import logs
from wxgate.clock import Clock
from wxgate.delivery.egress_resolver import GuardedResolver, literal_refusal, refused_in
from wxgate.models import WebhookEvent
from wxgate.policy.backoff import delay_s
from wxgate.policy.callback_hosts import odd_ip_literal
from wxgate.policy.egress import parse_networks
from wxgate.policy.webhook_signature import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)
from wxgate.settings import AppSettings, WebhookSettings
from wxgate.store.base import Store
from wxgate.tracing import NO_TRACER, AttrValue, Tracer, to_headers

log = logging.getLogger("wxgate.webhooks")

EVENT_TYPE = "message.status"
USER_AGENT = "wxgate-webhooks/1"
IDLE_POLL_CAP_S = 1.0
STORE_ERROR_PAUSE_S = 1.0
MAX_ERROR = 200
MAX_REFUSED_LOGGED = 1024  # (app, host) pairs whose refusal was logged; later ones are counted
_OK_STATUSES = frozenset({"sent", "delivered"})  # a success carries no errcode


class EventBody(msgspec.Struct, kw_only=True):
    """The JSON a receiver gets (README "Status webhooks")."""

    id: str
    type: str = EVENT_TYPE
    message_id: str
    app: str
    status: str
    errcode: int | None
    errmsg: str | None
    wechat_msgid: int | None
    batch_id: str | None
    occurred_at: float


_encode = msgspec.json.Encoder().encode


def event_body(event: WebhookEvent) -> bytes:
    """The body for `event`: the same bytes on every retry."""
    ok = event.status in _OK_STATUSES
    return _encode(
        EventBody(
            id=event.id,
            message_id=event.message_id,
            app=event.app,
            status=event.status,
            errcode=None if ok else event.errcode,
            errmsg=None if ok else event.errmsg,
            wechat_msgid=event.wechat_msgid,
            batch_id=event.batch_id,
            occurred_at=event.occurred_at,
        )
    )


class WebhookMetrics(Protocol):
    def on_webhook(self, result: str) -> None:
        """One POST's fate: delivered, retry (failed, will try again), failed (gave up) or
        refused (a caller-chosen URL the egress policy forbids; never POSTed)."""


class WebhookSender:
    """Leases due events from the store and POSTs them; `close` stops it."""

    def __init__(
        self,
        store: Store,
        apps: Mapping[str, AppSettings],
        settings: WebhookSettings,
        clock: Clock,
        metrics: WebhookMetrics | None = None,
        *,
        busy: Callable[[], bool] | None = None,
        rand: Callable[[], float] = random.random,
        resolver: AbstractResolver | None = None,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        """`resolver`: what caller-chosen names are resolved with before the address check
        (aiohttp's default resolver unless given; tests give one that answers as told)."""
        self._store = store
        self._tracer = tracer
        self._apps = dict(apps)
        self._settings = settings
        self._clock = clock
        self._metrics = metrics
        self._rand = rand
        self._busy = busy
        # Events per poll while busy: busy_rate_per_s spread over poll_s ticks.
        rate = settings.busy_rate_per_s
        self._busy_batch = max(1, round(rate * settings.poll_s)) if rate > 0 else 0
        self._allowed = parse_networks(settings.allow_private_networks)
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._guarded: aiohttp.ClientSession | None = None  # caller-chosen URLs
        self._guard: GuardedResolver | None = None
        self._refused_logged: set[tuple[str, str]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_free = asyncio.Event()
        self._stopping = False
        self._unsigned_warned: set[str] = set()
        self.delivered = 0
        self.retried = 0
        self.failed = 0
        self.refused = 0

    async def start(self) -> None:
        s = self._settings
        timeout = aiohttp.ClientTimeout(total=s.timeout_s, connect=s.connect_timeout_s)
        connector = aiohttp.TCPConnector(limit=s.concurrency, keepalive_timeout=30.0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, raise_for_status=False
        )
        self._guard = GuardedResolver(self._allowed, self._resolver)
        guarded = aiohttp.TCPConnector(
            limit=s.concurrency, keepalive_timeout=30.0, resolver=self._guard
        )
        self._guarded = aiohttp.ClientSession(
            connector=guarded, timeout=timeout, raise_for_status=False
        )
        self._loop_task = asyncio.create_task(self._run(), name="wxgate-webhooks")

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop leasing; give POSTs in flight up to `timeout_s`, then cancel them (their
        leases run out and they are POSTed again later: nothing is lost)."""
        self._stopping = True
        self._slot_free.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for session in (self._session, self._guarded):
            if session is not None:
                await session.close()
        self._session = self._guarded = None
        if self._guard is not None:  # a resolver given to a connector is not closed by it
            await self._guard.close()
            self._guard = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        state = "stopping" if self._stopping else "running"
        return (
            f"<WebhookSender {state} in_flight={len(self._tasks)} delivered={self.delivered} "
            f"retried={self.retried} failed={self.failed} refused={self.refused}>"
        )

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        s = self._settings
        idle_s = s.poll_s
        while not self._stopping:
            free = s.concurrency - len(self._tasks)
            busy = self._busy_batch > 0 and self._busy is not None and self._busy()
            if busy:
                free = min(free, self._busy_batch)
            if free <= 0:
                self._slot_free.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_free.wait(), s.poll_s)
                continue
            try:
                events = await self._store.lease_webhooks(free, s.lease_s, self._clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook lease failed; trying again in %.1f s", STORE_ERROR_PAUSE_S)
                await self._clock.sleep(STORE_ERROR_PAUSE_S)
                continue
            for event in events:
                task = asyncio.create_task(self._deliver(event))
                self._tasks.add(task)
                task.add_done_callback(self._done)
            if busy:
                await self._clock.sleep(s.poll_s)  # one small batch per tick: sends go first
                continue
            if len(events) >= free:
                idle_s = s.poll_s
                continue  # probably more due
            await self._clock.sleep(idle_s)
            idle_s = s.poll_s if events else min(idle_s * 2, max(IDLE_POLL_CAP_S, s.poll_s))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_free.set()

    # ------------------------------------------------------------------ one event

    def _headers(self, event: WebhookEvent, body: bytes, trace: str | None) -> dict[str, str]:
        """`trace`: the W3C traceparent (tracestate) the receiver gets, the message's kept
        one, or this POST's span's when tracing (not covered by the signature: tracing
        infrastructure may rewrite it)."""
        ts = int(self._clock.now())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_ID_HEADER: event.id,
            TIMESTAMP_HEADER: str(ts),
        }
        if trace is not None:
            headers.update(to_headers(trace))
        app = self._apps.get(event.app)
        secret = app.webhook_secret if app is not None else ""
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, ts, body)
        elif event.app not in self._unsigned_warned:
            self._unsigned_warned.add(event.app)
            log.warning(
                "app %r has no webhook_secret: its status webhooks go unsigned",
                event.app,
                extra=logs.fields(message_id=event.message_id, app=event.app),
            )
        return headers

    def _trusted(self, event: WebhookEvent) -> bool:
        """Whether the event goes to its app's own callback_url (the operator's choice)."""
        app = self._apps.get(event.app)
        return app is not None and app.callback_url is not None and event.url == app.callback_url

    def _caller_refusal(self, url: str) -> str | None:
        """Why a caller-chosen URL is not even tried: its shape, or an IP literal refused
        (aiohttp resolves no literal, so GuardedResolver never sees one)."""
        try:
            parsed = URL(url)
            host = parsed.raw_host
        except (ValueError, TypeError):
            return "refused: not a valid URL"
        if parsed.scheme not in ("http", "https") or not host:
            return "refused: not an http(s) URL with a host"
        if parsed.raw_user is not None or parsed.raw_password is not None:
            return "refused: credentials in a caller-chosen URL"
        if odd_ip_literal(host):  # 0x7f000001, 127.1: resolvers take them, intake does not
            return f"refused: {host} is not a canonical IP address"
        return literal_refusal(host, self._allowed)

    async def _post(self, event: WebhookEvent, trace: str | None) -> tuple[str | None, bool]:
        """(None, False) when the receiver took it (2xx), else (why not, whether it is for
        good: a refusal that no retry can change)."""
        trusted = self._trusted(event)
        session = self._session if trusted else self._guarded
        if session is None:
            return "sender closed", False
        if not trusted:
            refused = self._caller_refusal(event.url)
            if refused is not None:
                return refused, True
        body = event_body(event)
        try:
            async with session.post(
                event.url,
                data=body,
                headers=self._headers(event, body, trace),
                allow_redirects=False,
            ) as resp:
                if 200 <= resp.status < 300:
                    return None, False
                return f"HTTP {resp.status}", False
        except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
            # ValueError: a URL aiohttp cannot use; retried like the rest, then failed.
            denied = refused_in(exc)
            if denied is not None:
                return str(denied)[:MAX_ERROR], True
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR] if str(exc) else type(exc).__name__
            return error, False

    def _log_refused(self, event: WebhookEvent, error: str) -> None:
        """One warning per (app, host): a batch to a refused host is one line, not 10,000."""
        try:
            host = URL(event.url).raw_host or "?"
        except (ValueError, TypeError):
            host = "?"
        key = (event.app, host)
        if key in self._refused_logged or len(self._refused_logged) >= MAX_REFUSED_LOGGED:
            return
        self._refused_logged.add(key)
        log.warning(
            "webhook %s of app %r to a caller-chosen URL on %s not sent (%s); later refusals "
            'for this host are only counted (wxgate_webhooks_total{result="refused"})',
            event.id,
            event.app,
            host,
            error,
            extra=logs.fields(message_id=event.message_id, app=event.app),
        )

    async def _deliver(self, event: WebhookEvent) -> None:
        tracer = self._tracer
        if not tracer.enabled:
            error, permanent = await self._post(event, event.trace)
        else:
            # One span per POST, a child of the message's accept span; the receiver's work
            # joins the trace through the traceparent it is sent.
            attrs: dict[str, AttrValue] = {
                "wxgate.message_id": event.message_id,
                "wxgate.app": event.app,
                "wxgate.event_id": event.id,
                "wxgate.status": event.status,
                "wxgate.attempt": event.attempts + 1,
            }
            with tracer.start("wxgate.webhook", event.trace, attrs, "client") as span:
                error, permanent = await self._post(event, span.context(event.trace))
                if error is not None:
                    span.error(error)
        try:
            if error is None:
                await self._store.webhook_delivered(event.id)
                self.delivered += 1
                result = "delivered"
            elif permanent:
                await self._store.webhook_failed(event.id, error)
                self.refused += 1
                result = "refused"
                self._log_refused(event, error)
            elif event.attempts + 1 >= self._settings.max_attempts:
                await self._store.webhook_failed(event.id, error)
                self.failed += 1
                result = "failed"
                log.warning(
                    "webhook %s to %s failed %d times, giving up: %s",
                    event.id,
                    _redacted(event.url),
                    event.attempts + 1,
                    error,
                    extra=logs.fields(message_id=event.message_id, app=event.app),
                )
            else:
                s = self._settings
                wait = delay_s(event.attempts + 1, s.base_s, s.cap_s, self._rand)
                await self._store.webhook_retry(event.id, self._clock.now() + wait, error)
                self.retried += 1
                result = "retry"
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the event is POSTed again: at-least-once either way.
            log.exception("store failed recording webhook %s; it will be sent again", event.id)
            return
        if self._metrics is not None:
            self._metrics.on_webhook(result)


def _redacted(url: str) -> str:
    """The URL for a log line: no credentials, query or fragment (they may hold tokens)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<invalid URL>"
