"""Messages and batches to and from the Redis store's hashes (no I/O).

A message hash holds `doc`, the msgspec JSON of the Message as enqueued (its immutable fields,
`data` included), beside one field per mutable value that the Lua scripts change in place. A
batch message's doc holds only its own data (`shared` = "1"), the rest being the batch's
`shared` field (store/batch_shared.py).
Floats travel as Python's repr, so every timestamp round-trips exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from msgspec.structs import replace

from wxgate.models import Batch, BatchStatus, Message, Status
from wxgate.store.batch_shared import UNRESOLVED, encode_shared, own_data

_message_decoder = msgspec.json.Decoder(Message)
_batch_decoder = msgspec.json.Decoder(Batch)
_encoder = msgspec.json.Encoder()
_packer = msgspec.msgpack.Encoder()

# A dead-letter member is "{finished_at:020.6f}:{id}": fixed width, so lexical order is time
# order and the member itself is the page cursor.
DEAD_TIME_WIDTH = 20


def dead_member(finished_at: float, msg_id: str) -> str:
    return f"{finished_at:0{DEAD_TIME_WIDTH}.6f}:{msg_id}"


# What a script returns for a message (HMGET in this order); decode_message reads it back.
MESSAGE_FIELDS = (
    "doc",
    "status",
    "not_before",
    "attempts",
    "lease_token",
    "last_errcode",
    "last_errmsg",
    "wechat_msgid",
    "receipt",
    "sent_at",
    "finished_at",
    "updated_at",
    "shared",
    "rounds",  # scheduled redrive rounds (redrive.lua)
)


def message_record(msg: Message, status: Status) -> list[str]:
    """One message's fields for the enqueue script (see scripts/enqueue.lua)."""
    own = None if msg.shared is None else own_data(msg)
    doc = msg
    if own is not None:
        doc = replace(msg, data=own, url=None, miniprogram=None, page=None, shared=None)
    elif msg.shared is not None:
        doc = replace(msg, shared=None)
    return [
        msg.id,
        msg.app,
        msg.idempotency_key or "",
        msg.batch_id or "",
        status.value,
        repr(float(msg.not_before)),
        repr(float(msg.created_at)),
        _encoder.encode(doc).decode(),
        msg.callback_url or "",  # `cb`: a final status queues a webhook event (outbox.py)
        "" if own is None else "1",  # `shared`: doc.data is the message's own (see above)
        # `ckey`: its member in the search indexes P:created and P:to:{touser} (redis/find.py)
        dead_member(float(msg.created_at), msg.id),
        msg.touser,
        msg.idempotency_digest or "",  # kept with the key (store/idempotency.py)
        msg.trace or "",  # `tr`: copied into its webhook events (doc keeps it for reads)
    ]


def pack(value: object) -> bytes:
    """One script argument carrying many values: redis-py packs each argument in Python, which
    cost more than the script itself. Strings only, because Redis's Lua msgpack has no bin."""
    return _packer.encode(value)


def encode_batch(batch: Batch) -> str:
    """The batch doc without its shared fields: those are the batch hash's `shared` field,
    which get_batch never reads."""
    if batch.shared is not None:
        batch = replace(batch, shared=None)
    return _encoder.encode(batch).decode()


def encode_batch_shared(batch: Batch | None) -> str:
    return "" if batch is None or batch.shared is None else encode_shared(batch.shared)


# Replies are bytes (decode_responses=False); str is accepted for redis-py's typing.
def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _opt_float(raw: bytes | str | None) -> float | None:
    return float(raw) if raw else None


def _opt_int(raw: bytes | str | None) -> int | None:
    return int(raw) if raw else None


def _opt_str(raw: bytes | str | None) -> str | None:
    return _text(raw) if raw else None


def decode_message(values: Sequence[bytes | str | None]) -> Message | None:
    """A Message from the MESSAGE_FIELDS values of its hash; None when it does not exist."""
    (
        doc,
        status,
        not_before,
        attempts,
        lease_token,
        last_errcode,
        last_errmsg,
        wechat_msgid,
        receipt,
        sent_at,
        finished_at,
        updated_at,
        shared,
        rounds,
    ) = values
    if not doc or not status or not not_before:
        return None
    msg = _message_decoder.decode(doc)
    msg.status = Status(_text(status))
    msg.not_before = float(not_before)
    msg.attempts = int(attempts or 0)
    msg.lease_token = int(lease_token or 0)
    msg.last_errcode = _opt_int(last_errcode)
    msg.last_errmsg = _opt_str(last_errmsg)
    msg.wechat_msgid = _opt_int(wechat_msgid)
    msg.receipt = _opt_str(receipt)
    msg.sent_at = _opt_float(sent_at)
    msg.finished_at = _opt_float(finished_at)
    msg.updated_at = _opt_float(updated_at)
    msg.redrive_rounds = int(rounds or 0)
    if shared:
        msg.shared = UNRESOLVED  # the store fills it in (SharedCache.fill)
    return msg


def decode_messages(replies: Sequence[Sequence[bytes | str | None]]) -> list[Message]:
    return [m for m in map(decode_message, replies) if m is not None]


# The batch hash's fields: the doc as enqueued, then what changes later (set_batch_total and
# set_batch_rate write `total` and `rate`; an empty `rate` clears the doc's).
BATCH_FIELDS = ("doc", "status", "total", "rate")


def decode_batch(
    doc: bytes | str,
    status: bytes | str,
    total: bytes | str | None = None,
    rate: bytes | str | None = None,
) -> Batch:
    batch = _batch_decoder.decode(doc)
    batch.status = BatchStatus(_text(status))
    if total is not None:
        batch.total = int(total)
    if rate is not None:
        batch.rate_per_s = _opt_float(rate)
    return batch


def decode_expirations(raw: dict[bytes, bytes]) -> dict[str, int]:
    """Lease expirations by app: the `e:{app}` fields of a counts hash (A:counts, queue.py)."""
    out: dict[str, int] = {}
    for field, value in raw.items():
        name = field.decode()
        if name.startswith("e:") and int(value):
            out[name[2:]] = int(value)
    return out


def decode_counts(raw: dict[bytes, bytes]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """A counts hash (an app's A:counts, or several summed) as (by status, by app and
    status); every status appears in the first (as SQLite reports them), only non-zero ones
    in the second."""
    by_status: dict[str, int] = {s.value: 0 for s in Status}
    by_app: dict[str, dict[str, int]] = {}
    for field, value in raw.items():
        n = int(value)
        if not n:
            continue
        name = field.decode()
        if name.startswith("s:"):
            by_status[name[2:]] = n
        elif name.startswith("a:"):
            app, status = name[2:].rsplit(":", 1)
            by_app.setdefault(app, {})[status] = n
    return by_status, by_app
