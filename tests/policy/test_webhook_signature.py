"""wxgate.sdk.verify_webhook against the sender's signing, with literals."""

from __future__ import annotations

import hashlib
import hmac

from wxgate.delivery.webhooks import event_body
from wxgate.models import WebhookEvent
from wxgate.policy.webhook_signature import sign
from wxgate.sdk import verify_webhook

SECRET = "whsec-unit"
NOW = 1_700_000_000
BODY = b'{"id":"evt_x_1","type":"message.status","status":"sent"}'


def headers(ts: int = NOW, body: bytes = BODY, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Wxgate-Event-Id": "evt_x_1",
        "X-Wxgate-Timestamp": str(ts),
        "X-Wxgate-Signature": sign(secret, ts, body),
    }


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    mac = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers()["X-Wxgate-Signature"] == f"v1={mac}"


def test_verifies_a_genuine_request_in_any_header_case() -> None:
    assert verify_webhook(SECRET, headers(), BODY, now=NOW)
    lower = {k.lower(): v for k, v in headers().items()}
    assert verify_webhook(SECRET, lower, BODY.decode(), now=NOW + 299)


def test_refuses_tampering_wrong_secret_and_old_timestamps() -> None:
    assert not verify_webhook(SECRET, headers(), BODY + b" ", now=NOW)
    assert not verify_webhook("other", headers(), BODY, now=NOW)
    assert not verify_webhook(SECRET, headers(), BODY, now=NOW + 301)
    assert not verify_webhook(SECRET, headers(), BODY, now=NOW - 301)
    assert verify_webhook(SECRET, headers(), BODY, tolerance_s=1000, now=NOW + 900)
    moved = {**headers(), "X-Wxgate-Timestamp": str(NOW + 1)}  # the timestamp is signed too
    assert not verify_webhook(SECRET, moved, BODY, now=NOW)
    assert not verify_webhook(SECRET, {}, BODY, now=NOW)
    assert not verify_webhook(SECRET, {**headers(), "X-Wxgate-Timestamp": "soon"}, BODY, now=NOW)
    assert not verify_webhook("", headers(secret=""), BODY, now=NOW)


def test_any_of_several_signatures_may_match() -> None:
    both = f"v1=deadbeef, {sign(SECRET, NOW, BODY)}"
    assert verify_webhook(SECRET, {**headers(), "X-Wxgate-Signature": both}, BODY, now=NOW)
    v0 = sign(SECRET, NOW, BODY).replace("v1=", "v0=")
    assert not verify_webhook(SECRET, {**headers(), "X-Wxgate-Signature": v0}, BODY, now=NOW)


def test_event_body_is_stable_and_leaves_errors_off_successes() -> None:
    event = WebhookEvent(
        id="evt_m1_7",
        message_id="m1",
        app="shop",
        status="sent",
        url="https://caller.example/hook",
        occurred_at=1_700_000_000.25,
        errcode=-1,  # an earlier failed attempt: not part of a success
        errmsg="system error",
        wechat_msgid=2**62,
        attempts=2,
    )
    body = event_body(event)
    assert body == event_body(event), "the same bytes on every retry"
    assert body == (
        b'{"id":"evt_m1_7","type":"message.status","message_id":"m1","app":"shop",'
        b'"status":"sent","errcode":null,"errmsg":null,"wechat_msgid":4611686018427387904,'
        b'"batch_id":null,"occurred_at":1700000000.25}'
    )
    dead = event_body(
        WebhookEvent(
            id="e",
            message_id="m",
            app="a",
            status="dead",
            url="u",
            occurred_at=1.0,
            errcode=40003,
            errmsg="invalid openid",
        )
    )
    assert b'"errcode":40003,"errmsg":"invalid openid"' in dead
