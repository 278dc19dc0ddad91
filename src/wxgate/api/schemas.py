"""Response and request bodies that only the HTTP API uses (the shared ones live in models).

Imports nothing but msgspec and models, so `wxgate.sdk` can decode with them cheaply.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from wxgate.models import (
    PENDING_STATUSES,
    AppPause,
    BatchProgress,
    Message,
    MessageKind,
    Status,
    WebhookStats,
)
from wxgate.policy.errcodes import describe


class MessageView(msgspec.Struct, kw_only=True):
    """GET /v1/messages/{id}: where a message is. Never carries the lease token."""

    id: str
    app: str
    kind: MessageKind
    status: Status
    touser: str
    template_id: str
    batch_id: str | None = None
    idempotency_key: str | None = None
    attempts: int = 0
    # Rounds of the app's scheduled redrive it has had (dead -> queued; settings apps.redrive).
    redrive_rounds: int = 0
    last_errcode: int | None = None
    last_errmsg: str | None = None
    # What last_errcode means (policy/errcodes.py), so a person need not look it up.
    last_errcode_meaning: str | None = None
    wechat_msgid: int | None = None
    receipt: str | None = None
    created_at: float
    not_before: float
    expire_at: float | None = None
    sent_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    # What the gateway changed at accept time, e.g. a value truncated to the template's limit.
    notes: list[str] | None = None
    # A waiting message whose app is paused (by hand, quota, throttle or a config error): the
    # pause that holds it, so `queued` with attempts 0 says why it is not sent.
    paused: AppPauseView | None = None

    @classmethod
    def of(cls, m: Message, now: float, paused: AppPauseView | None = None) -> MessageView:
        status = m.status
        # A waiting message whose deadline passed will never be sent: a worker expires it when
        # it next reaches it (the store may not have recorded that yet), so show it as expired.
        if status in PENDING_STATUSES and m.expire_at is not None and m.expire_at <= now:
            status = Status.EXPIRED
        return cls(
            id=m.id,
            app=m.app,
            kind=m.kind,
            status=status,
            touser=m.touser,
            template_id=m.template_id,
            batch_id=m.batch_id,
            idempotency_key=m.idempotency_key,
            attempts=m.attempts,
            redrive_rounds=m.redrive_rounds,
            last_errcode=m.last_errcode,
            last_errmsg=m.last_errmsg,
            last_errcode_meaning=None if m.last_errcode is None else describe(m.last_errcode),
            wechat_msgid=m.wechat_msgid,
            receipt=m.receipt,
            created_at=m.created_at,
            not_before=m.not_before,
            expire_at=m.expire_at,
            sent_at=m.sent_at,
            finished_at=m.finished_at,
            updated_at=m.updated_at,
            notes=m.notes,
            paused=paused if status in PENDING_STATUSES else None,
        )


class DeadLetterPage(msgspec.Struct):
    """GET /v1/dead-letters: newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[MessageView]
    next_cursor: str | None = None


class MessagePage(msgspec.Struct):
    """GET /v1/messages: newest first; pass `next_cursor` as `cursor` for the next page. A
    page may hold fewer than `limit` (even none) and still have a cursor: each page looks at
    a bounded number of messages (store/search.py); page on until next_cursor is null."""

    items: list[MessageView]
    next_cursor: str | None = None


class ThroughputHistory(msgspec.Struct):
    """GET /v1/stats/throughput: per-second counts of the last hour, oldest first, summed
    over every process; each row is [second, then one count per `kinds`]. Seconds nobody
    counted in are left out (read them as zeros)."""

    now: int
    kinds: list[str]
    seconds: list[list[int]]


class BatchPatch(msgspec.Struct, forbid_unknown_fields=True):
    """PATCH /v1/batches/{id}: the batch's own send rate (null: only the app's rate)."""

    # > 0 is checked again (check_rate: not infinite); declared so the document says so
    rate_per_s: Annotated[float, msgspec.Meta(gt=0)] | None


