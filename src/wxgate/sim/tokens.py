"""access_token issuing and checking, classic and stable, as docs/wechat-api.md §1 describes.

Classic: every fetch issues a new token and the previous one dies `token_overlap_s` later.
Stable: the same token while valid, a new one in the last `stable_renew_s`; force_refresh
kills the old one at once (20/day, 30 s apart, else the current token comes back unchanged).
The two kinds never affect each other.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import deque
from typing import Literal

TokenKind = Literal["classic", "stable"]

_WELL_FORMED = re.compile(r"[0-9A-Za-z_\-]{16,512}")
_KEEP_DEAD_S = 86_400.0  # expired tokens still answer 42001 (not 40001) for a day
_DAY_S = 86_400.0
_SHANGHAI_OFFSET_S = 8 * 3600.0


def shanghai_day(epoch_s: float) -> int:
    """Day number in Asia/Shanghai (UTC+8, no DST), when WeChat's daily quotas reset."""
    return int((epoch_s + _SHANGHAI_OFFSET_S) // _DAY_S)


class TokenRecord:
    __slots__ = ("appid", "dies_at", "expires_at", "kind", "token", "valid_until")

    def __init__(self, token: str, appid: str, kind: TokenKind, expires_at: float) -> None:
        self.token = token
        self.appid = appid
        self.kind = kind
        self.expires_at = expires_at
        self.dies_at = math.inf  # set when replaced, force-refreshed or revoked
        self.valid_until = expires_at

    def kill_at(self, at: float) -> None:
        self.dies_at = min(self.dies_at, at)
        self.valid_until = min(self.expires_at, self.dies_at)

    def __repr__(self) -> str:  # the token itself is a secret
        return f"<TokenRecord {self.kind} app={self.appid} expires_at={self.expires_at:.0f}>"


class TokenBook:
    """Every token issued, by value, so any request can be checked with one dict lookup."""

    def __init__(
        self,
        ttl_s: float = 7200.0,
        overlap_s: float = 300.0,
        renew_s: float = 300.0,
        force_per_day: int = 20,
        force_gap_s: float = 30.0,
    ) -> None:
        self.ttl_s = ttl_s
        self.overlap_s = overlap_s
        self.renew_s = renew_s
        self.force_per_day = force_per_day
        self.force_gap_s = force_gap_s
        self._by_token: dict[str, TokenRecord] = {}
        self._issued: deque[TokenRecord] = deque()
        self._classic: dict[str, TokenRecord] = {}
        self._stable: dict[str, TokenRecord] = {}
        self._force: dict[str, tuple[int, int, float]] = {}  # appid -> (day, count, last_at)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_token)

    def __repr__(self) -> str:
        return f"<TokenBook tokens={len(self._by_token)} apps={len(self._classic)}>"

    def _issue(self, appid: str, kind: TokenKind, now: float) -> TokenRecord:
        self._seq += 1
        # Shaped like real tokens ("86_..."): long, URL-safe, no structure a client may rely on.
        token = f"{80 + self._seq % 20}_{secrets.token_urlsafe(96)}"
        rec = TokenRecord(token, appid, kind, now + self.ttl_s)
        self._by_token[token] = rec
        self._issued.append(rec)
        while self._issued and self._issued[0].valid_until + _KEEP_DEAD_S < now:
            self._by_token.pop(self._issued.popleft().token, None)
        return rec

    def classic(self, appid: str, now: float) -> tuple[TokenRecord, int]:
        """A new token; the previous one keeps working for the overlap, then dies."""
        old = self._classic.get(appid)
        if old is not None:
            old.kill_at(now + self.overlap_s)
        rec = self._issue(appid, "classic", now)
        self._classic[appid] = rec
        return rec, int(self.ttl_s)

    def stable(self, appid: str, now: float, force: bool) -> tuple[TokenRecord, int]:
        cur = self._stable.get(appid)
        if force and self._may_force(appid, now):
            if cur is not None:
                cur.kill_at(now)
        elif cur is not None and now < cur.valid_until and now < cur.expires_at - self.renew_s:
            return cur, max(1, int(cur.expires_at - now))
        # None, dead, or in its renewal window: then the old token runs out on its own.
        rec = self._issue(appid, "stable", now)
        self._stable[appid] = rec
        return rec, int(self.ttl_s)

    def _may_force(self, appid: str, now: float) -> bool:
        day = shanghai_day(now)
        last_day, count, last_at = self._force.get(appid, (day, 0, -math.inf))
        if last_day != day:
            count = 0
        if count >= self.force_per_day or now - last_at < self.force_gap_s:
            return False
        self._force[appid] = (day, count + 1, now)
        return True

    def check(self, token: str, now: float) -> tuple[int, str | None]:
        """(0, appid) for a live token, else (errcode, appid or None)."""
        rec = self._by_token.get(token)
        if rec is None:
            return (40001 if _WELL_FORMED.fullmatch(token) else 40014), None
        if now < rec.valid_until:
            return 0, rec.appid
        if rec.expires_at <= rec.dies_at:
            return 42001, rec.appid  # ran out on its own
        return 40001, rec.appid  # replaced, force-refreshed or revoked: "not latest"

    def revoke(self, appid: str | None, now: float) -> int:
        """Kill every live token of one app (or all apps); returns how many died."""
        n = 0
        for rec in self._by_token.values():
            if (appid is None or rec.appid == appid) and now < rec.valid_until:
                rec.kill_at(now)
                n += 1
        return n

    def current(self, appid: str, kind: TokenKind) -> TokenRecord | None:
        return (self._classic if kind == "classic" else self._stable).get(appid)

    def clear(self) -> None:
        self._by_token.clear()
        self._issued.clear()
        self._classic.clear()
        self._stable.clear()
        self._force.clear()
