"""Idempotency keys mean what Stripe's mean: the same key and body is the first message again
(202, its id); the same key with another body is 409 naming the key, and nothing is stored."""

from __future__ import annotations

from support.api import ApiRig, msg_body


async def test_same_key_same_body_is_an_idempotent_202(rig: ApiRig) -> None:
    s1, first = await rig.post("/v1/messages", msg_body(), headers={"Idempotency-Key": "ord-7"})
    # The same request written differently: key in the body, default app named, the short
    # data form spelled out, fields in another order.
    same = {
        "data": {"amount": {"color": "#173177", "value": "12.50"}, "first": {"value": "Paid"}},
        "idempotency_key": "ord-7",
        "app": "shop",
        "template_id": "tpl_order",
        "touser": "o_user_1",
    }
    s2, again = await rig.post("/v1/messages", same)
    assert (s1, s2) == (202, 202)
    assert again == first
    assert (await rig.store.stats()).by_status.get("queued") == 1


async def test_same_key_other_body_is_409_naming_the_key(rig: ApiRig) -> None:
    s1, first = await rig.post("/v1/messages", msg_body(idempotency_key="ord-8"))
    s2, refused = await rig.post(
        "/v1/messages", msg_body(idempotency_key="ord-8", touser="o_someone_else")
    )
    assert s1 == 202
    assert s2 == 409
    assert refused["error"] == "idempotency_conflict"
    assert refused["field"] == "idempotency_key"
    assert "'ord-8'" in refused["message"] and first["id"] in refused["message"]
    assert (await rig.store.stats()).by_status.get("queued") == 1
    # The first body with the key still answers with the first message.
    s3, again = await rig.post("/v1/messages", msg_body(idempotency_key="ord-8"))
    assert (s3, again["id"]) == (202, first["id"])


async def test_other_data_under_the_same_key_is_a_conflict(rig: ApiRig) -> None:
    await rig.post("/v1/messages", msg_body(), headers={"Idempotency-Key": "ord-9"})
    status, body = await rig.post(
        "/v1/messages",
        msg_body(data={"first": "Paid", "amount": "99.00"}),
        headers={"Idempotency-Key": "ord-9"},
    )
    assert status == 409 and body["error"] == "idempotency_conflict"