class BatchList(msgspec.Struct):
    """GET /v1/batches: the newest batches first, each with its progress."""

    items: list[BatchProgress]


class RequeueIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /v1/dead-letters/requeue: by ids, or by app and/or errcode."""

    ids: Annotated[list[str], msgspec.Meta(max_length=10_000)] | None = None
    app: str | None = None
    # A 32-bit errcode, as the GET filter takes (a larger one overflowed SQLite's binding: 500).
    errcode: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)] | None = None


class Requeued(msgspec.Struct):
    requeued: int


class AccessToken(msgspec.Struct):
    access_token: str
    expires_at: float | None

    def __repr__(self) -> str:
        return f"AccessToken(access_token='***', expires_at={self.expires_at})"


class InvalidateIn(msgspec.Struct, forbid_unknown_fields=True):
    """The token the caller saw fail; the cached one is dropped only if it is still this one."""

    access_token: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]

    def __repr__(self) -> str:
        return "InvalidateIn(access_token='***')"


class Invalidated(msgspec.Struct):
    """`invalidated`: it was the current token and is gone; the next read fetches a new one.
    `stale`: it was not (already replaced, perhaps after another caller's report): nothing
    to do, read the current one."""

    app: str
    status: str = "invalidated"


class Health(msgspec.Struct):
    status: str


class PauseIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /v1/apps/{app}/pause: why, and until when (epoch s; omitted: until resumed)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    until: float | None = None


class AppPauseView(msgspec.Struct, kw_only=True):
    """A pause in force: its reason, the errcode behind it (automatic pauses), until when
    (null: until resumed) and who set it (a key's name; null: the gateway itself)."""

    reason: str
    errcode: int | None = None
    meaning: str | None = None
    until: float | None = None
    by: str | None = None


class QuotaUse(msgspec.Struct):
    used: int  # claimed from the shared daily counter (Asia/Shanghai day)
    limit: int


class AppView(msgspec.Struct, kw_only=True):
    """One configured app as an operator sees it (GET /v1/apps)."""

    name: str
    appid: str
    state: str  # running | paused
    pause: AppPauseView | None = None
    breaker: str | None = None  # this process's breaker (null without a worker pool here)
    rate_per_s: float  # the live send rate (AIMD may hold it below the maximum)
    max_rate_per_s: float
    in_flight: int | None = None
    quota_day: str
    quota: dict[str, QuotaUse]


class AppList(msgspec.Struct):
    apps: list[AppView]


class ErrcodeCount(msgspec.Struct):
    """Failed send attempts with one errcode, and what WeChat means by it."""

    errcode: int
    count: int
    meaning: str
    disposition: str  # what the gateway does about it: retry, throttle, drop, config, ...


class Stats(msgspec.Struct, kw_only=True):
    """GET /v1/stats: the store's counts, pauses in force and the delivery pool's view."""

    by_status: dict[str, int]
    by_app: dict[str, dict[str, int]]
    oldest_pending_at: float | None = None
    queue_depth: int
    # Per app, messages that reached each final status, those retention has pruned included:
    # counters for rates (successive deltas). Retention never lowers them; a receipt moves one
    # from sent to delivered/blocked/failed, and a requeue takes one off dead.
    finished_by_app: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    pauses: list[AppPause]
    # Per-app breaker / rate / in-flight states from the running worker pool, when there is one.
    delivery: dict[str, Any] | None = None
    # Failed send attempts by errcode since this process started (its own workers only), the
    # most frequent first; empty in a process without workers.
    top_errcodes: list[ErrcodeCount] = msgspec.field(default_factory=list)
    # The status-webhook outbox, all apps together: waiting, given up on, delivered ever.
    webhooks: WebhookStats | None = None
    # The suppression list: (user, template) pairs rejected by popup/change events, by app;
    # subscribe messages to them are dead-lettered with 43101 unsent (suppress_rejected).
    suppressed: dict[str, int] = msgspec.field(default_factory=dict)
