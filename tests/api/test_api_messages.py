"""POST/GET/DELETE /v1/messages against the real SQLite store."""

from __future__ import annotations

from pathlib import Path

from support.api import AUTH, NEWS, SHOP, ApiRig, make_settings, msg_body, running_gateway
from wxgate.models import SendResult, Status


async def test_accept_then_get(rig: ApiRig) -> None:
    status, body = await rig.post("/v1/messages", msg_body())
    assert status == 202 and body["status"] == "queued"
    msg = await rig.store.get(body["id"])
    assert msg is not None
    assert msg.data == {
        "first": {"value": "Paid"},
        "amount": {"value": "12.50", "color": "#173177"},
    }
    assert msg.app == "shop" and msg.created_at == rig.clock.now()

    status, got = await rig.get(f"/v1/messages/{body['id']}")
    assert status == 200
    assert got["id"] == body["id"] and got["status"] == "queued" and got["attempts"] == 0
    assert got["touser"] == "o_user_1" and got["created_at"] == rig.clock.now()
    assert "lease_token" not in got and "data" not in got


async def test_numbers_become_strings(rig: ApiRig) -> None:
    status, body = await rig.post("/v1/messages", msg_body(data={"n": 3, "f": {"value": 2.5}}))
    assert status == 202
    msg = await rig.store.get(body["id"])
    assert msg is not None and msg.data == {"n": {"value": "3"}, "f": {"value": "2.5"}}


async def test_get_shows_send_outcome(rig: ApiRig) -> None:
    _, body = await rig.post("/v1/messages", msg_body())
    [leased] = await rig.store.lease(10, 30.0, rig.clock.now())
    assert await rig.store.ack(
        leased.id, leased.lease_token, SendResult(2**62 + 7, rig.clock.now())
    )
    _, got = await rig.get(f"/v1/messages/{body['id']}")
    assert got["status"] == "sent" and got["wechat_msgid"] == 2**62 + 7
    assert got["sent_at"] == rig.clock.now()


async def test_get_unknown_is_404(rig: ApiRig) -> None:
    status, body = await rig.get("/v1/messages/nope")
    assert status == 404 and body["error"] == "not_found"


async def test_idempotency_key_in_header_or_body(rig: ApiRig) -> None:
    s1, first = await rig.post("/v1/messages", msg_body(), headers={"Idempotency-Key": "order-1"})
    s2, again = await rig.post("/v1/messages", msg_body(idempotency_key="order-1"))
    s3, other = await rig.post("/v1/messages", msg_body(idempotency_key="order-2"))
    assert (s1, s2, s3) == (202, 202, 202)
    assert first["id"] == again["id"] != other["id"]
    assert (await rig.store.stats()).by_status.get("queued") == 2


async def test_send_at_in_future_is_scheduled(rig: ApiRig) -> None:
    status, body = await rig.post("/v1/messages", msg_body(send_at=rig.clock.now() + 3600))
    assert status == 202 and body["status"] == "scheduled"
    assert await rig.store.lease(10, 30.0, rig.clock.now()) == []
    _, got = await rig.get(f"/v1/messages/{body['id']}")
    assert got["status"] == "scheduled" and got["not_before"] == rig.clock.now() + 3600


async def test_expire_at_in_past_is_expired_and_never_sent(rig: ApiRig) -> None:
    status, body = await rig.post("/v1/messages", msg_body(expire_at=rig.clock.now() - 1))
    assert status == 202 and body["status"] == "expired"
    _, got = await rig.get(f"/v1/messages/{body['id']}")
    assert got["status"] == "expired"
    # If the store still lists it as due, the worker's only move is to expire it (as here).
    for m in await rig.store.lease(10, 30.0, rig.clock.now()):
        assert m.id == body["id"] and m.expire_at is not None and m.expire_at <= rig.clock.now()
        assert await rig.store.expire(m.id, m.lease_token)
    _, got = await rig.get(f"/v1/messages/{body['id']}")
    assert got["status"] == "expired" and got["wechat_msgid"] is None


async def test_waiting_message_past_its_deadline_reads_expired(rig: ApiRig) -> None:
    _, body = await rig.post("/v1/messages", msg_body(expire_at=rig.clock.now() + 60))
    rig.clock.advance(61)
    _, got = await rig.get(f"/v1/messages/{body['id']}")
    assert got["status"] == "expired"


async def test_subscribe_message(rig: ApiRig) -> None:
    status, body = await rig.post(
        "/v1/messages",
        msg_body(
            kind="subscribe", page="pages/order?id=1", miniprogram_state="trial", lang="en_US"
        ),
    )
    assert status == 202
    msg = await rig.store.get(body["id"])
    assert msg is not None and msg.kind.value == "subscribe" and msg.page == "pages/order?id=1"


async def test_cancel_then_conflict_when_leased(rig: ApiRig) -> None:
    _, a = await rig.post("/v1/messages", msg_body())
    resp = await rig.client.delete(f"/v1/messages/{a['id']}", headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"id": a["id"], "status": "cancelled"}
    assert (await rig.store.get(a["id"])).status == Status.CANCELLED  # type: ignore[union-attr]

    _, b = await rig.post("/v1/messages", msg_body())
    [leased] = await rig.store.lease(10, 30.0, rig.clock.now())
    assert leased.id == b["id"]
    resp = await rig.client.delete(f"/v1/messages/{b['id']}", headers=AUTH)
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "conflict" and "sending" in body["message"]

    resp = await rig.client.delete("/v1/messages/nope", headers=AUTH)
    assert resp.status == 404


async def test_app_required_when_several(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "db", make_settings([SHOP, NEWS])) as g:
        before = await g.snapshot()
        status, body = await g.post("/v1/messages", msg_body())
        assert status == 400 and body["field"] == "app"
        assert await g.snapshot() == before
        status, body = await g.post("/v1/messages", msg_body(app="news"))
        assert status == 202
        assert (await g.store.get(body["id"])).app == "news"  # type: ignore[union-attr]
