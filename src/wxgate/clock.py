"""Time behind a protocol, so timing logic is tested with a fake clock instead of sleeps.

All times are epoch seconds (float) unless a name says otherwise.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock epoch seconds (what gets stored)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, for intervals."""

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "<SystemClock>"


class FakeClock:
    """A clock that moves only when told; `sleep` returns once `advance` passes its deadline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def set(self, epoch_s: float) -> None:
        self.advance(epoch_s - self._now)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
        keep: list[tuple[float, asyncio.Future[None]]] = []
        for deadline, fut in self._sleepers:
            if deadline <= self._mono:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((deadline, fut))
        self._sleepers = keep

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._mono + seconds, fut))
        await fut

    def __repr__(self) -> str:
        return f"<FakeClock now={self._now:.3f} sleepers={len(self._sleepers)}>"


def iso8601(epoch_s: float, tz: datetime.tzinfo | None = datetime.UTC) -> str:
    """`epoch_s` as ISO 8601 with its zone, to the millisecond ("2026-12-04T10:00:00.000+00:00"):
    what people and spreadsheets read (CSV exports, CLI output). tz=None: this machine's zone.
    The JSON API keeps epoch seconds."""
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return (moment.astimezone() if tz is None else moment.astimezone(tz)).isoformat(
        timespec="milliseconds"
    )
