"""POST /v1/dead-letters/requeue takes a 32-bit errcode, as the GET filter does: a larger one
was bound to SQLite as is and answered 500 (schemathesis found it)."""

from __future__ import annotations

from support.api import ApiRig


async def test_an_errcode_past_32_bits_is_a_400(rig: ApiRig) -> None:
    for errcode in (2**31, -(2**31) - 1, 2**70):
        status, body = await rig.post("/v1/dead-letters/requeue", {"errcode": errcode})
        assert status == 400, (errcode, body)
        assert body["field"] == "errcode"
    status, body = await rig.post("/v1/dead-letters/requeue", {"errcode": 2**31 - 1})
    assert status == 200 and body["requeued"] == 0
