"""What `Dispatcher.handle` did with one leased message."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"  # WeChat accepted it; acked
    RETRY = "retry"  # a counted failure; due again after backoff
    DEAD = "dead"  # permanent failure or attempts used up
    EXPIRED = "expired"  # expire_at passed before it could be sent
    RELEASED = "released"  # put back unharmed (pause, breaker, quota, throttle, config, lease)
    FENCED = "fenced"  # the store refused our outcome: the lease was lost to another holder
    STORE_ERROR = "store_error"  # the store failed; the lease will expire and redeliver it
