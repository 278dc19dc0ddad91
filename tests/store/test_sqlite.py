"""SQLiteStore: what only a file on disk can show (the contract suite is test_contract.py)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from contract import LEASE_S, enqueue_one, make_message, must_get

from wxgate.clock import FakeClock
from wxgate.errors import ConfigError, StoreUnavailable
from wxgate.models import (
    AppPause,
    Batch,
    ErrorInfo,
    Message,
    SendResult,
    SharedFields,
    Status,
    TokenEntry,
    new_id,
)
from wxgate.store.base import CancelOutcome
from wxgate.store.factory import open_store, sqlite_path
from wxgate.store.sqlite import SQLiteStore
from wxgate.store.sqlite.schema import DDL, _split


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(clock: FakeClock, db_path: str) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    yield s
    await s.close()


async def test_everything_survives_close_and_reopen(clock: FakeClock, db_path: str) -> None:
    s = SQLiteStore(db_path, clock)
    await s.open()
    queued = await enqueue_one(s, clock, idempotency_key="k")
    sent = await enqueue_one(s, clock)
    [held] = [m for m in await s.lease(10, LEASE_S, clock.now()) if m.id == sent]
    await s.ack(sent, held.lease_token, SendResult(42, clock.now()))
    await s.set_token("app_a", TokenEntry("tok", clock.now() + 7200, clock.now()))
    await s.close()

    s = SQLiteStore(db_path, clock)
    await s.open()
    try:
        assert (await must_get(s, queued)).status == Status.SENDING  # leased with the other one
        assert (await must_get(s, sent)).wechat_msgid == 42
        [again] = await s.enqueue([make_message(clock, idempotency_key="k")])
        assert (again.id, again.created) == (queued, False)
        token = await s.get_token("app_a")
        assert token is not None and token.access_token == "tok"
        # Lease tokens keep growing across restarts (they live in the file).
        clock.advance(LEASE_S + 1)
        [m] = await s.lease(10, LEASE_S, clock.now())
        assert m.lease_token > held.lease_token
    finally:
        await s.close()


async def test_two_stores_on_one_file_share_state(clock: FakeClock, db_path: str) -> None:
    a = SQLiteStore(db_path, clock)
    b = SQLiteStore(db_path, clock)
    await a.open()
    await b.open()
    try:
        await a.set_token("app_a", TokenEntry("tok-a", clock.now() + 7200, clock.now()))
        assert (await b.get_token("app_a")) == (await a.get_token("app_a"))
        assert await b.invalidate_token("app_a", "tok-a")
        assert await a.get_token("app_a") is None

        await a.set_pause(AppPause("app_a", clock.now() + 60, "quota", 45009))
        assert [p.app for p in await b.get_pauses()] == ["app_a"]

        assert await a.acquire_lock("refresh:app_a", "proc-a", 30)
        assert not await b.acquire_lock("refresh:app_a", "proc-b", 30)
        await a.release_lock("refresh:app_a", "proc-a")
        assert await b.acquire_lock("refresh:app_a", "proc-b", 30)

        assert await a.incr_quota("app_a", "2024-05-01", 3) == 3
        assert await b.incr_quota("app_a", "2024-05-01", 2) == 5

        # Both lease from one queue: no message twice, tokens distinct.
        await a.enqueue([make_message(clock) for _ in range(50)])
        got_a, got_b = await asyncio.gather(
            a.lease(30, LEASE_S, clock.now()), b.lease(30, LEASE_S, clock.now())
        )
        ids = [m.id for m in got_a + got_b]
        assert len(ids) == len(set(ids)) == 50
    finally:
        await a.close()
        await b.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from wxgate.clock import SystemClock
    from wxgate.models import Message, new_id
    from wxgate.store.sqlite import SQLiteStore

    async def main(path):
        clock = SystemClock()
        store = SQLiteStore(path, clock)
        await store.open()

        async def one(i):
            now = clock.now()
            msg = Message(id=new_id(), app="app_a", touser=f"o_{i}", template_id="t",
                          data={"k": {"value": str(i)}}, created_at=now, not_before=now)
            [res] = await store.enqueue([msg])
            # Only after the store returned: this is what the caller was told.
            sys.stdout.write(res.id + "\\n")
            sys.stdout.flush()

        i = 0
        while True:
            await asyncio.gather(*(one(i + k) for k in range(16)))
            i += 16

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_kill_9_loses_no_accepted_message(clock: FakeClock, db_path: str) -> None:
    """A real SIGKILL while enqueues are in flight: every id the child was given is there."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, db_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    accepted: list[str] = []
    try:
        assert proc.stdout is not None
        while len(accepted) < 500:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                break
            accepted.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err
    assert len(accepted) >= 500, err

    s = SQLiteStore(db_path, clock)
    await s.open()
    try:
        missing = [i for i in accepted if await s.get(i) is None]
        assert missing == []
        stats = await s.stats()
        assert stats.by_status["queued"] >= len(accepted)
    finally:
        await s.close()


