"""The receipt-link rule (policy/receipt_links.py) applied to the state a store keeps per
(app, openid, template): read, step, compare-and-set, again on a conflict.

Used by the dispatcher (a subscribe send's `begin` and `finish`) and by the callback route
(`match` for a receipt no msgid claims); every process shares the state through the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from wxgate.errors import StoreUnavailable
from wxgate.policy import receipt_links as rule
from wxgate.store.base import ReceiptLinks

T = TypeVar("T")

# Conflicts only come from the same (app, openid, template) changing at once: rare, short.
_MAX_TRIES = 16


def link_key(openid: str, template_id: str) -> str:
    return f"{openid}:{template_id}"


class ReceiptLinker:
    def __init__(self, store: ReceiptLinks, window_s: float = rule.DEFAULT_WINDOW_S) -> None:
        self._store = store
        self.window_s = window_s

    async def _update(
        self,
        app: str,
        key: str,
        now: float,
        step: Callable[[rule.Links], tuple[rule.Links, T]],
    ) -> T:
        for _ in range(_MAX_TRIES):
            version, blob = await self._store.get_link(app, key, now)
            before = rule.decode(blob)
            after, result = step(before)
            if after == before:
                return result
            # Kept past the window's end: the rule drops stale entries itself.
            ttl_s = 2 * self.window_s
            if await self._store.put_link(app, key, version, rule.encode(after), ttl_s, now):
                return result
        raise StoreUnavailable(f"receipt link {app}/{key}: {_MAX_TRIES} conflicting writes")

    async def begin(self, app: str, openid: str, template_id: str, msg_id: str, now: float) -> bool:
        """Register a send about to go out; False while another to the same key awaits."""
        return await self._update(
            app,
            link_key(openid, template_id),
            now,
            lambda links: rule.begin(links, msg_id, now, self.window_s),
        )

    async def finish(
        self,
        app: str,
        openid: str,
        template_id: str,
        msg_id: str,
        outcome: rule.Finish,
        now: float,
    ) -> rule.PendingReceipt | None:
        """Record the send's answer; the receipt that came while it was in flight, if any."""
        return await self._update(
            app,
            link_key(openid, template_id),
            now,
            lambda links: rule.finish(links, msg_id, outcome, now),
        )

    async def match(
        self, app: str, openid: str, template_id: str, receipt: rule.PendingReceipt, now: float
    ) -> tuple[rule.Match, str | None]:
        def step(links: rule.Links) -> tuple[rule.Links, tuple[rule.Match, str | None]]:
            after, how, msg_id = rule.match(links, receipt, now, self.window_s)
            return after, (how, msg_id)

        return await self._update(app, link_key(openid, template_id), now, step)
