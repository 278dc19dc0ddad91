"""One leased message through pause -> breaker -> rate limit -> quota -> send -> classify -> store.

Every path ends in exactly one store call under the message's lease token (ack, retry, dead,
expire, or a release = retry without error or attempt). If the store itself fails, the
message is left alone: its lease expires and it is leased again, and a re-send is harmless
because WeChat drops a repeated client_msg_id (= message.id) within 10 minutes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from wxgate import logs
from wxgate.clock import Clock
from wxgate.delivery.app_state import AppState
from wxgate.delivery.batch_rate import HOLD_MAX_S, BatchRates
from wxgate.delivery.hooks import DeliveryMetrics, NoMetrics
from wxgate.delivery.outage_log import OutageLog
from wxgate.delivery.outcome import Outcome
from wxgate.delivery.quota import QuotaClaims
from wxgate.errors import (
    BadTokenEndpoint,
    Disposition,
    OutcomeUnknown,
    TokenAnswer,
    TransportError,
    WeChatError,
)
from wxgate.models import SUBSCRIBE_KINDS, AppPause, ErrorInfo, Message, SendResult, Status
from wxgate.policy.adaptive import AimdController
from wxgate.policy.backoff import delay_s
from wxgate.policy.breaker import CircuitBreaker
from wxgate.policy.errcodes import config_pause_s, describe
from wxgate.policy.ratelimit import next_minute, next_shanghai_midnight, shanghai_day
from wxgate.policy.receipt_links import Finish
from wxgate.settings import AppSettings, WorkerSettings
from wxgate.store.base import Store
from wxgate.store.receipt_links import ReceiptLinker
from wxgate.tracing import NO_SPAN, NO_TRACER, AttrValue, Span, Tracer
from wxgate.wechat.tokens import TokenBroker

log = logging.getLogger("wxgate.delivery")

# Pauses live in the store (shared by every process); re-read them at most this often.
PAUSE_CACHE_S = 0.5
# A message released because its app is paused comes due again after at most this long, so
# clearing a pause (say after /cgi-bin/clear_quota) resumes sending at once; until then the
# pool keeps the paused app out of its leases, so the early due time costs nothing.
PAUSE_RECHECK_S = 1.0
# Messages for an app that is not configured here stay queued and are looked at again later.
UNKNOWN_APP_RETRY_S = 60.0
ERRCODE_MINUTE_QUOTA = 45011
# A subscribe message whose (app, openid, template) has another send awaiting its receipt
# tries again this much later (policy/receipt_links.py).
LINK_BUSY_S = 1.0
SUPPRESSED = ErrorInfo(43101, "user rejected this template (subscribe event); not sent")
ERRCODE_INTERNAL = -5  # a bug of ours while sending: counted like a transport failure
MAX_ERRMSG = 500


def quota_key(app: str, kind: str) -> str:
    """The store counter of one app's sends of one kind: WeChat counts each API on its own.
    Template messages keep the bare app name (the counter's name before kinds had quotas)."""
    return app if kind == "template" else f"{app}:{kind}"


class Dispatcher:
    """Decides and records what happens to one leased message (docs/architecture.md §5.3).

    `send_timeout_s` is the WeChat client's total timeout; a send may take two of them (the
    broker retries once on a token error), and a message is only sent while its lease has at
    least that budget left (the invariant: lease_s > 2 * send_timeout_s + rate-limit wait).
    """

    def __init__(
        self,
        store: Store,
        broker: TokenBroker,
        apps: Mapping[str, AppSettings],
        worker_settings: WorkerSettings,
        clock: Clock,
        metrics: DeliveryMetrics | None = None,
        *,
        send_timeout_s: float = 10.0,
        tracer: Tracer = NO_TRACER,
    ) -> None:
        self._store = store
        self._tracer = tracer
        self._broker = broker
        self._settings = worker_settings
        self._clock = clock
        self._metrics: DeliveryMetrics = metrics if metrics is not None else NoMetrics()
        self.send_budget_s = 2 * send_timeout_s
        self._states = {
            name: AppState(
                app,
                CircuitBreaker(worker_settings.breaker, clock),
                AimdController(app.rate_per_s, worker_settings.adaptive, clock),
            )
            for name, app in apps.items()
        }
        self._pauses: dict[str, AppPause] = {}
        self._pauses_read_at: float | None = None  # monotonic
        self._pause_gen = 0  # bumped by local set_pause, so a slower read cannot undo it
        self._refreshing = False
        self._warned_unknown: set[str] = set()
        self._quota = QuotaClaims(store)
        self._links = ReceiptLinker(store)
        self._batch_rates = BatchRates(store, clock)
        self.outages = OutageLog(clock)  # "WeChat unreachable" once per app per outage

    # ------------------------------------------------------------------ state for the pool

    def app_state(self, app: str) -> AppState | None:
        return self._states.get(app)

    def app_states(self) -> dict[str, dict[str, Any]]:
        now = self._clock.now()
        return {name: st.snapshot(now) for name, st in self._states.items()}

    @property
    def states(self) -> Mapping[str, AppState]:
        return self._states

    def blocked_apps(self) -> frozenset[str]:
        """Apps not worth leasing for now: paused, breaker open, or rate limit saturated."""
        now = self._clock.now()
        mono = self._clock.monotonic()
        blocked = {app for app, p in self._pauses.items() if p.until > now}
        for name, st in self._states.items():
            if st.breaker_open() or st.rate_saturated(mono):
                blocked.add(name)
        return frozenset(blocked)

    async def refresh_pauses(self, force: bool = False) -> None:
        """Re-read the shared pauses if the cached copy is older than PAUSE_CACHE_S."""
        mono = self._clock.monotonic()
        fresh = self._pauses_read_at is not None and mono - self._pauses_read_at < PAUSE_CACHE_S
        if self._refreshing or (fresh and not force):
            return
        self._refreshing = True
        gen = self._pause_gen
        try:
            pauses = await self._store.get_pauses()
        finally:
            self._refreshing = False
        if gen != self._pause_gen:
            return  # a pause was set meanwhile; this read may predate it, read again next time
        self._pauses_read_at = mono
        self._pauses = {p.app: p for p in pauses}
        for name, st in self._states.items():
            st.pause = self._pauses.get(name)

    # ------------------------------------------------------------------ one message

    async def handle(self, message: Message, *, lease_deadline: float | None = None) -> Outcome:
        """Deliver or reschedule one leased message; never raises except on cancellation.

        `lease_deadline` (clock.monotonic()) is when the lease runs out; a message that could
        not be sent before then is released instead of sent under an expired lease.
        """
        state = self._states.get(message.app)
        if state is not None:
            state.in_flight += 1
        try:
            return await self._handle(message, state, lease_deadline)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "store failed on message %s (app %s); its lease will expire and redeliver it",
                message.id,
                message.app,
                extra=_context(message),
            )
            return Outcome.STORE_ERROR
        finally:
            if state is not None:
                state.in_flight -= 1

    async def release(self, message: Message, reason: str, at: float | None = None) -> Outcome:
        """Put a leased message back unharmed (no error, no attempt), due at `at` (default now)."""
        due = self._clock.now() if at is None else at
        if not await self._store.retry(message.id, message.lease_token, due, None, False):
            return Outcome.FENCED
        state = self._states.get(message.app)
        if state is not None:
            state.released += 1
        self._metrics.on_released(message.app, reason)
        return Outcome.RELEASED

    async def _handle(
        self, message: Message, state: AppState | None, lease_deadline: float | None
    ) -> Outcome:
        now = self._clock.now()
        if state is None:
            if message.app not in self._warned_unknown:
                self._warned_unknown.add(message.app)
                log.warning(
                    "messages for unknown app %r stay queued", message.app, extra=_context(message)
                )
            return await self.release(message, "unknown app", now + UNKNOWN_APP_RETRY_S)
        if self._expired(message, now):
            return await self._expire(message)
        if state.quiet is not None:
            # Due inside the app's quiet hours (a retry or scheduled send landing there): wait
            # for the window's end, no attempt counted, or expire if that is too late.
            at, too_late = state.quiet.hold(now, message.priority, message.expire_at)
            if too_late:
                return await self._expire(message)
            if at > now:
                return await self.release(message, "quiet_hours", at)

        if (
            message.kind in SUBSCRIBE_KINDS
            and state.settings.suppress_rejected
            and await self._store.is_suppressed(message.app, message.touser, message.template_id)
        ):
            # The user rejected this template (a popup or change event): WeChat would answer
            # 43101, so the send is not spent; an accept lifts it for later messages.
            self._metrics.on_suppressed(message.app)
            return await self._dead(message, state, SUPPRESSED)

        await self.refresh_pauses()
        until = state.paused_until(now)
        if until is not None:
            return await self.release(message, "paused", min(until, now + PAUSE_RECHECK_S))
        # A half-open breaker hands out a limited number of probes here, and each one must end
        # in record(); the rare releases between here and the send leave a probe unreported,
        # which the breaker recovers from by itself after open_s.
        if not state.breaker.allow():
            return await self.release(message, "breaker", self._breaker_due(state, now))

        # Rate limit: wait for a token, never fail for one and never count it as an attempt.
        app = state.settings
        batch_wait = 0.0
        if message.batch_id is not None:  # a batch with a rate of its own (PATCH /v1/batches)
            batch_wait = await self._batch_rates.take(message.batch_id, now)
            if batch_wait > HOLD_MAX_S:
                return await self.release(message, "batch_rate", now + batch_wait)
        wait = await self._store.take_rate(message.app, state.rate_per_s, state.burst, 1, now)
        mono = self._clock.monotonic()
        state.rate_free_at = max(state.rate_free_at, mono + wait)
        wait = max(wait, batch_wait)
        if lease_deadline is not None and mono + wait + self.send_budget_s > lease_deadline:
            return await self.release(message, "lease", now + wait)
        if wait > 0:
            self._metrics.on_rate_wait(message.app, wait)
            await self._clock.sleep(wait)
            now = self._clock.now()
            if self._expired(message, now):
                return await self._expire(message)

        # Subscribe sends may come back without a msgid: their receipts are linked by send
        # order per (app, openid, template), so no two of one key overlap (receipt_links.py).
        # An app without a callback Token gets no receipts (its route is a 404): no linking.
        linked = message.kind in SUBSCRIBE_KINDS and bool(app.callback_token)
        if linked and not await self._links.begin(
            message.app, message.touser, message.template_id, message.id, now
        ):
            return await self.release(message, "receipt_link", now + LINK_BUSY_S)

        kind = message.kind.value
        if not await self._quota.take(
            quota_key(message.app, kind), shanghai_day(now), app.quota_for(kind)
        ):
            if linked:
                await self._finish_link(message, Finish.REFUSED, None)
            pause = AppPause(message.app, next_shanghai_midnight(now), f"daily quota ({kind})")
            await self._set_pause(state, pause)
            return await self.release(message, "quota", min(pause.until, now + PAUSE_RECHECK_S))

        tracer = self._tracer
        if not tracer.enabled:
            return await self._send(message, state, NO_SPAN, linked)
        # One span per send attempt, a child of the message's accept span (its kept context).
        attrs: dict[str, AttrValue] = {
            "wxgate.message_id": message.id,
            "wxgate.app": message.app,
            "wxgate.attempt": message.attempts + 1,
        }
        with tracer.start("wxgate.send", message.trace, attrs, "client") as span:
            outcome = await self._send(message, state, span, linked)
            span.set("wxgate.outcome", outcome.value)
            return outcome

    async def _send(self, message: Message, state: AppState, span: Span, linked: bool) -> Outcome:
        """The send itself and its outcome in the store; `span` records errcode and
        disposition (the attempt span, or NO_SPAN with tracing off); `linked`: a subscribe
        send whose receipt link must hear how it ended."""
        app = state.settings
        started = self._clock.monotonic()
        try:
            msgid = await self._broker.send(app, message)
        except WeChatError as exc:
            if linked:
                lost = isinstance(exc, OutcomeUnknown)
                await self._finish_link(message, Finish.UNKNOWN if lost else Finish.REFUSED, None)
            return await self._on_error(message, state, exc, span)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: count it, so it cannot loop forever
            if linked:
                await self._finish_link(message, Finish.UNKNOWN, None)
            log.exception(
                "unexpected error sending message %s (app %s)",
                message.id,
                app.name,
                extra=_context(message),
            )
            err = WeChatError(ERRCODE_INTERNAL, f"internal error: {type(exc).__name__}")
            return await self._on_error(message, state, err, span)
        latency_s = self._clock.monotonic() - started
        self.outages.answered(message.app)
        span.set("wechat.errcode", 0)
        span.set("wxgate.disposition", Disposition.OK.value)
        state.breaker.record(True)
        if state.adaptive is not None:
            state.adaptive.record(False)
        now = self._clock.now()
        token = message.lease_token
        status = await self._store.ack(message.id, token, SendResult(msgid, now))
        while status is None and message.lease_token != token:
            # Leased again to this process while the ack was on its way: the pool handed this
            # copy the newer token (workers.py), so the send that happened is recorded under it.
            token = message.lease_token
            status = await self._store.ack(message.id, token, SendResult(msgid, now))
        if linked:
            outcome = Finish.NO_MSGID if msgid is None else Finish.MSGID
            await self._finish_link(message, outcome, msgid)
        if status is None:
            return Outcome.FENCED
        state.sent += 1
        self._metrics.on_sent(message.app, latency_s, message.created_at, now)
        if status is not Status.SENT:  # WeChat's receipt came before our ack and ended it
            self._metrics.on_receipt(message.app, status.value, message.created_at, now)
        return Outcome.SENT

    async def _finish_link(self, message: Message, outcome: Finish, msgid: int | None) -> None:
        """Record a subscribe send's answer in its receipt link, and apply the receipt that
        arrived while it was in flight: to this message when it was sent without a msgid or
        with the receipt's; else it is not this message's for sure, and is kept by msgid."""
        now = self._clock.now()
        pending = await self._links.finish(
            message.app, message.touser, message.template_id, message.id, outcome, now
        )
        if pending is None:
            return
        mine = outcome is Finish.NO_MSGID or (outcome is Finish.MSGID and msgid == pending.msgid)
        if not mine:
            self._metrics.on_receipt_unlinked(message.app, "ambiguous")
        updated = await self._store.record_receipt(
            message.app,
            pending.msgid,
            pending.receipt,
            pending.event_key,
            message.touser,
            message_id=message.id if outcome is Finish.NO_MSGID else None,
        )
        if updated is not None:
            self._metrics.on_receipt(message.app, updated.status.value, message.created_at, now)

    async def _on_error(
        self, message: Message, state: AppState, exc: WeChatError, span: Span = NO_SPAN
    ) -> Outcome:
        disposition = exc.disposition
        span.set("wechat.errcode", exc.errcode)
        span.set("wxgate.disposition", disposition.value)
        span.error(f"errcode {exc.errcode}")
        self._metrics.on_failed(message.app, disposition.value, exc.errcode)
        if isinstance(exc, TransportError):
            self.outages.failed(message.app, exc.errmsg)
        elif exc.errcode != ERRCODE_INTERNAL:  # a bug of ours is no answer from WeChat
            self.outages.answered(message.app)
        error = ErrorInfo(exc.errcode, exc.errmsg[:MAX_ERRMSG])
        now = self._clock.now()
        # Only "WeChat did not answer properly" counts against the breaker; a definite
        # answer (bad openid, quota, config) shows WeChat is up.
        state.breaker.record(disposition is not Disposition.RETRY)
        if state.adaptive is not None:
            state.adaptive.record_error(exc)  # -1, 45011, 5xx, timeouts slow the app down

        # A token endpoint's answer is about the app, never this message: it keeps pausing.
        repeat = message.last_errcode == exc.errcode and not isinstance(
            exc, TokenAnswer | BadTokenEndpoint
        )
        if disposition in (Disposition.THROTTLE, Disposition.CONFIG) and repeat:
            # This message already paused its app for this errcode once (the pause ran out, or
            # a person resumed the app): pausing the app again for it would loop forever (one
            # bad recipient re-pausing a campaign every minute). It fails like any other
            # attempt instead: backoff, then a dead letter; the next message to meet the
            # error for the first time pauses the app again.
            disposition = Disposition.RETRY
        if disposition is Disposition.THROTTLE:
            if exc.errcode == ERRCODE_MINUTE_QUOTA:
                until = next_minute(now)
            else:
                until = next_shanghai_midnight(now)
            await self._set_pause(
                state, AppPause(message.app, until, describe(exc.errcode), exc.errcode)
            )
            return await self._hold(message, "throttle", min(until, now + PAUSE_RECHECK_S), error)
        if disposition is Disposition.CONFIG:
            pause_s = config_pause_s(exc.errcode)
            pause = AppPause(message.app, now + pause_s, describe(exc.errcode), exc.errcode)
            if state.paused_until(now) is None:
                self._metrics.on_config_alert(message.app, exc.errcode)
                log.error(
                    "ALERT app %s misconfigured: errcode %d (%s): %s; paused %.0f s, "
                    "its messages are kept",
                    message.app,
                    exc.errcode,
                    pause.reason,
                    error.errmsg,
                    pause_s,
                    extra=_context(message, exc.errcode),
                )
            await self._set_pause(state, pause)
            at = min(pause.until, now + PAUSE_RECHECK_S)
            return await self._hold(message, "config", at, error)
        if disposition is Disposition.DROP:
            return await self._dead(message, state, error)

        # RETRY, and REFRESH_TOKEN that failed again after the broker's one refresh.
        attempt = message.attempts + 1
        if attempt >= self._settings.retry.max_attempts:
            return await self._dead(message, state, error)
        retry = self._settings.retry
        at = now + delay_s(attempt, retry.base_s, retry.cap_s)
        if not await self._store.retry(message.id, message.lease_token, at, error, True):
            return Outcome.FENCED
        state.retried += 1
        self._metrics.on_retry(message.app)
        return Outcome.RETRY

    async def _hold(self, message: Message, reason: str, at: float, error: ErrorInfo) -> Outcome:
        """Put back the message whose error paused its app: no attempt counted, but its errcode
        recorded (it did fail, and a second time it is an attempt: see _on_error)."""
        if not await self._store.retry(message.id, message.lease_token, at, error, False):
            return Outcome.FENCED
        state = self._states.get(message.app)
        if state is not None:
            state.released += 1
        self._metrics.on_released(message.app, reason)
        return Outcome.RELEASED

    async def _dead(self, message: Message, state: AppState, error: ErrorInfo) -> Outcome:
        if not await self._store.dead(message.id, message.lease_token, error):
            return Outcome.FENCED
        state.dead += 1
        self._metrics.on_dead(message.app)
        return Outcome.DEAD

    async def _expire(self, message: Message) -> Outcome:
        if not await self._store.expire(message.id, message.lease_token):
            return Outcome.FENCED
        self._metrics.on_expired(message.app)
        return Outcome.EXPIRED

    async def _set_pause(self, state: AppState, pause: AppPause) -> None:
        current = state.pause
        if current is not None and current.until >= pause.until and current.reason == pause.reason:
            return  # many in-flight sends hit the same limit at once; write it once
        if current is not None and current.by is not None and current.until > self._clock.now():
            return  # a person's pause: only a resume or its own end lifts it (store/base.py)
        self._pause_gen += 1
        state.pause = pause
        self._pauses[pause.app] = pause
        await self._store.set_pause(pause)

    @staticmethod
    def _expired(message: Message, now: float) -> bool:
        return message.expire_at is not None and now >= message.expire_at

    @staticmethod
    def _breaker_due(state: AppState, now: float) -> float:
        until = state.breaker.opened_until
        return until if until is not None and until > now else now + 1.0

    def __repr__(self) -> str:
        states = " ".join(repr(st) for st in self._states.values())
        return f"<Dispatcher apps={len(self._states)} {states}>"


def _context(message: Message, errcode: int | None = None) -> dict[str, object]:
    """The JSON log fields of a record about `message` (see wxgate.logs)."""
    return logs.fields(
        message_id=message.id, app=message.app, batch=message.batch_id, errcode=errcode
    )