async def test_group_commit_shares_transactions(store: SQLiteStore, clock: FakeClock) -> None:
    before = store._writer.groups
    await asyncio.gather(*(store.enqueue([make_message(clock)]) for _ in range(300)))
    assert store._writer.groups - before < 300


async def test_retention_prunes_finished_messages(store: SQLiteStore, clock: FakeClock) -> None:
    await store.enqueue([make_message(clock) for _ in range(3)])
    sent, dead = await store.lease(2, LEASE_S, clock.now())
    [waiting] = await store.lease(1, 10 * 3600, clock.now())
    assert await store.ack(sent.id, sent.lease_token, SendResult(1, clock.now()))
    assert await store.dead(dead.id, dead.lease_token, ErrorInfo(40003, "bad"))
    assert await store.record_receipt("app_a", 999, "success", "ev-orphan") is None
    clock.advance(1800)
    assert await store.prune() == 0
    clock.advance(1801)  # retention_s=3600 after finishing
    assert await store.prune() == 2
    assert await store.get(sent.id) is None
    assert await store.get(dead.id) is None
    assert (await must_get(store, waiting.id)).status == Status.SENDING  # in flight: kept
    stats = await store.stats()
    assert sum(stats.by_status.values()) == 1
    assert stats.pruned_by_app == {"app_a": {"sent": 1, "dead": 1}}  # kept for rates


async def test_writer_prunes_on_its_own(clock: FakeClock, db_path: str) -> None:
    s = SQLiteStore(db_path, clock, retention_s=60, prune_every_s=0.02)
    await s.open()
    try:
        msg_id = await enqueue_one(s, clock)
        [held] = await s.lease(1, LEASE_S, clock.now())
        await s.ack(msg_id, held.lease_token, SendResult(1, clock.now()))
        clock.advance(61)
        for _ in range(200):
            if await s.get(msg_id) is None:
                break
            await asyncio.sleep(0.01)
        assert await s.get(msg_id) is None
    finally:
        await s.close()


def _traced(
    connect: Callable[[], sqlite3.Connection], seen: list[tuple[int, str, str]]
) -> Callable[[], sqlite3.Connection]:
    """`connect`, with every statement run on the connection recorded as (thread ident, thread
    name, SQL): the connection is the real one, only watched."""

    def traced() -> sqlite3.Connection:
        conn = connect()

        def record(sql: str) -> None:
            thread = threading.current_thread()
            seen.append((thread.ident or 0, thread.name, sql))

        conn.set_trace_callback(record)
        return conn

    return traced


