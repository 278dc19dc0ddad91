"""What a reused idempotency key answers, the same on every backend.

Like Stripe's keys: the same key with the same body is the same request (the first message's
id again, created=False); the same key with another body is a caller's mistake, reported as a
conflict instead of silently answered with a message the caller did not mean. A key stored
without a fingerprint (a row written before fingerprints existed, or a caller that sends none)
is never a conflict: nothing can be compared.
"""

from __future__ import annotations

from wxgate.models import EnqueueResult


def conflicts(stored: str | None, offered: str | None) -> bool:
    """Whether a key stored with fingerprint `stored` was reused with fingerprint `offered`."""
    return stored is not None and offered is not None and stored != offered


def duplicate(first: EnqueueResult, stored: str | None, offered: str | None) -> EnqueueResult:
    """The answer to a message whose key was already taken by `first`."""
    return EnqueueResult(first.id, first.status, False, conflicts(stored, offered))
