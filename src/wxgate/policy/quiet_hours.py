"""Quiet hours: a daily local-time window ("22:00-08:00" in Asia/Shanghai) during which
messages that may wait are held until the window ends. Pure time arithmetic, no I/O.

Priorities: `urgent` is never held (`high` is its older spelling); `normal` and `low` are.
A held message whose window ends at or after its `expire_at` can never be sent in time, so it
expires instead of being sent late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache

from wxgate.settings import AppSettings, load_zone, parse_quiet_hours

URGENT = "urgent"
# Accepted at ingest; "high" is stored as "urgent".
PRIORITY_ALIASES = {"urgent": URGENT, "high": URGENT, "normal": "normal", "low": "low"}


def may_wait(priority: str) -> bool:
    """Whether quiet hours hold a message of this priority."""
    return priority != URGENT and priority != "high"


class QuietHours:
    """One window, repeating every local day; `end_of(t)` says when a message due at t may go."""

    __slots__ = ("end_min", "spec", "start_min", "tz")

    def __init__(self, start_min: int, end_min: int, tz: tzinfo, spec: str = "") -> None:
        if start_min == end_min:
            raise ValueError("empty quiet-hours window")
        self.start_min = start_min
        self.end_min = end_min
        self.tz = tz
        self.spec = spec

    @classmethod
    def parse(cls, spec: str, zone: str = "Asia/Shanghai") -> QuietHours:
        start, end = parse_quiet_hours(spec)
        return cls(start, end, load_zone(zone), f"{spec} {zone}")

    def _inside(self, minute: int) -> bool:
        if self.start_min < self.end_min:  # same day, e.g. 12:00-14:00
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min  # spans midnight

    def end_of(self, epoch_s: float) -> float | None:
        """Epoch seconds the window containing `epoch_s` ends, or None when outside it."""
        local = datetime.fromtimestamp(epoch_s, self.tz)
        minute = local.hour * 60 + local.minute
        if not self._inside(minute):
            return None
        day = local.date()
        if minute >= self.end_min:  # in the evening part of a window that ends tomorrow
            day += timedelta(days=1)
        h, m = divmod(self.end_min, 60)
        end = datetime(day.year, day.month, day.day, h, m, tzinfo=self.tz)
        # A DST jump can make the local end time land before `epoch_s`; never go back in time.
        return max(end.astimezone(UTC).timestamp(), epoch_s)

    def hold(self, due: float, priority: str, expire_at: float | None) -> tuple[float, bool]:
        """(when the message may be sent, whether it expires instead) for one due at `due`."""
        if not may_wait(priority):
            return due, False
        end = self.end_of(due)
        if end is None:
            return due, False
        return end, expire_at is not None and end >= expire_at

    def __repr__(self) -> str:
        return f"<QuietHours {self.spec or f'{self.start_min}-{self.end_min}'}>"


@lru_cache(maxsize=256)
def _cached(spec: str, zone: str) -> QuietHours:
    return QuietHours.parse(spec, zone)


def for_app(app: AppSettings) -> QuietHours | None:
    """The app's quiet hours (parsed once per spec and zone), or None."""
    if app.quiet_hours is None:
        return None
    return _cached(app.quiet_hours, app.timezone)