async def test_wal_is_checkpointed_off_the_writer(clock: FakeClock, db_path: str) -> None:
    store = SQLiteStore(db_path, clock, retention_s=3600)
    writer_sql: list[tuple[int, str, str]] = []
    checkpointer_sql: list[tuple[int, str, str]] = []
    store._writer._connect = _traced(store._writer._connect, writer_sql)
    store._checkpointer._connect = _traced(store._checkpointer._connect, checkpointer_sql)
    await store.open()
    try:
        await store.enqueue([make_message(clock) for _ in range(500)])
        for _ in range(200):
            if store._checkpointer.runs:
                break
            await asyncio.sleep(0.01)
        assert store._checkpointer.runs > 0
    finally:
        await store.close()
    # The checkpoint ran, on the checkpointer's thread; the writer never ran one.
    checkpoints = [
        (ident, name) for ident, name, sql in checkpointer_sql if "wal_checkpoint" in sql
    ]
    assert checkpoints
    writer_threads = {ident for ident, _, sql in writer_sql if "INSERT" in sql.upper()}
    assert writer_threads, "the enqueue was written by the writer thread"
    assert {name for _, name in checkpoints} == {"wxgate-sqlite-checkpoint"}
    assert not writer_threads & {ident for ident, _ in checkpoints}
    assert not [sql for _, _, sql in writer_sql if "wal_checkpoint" in sql]


async def test_locked_database_is_unavailable(clock: FakeClock, db_path: str) -> None:
    s = SQLiteStore(db_path, clock, busy_timeout_s=0.2)
    await s.open()
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await s.enqueue([make_message(clock)])
        other.execute("ROLLBACK")
        await enqueue_one(s, clock)  # and it recovers
    finally:
        other.close()
        await s.close()


async def test_closed_store_refuses_reads(store: SQLiteStore) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get("x")
    await store.close()


def test_in_memory_database_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ConfigError):
        SQLiteStore(":memory:", clock)
    with pytest.raises(ConfigError):
        SQLiteStore("x.db", clock, synchronous="OFF")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///wxgate.db", "wxgate.db"),
        ("sqlite:///data/q.db", "data/q.db"),
        ("sqlite:////var/lib/wxgate/q.db", "/var/lib/wxgate/q.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://:memory:",
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite:///",
        "sqlite:///q.db?journal=off",
        "sqlite:///q.db?synchronous=OFF",
        "mysql://x",
    ],
)
def test_bad_store_urls(url: str, clock: FakeClock) -> None:
    with pytest.raises(ConfigError):
        open_store(url, clock, 3600)


async def test_open_store_builds_sqlite(clock: FakeClock, tmp_path: Path) -> None:
    s = open_store(f"sqlite:///{tmp_path}/sub/dir/q.db", clock, 3600)
    assert isinstance(s, SQLiteStore)
    await s.open()
    try:
        await enqueue_one(s, clock)
        assert (tmp_path / "sub" / "dir" / "q.db").exists()
    finally:
        await s.close()


async def test_synchronous_full(clock: FakeClock, db_path: str) -> None:
    s = open_store(f"sqlite:///{db_path}?synchronous=FULL", clock, 3600)
    assert isinstance(s, SQLiteStore) and s._synchronous == "FULL"
    await s.open()
    try:
        msg_id = await enqueue_one(s, clock)
        assert (await must_get(s, msg_id)).status == Status.QUEUED
    finally:
        await s.close()


async def test_file_of_an_older_version_is_brought_up_to_date(
    clock: FakeClock, db_path: str
) -> None:
    """Its pending index had an IN list (a temporary b-tree per row written): replaced at open,
    and stats use the new one; its messages (JSON stored as BLOB then) still read back."""
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    await s.close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP INDEX messages_pending_by_created")
    conn.execute(
        "CREATE INDEX messages_pending_created ON messages (created_at) "
        "WHERE status IN ('queued', 'scheduled', 'retrying')"
    )
    conn.execute(
        "INSERT INTO messages (id, app, kind, touser, template_id, data, priority, created_at, "
        "not_before, status, updated_at, due_at) VALUES "
        "('old1', 'app_a', 'template', 'o_1', 'tpl', ?, 'normal', 5.0, 5.0, 'queued', 5.0, 5.0)",
        (b'{"first":{"value":"hi"}}',),
    )
    conn.execute("INSERT INTO counts VALUES ('app_a', 'queued', 1)")
    conn.commit()
    conn.close()
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    try:
        old = await must_get(s, "old1")
        assert old.data == {"first": {"value": "hi"}}
        assert (await s.stats()).oldest_pending_at == 5.0
        conn = sqlite3.connect(db_path)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "messages_pending_created" not in names
        assert "messages_pending_by_created" in names
        conn.close()
    finally:
        await s.close()


