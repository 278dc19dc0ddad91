"""Issue 11's low findings on the embedded store: access tokens at rest in a private file, and
a full disk (a real one: a 8 MiB tmpfs mounted for the test) that the gateway reports, logs
once and recovers from without a restart, losing nothing it accepted."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.api import msg_body, running_gateway
from support.store import make_message
from support.wait import wait_until
from wxgate.clock import FakeClock
from wxgate.errors import StoreUnavailable
from wxgate.store.sqlite import SQLiteStore

SQLITE_LOG = "wxgate.store.sqlite"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


async def test_sqlite_file_and_its_log_are_created_private(tmp_path: Path) -> None:
    """The file holds access tokens: 0600 whatever the umask (0644 under 022 before)."""
    clock = FakeClock()
    db = tmp_path / "wxgate.db"
    with umask(0o022):
        store = SQLiteStore(str(db), clock)
        await store.open()
        try:
            await store.enqueue([make_message(clock)])
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in (db, db.with_name("wxgate.db-wal"), db.with_name("wxgate.db-shm"))
            }
        finally:
            await store.close()
    assert modes == {"wxgate.db": 0o600, "wxgate.db-wal": 0o600, "wxgate.db-shm": 0o600}


async def test_an_existing_world_readable_file_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator's own file keeps its mode, but a warning says others can read tokens."""
    db = tmp_path / "wxgate.db"
    db.touch(mode=0o644)
    os.chmod(db, 0o644)
    store = SQLiteStore(str(db), FakeClock())
    with caplog.at_level(logging.WARNING, logger=SQLITE_LOG):
        await store.open()
        await store.close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o644
    assert any("mode 644" in r.getMessage() for r in caplog.records), caplog.text


