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
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import msg_body, running_gateway
from contract import make_message
from e2e_support import wait_until

from wxgate.clock import FakeClock
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
