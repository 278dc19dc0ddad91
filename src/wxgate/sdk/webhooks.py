"""Checking a status webhook wxgate POSTed to you: signature and freshness."""

from __future__ import annotations

import time
from collections.abc import Mapping

from wxgate.policy import webhook_signature


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance_s: float = webhook_signature.DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """Whether a status webhook wxgate POSTed to you is genuine and recent.

    `headers` are the request's (any case); `body` its raw bytes, exactly as received (parse
    the JSON only after this returns True). Checks X-Wxgate-Signature, an HMAC-SHA256 of
    "{X-Wxgate-Timestamp}.{body}" under the app's webhook_secret, and that the timestamp is
    within `tolerance_s` of `now` (default: the current time). Dedupe deliveries by the
    event's `id` (also in X-Wxgate-Event-Id): a retry carries the same one.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return webhook_signature.verify(
        secret,
        lower.get(webhook_signature.TIMESTAMP_HEADER.lower()),
        lower.get(webhook_signature.SIGNATURE_HEADER.lower()),
        raw,
        time.time() if now is None else now,
        tolerance_s,
    )
