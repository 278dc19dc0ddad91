"""One log line per app when WeChat stops answering, and one when it answers again.

Without it an unreachable WeChat (or simulator) was silent: every message retried quietly, and
an operator saw only growing `retrying` counts. Logging each failed send instead would write a
line per message (thousands a second in a campaign). So: after OUTAGE_AFTER transport failures
in a row for an app (no answer at all, a reset, a 5xx; a lone flake does not count), one
WARNING names the app and the last error; the first real answer after that (a success or any
WeChat errcode) logs one WARNING with how long it lasted and how many sends failed meanwhile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wxgate import logs
from wxgate.clock import Clock

log = logging.getLogger("wxgate.delivery")

OUTAGE_AFTER = 3


@dataclass
class _AppOutage:
    failures: int = 0  # transport failures in a row
    since: float | None = None  # when the outage was logged (monotonic); None: not logged


class OutageLog:
    """Per app: counts transport failures in a row and logs an outage's start and end once."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._apps: dict[str, _AppOutage] = {}
        self.outages_logged = 0

    def failed(self, app: str, error: str) -> None:
        """A send of `app` got no usable answer from WeChat (a TransportError)."""
        st = self._apps.setdefault(app, _AppOutage())
        st.failures += 1
        if st.since is None and st.failures >= OUTAGE_AFTER:
            st.since = self._clock.monotonic()
            self.outages_logged += 1
            log.warning(
                "WeChat unreachable for app %s: %d sends in a row got no answer (last: %s); "
                "its messages are kept and retried. Logged once until WeChat answers again.",
                app,
                st.failures,
                error,
                extra=logs.fields(app=app),
            )

    def answered(self, app: str) -> None:
        """WeChat answered a send of `app` (success, or any errcode): the outage, if any, ended."""
        st = self._apps.get(app)
        if st is None or (st.failures == 0 and st.since is None):
            return
        if st.since is not None:
            log.warning(
                "WeChat answers again for app %s after %.1f s unreachable (%d sends failed)",
                app,
                self._clock.monotonic() - st.since,
                st.failures,
                extra=logs.fields(app=app),
            )
        st.failures = 0
        st.since = None

    def down(self, app: str) -> bool:
        st = self._apps.get(app)
        return st is not None and st.since is not None
