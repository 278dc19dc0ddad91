"""What only the PostgreSQL store has: versioned migrations under an advisory lock, several
processes leasing one table without sharing a message, counts that stay small, failures mapped
to StoreUnavailable, and libpq multi-host URLs. The shared contract is test_contract.py."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from support.postgres_server import PostgresServer, free_port
from support.store import LEASE_S, make_message
from support.wait import wait_until
from wxgate.clock import FakeClock
from wxgate.errors import StoreError, StoreUnavailable
from wxgate.models import SendResult
from wxgate.store.postgres import PostgresStore
from wxgate.store.postgres.migrate import code_version


def _store(url: str, clock: FakeClock, schema: str, **kw: object) -> PostgresStore:
    return PostgresStore(url, clock, retention_s=3600, schema=schema, pool_size=4, **kw)  # type: ignore[arg-type]


def _schema() -> str:
    return f"wxp{uuid.uuid4().hex[:10]}"


async def _fetch(url: str, schema: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def test_processes_starting_at_once_apply_each_migration_once(postgres_url: str) -> None:
    clock, schema = FakeClock(), _schema()
    stores = [_store(postgres_url, clock, schema) for _ in range(6)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        rows = await _fetch(postgres_url, schema, "SELECT version FROM schema_migrations")
        assert [r[0] for r in rows] == list(range(1, code_version() + 1))
        await stores[0].enqueue([make_message(clock)])
        assert (await stores[-1].stats()).by_status["queued"] == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_schema_newer_than_the_code_is_refused(postgres_url: str) -> None:
    clock, schema = FakeClock(), _schema()
    first = _store(postgres_url, clock, schema)
    await first.open()
    await first.close()
    conn = await asyncpg.connect(postgres_url, server_settings={"search_path": schema})
    try:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'next')")
    finally:
        await conn.close()
    later = _store(postgres_url, clock, schema)
    with pytest.raises(StoreError, match="newer than this wxgate"):
        await later.open()
    with pytest.raises(StoreUnavailable):
        await later.ping()  # never opened


async def test_an_unreachable_server_is_unavailable_and_the_password_stays_out() -> None:
    url = f"postgresql://wx:hunter2-secret@127.0.0.1:{free_port()}/nowhere"
    store = _store(url, FakeClock(), "public", connect_timeout_s=2.0)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)


async def test_a_multi_host_url_skips_a_dead_host(postgres_url: str) -> None:
    """libpq's failover form: the first host is down, read-write picks the live primary."""
    rest = postgres_url.removeprefix("postgresql://postgres@")
    hostport, _, db = rest.partition("/")
    url = (
        f"postgresql://postgres@127.0.0.1:{free_port()},{hostport}/{db}"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    clock, schema = FakeClock(), _schema()
    store = _store(url, clock, schema)
    await store.open()
    try:
        [res] = await store.enqueue([make_message(clock)])
        assert (await store.get(res.id)) is not None
    finally:
        await store.close()


async def test_two_processes_leasing_at_once_never_share_a_message(postgres_url: str) -> None:
    clock, schema = FakeClock(), _schema()
    a, b = _store(postgres_url, clock, schema), _store(postgres_url, clock, schema)
    await a.open()
    await b.open()
    try:
        msgs = [make_message(clock, app=f"app_{i % 3}") for i in range(600)]
        await a.enqueue(msgs)
        taken: list[str] = []

        async def drain(store: PostgresStore) -> None:
            while leased := await store.lease(25, LEASE_S, clock.now()):
                taken.extend(m.id for m in leased)
                for m in leased:
                    assert await store.ack(m.id, m.lease_token, SendResult(None, clock.now()))

        await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
        assert sorted(taken) == sorted(m.id for m in msgs)
        stats = await b.stats()
        assert stats.by_status["sent"] == 600
        assert stats.by_status["sending"] == stats.by_status["queued"] == 0
        # The counters stay a handful of rows however many messages moved.
        rows = await _fetch(postgres_url, schema, "SELECT count(*) FROM counts")
        assert rows[0][0] <= 3 * 3 * 16
    finally:
        await a.close()
        await b.close()


async def test_retention_drops_a_day_partition_once_all_of_it_is_past(postgres_url: str) -> None:
    """Finished messages live in their day's partition, dropped whole once the day's end is
    retention_s ago: kept at least retention_s, at most a day longer."""
    clock, schema = FakeClock(), _schema()
    store = _store(postgres_url, clock, schema)
    await store.open()
    try:
        await store.enqueue([make_message(clock) for _ in range(50)])
        for m in await store.lease(50, LEASE_S, clock.now()):
            await store.ack(m.id, m.lease_token, SendResult(None, clock.now()))
        day_end = (clock.now() // 86400 + 1) * 86400
        clock.advance(3601)
        assert await store.prune() == 0  # past retention, but its day partition is not
        clock.advance(day_end + 3600 - clock.now())
        assert await store.prune() == 50
        parts = await _fetch(
            postgres_url,
            schema,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'messages'::regclass "
            f"AND inhrelid::regclass::text = 'messages_d{int(day_end // 86400) - 1}'",
        )
        assert parts[0][0] == 0, "the day's partition was dropped"
        stats = await store.stats()
        assert stats.by_status["sent"] == 0
        assert stats.pruned_by_app == {"app_a": {"sent": 50}}
        rows = await _fetch(postgres_url, schema, "SELECT count(*) FROM messages")
        assert rows[0][0] == 0
    finally:
        await store.close()


async def test_idle_leases_skip_the_query_until_a_notify_or_a_due_time(postgres_url: str) -> None:
    """LISTEN/NOTIFY: an idle process stops querying; another's enqueue wakes it at once,
    and a lease expiring (a crashed holder) or a scheduled message falls due on time."""
    clock, schema = FakeClock(), _schema()
    a, b = _store(postgres_url, clock, schema), _store(postgres_url, clock, schema)
    await a.open()
    await b.open()
    try:
        assert await b.lease(10, LEASE_S, clock.now()) == []
        for _ in range(5):
            assert await b.lease(10, LEASE_S, clock.now()) == []
        assert b._wakeups.skipped == 5

        [res] = await a.enqueue([make_message(clock)])
        got: list[str] = []

        async def b_leases() -> bool:
            got.extend(m.id for m in await b.lease(10, LEASE_S, clock.now()))
            return bool(got)

        await wait_until(b_leases, 10, "b woken by a's enqueue")
        assert got == [res.id]
        assert await b.lease(10, LEASE_S, clock.now()) == []  # idle again, until the lease ends
        skipped = b._wakeups.skipped
        assert await a.lease(10, LEASE_S, clock.now()) == []
        clock.advance(LEASE_S + 1)  # b "crashed": its lease expired, a takes it over
        [taken] = await a.lease(10, LEASE_S, clock.now())
        assert taken.id == res.id
        assert b._wakeups.skipped == skipped

        assert await a.ack(taken.id, taken.lease_token, SendResult(None, clock.now()))
        [later] = await a.enqueue([make_message(clock, delay_s=60)])
        assert await b.lease(10, LEASE_S, clock.now()) == []
        clock.advance(61)
        assert [m.id for m in await b.lease(10, LEASE_S, clock.now())] == [later.id]
    finally:
        await a.close()
        await b.close()


async def test_connections_killed_under_it_are_503_then_replaced(postgres_url: str) -> None:
    """Every connection of the store terminated by the server (what a failover or restart
    does to them): calls fail as StoreUnavailable, never anything else, and the pool
    reconnects by itself; nothing accepted is lost."""
    clock, schema = FakeClock(), _schema()
    store = _store(postgres_url, clock, schema)
    await store.open()
    try:
        [res] = await store.enqueue([make_message(clock)])
        await store.lease(1, LEASE_S, clock.now())  # holds a listening connection too
        conn = await asyncpg.connect(postgres_url)
        try:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'wxgate' "
                "AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        assert killed >= 2
        outcomes: list[str] = []

        async def answers() -> bool:
            try:
                got = await store.get(res.id)
            except StoreUnavailable:
                outcomes.append("503")
                return False
            outcomes.append("ok")
            return got is not None and got.id == res.id

        await wait_until(answers, 10, "the store answering again")
        assert set(outcomes) <= {"503", "ok"}
        await store.ping()
        assert (await store.stats()).by_status["sending"] == 1
    finally:
        await store.close()


async def test_the_private_server_the_suite_falls_back_to_serves_a_store() -> None:
    """Where nothing answers on 5432 the session starts its own server: initdb, start, a store
    on it, stop (here it runs beside the local one, on a free port)."""
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    try:
        url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        clock = FakeClock()
        store = _store(url, clock, _schema())
        await store.open()
        try:
            [res] = await store.enqueue([make_message(clock)])
            assert (await store.get(res.id)) is not None
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.close)
