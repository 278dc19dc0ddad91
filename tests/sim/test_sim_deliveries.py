"""The compact delivery log: blocks, dedupe window, filters and duplicates past one block."""

from __future__ import annotations

import msgspec

from wxgate.sim.deliveries import DeliveryLog

T0 = 1_700_000_000.0


def _fill(log: DeliveryLog, n: int, t0: float = T0) -> None:
    for i in range(n):
        body = msgspec.json.encode(
            {"touser": f"o{i % 7}", "template_id": "tpl", "data": {"k": {"value": str(i)}}}
        )
        cmid = f"c{i}" if i % 3 else None
        log.add(
            t0 + i, "wx_a" if i % 2 else "wx_b", 0, 0, f"o{i % 7}", "tpl", cmid, 10**12 + i, body
        )


def test_many_blocks_round_trip() -> None:
    log = DeliveryLog(dedupe_window_s=600)
    _fill(log, 1000)  # three sealed blocks and an open one
    assert len(log) == 1000
    for i in (0, 255, 256, 700, 999):
        rec = log.record(i)
        assert rec["openid"] == f"o{i % 7}" and rec["data"] == {"k": {"value": str(i)}}
        assert rec["client_msg_id"] == (f"c{i}" if i % 3 else None)
        assert rec["msgid"] == 10**12 + i
    assert list(log.indices(openid="o3")) == [i for i in range(1000) if i % 7 == 3]
    assert list(log.indices(client_msg_id="c998")) == [998]
    assert list(log.indices(openid="o3", app="wx_a")) == [
        i for i in range(1000) if i % 7 == 3 and i % 2
    ]
    assert list(log.indices(app="nope")) == []


def test_dedupe_window_prunes_from_the_oldest() -> None:
    log = DeliveryLog(dedupe_window_s=600)
    _fill(log, 1000)
    now = T0 + 1000

    def key(i: int) -> tuple[str, str, str]:
        return ("wx_a" if i % 2 else "wx_b", f"o{i % 7}", f"c{i}")

    assert log.find_recent(now, *key(997)) == 997
    assert log.find_recent(now, "wx_b", "o3", "c997") is None  # another app
    assert log.find_recent(now, "wx_a", "o4", "c997") is None  # another openid
    assert log.find_recent(now, *key(401)) == 401
    assert log.find_recent(now, *key(398)) is None  # older than 600 s


def test_duplicates_and_no_data() -> None:
    log = DeliveryLog(keep_data=False)
    for t in (T0, T0 + 700):  # the same message again after the window
        log.add(t, "wx_a", 1, 2, "oX", "tpl_x", "dup", 1, b'{"data": 1}')
    log.add(T0 + 701, "wx_a", 0, 0, "oY", "tpl_x", "dup", 2, b"{}")
    assert log.duplicate_indices() == [0, 1]
    rec = log.record(0)
    assert rec["data"] is None and rec["template_id"] == "tpl_x"
    assert rec["kind"] == "subscribe" and rec["status"] == "failed: system failed"
