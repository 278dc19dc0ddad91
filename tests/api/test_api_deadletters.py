"""GET /v1/dead-letters and POST /v1/dead-letters/requeue."""

from __future__ import annotations

from support.api import ApiRig, msg_body
from wxgate.models import ErrorInfo


async def _dead(rig: ApiRig, n: int, errcode: int) -> list[str]:
    ids = []
    for _ in range(n):
        _, body = await rig.post("/v1/messages", msg_body())
        ids.append(body["id"])
    for m in await rig.store.lease(100, 30.0, rig.clock.now()):
        assert await rig.store.dead(m.id, m.lease_token, ErrorInfo(errcode, "bad openid"))
    rig.clock.advance(1)
    return ids


async def test_list_filter_page_and_requeue(rig: ApiRig) -> None:
    a = await _dead(rig, 3, 40003)
    b = await _dead(rig, 2, 43004)

    status, page = await rig.get("/v1/dead-letters?limit=2")
    assert status == 200 and len(page["items"]) == 2 and page["next_cursor"]
    seen = [m["id"] for m in page["items"]]
    while page["next_cursor"]:
        _, page = await rig.get(f"/v1/dead-letters?limit=2&cursor={page['next_cursor']}")
        seen += [m["id"] for m in page["items"]]
    assert sorted(seen) == sorted(a + b)
    item = page["items"][-1] if page["items"] else None
    assert item is None or (item["status"] == "dead" and item["last_errcode"] in (40003, 43004))

    _, only = await rig.get("/v1/dead-letters?errcode=43004&app=shop")
    assert sorted(m["id"] for m in only["items"]) == sorted(b)
    assert all(m["last_errmsg"] == "bad openid" and m["attempts"] == 1 for m in only["items"])

    status, got = await rig.post("/v1/dead-letters/requeue", {"ids": [a[0]]})
    assert status == 200 and got == {"requeued": 1}
    status, got = await rig.post("/v1/dead-letters/requeue", {"errcode": 43004})
    assert got == {"requeued": 2}
    _, left = await rig.get("/v1/dead-letters")
    assert sorted(m["id"] for m in left["items"]) == sorted(a[1:])
    _, msg = await rig.get(f"/v1/messages/{b[0]}")
    assert msg["status"] == "queued" and msg["attempts"] == 0


async def test_each_dead_letter_shows_its_redrive_rounds(rig: ApiRig) -> None:
    [msg_id] = await _dead(rig, 1, 45009)
    _, page = await rig.get("/v1/dead-letters")
    assert [(m["id"], m["redrive_rounds"]) for m in page["items"]] == [(msg_id, 0)]
    assert await rig.store.redrive("shop", [45009], rig.clock.now(), 3, 10) == 1
    for m in await rig.store.lease(10, 30.0, rig.clock.now()):
        assert await rig.store.dead(m.id, m.lease_token, ErrorInfo(45009, "quota"))
    _, page = await rig.get("/v1/dead-letters")
    assert [(m["id"], m["redrive_rounds"]) for m in page["items"]] == [(msg_id, 1)]
