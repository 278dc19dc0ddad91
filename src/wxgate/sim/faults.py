"""Fault injection: the global plan plus per-app overrides, compiled for a cheap hot path.

A request reads one `Compiled` and checks two booleans when nothing is injected.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from wxgate.sim.config import Faults


def _rates(rates: dict[str, float]) -> list[tuple[float, int]]:
    """{"-1": 0.1, "45011": 0.05} -> cumulative [(0.1, -1), (0.15, 45011)] for one draw."""
    out: list[tuple[float, int]] = []
    total = 0.0
    for code, rate in rates.items():
        if rate > 0:
            total += rate
            out.append((total, int(code)))
    return out


def _draw(table: list[tuple[float, int]]) -> int | None:
    r = random.random()
    for upto, code in table:
        if r < upto:
            return code
    return None


class Compiled:
    __slots__ = ("faults", "gated", "has_latency", "send_errors", "token_errors")

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.send_errors = _rates(faults.error_rates)
        self.token_errors = _rates(faults.token_error_rates)
        self.has_latency = faults.latency_ms > 0 or faults.latency_jitter_ms > 0
        # outage_until is time-bound, so "gated" only says it must be looked at.
        self.gated = bool(
            self.send_errors
            or self.token_errors
            or faults.http_5xx_rate
            or faults.stall_rate
            or faults.reset_rate
            or faults.outage_until is not None
        )

    def latency_s(self) -> float:
        f = self.faults
        extra = 0.0
        if f.latency_jitter_ms > 0:
            if f.latency_dist == "exponential":
                extra = random.expovariate(1.0 / f.latency_jitter_ms)
            elif f.latency_dist == "normal":
                extra = random.gauss(0.0, f.latency_jitter_ms)
            else:
                extra = random.random() * f.latency_jitter_ms
        return max(0.0, f.latency_ms + extra) / 1000.0

    def in_outage(self, now: float) -> bool:
        until = self.faults.outage_until
        return until is not None and now < until

    def draw_5xx(self) -> bool:
        rate = self.faults.http_5xx_rate
        return rate > 0 and random.random() < rate

    def draw_send_error(self) -> int | None:
        return _draw(self.send_errors) if self.send_errors else None

    def draw_token_error(self) -> int | None:
        return _draw(self.token_errors) if self.token_errors else None

    def draw_stall(self) -> bool:
        rate = self.faults.stall_rate
        return rate > 0 and random.random() < rate

    def draw_reset(self) -> bool:
        rate = self.faults.reset_rate
        return rate > 0 and random.random() < rate


_FIELDS = frozenset(Faults.__struct_fields__)


class FaultPlan:
    """Global faults, plus per-app overrides layered on top of them."""

    def __init__(self, base: Faults) -> None:
        self._initial = base
        self.clear()

    def clear(self) -> None:
        self._global: dict[str, Any] = msgspec.structs.asdict(self._initial)
        self._apps: dict[str, dict[str, Any]] = {}
        self._compile()

    def _compile(self) -> None:
        self.glob = Compiled(msgspec.convert(self._global, Faults))
        self.by_app = {
            appid: Compiled(msgspec.convert({**self._global, **over}, Faults))
            for appid, over in self._apps.items()
        }

    def for_app(self, appid: str | None) -> Compiled:
        if appid is None or not self.by_app:
            return self.glob
        return self.by_app.get(appid, self.glob)

    def update(self, changes: dict[str, Any], app: str | None, now: float) -> None:
        """Merge `changes` (Faults fields, plus outage_s = seconds from now; 0 ends it).

        Raises msgspec.ValidationError (or ValueError for unknown keys) and changes nothing.
        """
        changes = dict(changes)
        if "outage_s" in changes:
            secs = changes.pop("outage_s")
            if not isinstance(secs, int | float) or isinstance(secs, bool):
                raise ValueError("outage_s must be a number")
            changes["outage_until"] = now + secs if secs > 0 else None
        unknown = set(changes) - _FIELDS
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        target = self._global if app is None else self._apps.get(app, {})
        merged = {**target, **changes}
        msgspec.convert({**self._global, **merged}, Faults)  # validate before applying
        if app is None:
            self._global = merged
        else:
            self._apps[app] = merged
        self._compile()

    def clear_app(self, app: str) -> None:
        self._apps.pop(app, None)
        self._compile()

    def describe(self) -> dict[str, Any]:
        return {
            "global": msgspec.structs.asdict(self.glob.faults),
            "apps": {a: msgspec.structs.asdict(c.faults) for a, c in self.by_app.items()},
        }

    def __repr__(self) -> str:
        return f"<FaultPlan gated={self.glob.gated} app_overrides={len(self._apps)}>"
