"""Suppressions' contract: users' rejects and accepts of subscribe templates."""

from __future__ import annotations

from wxgate.clock import FakeClock
from wxgate.store.base import Store


class SuppressionsContract:
    """store/base.py's Suppressions rules."""

    async def test_reject_suppresses_and_a_later_accept_lifts(
        self, store: Store, clock: FakeClock
    ) -> None:
        assert not await store.is_suppressed("app_a", "o1", "tpl")
        assert await store.suppression_counts() == {}
        assert await store.set_choice("app_a", "o1", "tpl", False, 100.0)
        assert await store.is_suppressed("app_a", "o1", "tpl")
        # Only that pair: another template, user or app is not.
        assert not await store.is_suppressed("app_a", "o1", "tpl2")
        assert not await store.is_suppressed("app_a", "o2", "tpl")
        assert not await store.is_suppressed("app_b", "o1", "tpl")
        assert await store.set_choice("app_a", "o2", "tpl", False, 100.0)
        assert await store.set_choice("app_b", "o1", "tpl", False, 100.0)
        assert await store.suppression_counts() == {"app_a": 2, "app_b": 1}
        assert await store.set_choice("app_a", "o1", "tpl", True, 101.0)
        assert not await store.is_suppressed("app_a", "o1", "tpl")
        assert await store.suppression_counts() == {"app_a": 1, "app_b": 1}

    async def test_an_older_choice_changes_nothing(self, store: Store, clock: FakeClock) -> None:
        assert await store.set_choice("app_a", "o1", "tpl", True, 200.0)
        assert not await store.set_choice("app_a", "o1", "tpl", False, 150.0), "older reject"
        assert not await store.is_suppressed("app_a", "o1", "tpl")
        assert await store.set_choice("app_a", "o1", "tpl", False, 250.0)
        assert not await store.set_choice("app_a", "o1", "tpl", True, 249.0), "older accept"
        assert await store.is_suppressed("app_a", "o1", "tpl")
        assert await store.set_choice("app_a", "o1", "tpl", False, 250.0), "the same again"
        assert await store.suppression_counts() == {"app_a": 1}
