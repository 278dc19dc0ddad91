"""The Store contract every backend implements and `tests/store/` checks, split by role
(MessageQueue, BatchRecords, SharedState, ReceiptLinks, Suppressions, WebhookOutbox; `Store`
is all six).

Rules every backend keeps:
- `enqueue` commits all or nothing, and only returns after the commit is durable.
- A leased message carries `lease_token`; ack/retry/dead/release/expire succeed only while the
  message is `sending` under that token (fencing). A lease that expired without being re-leased
  still accepts its holder's outcome; once re-leased, the old holder's calls return False and
  change nothing, so a late ack can never resurrect or duplicate a message.
- Token cache, locks, pauses and quota counters live here so every process shares them.
- Time rules without a `now` argument (scheduled vs queued, lock and pause expiry) are judged by
  the clock the store was built with.
- Lease tokens only grow: a message's new lease always carries a larger token than its last.
- A batch's shared fields (Batch.shared, referenced by its messages' Message.shared) are
  stored once, with the batch; a message row keeps only what differs (store/batch_shared.py).
  Every read (get, lease, pages, dead letters, receipts) returns a message's data, url,
  miniprogram and page whole, as enqueued.
- Status webhooks (a transactional outbox): every change that puts a message with a
  `callback_url` into a final status (ack, a receipt, dead, expire, cancel, a batch's cancel,
  including the lease's cancel of a cancelled batch's message) writes a WebhookEvent in the
  same transaction (SQLite) or script (Redis) as the change itself. The event can therefore
  not be lost by a crash at any moment, and no event exists for a change that did not commit.
  Events are leased like messages (an expired lease is due again), so delivery is
  at-least-once and the receiver dedupes by the event id, which never changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from wxgate.models import (
    AppPause,
    Batch,
    EnqueueResult,
    ErrorInfo,
    Message,
    SendResult,
    Status,
    StoreStats,
    TokenEntry,
    WebhookEvent,
    WebhookStats,
)
from wxgate.store.search import MessageQuery


def receipt_status(receipt: str) -> Status:
    """The final status a receipt's Status string means (docs/wechat-api.md §5.3).

    "success" -> delivered; "failed:user block" (with or without spaces) -> blocked; anything
    else -> failed. Whitespace is normalised because SDKs disagree on "failed: user block".
    """
    norm = " ".join(receipt.replace(":", ": ").split()).lower()
    if norm == "success":
        return Status.DELIVERED
    if "user block" in norm:
        return Status.BLOCKED
    return Status.FAILED


def released_status(error: ErrorInfo | None, count_attempt: bool) -> Status:
    """The status `retry` leaves a message in: `queued` for a release (no error, no attempt
    counted), `retrying` for a failed send."""
    return Status.QUEUED if error is None and not count_attempt else Status.RETRYING


class CancelOutcome:
    CANCELLED = "cancelled"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # already in flight or finished


class MessageQueue(Protocol):
    """Messages from accept to a final status: what the worker pool, the API's message and
    dead-letter routes and the callback route need."""

    async def enqueue(
        self, messages: Sequence[Message], batch: Batch | None = None
    ) -> list[EnqueueResult]:
        """Commit all (and the batch record, if given) or none; dedupe by (app, idempotency_key).

        Results are in input order; a duplicate key returns the existing id with created=False.
        Messages with not_before > now are stored as `scheduled`, else `queued`. A message id
        that already exists fails the whole call with StoreError (nothing is stored).

        One exception to "none": a store may write a large running batch in steps (Redis, over
        1,000 messages, so that no one script holds Redis for it). A failure part-way then
        leaves what was written `cancelled`, or `loading` if the process died: never sent.
        """

    async def lease(
        self, n: int, lease_s: float, now: float, exclude_apps: frozenset[str] = frozenset()
    ) -> list[Message]:
        """Up to n due messages (not_before <= now), fair across apps, marked `sending`.

        Messages whose lease expired (sending, lease ended before now) are due again.
        Each returned message has a fresh `lease_token`. Apps in `exclude_apps` are skipped.
        Messages of held (models.BATCH_HELD) or cancelled batches are skipped. Taking over an
        expired lease adds one to StoreStats.lease_expirations of the message's app.
        """

    async def ack(self, msg_id: str, lease_token: int, result: SendResult) -> Status | None:
        """sending -> sent, attempts += 1 (the send that worked counts as an attempt).

        Returns the status the message ends in, None if fenced: `sent`, or what a receipt
        that arrived before the ack says (see record_receipt), applied here.
        """

    async def retry(
        self,
        msg_id: str,
        lease_token: int,
        at: float,
        error: ErrorInfo | None,
        count_attempt: bool,
    ) -> bool:
        """sending -> retrying, due at `at`; attempts += 1 only when count_attempt.

        count_attempt=False with error=None is a release: the message goes back unharmed, as
        `queued` (due at `at`), not `retrying`: held back by a pause, a rate, quiet hours or a
        drain, it has not failed, and stats must not count it with the messages that did.
        """

    async def dead(self, msg_id: str, lease_token: int, error: ErrorInfo) -> bool:
        """sending -> dead (a dead letter), attempts += 1."""

    async def expire(self, msg_id: str, lease_token: int) -> bool:
        """sending -> expired (its expire_at passed before it could be sent)."""

    async def cancel(self, msg_id: str) -> str:
        """A CancelOutcome value; only queued/scheduled/retrying messages can be cancelled."""

    async def get(self, msg_id: str) -> Message | None: ...

    async def find_by_wechat_msgid(self, app: str, wechat_msgid: int) -> Message | None: ...

    async def record_receipt(
        self,
        app: str,
        wechat_msgid: int,
        receipt: str,
        event_key: str,
        openid: str | None = None,
        message_id: str | None = None,
    ) -> Message | None:
        """Apply a TEMPLATESENDJOBFINISH: sent -> delivered | blocked | failed.

        `message_id`: the message a receipt without a msgid match was linked to
        (policy/receipt_links.py): it takes the receipt and `wechat_msgid` only while it is
        `sent` without a msgid (to `openid`); else the receipt is kept by msgid as below.

        `receipt` is WeChat's Status string; "success" -> delivered, a "user block" failure ->
        blocked, any other failure -> failed. Idempotent by `event_key` (FromUserName+CreateTime).
        If no message has that msgid yet (the receipt beat our ack), keep it and apply it at ack.
        With `openid` (the event's FromUserName; the callback route always gives it), only a
        message to that openid takes the receipt, now or at its ack: a receipt naming someone
        else's message is dropped. Returns the updated message, or None when it was kept for
        later, a duplicate, or dropped.
        """

    async def stats(self) -> StoreStats: ...

    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], str | None]:
        """Dead messages, newest first; the second item is the cursor for the next page."""

    async def find_messages(
        self, query: MessageQuery, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Message], str | None]:
        """Messages matching `query`, newest first (created_at, then id); the second item is
        the next page's cursor (None after the last). Bounded (store/search.py): a page looks
        at no more than search.SCAN_BUDGET messages, so a page of a rare filter may be short
        or empty and still have a cursor. Only messages the store still keeps are found."""

    async def requeue(
        self,
        ids: Sequence[str] | None = None,
        app: str | None = None,
        errcode: int | None = None,
    ) -> int:
        """dead -> queued with attempts reset, by ids or by filter; returns how many moved.

        With no ids and no filter, every dead letter is requeued. The last error is kept (it
        says why the message died; the status says it is queued again).
        """

    async def redrive(
        self,
        app: str,
        errcodes: Sequence[int],
        died_before: float,
        max_rounds: int,
        limit: int,
    ) -> int:
        """One scheduled redrive step (delivery/redrive.py): dead -> queued, attempts reset,
        redrive_rounds += 1, for up to `limit` of the app's dead letters whose last errcode
        is one of `errcodes`, that died at or before `died_before` and have had fewer than
        `max_rounds` rounds; how many moved. The last error is kept, like requeue's."""


class BatchRecords(Protocol):
    """Batch records and their messages as a group: the batch routes and the campaign CLI."""

    async def get_batch(self, batch_id: str) -> Batch | None: ...
    async def batch_counts(self, batch_id: str) -> dict[str, int]:
        """How many of the batch's messages are in each status now (each counted once)."""

    async def recent_batches(self, limit: int = 20) -> list[Batch]:
        """The newest batches first (by created_at, then id), while the store still keeps them."""

    async def set_batch_status(self, batch_id: str, status: str, expect: str | None = None) -> bool:
        """running | paused | incomplete | cancelled (models.BATCH_STATUSES but `loading`,
        which only a new batch has). Held statuses (models.BATCH_HELD) keep the batch's
        messages from being leased; running leases them again; cancelling cancels its pending
        messages and is final. With `expect`, only if the status is that now (compare-and-set).
        False when the batch is missing, cancelled, or not in the expected status."""

    async def set_batch_total(self, batch_id: str, total: int) -> bool:
        """Record how many recipients a (streamed) batch holds."""

    async def set_batch_rate(self, batch_id: str, rate_per_s: float | None) -> bool:
        """The batch's own send rate (None: only the app's); see batch_rates. Its `queued`
        and `retrying` messages due later (released by the old rate, or backing off) become
        due now."""

    async def batch_rates(self) -> dict[str, float]:
        """Batch id -> rate_per_s for every batch with its own rate that is not cancelled."""

    async def batch_messages(
        self, batch_id: str, cursor: str | None = None, limit: int = 1000
    ) -> tuple[list[Message], str | None]:
        """A page of the batch's messages in a stable order; the second item is the cursor of
        the next page (None after the last). Messages added after the first page may be left
        out: read results once the batch is done."""

    async def batch_errcodes(self, batch_id: str) -> dict[int, int]:
        """The batch's dead letters by their last errcode."""


class SharedState(Protocol):
    """What every process must see alike: tokens, locks, pauses, nonces, quota and rate
    buckets. The token broker, the dispatcher's policies and the callback route use it."""

    async def get_token(self, app: str) -> TokenEntry | None: ...
    async def set_token(self, app: str, entry: TokenEntry) -> None: ...
    async def invalidate_token(self, app: str, access_token: str) -> bool:
        """Delete the cached token only if it is still `access_token` (compare-and-delete)."""

    async def acquire_lock(self, name: str, owner: str, ttl_s: float) -> bool: ...
    async def release_lock(self, name: str, owner: str) -> None: ...

    async def get_pauses(self) -> list[AppPause]:
        """Pauses still in force (until > now)."""

    async def set_pause(self, pause: AppPause) -> None:
        """Replace the app's pause, except that an automatic pause (by None) never replaces
        a hand-made one (by set) still in force: a person's pause ends by a resume or its
        own `until`, not by the dispatcher's next quota or config error."""

    async def clear_pause(self, app: str) -> None:
        """End the app's pause, hand-made or automatic (a resume)."""

    async def remember_nonce(
        self, app: str, nonce: str, digest: str, ttl_s: float, now: float
    ) -> bool:
        """Remember a WeChat callback's nonce ("timestamp:nonce") and its body's digest until
        now + ttl_s, for every process. True if it was new, or is remembered with this same
        digest (the same push again: WeChat's retry, applied idempotently); False if it was
        used with another body (a captured URL replayed with a forged body)."""

    async def incr_quota(self, app: str, day: str, n: int = 1) -> int:
        """Add n to the app's send count for `day` (YYYY-MM-DD, Asia/Shanghai); the new total."""

    async def take_rate(
        self, app: str, rate_per_s: float, burst: float, n: int, now: float
    ) -> float:
        """Reserve n tokens of the app's bucket; seconds to wait until they are valid (0 = now).

        A token bucket refilled continuously at `rate_per_s` up to `burst`. The reservation
        always succeeds (the bucket may go into debt), so callers sleep the returned time and
        send. SQLite keeps the bucket in this process; Redis shares it across processes.
        """

    async def add_throughput(self, buckets: Mapping[int, Sequence[int]]) -> None:
        """Add per-second counts (epoch second -> [accepted, sent, delivered, failed],
        metrics/throughput.py) to the ring every process shares; seconds older than
        throughput.KEEP_S before the newest given are dropped (or expire)."""

    async def throughput(self, since: int) -> list[tuple[int, int, int, int, int]]:
        """The ring from second `since` on, oldest first: (second, accepted, sent,
        delivered, failed); seconds nobody counted in are left out."""


class ReceiptLinks(Protocol):
    """Per (app, key) state of sends awaiting a receipt without a msgid: an opaque blob
    (policy/receipt_links.py encodes it) updated compare-and-set, shared by every process."""

    async def get_link(self, app: str, key: str, now: float) -> tuple[int, bytes | None]:
        """(version, blob); (0, None) when absent or expired."""

    async def put_link(
        self, app: str, key: str, version: int, blob: bytes | None, ttl_s: float, now: float
    ) -> bool:
        """Replace the blob if its version is still `version` (0 = absent): True, and the
        version grows by one; False and nothing changed otherwise. None deletes it. The entry
        expires ttl_s after this write."""


class Suppressions(Protocol):
    """Users' accepts and rejects of subscribe templates (subscribe_msg_popup_event and
    subscribe_msg_change_event): a message to a user who rejected its template is not sent."""

    async def set_choice(
        self, app: str, openid: str, template_id: str, accepted: bool, at: float
    ) -> bool:
        """Record a reject (suppresses) or an accept (lifts it) made at `at` (the event's
        CreateTime). A choice older than the one stored changes nothing: False."""

    async def is_suppressed(self, app: str, openid: str, template_id: str) -> bool: ...

    async def suppression_counts(self) -> dict[str, int]:
        """(openid, template) pairs suppressed now, by app (apps with none left out)."""


class WebhookOutbox(Protocol):
    """Status events written with the status change (see the module docstring), leased by
    the webhook sender."""

    async def lease_webhooks(self, n: int, lease_s: float, now: float) -> list[WebhookEvent]:
        """Up to n events due at `now` (oldest first), not handed out again for lease_s."""

    async def webhook_delivered(self, event_id: str) -> bool:
        """The receiver took it (2xx): drop the event and count it delivered. False if the
        event is gone (another holder finished it)."""

    async def webhook_retry(self, event_id: str, at: float, error: str) -> bool:
        """A POST failed: attempts += 1, due again at `at`."""

    async def webhook_failed(self, event_id: str, error: str) -> bool:
        """Give up: attempts += 1, kept as failed (counted in stats) for retention_s."""

    async def webhook_stats(self) -> WebhookStats: ...


@runtime_checkable
class Store(
    MessageQueue, BatchRecords, SharedState, ReceiptLinks, Suppressions, WebhookOutbox, Protocol
):
    """A backend: every role, plus its lifecycle. Consumers type what they take as the
    narrowest role they use (the worker pool a MessageQueue, the token broker SharedState)."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot serve requests, writes included (a
        store that reads but refuses writes is not ready)."""
