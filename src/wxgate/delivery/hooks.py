"""The metrics hooks the delivery pipeline calls; wxgate.metrics.Metrics implements them."""

from __future__ import annotations

from typing import Protocol


class DeliveryMetrics(Protocol):
    """Called once per event; must be cheap and must not raise (it runs on the send path)."""

    def on_sent(self, app: str, latency_s: float, created_at: float, now: float) -> None:
        """WeChat accepted a message; `latency_s` is the send call, `now - created_at` the age."""

    def on_failed(self, app: str, disposition: str, errcode: int) -> None:
        """A send came back with anything but ok (transport failures carry errcode < 0)."""

    def on_config_alert(self, app: str, errcode: int) -> None:
        """A `config` answer paused the app and raised its one ALERT log line."""

    def on_retry(self, app: str) -> None:
        """A failed message was scheduled for another attempt."""

    def on_dead(self, app: str) -> None: ...

    def on_expired(self, app: str) -> None: ...

    def on_released(self, app: str, reason: str) -> None:
        """A leased message went back unharmed (pause, breaker, quota, throttle, drain...)."""

    def on_rate_wait(self, app: str, seconds: float) -> None: ...

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None:
        """A delivery receipt was applied (here: one that beat its ack, applied with it)."""

    def on_suppressed(self, app: str) -> None:
        """A subscribe message was dead-lettered unsent: its user rejected the template."""

    def on_receipt_unlinked(self, app: str, reason: str) -> None:
        """A receipt without a msgid match could not be linked to a message for sure
        (`ambiguous` or `unmatched`, policy/receipt_links.py): kept by msgid, not applied."""


class NoMetrics:
    """The default: count nothing."""

    def on_sent(self, app: str, latency_s: float, created_at: float, now: float) -> None:
        pass

    def on_failed(self, app: str, disposition: str, errcode: int) -> None:
        pass

    def on_config_alert(self, app: str, errcode: int) -> None:
        pass

    def on_retry(self, app: str) -> None:
        pass

    def on_dead(self, app: str) -> None:
        pass

    def on_expired(self, app: str) -> None:
        pass

    def on_released(self, app: str, reason: str) -> None:
        pass

    def on_rate_wait(self, app: str, seconds: float) -> None:
        pass

    def on_receipt(self, app: str, result: str, created_at: float | None, now: float) -> None:
        pass

    def on_receipt_unlinked(self, app: str, reason: str) -> None:
        pass

    def on_suppressed(self, app: str) -> None:
        pass
