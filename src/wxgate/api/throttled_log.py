"""A warning per key at most once per interval, counting the ones held back: routes anyone can
call (the WeChat callback) must not let a sender write a log line per request."""

from __future__ import annotations

import logging

from wxgate.clock import Clock


class ThrottledLog:
    def __init__(self, logger: logging.Logger, clock: Clock, interval_s: float = 60.0) -> None:
        self._logger = logger
        self._clock = clock
        self._interval_s = interval_s
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last logged, held back since)

    def warning(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` was logged within the interval; True if logged.

        Keys must come from configuration (app names), not from the request, so the table
        stays as small as the configuration.
        """
        now = self._clock.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        held = 0 if last is None else last[1]
        self._seen[key] = (now, 0)
        suffix = f" ({held} more not logged in the last {self._interval_s:.0f} s)" if held else ""
        self._logger.warning(message + suffix, *args)
        return True

    def __repr__(self) -> str:
        held = sum(n for _, n in self._seen.values())
        return f"<ThrottledLog keys={len(self._seen)} held={held}>"
