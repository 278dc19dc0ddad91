"""POST /v1/batches, progress and cancel."""

from __future__ import annotations

from support.api import AUTH, ApiRig


async def test_batch_one_commit_then_progress(rig: ApiRig) -> None:
    recipients = [{"touser": f"o_{i}"} for i in range(500)]
    recipients[3]["data"] = {"name": "Ann"}  # type: ignore[assignment]
    status, body = await rig.post(
        "/v1/batches",
        {"template_id": "tpl", "data": {"name": "friend", "n": 1}, "recipients": recipients},
    )
    assert status == 202 and body["total"] == 500 and body["status"] == "running"
    batch_id = body["id"]

    status, progress = await rig.get(f"/v1/batches/{batch_id}")
    assert status == 200
    assert progress == {
        "id": batch_id,
        "status": "running",
        "total": 500,
        "counts": {"queued": 500},
        "app": "shop",
        "template_id": "tpl",
        "created_at": rig.clock.now(),
        "rate_per_s": None,
        "errcodes": {},
    }

    leased = await rig.store.lease(1000, 30.0, rig.clock.now())
    assert len(leased) == 500 and {m.batch_id for m in leased} == {batch_id}
    by_user = {m.touser: m for m in leased}
    assert by_user["o_3"].data == {"name": {"value": "Ann"}, "n": {"value": "1"}}
    assert by_user["o_4"].data == {"name": {"value": "friend"}, "n": {"value": "1"}}
    _, progress = await rig.get(f"/v1/batches/{batch_id}")
    assert progress["counts"] == {"sending": 500}


async def test_batch_cancel(rig: ApiRig) -> None:
    _, body = await rig.post(
        "/v1/batches", {"template_id": "tpl", "recipients": [{"touser": "a"}, {"touser": "b"}]}
    )
    resp = await rig.client.post(f"/v1/batches/{body['id']}/cancel", headers=AUTH)
    assert resp.status == 200
    got = await resp.json()
    assert got["status"] == "cancelled" and got["counts"] == {"cancelled": 2}
    assert await rig.store.lease(10, 30.0, rig.clock.now()) == []
    # Cancelling again is harmless.
    resp = await rig.client.post(f"/v1/batches/{body['id']}/cancel", headers=AUTH)
    assert resp.status == 200


async def test_batch_done_cannot_be_cancelled(rig: ApiRig) -> None:
    _, body = await rig.post("/v1/batches", {"template_id": "tpl", "recipients": [{"touser": "a"}]})
    [m] = await rig.store.lease(10, 30.0, rig.clock.now())
    assert await rig.store.expire(m.id, m.lease_token)
    _, progress = await rig.get(f"/v1/batches/{body['id']}")
    assert progress["status"] == "done"
    resp = await rig.client.post(f"/v1/batches/{body['id']}/cancel", headers=AUTH)
    assert resp.status == 409


async def test_batch_pause_resume(rig: ApiRig) -> None:
    _, body = await rig.post(
        "/v1/batches", {"template_id": "tpl", "recipients": [{"touser": "a"}, {"touser": "b"}]}
    )
    resp = await rig.client.post(f"/v1/batches/{body['id']}/pause", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["status"] == "paused"
    assert await rig.store.lease(10, 30.0, rig.clock.now()) == []
    resp = await rig.client.post(f"/v1/batches/{body['id']}/pause", headers=AUTH)
    assert resp.status == 200  # pausing again is harmless
    resp = await rig.client.post(f"/v1/batches/{body['id']}/resume", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["status"] == "running"
    assert len(await rig.store.lease(10, 30.0, rig.clock.now())) == 2
    await rig.client.post(f"/v1/batches/{body['id']}/cancel", headers=AUTH)
    for action in ("pause", "resume"):
        resp = await rig.client.post(f"/v1/batches/{body['id']}/{action}", headers=AUTH)
        assert resp.status == 409, action


async def test_batch_list_newest_first(rig: ApiRig) -> None:
    status, page = await rig.get("/v1/batches")
    assert status == 200 and page == {"items": []}
    ids = []
    for n in (1, 2, 3):
        recipients = [{"touser": f"o_{i}"} for i in range(n)]
        _, body = await rig.post("/v1/batches", {"template_id": "tpl", "recipients": recipients})
        ids.append(body["id"])
        rig.clock.advance(1.0)
    status, page = await rig.get("/v1/batches?limit=2")
    assert status == 200
    assert [(b["id"], b["total"], b["counts"]) for b in page["items"]] == [
        (ids[2], 3, {"queued": 3}),
        (ids[1], 2, {"queued": 2}),
    ]
    assert page["items"][0]["app"] == "shop" and page["items"][0]["status"] == "running"
    for bad in ("0", "101", "x"):
        status, body = await rig.get(f"/v1/batches?limit={bad}")
        assert status == 400 and body["field"] == "limit", bad
    resp = await rig.client.get("/v1/batches")
    assert resp.status == 401


async def test_unknown_batch_is_404(rig: ApiRig) -> None:
    status, body = await rig.get("/v1/batches/nope")
    assert status == 404 and body["error"] == "not_found"
    resp = await rig.client.post("/v1/batches/nope/cancel", headers=AUTH)
    assert resp.status == 404


async def test_batch_of_max_size_is_accepted(rig: ApiRig) -> None:
    recipients = [{"touser": f"o_{i:06d}"} for i in range(10_000)]
    status, body = await rig.post(
        "/v1/batches", {"template_id": "tpl", "data": {"k": "v"}, "recipients": recipients}
    )
    assert status == 202 and body["total"] == 10_000
    assert (await rig.store.stats()).by_status["queued"] == 10_000
