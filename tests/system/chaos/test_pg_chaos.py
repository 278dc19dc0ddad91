"""Chaos on PostgreSQL, on real servers.

- The store itself stopped abruptly (`pg_ctl stop -m immediate`, a private server of this
  test's own) while messages are posted with idempotency keys: every POST while it is down is
  a 503 with Retry-After (never a 500, never a 202), and once it is started again on the same
  port and data directory (crash recovery replays the WAL) every 202 is delivered, once.
- kill -9 of a `python -m wxgate serve` process under load, twice, on the session's
  PostgreSQL (the mirror of test_chaos_kill on SQLite): nothing accepted is lost, no user sees
  a message twice, and a POST retried after a crash makes no second message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from support.e2e import (
    API_KEY,
    APP_A,
    DATA,
    TEMPLATE,
    free_port,
    gateway_process,
    running_rig,
    send_through_crashes,
    short_leases,
    sim_config,
)
from support.multiproc import repeats, send_keys, sim_sends
from support.postgres_server import PostgresServer
from support.wait import wait_until
from wxgate.sim.testing import running_simulator

pytestmark = pytest.mark.slow
FINAL = {"sent", "delivered"}


async def _post_once(url: str, key: str) -> tuple[int, dict[str, str]]:
    """One POST /v1/messages; its status and headers."""
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/v1/messages",
            json={"touser": f"o_{key}", "template_id": TEMPLATE, "data": DATA},
            headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
            timeout=aiohttp.ClientTimeout(total=10),
        ) as r,
    ):
        return r.status, dict(r.headers)


@pytest.mark.timeout(120)
async def test_postgres_stopped_immediate_and_restarted_loses_nothing(tmp_path: Path) -> None:
    keys = [f"pgr{i}" for i in range(300)]
    server = PostgresServer()
    await asyncio.to_thread(server.start)
    try:
        url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres?connect_timeout=2"
        async with running_rig(
            tmp_path, store={"url": url, "pool_size": 8}, **short_leases(32)
        ) as rig:
            accepted: dict[str, str] = {}
            refusals: list[int] = []
            senders = asyncio.create_task(
                send_keys(rig.runtime.url, keys, accepted, refusals, concurrency=4, give_up_s=90)
            )
            try:
                await wait_until(lambda: len(accepted) >= len(keys) // 4, 60, "a quarter in")
                await asyncio.to_thread(server.stop, "immediate")
                assert server.postmaster_pid() is None, "the server is down"
                await wait_until(lambda: 503 in refusals, 30, "a 503 while the store is down")
                # A new key while down: refused, not accepted (a 202 needs a COMMIT).
                status, headers = await _post_once(rig.runtime.url, "probe-while-down")
                assert status == 503, status
                assert int(headers["Retry-After"]) >= 1
                await asyncio.to_thread(server.start)
                await asyncio.wait_for(senders, 90)
            finally:
                if not senders.done():
                    senders.cancel()
                await asyncio.gather(senders, return_exceptions=True)

            assert len(accepted) == len(keys)
            assert set(refusals) <= {0, 503}, f"only 503s or no answer: {set(refusals)}"
            await wait_until(
                lambda: rig.sim.state.delivered >= len(keys),
                60,
                "every 202 delivered",
                progress=lambda: rig.sim.state.stats(),
            )
            ids, _ = await sim_sends(rig.sim, APP_A.appid)
            # The probe was refused, so it is not among the sends.
            assert set(ids) == set(accepted.values()), "lost or unknown sends"
            assert repeats(ids) == [], "none sent twice"
            print(f"\n{len(refusals)} refusals while PostgreSQL was down or recovering")
    finally:
        await asyncio.to_thread(server.close)


BATCHES = 4
BATCH_SIZE = 1_000
SINGLES = 1_000
TOTAL = BATCHES * BATCH_SIZE + SINGLES
KILL_AT = (0.2, 0.55)


@asynccontextmanager
async def _reader(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


async def _counts(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM messages GROUP BY status")
    return {str(r["status"]): int(r["n"]) for r in rows if r["n"]}


@pytest.mark.timeout(150)
async def test_kill_9_of_a_gateway_on_postgres_loses_nothing(
    tmp_path: Path, postgres_db: str
) -> None:
    port = free_port()
    sim_cfg = sim_config(port, latency_ms=30.0, jitter_ms=40.0)
    async with (
        running_simulator(sim_cfg) as sim,
        gateway_process(
            tmp_path,
            port,
            sim.base_url,
            app_overrides={"max_concurrency": 256},
            store={"url": postgres_db},
            **short_leases(256),
        ) as (gw, api),
        _reader(postgres_db) as db,
    ):
        batch_ids = await api.send_batches(BATCHES, BATCH_SIZE)
        singles: dict[str, str] = {}
        keys = [f"single-{i}" for i in range(SINGLES)]
        feeding = asyncio.create_task(
            send_through_crashes(gw.url, keys, singles, concurrency=4, pause_s=0.01)
        )
        in_flight_at_kill = []
        for fraction in KILL_AT:

            async def due(f: float = fraction) -> bool:
                return (
                    sim.state.delivered >= f * TOTAL and (await _counts(db)).get("sending", 0) > 0
                )

            await wait_until(due, 60, f"{fraction:.0%} delivered", interval_s=0.02)
            gw.kill9()
            in_flight_at_kill.append((await _counts(db)).get("sending", 0))
            assert sim.state.delivered < TOTAL, "killed before the work was done"
            gw.start()
            await gw.wait_ready()

        lost_posts = await feeding
        assert len(singles) == SINGLES

        async def all_final() -> bool:
            counts = await _counts(db)
            return sum(counts.values()) == TOTAL and set(counts) <= FINAL

        await wait_until(
            all_final, 60, "every message final", progress=lambda: _counts(db), interval_s=0.2
        )
        accepted = set(singles.values())
        assert len(accepted) == SINGLES, "one message per idempotency key, crash or not"
        for batch_id in batch_ids:
            members = await db.fetch("SELECT id FROM messages WHERE batch_id = $1", batch_id)
            assert len(members) == BATCH_SIZE, batch_id
            accepted.update(str(m["id"]) for m in members)
        assert len(accepted) == TOTAL
        assert await db.fetchval("SELECT count(*) FROM messages") == TOTAL, "no second message"

        ids, _ = await sim_sends(sim, APP_A.appid)
        assert set(ids) == accepted, (
            f"lost: {len(accepted - set(ids))}, unknown: {len(set(ids) - accepted)}"
        )
        assert repeats(ids) == [], "no user saw a message twice"
        assert not await sim.duplicates()
        assert all(n > 0 for n in in_flight_at_kill), in_flight_at_kill
        print(
            f"\nin flight at kills {in_flight_at_kill}, re-sends deduplicated by WeChat "
            f"{sim.state.deduplicated}, POSTs lost to the crashes {lost_posts}"
        )