def _shared_batch(clock: FakeClock, n: int) -> tuple[Batch, list[Message]]:
    shared = SharedFields(data={"first": {"value": "x" * 2000}}, url="https://example.com/c")
    batch = Batch(
        id=new_id(), app="app_a", template_id="tpl", total=n, created_at=clock.now(), shared=shared
    )
    msgs = [
        make_message(
            clock,
            batch_id=batch.id,
            touser=f"o_{i}",
            data={**shared.data, "name": {"value": f"n{i}"}} if i % 2 else shared.data,
            url=shared.url,
            shared=shared,
        )
        for i in range(n)
    ]
    return batch, msgs


async def test_batch_rows_keep_only_their_own_data(clock: FakeClock, db_path: str) -> None:
    """The shared data is in the batch row once; a row holds its overrides (or `{}`), and a
    store opened afresh (nothing cached) reads every message whole."""
    batch, msgs = _shared_batch(clock, 10)
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    try:
        await s.enqueue(msgs, batch)
    finally:
        await s.close()
    conn = sqlite3.connect(db_path)
    rows = dict(conn.execute("SELECT touser, data FROM messages ORDER BY rowid").fetchall())
    [(shared_raw,)] = conn.execute("SELECT fields FROM batch_shared").fetchall()
    conn.close()
    assert rows["o_0"] == "{}" and rows["o_1"] == '{"name":{"value":"n1"}}'
    assert sum(map(len, rows.values())) < 300 and len(shared_raw) > 2000
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    try:
        for m in msgs:
            got = await must_get(s, m.id)
            assert (got.data, got.url) == (m.data, m.url)
        leased = await s.lease(20, LEASE_S, clock.now())
        assert {m.id: m.data for m in leased} == {m.id: m.data for m in msgs}
    finally:
        await s.close()


