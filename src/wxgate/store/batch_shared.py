"""A batch's shared fields stored once: what a row keeps of a batch message, and how a message
read back gets its full data again (no I/O; both backends use it).

A batch message (Message.shared set) is stored as its own data only: the keys whose values
differ from the batch's shared data (a recipient's overrides, or a value the template check
truncated), with url, miniprogram and page left to the batch. Reading it back, the store fills
in the batch's SharedFields (cached here per batch id, bounded) and the message's effective
data is the shared data updated by its own: one dict merge per message, none for the common
message without overrides, which gets the shared dict itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec

from wxgate.models import Message, SharedFields

Data = dict[str, dict[str, str]]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SharedFields).decode

# What a store's row decoder puts in Message.shared of a row stored as own data only, until
# `SharedCache.fill` replaces it with the batch's fields. Never leaves a store.
UNRESOLVED = SharedFields(data={})
_NO_DATA: Data = {}


class MergedData(dict[str, dict[str, str]]):
    """A batch message's effective data (shared updated by its own) that remembers its own
    part, so that the store need not work it out again per message (batch ingest is a hot
    path). Never changed in place, as no message's data is; a copy (a template check's
    truncation) is a plain dict, for which `own_data` compares with the shared data."""

    __slots__ = ("own",)
    own: Data


def merged(shared: Data, own: Data) -> Data:
    """A recipient's effective data: `shared` updated by `own` (a MergedData; `own` itself
    when nothing is shared)."""
    if not shared:
        return own
    data = MergedData(shared)
    data.update(own)
    data.own = own
    return data


def encode_shared(shared: SharedFields) -> str:
    return _encode(shared).decode()


def decode_shared(raw: bytes | str) -> SharedFields:
    return _decode(raw)


def own_data(m: Message) -> Data | None:
    """What a row must keep of `m.data` when the rest comes from `m.shared`; None when `m`
    is to be stored whole (not a batch message, or its fields are not the batch's plus
    overrides, which no code path makes but a store must not get wrong)."""
    shared = m.shared
    if shared is None or m.batch_id is None:
        return None
    if (m.url is not shared.url and m.url != shared.url) or (
        (m.miniprogram is not shared.miniprogram and m.miniprogram != shared.miniprogram)
        or (m.page is not shared.page and m.page != shared.page)
    ):
        return None  # identity first: a batch message's fields are the shared objects
    data, base = m.data, shared.data
    if data is base:
        return _NO_DATA  # no overrides: the common case, shared by reference
    if type(data) is MergedData:
        return data.own
    if not base:
        return data  # nothing shared (a CSV upload's columns): all of it is its own
    # By identity: a message's data is built from the shared dict's own value objects (and a
    # template check copies the ones it leaves alone), so this is exact for every message the
    # API makes; a value equal but not identical is merely kept twice.
    get = base.get
    own = {k: v for k, v in data.items() if get(k) is not v}
    if len(data) - len(own) != len(base) and any(k not in data for k in base):
        return None  # a shared key is missing: an update cannot express that
    return own


def resolve(m: Message, shared: SharedFields) -> None:
    """Put a row's message back together: shared data updated by its own, the batch's url,
    miniprogram and page."""
    own = m.data
    m.data = {**shared.data, **own} if own else shared.data
    m.url, m.miniprogram, m.page = shared.url, shared.miniprogram, shared.page
    m.shared = shared


Loader = Callable[[Sequence[str]], Awaitable[dict[str, SharedFields]]]


class SharedCache:
    """Batch id -> SharedFields, least recently used out first, bounded by entries and bytes.

    A batch's shared fields never change once written, so an entry is never stale; deliveries
    of one batch read its fields once, not once per message. Used on the event loop only.
    """

    def __init__(self, load: Loader, max_entries: int = 1024, max_bytes: int = 16 << 20) -> None:
        self._load = load
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[SharedFields, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def put(self, batch_id: str, shared: SharedFields, size: int | None = None) -> None:
        size = len(encode_shared(shared)) if size is None else size
        if size > self._max_bytes:
            return
        old = self._entries.pop(batch_id, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[batch_id] = (shared, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    async def fill(self, messages: Iterable[Message]) -> None:
        """Resolve every message a row decoder marked UNRESOLVED (see module docstring). A
        batch that is gone (pruned) leaves its messages with their own data only."""
        waiting: dict[str, list[Message]] = {}
        found: dict[str, SharedFields] = {}  # this call's batches: one cache lookup each
        entries = self._entries
        for m in messages:
            if m.shared is not UNRESOLVED:
                continue
            batch_id = m.batch_id or ""
            shared = found.get(batch_id)
            if shared is None and batch_id not in waiting:
                entry = entries.get(batch_id)
                if entry is not None:
                    self.hits += 1
                    entries.move_to_end(batch_id)
                    shared = found[batch_id] = entry[0]
            if shared is not None:
                resolve(m, shared)
            else:
                waiting.setdefault(batch_id, []).append(m)
        if not waiting:
            return
        self.misses += len(waiting)
        loaded = await self._load(list(waiting))
        for batch_id, msgs in waiting.items():
            shared = loaded.get(batch_id)
            for m in msgs:
                if shared is None:
                    m.shared = None
                else:
                    resolve(m, shared)
            if shared is not None:
                self.put(batch_id, shared)

    async def filled(self, messages: list[Message]) -> list[Message]:
        """`messages` as read (own data only), each with its batch's shared fields back."""
        await self.fill(messages)
        return messages

    async def filled_one(self, message: Message | None) -> Message | None:
        if message is not None and message.shared is not None:
            await self.fill((message,))
        return message

    def __repr__(self) -> str:
        return (
            f"<SharedCache batches={len(self._entries)} bytes={self._bytes} "
            f"hits={self.hits} misses={self.misses}>"
        )
