"""An idempotency key's body fingerprint and the refusal of a key reused for another message.

Stripe's rule: a key names one request. The same key with the same body is that request again
(202, the first message's id); the same key with a different body is a mistake the caller must
hear about (409 naming the key), not a 202 for a message they did not send. The fingerprint is
taken over the parsed body with its data normalised (message_from: "Paid" and
{"value": "Paid"} are one value), so key order and whitespace do not matter, and over the app
it resolved to, so naming the default app or leaving it out is the same request. The key itself
(body field or Idempotency-Key header) is left out: it is what is being compared under.
"""

from __future__ import annotations

import hashlib

import msgspec

from wxgate.api.errors import ApiError
from wxgate.models import MessageIn


def body_digest(body: MessageIn, app: str, data: dict[str, dict[str, str]]) -> str:
    """A hex SHA-256 of the request as the gateway understood it (see the module docstring);
    `data` is the body's data normalised."""
    canonical = msgspec.structs.replace(body, app=app, data=data, idempotency_key=None)
    return hashlib.sha256(msgspec.json.encode(canonical, order="sorted")).hexdigest()


def key_conflict(key: str, first_id: str) -> ApiError:
    """409 for a key reused with another body; names the key and the message it belongs to."""
    return ApiError(
        409,
        "idempotency_conflict",
        f"idempotency key {key!r} was already used for message {first_id} with a different "
        "request body; send a new key for a new message (the same body with this key is "
        "answered with that message)",
        "idempotency_key",
    )
