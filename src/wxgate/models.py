"""The data wxgate moves around, as msgspec Structs: messages, their status, results and API bodies.

Times are epoch seconds (float). Message ids double as WeChat's `client_msg_id`.
"""

from __future__ import annotations

import itertools
import os
import time
from enum import StrEnum
from typing import Annotated, Any

import msgspec


class MessageKind(StrEnum):
    TEMPLATE = "template"  # Official Account template message
    SUBSCRIBE = "subscribe"  # mini-program subscribe message
    OA_SUBSCRIBE = "oa_subscribe"  # Official Account subscription notification (bizsend)


# The kinds sent as subscribe messages: no client_msg_id, receipts by subscribe_msg_sent_event
# (which may come without a msgid in the send answer), rejections by popup/change events.
SUBSCRIBE_KINDS = frozenset({MessageKind.SUBSCRIBE, MessageKind.OA_SUBSCRIBE})


class Status(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    BLOCKED = "blocked"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# Waiting to be leased (due now or later).
PENDING_STATUSES = frozenset({Status.QUEUED, Status.SCHEDULED, Status.RETRYING})
# Nothing more will happen to the message (a `sent` one may still get a receipt).
FINAL_STATUSES = frozenset(
    {
        Status.SENT,
        Status.DELIVERED,
        Status.BLOCKED,
        Status.FAILED,
        Status.DEAD,
        Status.CANCELLED,
        Status.EXPIRED,
    }
)


class _IdSource:
    """Per-process random tag plus a counter: unique without a getrandom syscall per id.

    The syscall released the GIL on every accepted message, which on a busy 2-core box let
    the store's writer thread take it and cost the event loop a switch interval.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.tag = os.urandom(4).hex()  # 32 bits: tells processes apart
        self.counter = itertools.count(int.from_bytes(os.urandom(2)))
        self._ms = -1
        self._prefix = ""

    def next(self) -> str:
        # 12 hex of ms, 8 of process tag, 4 of counter (65,536 ids per ms per process).
        ms = int(time.time() * 1000)
        if ms != self._ms:  # under load most ids share their millisecond with the last one
            self._ms, self._prefix = ms, f"{ms:012x}{self.tag}"
        c = next(self.counter)
        return self._prefix + _HEX2[(c >> 8) & 0xFF] + _HEX2[c & 0xFF]

    def many(self, n: int) -> list[str]:
        """n ids from one clock read; ms are bumped every 65,536 so none repeats."""
        ms, tag, counter = int(time.time() * 1000), self.tag, self.counter
        out: list[str] = []
        for start in range(0, n, 0x10000):
            prefix = f"{ms + start // 0x10000:012x}{tag}"
            out += [
                prefix + _HEX2[(c >> 8) & 0xFF] + _HEX2[c & 0xFF]
                for c in itertools.islice(counter, min(n - start, 0x10000))
            ]
        return out


# Two hex digits per byte, looked up: int.__format__ with a spec was 3% of batch ingest.
_HEX2 = [f"{i:02x}" for i in range(256)]


_IDS = _IdSource()


def new_id() -> str:
    """A 24-char hex id, time-ordered (ms), then process tag and counter; fits client_msg_id."""
    return _IDS.next()


def new_ids(n: int) -> list[str]:
    """`n` ids of new_id's form at once (batch ingest)."""
    return _IDS.many(n)


class MiniProgram(msgspec.Struct, frozen=True):
    appid: str
    pagepath: str = ""


class SharedFields(msgspec.Struct, frozen=True, kw_only=True):
    """What every message of a batch shares, stored once with the batch rather than per row
    (a 1 MB `data` for 300 recipients was 300 MB of database otherwise)."""

    data: dict[str, dict[str, str]]
    url: str | None = None
    miniprogram: MiniProgram | None = None
    page: str | None = None


class Message(msgspec.Struct, kw_only=True):
    """One message to one recipient, as stored."""

    id: str
    app: str
    kind: MessageKind = MessageKind.TEMPLATE
    touser: str
    template_id: str
    # WeChat's shape: {"keyword": {"value": "...", "color": "#hex"?}}
    data: dict[str, dict[str, str]]
    url: str | None = None
    miniprogram: MiniProgram | None = None
    page: str | None = None
    miniprogram_state: str | None = None
    lang: str | None = None
    idempotency_key: str | None = None
    # With a key: the fingerprint of the request body that made the message (api/intake.py).
    # The store keeps it with the key, so a reuse of the key with another body is refused
    # (EnqueueResult.conflict) instead of answered with the first message. None: not checked.
    idempotency_digest: str | None = None
    batch_id: str | None = None
    callback_url: str | None = None
    priority: str = "normal"
    created_at: float
    not_before: float  # not leased before this time (send_at, or a retry's backoff)
    expire_at: float | None = None  # never sent after this time: becomes `expired`
    status: Status = Status.QUEUED
    attempts: int = 0  # sends that counted against max_attempts
    last_errcode: int | None = None
    last_errmsg: str | None = None
    wechat_msgid: int | None = None  # 64-bit; from the send answer, echoed by the receipt
    receipt: str | None = None  # TEMPLATESENDJOBFINISH Status, verbatim
    sent_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    # Set by Store.lease: the fencing token that ack/retry/dead/release must present.
    lease_token: int = 0
    # What the gateway changed or noticed at accept time, e.g. a value truncated to the
    # template's limit ("data.thing1: truncated from 35 to 20 chars"). None = nothing.
    notes: list[str] | None = None
    # A batch message's shared fields: one object for the whole batch. `data`, url,
    # miniprogram and page are still this message's own, in full; the store keeps the shared
    # part once with the batch and per row only what differs (store/batch_shared.py).
    shared: SharedFields | None = None
    # Rounds of the app's scheduled redrive (settings `[[apps.redrive]]`) this message has had:
    # each moved it from dead back to queued. A requeue by hand does not count.
    redrive_rounds: int = 0
    # The W3C trace context the message carries (tracing/context.py: the traceparent, then a
    # newline and the tracestate if any): the caller's, or the accept span's when tracing.
    trace: str | None = None


class SendResult(msgspec.Struct, frozen=True):
    """What a successful send recorded."""

    wechat_msgid: int | None
    sent_at: float


class ErrorInfo(msgspec.Struct, frozen=True):
    errcode: int
    errmsg: str


class EnqueueResult(msgspec.Struct, frozen=True):
    id: str
    status: Status
    created: bool  # False when (app, idempotency_key) already existed: `id` is the original
    # The key already existed with another body fingerprint (Message.idempotency_digest):
    # the caller reused a key for a different message (the API answers 409).
    conflict: bool = False


class BatchStatus(StrEnum):
    """A batch's stored status. `done` is not stored: the API reports it once every message
    is final (api/batches.py)."""

    LOADING = "loading"  # a streamed or chunked batch still being written; nothing is sent
    RUNNING = "running"
    PAUSED = "paused"
    INCOMPLETE = "incomplete"  # its upload broke off: resume sends what arrived, or cancel
    CANCELLED = "cancelled"  # final


class Batch(msgspec.Struct, kw_only=True):
    """A campaign: one template to many recipients, controlled as one.

    Stored status: `loading` (a streamed upload is still arriving: nothing is sent yet),
    `running`, `paused`, `incomplete` (the upload broke: what arrived waits for resume or
    cancel) or `cancelled`. `done` is never stored: progress reports it once every message
    is final. `total` is the number of recipients accepted (it grows while loading).
    """

    id: str
    app: str
    template_id: str
    total: int
    created_at: float
    status: BatchStatus = BatchStatus.RUNNING
    rate_per_s: float | None = None  # a send rate for this batch alone, under the app's
    # What its messages share, written once with the batch; get_batch leaves it None (the
    # store puts it back into the batch's messages as it reads them).
    shared: SharedFields | None = None


# Batch statuses whose messages are not leased: held until resumed (or cancelled for good).
# The status progress reports, never stored, once every message of a running batch is final.
BATCH_DONE = "done"
BATCH_HELD = frozenset({BatchStatus.LOADING, BatchStatus.PAUSED, BatchStatus.INCOMPLETE})
BATCH_STATUSES = frozenset(BatchStatus)
# What set_batch_status may set: every status but `loading`, which only a new batch has.
BATCH_SETTABLE = BATCH_STATUSES - {BatchStatus.LOADING}


class AppPause(msgspec.Struct, frozen=True):
    """An app is not sent to until `until` (epoch s); messages stay queued.

    `by` names who paused it by hand (the API key's name, POST /v1/apps/{app}/pause); None is
    the dispatcher's own pause (quota, throttle, config). An automatic pause never replaces a
    hand-made one still in force (SharedState.set_pause): only a resume or its `until` ends it.
    """

    app: str
    until: float
    reason: str
    errcode: int | None = None
    by: str | None = None


class TokenEntry(msgspec.Struct, frozen=True):
    """A cached access_token. Never logged; `repr` hides it."""

    access_token: str
    expires_at: float
    fetched_at: float

    def __repr__(self) -> str:
        return f"TokenEntry(access_token='***', expires_at={self.expires_at:.0f})"


class WebhookEvent(msgspec.Struct, kw_only=True):
    """A final status waiting to be POSTed to a caller's callback_url: one outbox row.

    Written by the store in the same transaction as the status change; `id` is the event id
    the receiver dedupes by, the same on every retry. The rest is a snapshot taken then.
    """

    id: str
    message_id: str
    app: str
    status: str
    url: str
    occurred_at: float
    errcode: int | None = None
    errmsg: str | None = None
    wechat_msgid: int | None = None
    batch_id: str | None = None
    attempts: int = 0  # POSTs that failed so far
    last_error: str | None = None
    trace: str | None = None  # the message's trace context (Message.trace), copied with it


class WebhookStats(msgspec.Struct):
    """Outbox counts: waiting (or being POSTed), given up on (kept for retention_s), and
    delivered since the store was created."""

    pending: int = 0
    failed: int = 0
    delivered: int = 0


class StoreStats(msgspec.Struct):
    by_status: dict[str, int]
    by_app: dict[str, dict[str, int]]
    oldest_pending_at: float | None = None
    # Finished messages dropped after retention, by app and final status: added to by_app they
    # give counts that retention never lowers (so rates from their deltas stay right).
    pruned_by_app: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    # Leases taken over after they expired (their holder crashed or hung), by app, ever.
    lease_expirations: dict[str, int] = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------- HTTP API bodies

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
# Data values are accepted as {"k": {"value": "v"}} or the shorthand {"k": "v"}.
DataIn = dict[str, Any]


class MessageIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /v1/messages."""

    touser: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    template_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    data: DataIn
    app: str | None = None
    kind: MessageKind = MessageKind.TEMPLATE
    url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    miniprogram: MiniProgram | None = None
    page: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    miniprogram_state: str | None = None
    lang: str | None = None
    send_at: float | None = None
    expire_at: float | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    callback_url: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    priority: str = "normal"  # urgent | normal | low (high = urgent): urgent skips quiet hours


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    touser: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    data: DataIn | None = None


class BatchShared(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every recipient of a batch shares: a JSON batch's top level, or the query string
    and header line of a streamed (NDJSON/CSV) upload."""

    template_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    data: DataIn = msgspec.field(default_factory=dict)
    app: str | None = None
    kind: MessageKind = MessageKind.TEMPLATE
    url: str | None = None
    miniprogram: MiniProgram | None = None
    page: str | None = None
    send_at: float | None = None
    expire_at: float | None = None
    callback_url: str | None = None
    priority: str = "normal"  # urgent | normal | low: urgent batches skip quiet hours
    rate_per_s: float | None = None  # this batch's own send rate (PATCH changes it)


class BatchIn(BatchShared, forbid_unknown_fields=True, kw_only=True):
    """POST /v1/batches: one template, many recipients; per-recipient data overrides shared."""

    recipients: list[Recipient]


class Accepted(msgspec.Struct):
    id: str
    status: Status


class BatchAccepted(msgspec.Struct):
    id: str
    total: int
    status: str


class BatchProgress(msgspec.Struct):
    """A batch now: its status (models.Batch, or `done` once every message is final), how
    many recipients it holds, and how many of them are in each message status."""

    id: str
    status: str
    total: int
    counts: dict[str, int]
    app: str | None = None
    template_id: str | None = None
    created_at: float | None = None
    rate_per_s: float | None = None
    # Dead letters by their last errcode ("40003": 12); blocked and failed are in counts.
    errcodes: dict[str, int] = msgspec.field(default_factory=dict)


class ErrorBody(msgspec.Struct):
    error: str
    message: str
    field: str | None = None
