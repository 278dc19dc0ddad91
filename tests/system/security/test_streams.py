"""Issue 11, Low: deeply nested JSON on every route that decodes JSON is a 400, never a 500
(RecursionError); a bad NDJSON line after a committed chunk leaves the batch `cancelled` as the
README says, not `incomplete` and resumable; the results CSV escapes cells a spreadsheet would
run as formulas."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest

from support.api import AUTH, ApiRig, running_gateway
from support.wait import wait_until
from wxgate.api import batch_upload
from wxgate.api.batch_results import spreadsheet_safe
from wxgate.api.batch_stream import header_from
from wxgate.api.batch_upload import CHUNK
from wxgate.api.body import deeper_than
from wxgate.api.errors import ApiError
from wxgate.models import TokenEntry
from wxgate.settings import AppSettings


def deep_json(shape: str, depth: int) -> bytes:
    if shape == "arrays":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


SHAPES = ("arrays", "objects")
DEPTH = 100_000  # a JSON body
LINE_DEPTH = 10_000  # an NDJSON line: as deep as fits in its 64 KiB


class Unreached:
    """A token broker the deep bodies must never reach: decoding refuses them first."""

    async def get(self, app: AppSettings) -> str:
        raise AssertionError("a deep body reached the token broker")

    async def invalidate(self, app: AppSettings, failed_token: str) -> bool:
        raise AssertionError("a deep body reached the token broker")

    async def peek(self, app: AppSettings) -> TokenEntry | None:
        raise AssertionError("a deep body reached the token broker")


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


async def send(rig: ApiRig, method: str, path: str, body: bytes, ctype: str) -> tuple[int, Any]:
    headers = {**AUTH, "Content-Type": ctype}
    async with rig.client.request(method, path, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def routes(shape: str, batch_id: str) -> dict[str, tuple[str, str, bytes, str]]:
    """Every route that decodes JSON, with a deep value where its body takes one."""
    js, nd = "application/json", "application/x-ndjson"
    deep, line_deep = deep_json(shape, DEPTH), deep_json(shape, LINE_DEPTH)

    def one(value: bytes) -> bytes:
        return b'{"touser": "o_1", "data": {"k": ' + value + b"}}"

    return {
        "message": ("POST", "/v1/messages", one(deep)[:-1] + b', "template_id": "tpl"}', js),
        "batch shared data": (
            "POST",
            "/v1/batches",
            b'{"template_id": "tpl", "recipients": [{"touser": "o"}], "data": {"k": '
            + deep
            + b"}}",
            js,
        ),
        "batch recipient": (
            "POST",
            "/v1/batches",
            b'{"template_id": "tpl", "recipients": [' + one(deep) + b"]}",
            js,
        ),
        "ndjson header line": (
            "POST",
            "/v1/batches",
            b'{"header": {"template_id": "tpl", "data": {"k": ' + line_deep + b"}}}\n",
            nd,
        ),
        "ndjson first line": ("POST", "/v1/batches?template_id=tpl", one(line_deep) + b"\n", nd),
        "batch patch": ("PATCH", f"/v1/batches/{batch_id}", b'{"rate_per_s": ' + deep + b"}", js),
        "requeue": ("POST", "/v1/dead-letters/requeue", b'{"ids": ' + deep + b"}", js),
        "token invalidate": (
            "POST",
            "/v1/apps/shop/access-token/invalidate",
            b'{"access_token": ' + deep + b"}",
            js,
        ),
    }


# Routes whose deep value lands in a free-form (`Any`) field, where msgspec recurses.
FREE_FORM = (
    "message",
    "batch shared data",
    "batch recipient",
    "ndjson header line",
    "ndjson first line",
)


@pytest.mark.parametrize("shape", SHAPES)
async def test_deep_json_is_a_400_on_every_json_route(tmp_path: Path, shape: str) -> None:
    async with running_gateway(tmp_path / "wx.db", broker=Unreached()) as rig:
        status, batch = await rig.post(
            "/v1/batches", {"template_id": "tpl", "data": {}, "recipients": [{"touser": "o"}]}
        )
        assert status == 202, batch
        before = await rig.snapshot()
        for name, (method, path, body, ctype) in routes(shape, batch["id"]).items():
            status, answer = await send(rig, method, path, body, ctype)
            assert status == 400, (name, answer)
            assert answer["error"] == "invalid_request", (name, answer)
            if name in FREE_FORM:  # typed fields refuse the first `[` as the wrong type
                assert "nested too deeply" in answer["message"], (name, answer)
        assert await rig.snapshot() == before, "nothing stored"


async def test_deep_ndjson_line_after_a_committed_chunk_cancels_the_batch(tmp_path: Path) -> None:
    """The README: bad input anywhere is a 400 and the batch is cancelled, nothing of it sent.
    The deep line used to escape as a RecursionError, read as a broken body: `incomplete`,
    with CHUNK messages waiting for a resume."""
    rows = b"".join(b'{"touser": "o_%d"}\n' % i for i in range(CHUNK))
    deep_line = b'{"touser": "o_deep", "data": {"k": ' + deep_json("arrays", LINE_DEPTH) + b"}}\n"
    body = rows + deep_line + b'{"touser": "o_last"}\n'
    async with running_gateway(tmp_path / "wx.db") as rig:
        status, answer = await send(
            rig, "POST", "/v1/batches?template_id=tpl", body, "application/x-ndjson"
        )
        assert (status, answer["field"]) == (400, f"line {CHUNK + 1}"), answer
        assert "nested too deeply" in answer["message"]
        found = re.search(r"batch (\w+) is cancelled", answer["message"])
        assert found, answer
        status, batch = await rig.get(f"/v1/batches/{found.group(1)}")
        assert batch["status"] == "cancelled", batch
        assert batch["counts"] == {"cancelled": CHUNK}, "none of the first chunk is sent"


def test_header_line_and_query_json_are_bounded_before_they_are_compared() -> None:
    """Nesting that decodes (under msgspec's limit) but would be compared as Python objects
    (the query's `data` against the header line's): refused at 32 levels."""
    deep_text = '{"a":' * 900 + '"x"' + "}" * 900
    for query, line, field in (
        ({"data": '{"a":' * 33 + '"x"' + "}" * 33}, None, "data"),
        ({}, {"data": nested(900)}, "header"),
        ({"data": deep_text}, {"data": nested(900)}, "data"),
    ):
        with pytest.raises(ApiError) as caught:
            header_from({"template_id": "tpl", **query}, line)
        assert (caught.value.status, caught.value.field) == (400, field)
    ok = header_from({"template_id": "tpl", "data": '{"k": {"value": "v"}}'}, None)
    assert ok.data == {"k": {"value": "v"}}


def test_deeper_than_counts_levels_without_recursing() -> None:
    assert not deeper_than(nested(32), 32)
    assert deeper_than(nested(33), 32)
    assert deeper_than([[[[1]]]], 3) and not deeper_than([[[1]]], 3)
    assert deeper_than(nested(200_000), 32)  # iterative: no RecursionError of its own
    assert not deeper_than("x", 0) and not deeper_than({"a": 1, "b": [1, 2]}, 2)


FORMULAS = ["=cmd|' /C calc'!A0", "+1", "-1", "@SUM(1)", "\tx", "\rx", '=1+2";=1+2']
PLAIN = ["o_alice", "a=b", "1+1", " =x", "o-1", "'quoted", "x\r=1+2"]  # CR mid-cell: quoted


def test_spreadsheet_safe_leads_formula_cells_with_a_quote() -> None:
    for cell in FORMULAS:
        assert spreadsheet_safe(cell) == "'" + cell
    for cell in PLAIN:
        assert spreadsheet_safe(cell) == cell
    assert spreadsheet_safe(-1) == -1 and spreadsheet_safe(-1.5) == -1.5  # numbers stay numbers


async def test_results_csv_escapes_formula_cells_and_ndjson_keeps_them(tmp_path: Path) -> None:
    async with running_gateway(tmp_path / "wx.db") as rig:
        recipients = [{"touser": t} for t in FORMULAS + PLAIN]
        status, answer = await rig.post(
            "/v1/batches", {"template_id": "tpl", "data": {"k": "v"}, "recipients": recipients}
        )
        assert status == 202, answer
        path = f"/v1/batches/{answer['id']}/results"
        status, text = await rig.get(path, params={"format": "csv"})
        assert status == 200
        got = [row["touser"] for row in csv.DictReader(io.StringIO(text, newline=""))]
        assert sorted(got) == sorted(["'" + t for t in FORMULAS] + PLAIN)
        status, text = await rig.get(path, params={"format": "ndjson"})
        assert status == 200
        raw = {json.loads(line)["touser"] for line in text.splitlines()}
        assert raw == set(FORMULAS + PLAIN), "NDJSON is for programs: exactly as sent"


async def test_a_body_that_breaks_off_leaves_an_incomplete_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other side of the rule: a body that broke off (here its gzip stream turns to junk
    after 150 rows, 100 of them committed) is no verdict on the rows before, so they wait for
    resume or cancel. (The campaign tests cover a client that hangs up.)"""
    monkeypatch.setattr(batch_upload, "CHUNK", 100)
    rows = b"".join(b'{"touser": "o_%d"}\n' % i for i in range(150))
    gz = zlib.compressobj(wbits=31)
    good = gz.compress(rows) + gz.flush(zlib.Z_SYNC_FLUSH)
    async with running_gateway(tmp_path / "wx.db") as rig:
        url = rig.client.make_url("/")
        reader, writer = await asyncio.open_connection(url.host, url.port)
        writer.write(
            b"POST /v1/batches?template_id=tpl HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {AUTH['Authorization']}\r\n".encode()
            + b"Content-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(good), good)
        )
        await writer.drain()

        async def batch(status: str) -> dict[str, Any] | None:
            _, listing = await rig.get("/v1/batches?limit=1")
            items = listing["items"]
            return items[0] if items and items[0]["status"] == status else None

        loading = await wait_until(lambda: batch("loading"), 10, "the upload to begin")
        writer.write(b"40\r\n" + b"\xff" * 64 + b"\r\n")  # not gzip
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b'"error":"upload_broken"' in answer and b"is incomplete" in answer, answer
        done = await batch("incomplete")
        assert done is not None and done["id"] == loading["id"]
        assert (done["total"], done["counts"]) == (100, {"queued": 100}), "kept for a resume"
