"""The receipt-link rule (policy/receipt_links.py) on literal states."""

from __future__ import annotations

from wxgate.policy import receipt_links as rule
from wxgate.policy.receipt_links import Finish, Links, Match, PendingReceipt

W = 60.0
T0 = 1_700_000_000.0


def _receipt(msgid: int, at: float = T0) -> PendingReceipt:
    return PendingReceipt(msgid, "success", f"o:{int(at)}:{msgid}", int(at))


def test_one_send_per_key_at_a_time() -> None:
    links, ok = rule.begin(Links(), "m1", T0, W)
    assert ok
    same, ok = rule.begin(links, "m2", T0 + 1, W)
    assert not ok and same == links, "m1 is in flight"
    links, _ = rule.finish(links, "m1", Finish.NO_MSGID, T0 + 1)
    _, ok = rule.begin(links, "m2", T0 + 1, W)
    assert not ok, "m1 still awaits its receipt"
    links, how, msg_id = rule.match(links, _receipt(7, T0 + 1), T0 + 2, W)
    assert (how, msg_id) == (Match.ATTACH, "m1")
    links, ok = rule.begin(links, "m2", T0 + 2, W)
    assert ok and [e.id for e in links.entries] == ["m2"]


def test_a_retry_keeps_its_entry() -> None:
    links, _ = rule.begin(Links(), "m1", T0, W)
    links, _ = rule.finish(links, "m1", Finish.UNKNOWN, T0 + 1)
    _, ok = rule.begin(links, "m2", T0 + 2, W)
    assert not ok, "m1 may have been delivered: its receipt must not go to m2"
    links, ok = rule.begin(links, "m1", T0 + 2, W)
    assert ok and len(links.entries) == 1 and links.entries[0].done is None


def test_receipt_before_the_answer_waits_for_finish() -> None:
    links, _ = rule.begin(Links(), "m1", T0, W)
    early = _receipt(9, T0)
    links, how, msg_id = rule.match(links, early, T0 + 0.1, W)
    assert (how, msg_id) == (Match.WAIT, "m1")
    # WeChat's retry of the same push is not a second receipt.
    links, how, _ = rule.match(links, early, T0 + 0.2, W)
    assert how is Match.WAIT
    links2, how, msg_id = rule.match(links, _receipt(10, T0), T0 + 0.3, W)
    assert (how, msg_id) == (Match.AMBIGUOUS, None) and links2 == links
    links, pending = rule.finish(links, "m1", Finish.NO_MSGID, T0 + 0.5)
    assert pending == early and links.entries == []


def test_msgid_and_refused_sends_leave() -> None:
    for outcome in (Finish.MSGID, Finish.REFUSED):
        links, _ = rule.begin(Links(), "m1", T0, W)
        links, pending = rule.finish(links, "m1", outcome, T0 + 1)
        assert links.entries == [] and pending is None


def test_unmatched_without_entry_or_before_the_send() -> None:
    _, how, _ = rule.match(Links(), _receipt(1), T0, W)
    assert how is Match.UNMATCHED
    links, _ = rule.begin(Links(), "m2", T0, W)
    links, _ = rule.finish(links, "m2", Finish.NO_MSGID, T0 + 1)
    stale = _receipt(1, T0 - rule.CLOCK_SLACK_S - 10)  # an older message's late receipt
    after, how, _ = rule.match(links, stale, T0 + 2, W)
    assert how is Match.UNMATCHED and after == links, "m2 still waits for its own"


def test_entries_expire_after_the_window() -> None:
    links, _ = rule.begin(Links(), "m1", T0, W)
    links, _ = rule.finish(links, "m1", Finish.NO_MSGID, T0 + 1)
    _, how, _ = rule.match(links, _receipt(3, T0 + W + 2), T0 + W + 2, W)
    assert how is Match.UNMATCHED
    _, ok = rule.begin(links, "m2", T0 + W + 2, W)
    assert ok


def test_encoding_round_trips_and_empty_is_none() -> None:
    links, _ = rule.begin(Links(), "m1", T0, W)
    links, _, _ = rule.match(links, _receipt(5), T0, W)
    assert rule.decode(rule.encode(links)) == links
    assert rule.encode(Links()) is None and rule.decode(None) == Links()