@contextlib.contextmanager
def small_disk(where: Path, size: str = "8m") -> Iterator[Path]:
    """A real filesystem of `size` at `where` (tmpfs, so needs root). A mount that fails fails
    the test: a skipped full-disk test would hide the finding it guards."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"cannot mount a {size} tmpfs for the full-disk test: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Write `path` until the disk has no block left; the bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        for chunk in (1 << 16, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    written += os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return written


def records(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    lines = (r.getMessage() for r in caplog.records if r.name == SQLITE_LOG)
    return [line for line in lines if text in line]


async def test_full_disk_is_not_ready_logged_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SQLITE_LOG)
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "wxgate.db"
        async with running_gateway(db) as gw:
            accepted: list[str] = []
            # Another reader (a backup, say) pins the log, so what is accepted next is still
            # in the log when the disk fills: the checkpoint must then grow the full file.
            pin = sqlite3.connect(db, isolation_level=None)
            pin.execute("BEGIN")
            pin.execute("SELECT count(*) FROM messages").fetchall()
            for i in range(50):
                status, body = await gw.post("/v1/messages", msg_body(touser=f"o_before_{i}"))
                assert status == 202, body
                accepted.append(body["id"])
            assert fill(disk / "filler") > 0
            pin.execute("COMMIT")
            pin.close()

            # Writes are refused with a clear 503 (never a 500); nothing refused is stored.
            refused = None
            for i in range(2000):
                status, body = await gw.post("/v1/messages", msg_body(touser=f"o_full_{i}"))
                if status == 202:  # the log's slack can still take a few
                    accepted.append(body["id"])
                    continue
                refused = (status, body)
                break
            assert refused is not None, "the full disk never refused a write"
            assert refused[0] == 503 and refused[1]["error"] == "store_unavailable", refused
            status, body = await gw.get("/readyz")
            assert (status, body["status"]) == (503, "store_unavailable")

            checkpointer = gw.store._checkpointer
            await wait_until(lambda: checkpointer.failures >= 4, 15, "repeated checkpoint failures")
            for _ in range(5):  # refused again and again: still one line each
                status, _ = await gw.post("/v1/messages", msg_body(touser="o_full_again"))
                assert status == 503
                status, _ = await gw.get("/readyz")
                assert status == 503
            assert len(records(caplog, "checkpoint failed")) == 1, caplog.text
            assert len(records(caplog, "commits are failing")) == 1, caplog.text

            # Space comes back: ready again, writes accepted, no restart.
            (disk / "filler").unlink()

            async def ready() -> bool:
                status, _ = await gw.get("/readyz")
                return status == 200

            await wait_until(ready, 15, "/readyz ready once the disk has room")
            for i in range(5):
                status, body = await gw.post("/v1/messages", msg_body(touser=f"o_after_{i}"))
                assert status == 202, body
                accepted.append(body["id"])
            await wait_until(lambda: not checkpointer.failing, 15, "the checkpoint to recover")
            assert len(records(caplog, "checkpoint recovered")) == 1, caplog.text
            assert len(records(caplog, "commits succeed again")) == 1, caplog.text
            assert len(records(caplog, "checkpoint failed")) == 1, caplog.text

            for msg_id in accepted:
                status, body = await gw.get(f"/v1/messages/{msg_id}")
                assert (status, body["status"]) == (200, "queued"), (msg_id, body)
        # Closed and read back from the file: exactly what was accepted.
        with contextlib.closing(sqlite3.connect(db)) as conn:
            stored = {row[0] for row in conn.execute("SELECT id FROM messages")}
        assert stored == set(accepted)


def _param(doc: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    params = doc["paths"][path][method]["parameters"]
    found: dict[str, Any] = next(p["schema"] for p in params if p["name"] == name)
    return found


async def test_query_bounds_are_declared_and_enforced(tmp_path: Path) -> None:
    """The schema gaps schemathesis found: what the handlers check, the document says, and
    each is a 400 naming the field (`?errcode=<huge>` was a 500, `?limit=` a 200)."""
    async with running_gateway(tmp_path / "wxgate.db") as gw:
        status, doc = await gw.get("/openapi.json")
        assert status == 200
        assert _param(doc, "get", "/v1/batches", "limit") == {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": 20,
        }
        assert _param(doc, "get", "/v1/dead-letters", "limit")["maximum"] == 1000
        errcode = _param(doc, "get", "/v1/dead-letters", "errcode")
        assert (errcode["minimum"], errcode["maximum"]) == (-(2**31), 2**31 - 1)
        fmt = _param(doc, "get", "/v1/batches/{id}/results", "format")
        assert fmt["enum"] == ["csv", "ndjson"]
        idem = _param(doc, "post", "/v1/messages", "Idempotency-Key")
        assert (idem["minLength"], idem["maxLength"]) == (1, 256)

        refused = [
            ("/v1/batches?limit=", "limit"),
            ("/v1/batches?limit=101", "limit"),
            ("/v1/dead-letters?limit=", "limit"),
            ("/v1/dead-letters?limit=1001", "limit"),
            ("/v1/dead-letters?errcode=", "errcode"),
            ("/v1/dead-letters?errcode=99999999999999999999999", "errcode"),
            ("/v1/dead-letters?errcode=2147483648", "errcode"),
            ("/v1/batches/nope/results?format=xml", "format"),
        ]
        for path, field in refused:
            status, body = await gw.get(path)
            assert (status, body["field"]) == (400, field), (path, body)
        for path in ("/v1/batches?limit=100", "/v1/dead-letters?errcode=-2147483648&limit=1000"):
            status, body = await gw.get(path)
            assert status == 200, (path, body)
        for key in ("", "k" * 257):
            headers = {"Idempotency-Key": key}
            status, body = await gw.post("/v1/messages", msg_body(), headers=headers)
            assert (status, body["field"]) == (400, "idempotency_key"), body
        assert (await gw.snapshot())["by_status"].get("queued", 0) == 0


def _pragma(sql: str) -> Callable[[sqlite3.Connection], Any]:
    return lambda conn: conn.execute(sql).fetchall()


async def test_database_at_its_page_limit_is_refused_not_ready_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLITE_FULL without a full disk (max_page_count): the disk has room, so readiness
    rests on the probe write, which must need new pages as an enqueue does."""
    caplog.set_level(logging.INFO, logger=SQLITE_LOG)
    clock = FakeClock()
    store = SQLiteStore(str(tmp_path / "wxgate.db"), clock)
    await store.open()
    try:
        [[pages]] = await store._write(_pragma("PRAGMA page_count"))
        await store._write(_pragma(f"PRAGMA max_page_count = {pages + 3}"))
        accepted = []
        for _ in range(1000):
            try:
                accepted += await store.enqueue([make_message(clock)])
            except StoreUnavailable as exc:
                assert "full" in str(exc)
                break
        else:
            pytest.fail("the page limit never refused a write")
        for _ in range(20):
            with pytest.raises(StoreUnavailable):
                await store.enqueue([make_message(clock)])
            with pytest.raises(StoreUnavailable):
                await store.ping()
        assert len(records(caplog, "commits are failing")) == 1, caplog.text

        await store._write(_pragma("PRAGMA max_page_count = 1000000"))
        await store.ping()
        accepted += await store.enqueue([make_message(clock)])
        assert len(records(caplog, "commits succeed again")) == 1, caplog.text
        for result in accepted:
            assert await store.get(result.id) is not None
    finally:
        await store.close()
