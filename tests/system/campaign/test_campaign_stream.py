"""Streamed campaigns against the real gateway and simulator: NDJSON and CSV uploads committed in
chunks under one batch id, per-recipient fields, bad input, a broken upload, pause, resume,
a per-batch rate changed while it runs, and the per-recipient results."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.e2e import API_KEY, TEMPLATE, Rig, running_rig
from support.wait import wait_until
from wxgate.api import batch_upload

CHUNK = 1_000  # recipients per commit here (5,000 in production): more commits, less time
N_STREAM = 2 * CHUNK + 234  # three commits, the last one partial


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_upload, "CHUNK", CHUNK)


def ndjson(rows: list[dict[str, Any]], header: dict[str, Any] | None = None) -> bytes:
    lines = [json.dumps({"header": header})] if header is not None else []
    lines += [json.dumps(r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


async def blocks(body: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    """The body in pieces, as a client streaming a file sends it."""
    for i in range(0, len(body), size):
        yield body[i : i + size]
        await asyncio.sleep(0)


async def upload(
    rig: Rig, body: bytes, content_type: str, query: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with rig.api.session.post(
        "/v1/batches",
        params=query or {},
        data=blocks(body),
        headers={"Content-Type": content_type},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def progress(rig: Rig, batch_id: str) -> dict[str, Any]:
    status, body = await rig.api.get(f"/v1/batches/{batch_id}")
    assert status == 200, body
    return dict(body)


async def wait_batch(rig: Rig, batch_id: str, status: str, timeout_s: float = 30) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        p = await progress(rig, batch_id)
        return p if p["status"] == status else None

    result: dict[str, Any] = await wait_until(
        reached, timeout_s, f"batch {status}", progress=lambda: progress(rig, batch_id)
    )
    return result


async def results(rig: Rig, batch_id: str, fmt: str = "csv") -> str:
    async with rig.api.session.get(
        f"/v1/batches/{batch_id}/results", params={"format": fmt}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def test_ndjson_stream_is_one_batch_with_per_recipient_fields(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        rows: list[dict[str, Any]] = [{"touser": f"o_s{i}"} for i in range(N_STREAM)]
        for i in range(0, N_STREAM, 500):
            rows[i]["data"] = {"thing1": f"for {i}"}
        rows[7]["touser"] = "o_invalid7"  # WeChat refuses it: a dead letter with its errcode
        header = {"template_id": TEMPLATE, "data": {"thing1": "Sale", "amount2": "9.90"}}
        status, answer = await upload(rig, ndjson(rows, header), "application/x-ndjson")
        assert status == 202, answer
        assert (answer["total"], answer["status"]) == (N_STREAM, "running")
        batch_id = answer["id"]

        done = await wait_batch(rig, batch_id, "done")
        assert done["total"] == N_STREAM
        assert done["counts"].get("dead") == 1 and done["errcodes"] == {"40003": 1}
        assert sum(done["counts"].values()) == N_STREAM

        seen = {r["openid"]: r for r in await rig.sim.deliveries()}
        assert len(seen) == N_STREAM - 1
        assert seen["o_s1500"]["data"]["thing1"]["value"] == "for 1500"  # its own value
        assert seen["o_s1001"]["data"]["thing1"]["value"] == "Sale"  # the shared one
        assert seen["o_s1001"]["data"]["amount2"]["value"] == "9.90"

        table = list(csv.DictReader(io.StringIO(await results(rig, batch_id))))
        assert len(table) == N_STREAM
        assert len({r["id"] for r in table}) == N_STREAM
        by_user = {r["touser"]: r for r in table}
        assert by_user["o_invalid7"]["status"] == "dead"
        assert by_user["o_invalid7"]["errcode"] == "40003"
        sent = [r for r in table if r["status"] in ("sent", "delivered")]
        assert len(sent) == N_STREAM - 1
        msgids = {int(r["wechat_msgid"]) for r in sent}
        assert msgids == {int(row["msgid"]) for row in seen.values()}

        lines = (await results(rig, batch_id, "ndjson")).splitlines()
        assert len(lines) == N_STREAM
        assert {json.loads(line)["touser"] for line in lines} == set(by_user)


async def test_csv_stream_with_shared_settings_in_the_query(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        text = io.StringIO()
        w = csv.writer(text)
        # keyword1: an old-style key, which may hold a line break (WeChat shows it cut).
        w.writerow(["touser", "keyword1"])
        w.writerow(["o_c0", 'a "quoted", multi-line\nvalue'])
        for i in range(1, 300):
            w.writerow([f"o_c{i}", "" if i % 2 else f"v{i}"])
        query = {"template_id": TEMPLATE, "data": json.dumps({"keyword1": "shared", "n": "1"})}
        status, answer = await upload(rig, text.getvalue().encode(), "text/csv", query)
        assert status == 202, answer
        assert answer["total"] == 300
        await wait_batch(rig, answer["id"], "done")
        seen = {r["openid"]: r["data"] for r in await rig.sim.deliveries()}
        assert seen["o_c0"]["keyword1"]["value"] == 'a "quoted", multi-line\nvalue'
        assert seen["o_c1"]["keyword1"]["value"] == "shared"  # empty cell: the shared value
        assert seen["o_c2"]["keyword1"]["value"] == "v2"
        assert seen["o_c2"]["n"]["value"] == "1"


async def test_bad_line_mid_stream_cancels_the_batch_and_sends_nothing(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        rows: list[dict[str, Any]] = [{"touser": f"o_b{i}"} for i in range(CHUNK + 10)]
        rows[CHUNK + 5] = {"touser": "o_x", "data": {"thing1": True}}  # after a committed chunk
        body = ndjson(rows)
        status, answer = await upload(rig, body, "application/x-ndjson", {"template_id": TEMPLATE})
        assert status == 400, answer
        assert answer["field"] == f"line {CHUNK + 6}.data.thing1"
        batch_id = re.search(r"batch (\w+) is cancelled", answer["message"]).group(1)  # type: ignore[union-attr]
        p = await progress(rig, batch_id)
        assert p["status"] == "cancelled" and p["counts"] == {"cancelled": CHUNK}
        await asyncio.sleep(0.3)
        assert rig.sim.state.requests == 0

        # Refused before anything is stored: no template, an unknown parameter, a bad header.
        for query, body2, field in (
            ({}, b'{"touser": "o_1"}\n', "template_id"),
            ({"template_id": TEMPLATE, "nope": "1"}, b'{"touser": "o_1"}\n', "nope"),
            (
                {"template_id": TEMPLATE},
                b'{"header": {"template_id": "other"}}\n',
                "header.template_id",
            ),
            ({"template_id": TEMPLATE}, b"", "recipients"),
        ):
            status, answer = await upload(rig, body2, "application/x-ndjson", query)
            assert (status, answer.get("field")) == (400, field), answer


async def test_broken_upload_leaves_an_incomplete_batch_to_resume(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        body = ndjson([{"touser": f"o_k{i}"} for i in range(CHUNK + 700)])
        cut = body[: len(body) - 3000]  # the first chunk and then some, ending mid-line
        _, writer = await asyncio.open_connection("127.0.0.1", rig.runtime.port)
        writer.write(
            (
                f"POST /v1/batches?template_id={TEMPLATE}&data=%7B%22thing1%22%3A%22x%22%7D "
                "HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/x-ndjson\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        for i in range(0, len(cut), 40_000):
            part = cut[i : i + 40_000]
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()  # the client goes away before the terminating chunk

        async def incomplete() -> dict[str, Any] | None:
            _, listing = await rig.api.get("/v1/batches?limit=1")
            items = listing["items"]
            return items[0] if items and items[0]["status"] == "incomplete" else None

        batch = await wait_until(incomplete, 10, "the batch to be marked incomplete")
        assert batch["total"] >= CHUNK and batch["counts"] == {"queued": batch["total"]}
        await asyncio.sleep(0.3)
        assert rig.sim.state.requests == 0, "nothing of an incomplete batch is sent"

        status, resumed = await rig.api.post(f"/v1/batches/{batch['id']}/resume", {})
        assert status == 200, resumed
        done = await wait_batch(rig, batch["id"], "done")
        assert rig.sim.state.delivered == done["total"] == batch["total"]


async def test_pause_resume_and_rate_change_while_it_runs(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        rows = [{"touser": f"o_r{i}"} for i in range(400)]
        status, answer = await rig.api.post(
            "/v1/batches",
            {
                "template_id": TEMPLATE,
                "data": {"thing1": "x"},
                "recipients": rows,
                "rate_per_s": 50,
            },
        )
        assert status == 202, answer
        batch_id = answer["id"]
        start = time.monotonic()
        await asyncio.sleep(1.0)
        early = rig.sim.state.delivered
        assert 20 <= early <= 50 * (time.monotonic() - start) + 60, early  # held to ~50/s

        status, paused = await rig.api.post(f"/v1/batches/{batch_id}/pause", {})
        assert status == 200 and paused["status"] == "paused"
        await asyncio.sleep(0.5)  # in-flight sends finish
        at_pause = rig.sim.state.delivered
        await asyncio.sleep(1.0)
        assert rig.sim.state.delivered == at_pause, "a paused batch sends nothing"

        async with rig.api.session.patch(
            f"/v1/batches/{batch_id}", json={"rate_per_s": 5000}
        ) as resp:
            patched = await resp.json()
            assert resp.status == 200 and patched["rate_per_s"] == 5000, patched
        async with rig.api.session.patch(f"/v1/batches/{batch_id}", json={"rate_per_s": 0}) as resp:
            assert resp.status == 400
        status, resumed = await rig.api.post(f"/v1/batches/{batch_id}/resume", {})
        assert status == 200 and resumed["status"] == "running"
        resumed_at = time.monotonic()
        await wait_batch(rig, batch_id, "done", timeout_s=10)
        assert time.monotonic() - resumed_at < 4, "the faster rate applied to the rest"
        assert rig.sim.state.delivered == 400


async def test_results_of_an_unknown_batch_and_bad_format(tmp_path: Path) -> None:
    async with running_rig(tmp_path) as rig:
        async with rig.api.session.get("/v1/batches/nope/results") as resp:
            assert resp.status == 404
        _, answer = await rig.api.post(
            "/v1/batches", {"template_id": TEMPLATE, "data": {}, "recipients": [{"touser": "o"}]}
        )
        async with rig.api.session.get(
            f"/v1/batches/{answer['id']}/results", params={"format": "xml"}
        ) as resp:
            assert resp.status == 400
        headers = {"Authorization": "Bearer wrong"}
        async with (
            aiohttp.ClientSession() as anon,
            anon.get(
                f"{rig.runtime.url}/v1/batches/{answer['id']}/results", headers=headers
            ) as resp,
        ):
            assert resp.status == 401
