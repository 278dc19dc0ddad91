"""store/batch_shared.py: what a row keeps of a batch message, and the per-batch cache."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wxgate.models import Message, MiniProgram, SharedFields
from wxgate.store.batch_shared import (
    UNRESOLVED,
    SharedCache,
    encode_shared,
    merged,
    own_data,
    resolve,
)

SHARED = SharedFields(
    data={"first": {"value": "hello"}, "amount": {"value": "9.90"}},
    url="https://example.com/c",
    miniprogram=MiniProgram(appid="wx_mini"),
)


def message(data: Any, **kw: Any) -> Message:
    fields: dict[str, Any] = {
        "id": "m1",
        "app": "a",
        "touser": "o",
        "template_id": "t",
        "data": data,
        "batch_id": "b1",
        "url": SHARED.url,
        "miniprogram": SHARED.miniprogram,
        "created_at": 1.0,
        "not_before": 1.0,
        "shared": SHARED,
    }
    fields.update(kw)
    return Message(**fields)


def test_own_data_of_each_kind_of_message() -> None:
    assert own_data(message(SHARED.data, shared=None)) is None  # a single message: whole
    assert own_data(message(SHARED.data, batch_id=None)) is None
    assert own_data(message(SHARED.data)) == {}  # no overrides: nothing of its own
    own = {"amount": {"value": "1.00"}, "name": {"value": "Li"}}
    assert own_data(message(merged(SHARED.data, own))) is own  # remembered, not worked out
    # A plain dict (a template check's copy): the values that are not the shared ones.
    copied = {**SHARED.data, "first": {"value": "hel..."}}
    assert own_data(message(copied)) == {"first": {"value": "hel..."}}
    # What an update of the shared data cannot express is stored whole.
    assert own_data(message({"amount": {"value": "9.90"}})) is None
    assert own_data(message(SHARED.data, url="https://elsewhere.example")) is None
    assert own_data(message(SHARED.data, miniprogram=None)) is None


def test_merged_and_resolve_put_a_message_back_together() -> None:
    own = {"amount": {"value": "1.00"}}
    data = merged(SHARED.data, own)
    assert data == {"first": {"value": "hello"}, "amount": {"value": "1.00"}}
    assert merged({}, own) is own
    row = message(own, url=None, miniprogram=None, shared=UNRESOLVED)
    resolve(row, SHARED)
    assert (row.data, row.url, row.miniprogram, row.shared) == (
        data,
        SHARED.url,
        SHARED.miniprogram,
        SHARED,
    )
    bare = message({}, url=None, miniprogram=None, shared=UNRESOLVED)
    resolve(bare, SHARED)
    assert bare.data is SHARED.data  # no copy for a message without data of its own


async def test_the_cache_loads_each_batch_once_and_stays_bounded() -> None:
    loads: list[list[str]] = []
    stored = {f"b{i}": SharedFields(data={"k": {"value": str(i)}}) for i in range(5)}

    async def load(ids: Sequence[str]) -> dict[str, SharedFields]:
        loads.append(list(ids))
        return {i: stored[i] for i in ids if i in stored}

    size = len(encode_shared(stored["b0"]))
    cache = SharedCache(load, max_entries=3, max_bytes=100 * size)
    rows = [message({}, id=f"m{i}", batch_id=f"b{i % 2}", shared=UNRESOLVED) for i in range(6)]
    plain = message(SHARED.data, shared=None)
    await cache.fill([*rows, plain])
    assert loads == [["b0", "b1"]]  # one load for the call, one entry per batch
    assert [m.data["k"]["value"] for m in rows] == ["0", "1"] * 3
    assert plain.data is SHARED.data and plain.shared is None
    again = [message({}, batch_id="b0", shared=UNRESOLVED)]
    await cache.fill(again)
    assert loads == [["b0", "b1"]] and cache.hits == 1  # cached
    for i in (2, 3, 4):
        await cache.fill([message({}, batch_id=f"b{i}", shared=UNRESOLVED)])
    assert "batches=3" in repr(cache)  # least recently used out first
    gone = message({"own": {"value": "x"}}, batch_id="pruned", shared=UNRESOLVED)
    await cache.fill([gone])
    assert (gone.data, gone.shared) == ({"own": {"value": "x"}}, None)
    tiny = SharedCache(load, max_bytes=size - 1)  # an entry over the byte bound: not kept
    tiny.put("b0", stored["b0"])
    assert "batches=0 bytes=0" in repr(tiny)
