"""Status-webhook signatures: HMAC-SHA256 over "{timestamp}.{body}" (the Stripe scheme).

The sender (delivery/webhooks.py) signs with `sign`; receivers check with `verify` (exposed
as wxgate.sdk.verify_webhook). The timestamp is inside the signed text, so a captured
request cannot be replayed later than the receiver's tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import math

EVENT_ID_HEADER = "X-Wxgate-Event-Id"
TIMESTAMP_HEADER = "X-Wxgate-Timestamp"
SIGNATURE_HEADER = "X-Wxgate-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of f"{timestamp}.{body}" under `secret`."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Wxgate-Signature value: "v1=<hex>"."""
    return f"{SCHEME}={signature(secret, timestamp, body)}"


def verify(
    secret: str,
    timestamp: str | None,
    signature_header: str | None,
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether the headers prove `body` came from a sender holding `secret`, recently.

    `signature_header` may list several "v1=<hex>" entries separated by commas (a sender
    mid-way through a secret rotation); one match is enough. Compared in constant time.
    """
    if not secret or not timestamp or not signature_header:
        return False
    try:
        ts = int(timestamp.strip())
    except ValueError:
        return False
    if not math.isfinite(now) or abs(now - ts) > tolerance_s:
        return False
    expected = signature(secret, ts, body)
    ok = False
    for part in signature_header.split(","):
        scheme, sep, value = part.strip().partition("=")
        if sep and scheme == SCHEME and hmac.compare_digest(value.strip().lower(), expected):
            ok = True
    return ok
