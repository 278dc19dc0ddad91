"""Which sent subscribe message a `subscribe_msg_sent_event` belongs to, when the send's
answer carried no msgid (bizsend never does; subscribe/send often does not).

The rule (docs/architecture.md "Receipts without a msgid"), per (app, openid, template):
- a send registers itself before it goes out (`begin`), and is refused (the message waits a
  moment and tries again) while another message to the same (app, openid, template) is in
  flight or awaits its receipt: at most one entry per key, so a receipt has one candidate;
- when its answer comes (`finish`), a send without a msgid (or whose answer was lost) stays,
  marked done, awaiting its receipt; one with a msgid, or one WeChat refused, leaves;
- a receipt that no message's msgid claims takes the key's entry (`match`) when the event's
  CreateTime is not before the send began (a late receipt of an older message is refused):
  a done entry is attached at once; one still in flight keeps the receipt, which its `finish`
  then applies. A second receipt for an entry still in flight is ambiguous, and a receipt
  with no entry inside the window is unmatched: both are counted and kept by msgid, never
  attached to a message.
Entries are dropped `window_s` after their send: WeChat pushes a receipt within seconds (three
tries of 5 s at worst), so a receipt that never comes holds the key's next message that long.

Pure functions of a `Links` value (never changed in place): the store keeps one per key,
updated compare-and-set (store/receipt_links.py).
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
from msgspec.structs import replace

# Seconds a send waits for its receipt before its entry is dropped (WeChat pushes receipts
# within seconds; three tries of 5 s at worst).
DEFAULT_WINDOW_S = 60.0
# WeChat's CreateTime is whole seconds from its clock, `begun` ours: the slack between them.
CLOCK_SLACK_S = 5.0


class PendingReceipt(msgspec.Struct, frozen=True):
    """A receipt that arrived while its send was still in flight: applied at `finish`."""

    msgid: int
    receipt: str
    event_key: str
    create_time: int


class Entry(msgspec.Struct, frozen=True):
    id: str  # the message id
    begun: float
    done: float | None = None  # when the answer came; None = in flight
    pending: PendingReceipt | None = None


class Links(msgspec.Struct):
    """One (app, openid, template)'s sends awaiting a receipt, in send order."""

    entries: list[Entry] = msgspec.field(default_factory=list)


class Match(StrEnum):
    ATTACH = "attach"  # apply the receipt to `message_id` now
    WAIT = "wait"  # kept in the entry of `message_id`, applied when its answer is recorded
    AMBIGUOUS = "ambiguous"  # the oldest entry already holds a receipt: keep, never attach
    UNMATCHED = "unmatched"  # no send awaits a receipt


class Finish(StrEnum):
    NO_MSGID = "no_msgid"  # success without a msgid: await the receipt
    MSGID = "msgid"  # success with a msgid: the receipt is linked by it
    REFUSED = "refused"  # an errcode: nothing was sent
    UNKNOWN = "unknown"  # the answer was lost: WeChat may have sent it


# Answers after which a receipt may still come with no msgid to claim it. A lost answer keeps
# its entry too: WeChat may have delivered it, and its receipt must not go to the next send.
_AWAITS = frozenset({Finish.NO_MSGID, Finish.UNKNOWN})

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Links)


def encode(links: Links) -> bytes | None:
    """The stored form; None when nothing is left (the store deletes the key)."""
    return _encoder.encode(links) if links.entries else None


def decode(blob: bytes | None) -> Links:
    return Links() if blob is None else _decoder.decode(blob)


def _live(links: Links, now: float, window_s: float) -> list[Entry]:
    cutoff = now - window_s
    return [e for e in links.entries if (e.done if e.done is not None else e.begun) >= cutoff]


def begin(links: Links, msg_id: str, now: float, window_s: float) -> tuple[Links, bool]:
    """Register a send about to go out; False (state unchanged) while another message to the
    same key is in flight or awaits its receipt. A retry of a message keeps its entry (an
    earlier try whose answer was lost may have reached the user)."""
    entries = _live(links, now, window_s)
    if any(e.id != msg_id for e in entries):
        return links, False
    for i, e in enumerate(entries):
        if e.id == msg_id:
            entries[i] = replace(e, done=None, begun=now)
            return Links(entries), True
    entries.append(Entry(id=msg_id, begun=now))
    return Links(entries), True


def finish(
    links: Links, msg_id: str, outcome: Finish, now: float
) -> tuple[Links, PendingReceipt | None]:
    """Record a send's answer; returns the receipt that arrived while it was in flight."""
    entries = list(links.entries)
    for i, e in enumerate(entries):
        if e.id != msg_id:
            continue
        pending = e.pending
        if outcome in _AWAITS and pending is None:
            entries[i] = replace(e, done=now)
        else:
            del entries[i]  # linked by msgid, refused, or its receipt has come
        return Links(entries), pending
    return links, None


def match(
    links: Links, receipt: PendingReceipt, now: float, window_s: float
) -> tuple[Links, Match, str | None]:
    """The message a receipt no msgid claims belongs to (see the module docstring)."""
    entries = _live(links, now, window_s)
    if not entries or receipt.create_time < entries[0].begun - CLOCK_SLACK_S:
        return Links(entries), Match.UNMATCHED, None
    head = entries[0]
    if head.done is not None:
        return Links(entries[1:]), Match.ATTACH, head.id
    if head.pending is None:
        entries[0] = replace(head, pending=receipt)
        return Links(entries), Match.WAIT, head.id
    if head.pending == receipt:  # the same push again (WeChat's retry): already kept
        return Links(entries), Match.WAIT, head.id
    return Links(entries), Match.AMBIGUOUS, None