async def test_batch_file_of_the_previous_version_still_reads_and_sends(
    clock: FakeClock, db_path: str
) -> None:
    """A file written before batches kept their shared fields (no `shared` columns; every
    batch row holds its data whole) opens, and its batch messages read and lease whole."""
    # The previous version's DDL: today's without messages.shared and the batch_shared table.
    old_ddl, table = DDL.split("CREATE TABLE IF NOT EXISTS batch_shared", 1)
    old_ddl += table.split(");", 1)[1]
    # Older still than the trace columns of messages and webhooks (a later addition).
    old_ddl = "\n".join(x for x in old_ddl.splitlines() if not x.lstrip().startswith("--"))
    old_ddl = re.sub(r",([^\n]*)\n\s*trace TEXT\n", r"\1\n", old_ddl)
    assert "trace" not in old_ddl
    # ... and without messages.redrive_rounds, which came later still
    rounds = "\n    redrive_rounds INTEGER NOT NULL DEFAULT 0  -- scheduled redrive rounds"
    rounds += " (store/base.py)\n"
    assert rounds in old_ddl
    old_ddl = old_ddl.replace("    shared INTEGER," + rounds, "    shared INTEGER\n")
    assert "\n    shared INTEGER\n" in old_ddl
    old_ddl = old_ddl.replace("\n    shared INTEGER\n", "\n").replace("notes BLOB,", "notes BLOB")
    conn = sqlite3.connect(db_path)
    for statement in _split(old_ddl):
        conn.execute(statement)
    assert "shared" not in {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'batch_shared'").fetchall()
    conn.execute(
        "INSERT INTO batches (id, app, template_id, total, created_at, status) "
        "VALUES ('oldb', 'app_a', 'tpl', 1, 5.0, 'running')"
    )
    conn.execute(
        "INSERT INTO messages (id, app, kind, touser, template_id, data, url, batch_id, "
        "priority, created_at, not_before, status, updated_at, due_at) VALUES ('old1', 'app_a', "
        "'template', 'o_1', 'tpl', ?, 'https://example.com/o', 'oldb', 'normal', 5.0, 5.0, "
        "'queued', 5.0, 5.0)",
        ('{"first":{"value":"hi"}}',),
    )
    conn.execute("INSERT INTO counts VALUES ('app_a', 'queued', 1)")
    conn.commit()
    conn.close()
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    try:
        old = await must_get(s, "old1")
        assert (old.data, old.url, old.batch_id) == (
            {"first": {"value": "hi"}},
            "https://example.com/o",
            "oldb",
        )
        [leased] = await s.lease(10, LEASE_S, clock.now())
        assert (leased.id, leased.data, leased.url) == ("old1", old.data, old.url)
        assert leased.redrive_rounds == 0  # the column added by the upgrade
        batch, msgs = _shared_batch(clock, 2)  # and new batches go into the upgraded file
        await s.enqueue(msgs, batch)
        assert (await must_get(s, msgs[1].id)).data == msgs[1].data
    finally:
        await s.close()


async def test_a_file_before_trace_columns_gets_them_at_open(
    clock: FakeClock, db_path: str
) -> None:
    """messages.trace and webhooks.trace are added to an older file at open; its messages
    read with no trace, and new ones keep theirs through to their webhook events."""
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    await s.close()
    conn = sqlite3.connect(db_path)
    conn.execute("ALTER TABLE messages DROP COLUMN trace")
    conn.execute("ALTER TABLE webhooks DROP COLUMN trace")
    conn.execute(
        "INSERT INTO messages (id, app, kind, touser, template_id, data, callback_url, priority, "
        "created_at, not_before, status, updated_at, due_at) VALUES ('old1', 'app_a', "
        "'template', 'o_1', 'tpl', ?, 'https://hooks.example/h', 'normal', 5.0, 5.0, "
        "'queued', 5.0, 5.0)",
        ('{"first":{"value":"hi"}}',),
    )
    conn.execute("INSERT INTO counts VALUES ('app_a', 'queued', 1)")
    conn.commit()
    conn.close()
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    try:
        assert (await must_get(s, "old1")).trace is None
        trace = f"00-{'ab' * 16}-{'cd' * 8}-01"
        new = await enqueue_one(s, clock, callback_url="https://hooks.example/h", trace=trace)
        assert (await must_get(s, new)).trace == trace
        assert await s.cancel("old1") == CancelOutcome.CANCELLED
        assert await s.cancel(new) == CancelOutcome.CANCELLED
        events = await s.lease_webhooks(10, LEASE_S, clock.now())
        assert {(e.message_id, e.trace) for e in events} == {("old1", None), (new, trace)}
    finally:
        await s.close()


async def test_receipts_of_a_file_before_openids_still_apply(
    clock: FakeClock, db_path: str
) -> None:
    """A file made before receipts kept their openid gets the column at open; a receipt
    waiting there (openid NULL: never checked) is still applied at its ack."""
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    await s.close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE receipts")
    conn.execute(
        "CREATE TABLE receipts (app TEXT NOT NULL, event_key TEXT NOT NULL, "
        "wechat_msgid INTEGER NOT NULL, receipt TEXT NOT NULL, received_at REAL NOT NULL, "
        "applied INTEGER NOT NULL, PRIMARY KEY (app, event_key)) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO receipts VALUES ('app_a', 'o:1:77', 77, 'success', 1.0, 0)")
    conn.commit()
    conn.close()
    s = SQLiteStore(db_path, clock, retention_s=3600)
    await s.open()
    try:
        msg_id = await enqueue_one(s, clock)
        [held] = await s.lease(1, LEASE_S, clock.now())
        assert await s.ack(msg_id, held.lease_token, SendResult(77, clock.now())) == (
            Status.DELIVERED
        )
    finally:
        await s.close()


async def test_expired_nonces_do_not_pile_up(store: SQLiteStore, clock: FakeClock) -> None:
    """Every new nonce drops expired ones: the table stays at what the window holds."""
    for i in range(50):
        assert await store.remember_nonce("app_a", f"t:{i}", "d", 10.0, clock.now())
        clock.advance(1.0)
    conn = sqlite3.connect(store.path)
    try:
        (rows,) = conn.execute("SELECT count(*) FROM nonces").fetchone()
    finally:
        conn.close()
    assert rows <= 12
