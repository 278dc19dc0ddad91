"""Everything the simulator remembers: apps, tokens, deliveries, quotas, faults and counters.

Counters are plain attributes so tests can read them directly (`handle.state.delivered`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from wxgate.clock import Clock, SystemClock
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.deliveries import DeliveryLog
from wxgate.sim.faults import FaultPlan
from wxgate.sim.tokens import TokenBook, shanghai_day

_TRIES_MAX = 1_000_000  # test-recipient try counters kept before they are forgotten


class AppState:
    """One app's config plus its quota windows (Asia/Shanghai day, clock minute)."""

    __slots__ = (
        "cfg",
        "clears",
        "day",
        "day_sends",
        "minute",
        "minute_sends",
        "stable_calls",
        "stable_minute",
        "stable_minute_calls",
        "token_calls",
    )

    def __init__(self, cfg: SimApp) -> None:
        self.cfg = cfg
        self.day = -1
        self.day_sends = 0
        self.token_calls = 0
        self.stable_calls = 0
        self.minute = -1
        self.minute_sends = 0
        self.stable_minute = -1
        self.stable_minute_calls = 0
        self.clears: tuple[int, int] = (0, 0)  # (month number, clear_quota calls)

    def roll(self, now: float) -> None:
        day = shanghai_day(now)
        if day != self.day:
            self.day = day
            self.day_sends = self.token_calls = self.stable_calls = 0

    def __repr__(self) -> str:
        return f"<AppState {self.cfg.appid} day_sends={self.day_sends}>"


class SimState:
    def __init__(self, config: SimConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.apps: dict[str, AppState] = {a.appid: AppState(a) for a in config.apps}
        self.tokens = TokenBook(
            ttl_s=config.token_ttl_s,
            overlap_s=config.token_overlap_s,
            renew_s=config.stable_renew_s,
            force_per_day=config.stable_force_per_day,
            force_gap_s=config.stable_force_gap_s,
        )
        self.log = DeliveryLog(config.dedupe_window_s, keep_data=config.keep_data)
        self.faults = FaultPlan(config.faults)
        start = config.msgid_start
        # Epoch microseconds: above 2**32 (int32 truncation shows) and rising across restarts.
        self._msgid = start if start is not None else int(self.clock.now() * 1_000_000)
        self.tries: dict[tuple[str, str, str], int] = {}
        # (appid, openid, template_id) a user rejected (POST /_sim/subscription): 43101.
        self.rejected: set[tuple[str, str, str]] = set()
        self.reset_counters()

    def reset_counters(self) -> None:
        self.requests = 0
        self.accepted = 0  # sends WeChat took (includes blocked / system-failed receipts)
        self.delivered = 0  # messages a user would see
        self.deduplicated = 0
        self.errors: Counter[int] = Counter()
        self.http_errors: Counter[int] = Counter()
        self.resets = 0
        self.stalls = 0
        self.token_fetches: Counter[str] = Counter()
        self.token_fetches_kind: Counter[tuple[str, str]] = Counter()
        self.receipts_sent = 0
        self.receipts_failed = 0
        self.receipts_refused = 0  # the callback answered an HTTP error: WeChat does not retry
        self.receipts_dropped = 0
        self.receipts_retried = 0

    def next_msgid(self) -> int:
        self._msgid += 1
        return self._msgid

    def add_app(self, app: SimApp) -> None:
        """Add or replace an app; its tokens and quota counts survive a replacement."""
        old = self.apps.get(app.appid)
        if old is not None:
            old.cfg = app
        else:
            self.apps[app.appid] = AppState(app)
        self.config.apps = [a for a in self.config.apps if a.appid != app.appid] + [app]

    def try_number(self, key: tuple[str, str, str | None]) -> int:
        """1 for the first try of a client_msg_id (always 1 without one), then 2, 3, ..."""
        appid, openid, cmid = key
        if cmid is None:
            return 1
        k = (appid, openid, cmid)
        n = self.tries.get(k, 0) + 1
        if len(self.tries) >= _TRIES_MAX:
            self.tries.clear()
        self.tries[k] = n
        return n

    def reset(self, tokens: bool = False) -> None:
        """Forget deliveries, dedupe, quotas, faults and counters (tokens too if asked)."""
        self.log.clear()
        self.tries.clear()
        self.rejected.clear()
        self.faults.clear()
        for app in self.apps.values():
            app.day = app.minute = -1
            app.day_sends = app.minute_sends = app.token_calls = app.stable_calls = 0
        if tokens:
            self.tokens.clear()
        self.reset_counters()

    def stats(self) -> dict[str, Any]:
        kinds: dict[str, dict[str, int]] = {}
        for (appid, kind), n in self.token_fetches_kind.items():
            kinds.setdefault(appid, {})[kind] = n
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "deduplicated": self.deduplicated,
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
            "http_errors": {str(k): v for k, v in sorted(self.http_errors.items())},
            "resets": self.resets,
            "stalls": self.stalls,
            "token_fetches": dict(self.token_fetches),
            "token_fetches_by_kind": kinds,
            "receipts_sent": self.receipts_sent,
            "receipts_failed": self.receipts_failed,
            "receipts_refused": self.receipts_refused,
            "receipts_dropped": self.receipts_dropped,
            "receipts_retried": self.receipts_retried,
            "deliveries_stored": len(self.log),
            "last_msgid": self._msgid,
            "apps": {
                a.cfg.appid: {"day_sends": a.day_sends, "minute_sends": a.minute_sends}
                for a in self.apps.values()
            },
        }

    def __repr__(self) -> str:
        return (
            f"<SimState apps={len(self.apps)} requests={self.requests} "
            f"delivered={self.delivered} deduplicated={self.deduplicated}>"
        )


def minute_of(now: float) -> int:
    return math.floor(now / 60.0)
