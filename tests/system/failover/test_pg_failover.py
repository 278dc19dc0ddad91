"""PostgreSQL failover under load, on real servers: a primary and a synchronous streaming
standby of our own (support.pg_cluster: `synchronous_commit = on`, the standby named in
`synchronous_standby_names`), the in-process gateway on the multi-host URL with
`target_session_attrs=read-write`, messages posted at a steady rate with idempotency keys.

The primary is killed -9 (postmaster and backends at once); while there is no primary the
gateway answers 503, never 500; the standby is promoted (`pg_ctl promote`) and the gateway
finds it by itself, without a restart. Every message answered 202 reaches WeChat exactly
once (0 lost, 0 twice): a synchronous commit was on the standby before the 202 left.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from support.e2e import APP_A, running_rig, short_leases
from support.multiproc import repeats, send_keys, sim_sends
from support.pg_cluster import PgCluster, is_primary
from support.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

KEYS = 300


async def test_failover_to_the_synchronous_standby_loses_nothing(tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(PgCluster().__enter__)
    try:
        async with running_rig(
            tmp_path, store={"url": cluster.url(), "pool_size": 8}, **short_leases(32)
        ) as rig:
            accepted: dict[str, str] = {}
            refusals: list[int] = []
            keys = [f"pgfo{i}" for i in range(KEYS)]
            senders = asyncio.create_task(
                send_keys(rig.runtime.url, keys, accepted, refusals, concurrency=4, give_up_s=120)
            )
            try:
                await wait_until(lambda: len(accepted) >= KEYS // 4, 60, "a quarter accepted")
                before = len(accepted)
                await asyncio.to_thread(cluster.kill_primary)
                killed_at = time.monotonic()
                # No primary: the gateway refuses (503), it does not fail (500) or accept.
                await wait_until(lambda: 503 in refusals, 30, "a 503 while no primary runs")
                refused_while_down = len(refusals)
                await asyncio.to_thread(cluster.promote)
                promoted_s = time.monotonic() - killed_at
                assert await asyncio.to_thread(is_primary, cluster.standby.port)
                await wait_until(
                    lambda: len(accepted) > before + 20, 60, "accepts again on the new primary"
                )
                await asyncio.wait_for(senders, 120)
            finally:
                if not senders.done():
                    senders.cancel()
                await asyncio.gather(senders, return_exceptions=True)

            assert len(accepted) == KEYS
            assert set(refusals) <= {0, 503}, f"only 503s or no answer: {set(refusals)}"
            await wait_until(
                lambda: rig.sim.state.delivered >= KEYS,
                90,
                f"all {KEYS} delivered",
                progress=lambda: rig.sim.state.stats(),
            )
            ids, _ = await sim_sends(rig.sim, APP_A.appid)
            assert set(ids) == set(accepted.values()), (
                f"lost: {len(set(accepted.values()) - set(ids))}"
            )
            assert repeats(ids) == [], "none reached WeChat twice"

            async def all_acked() -> bool:
                try:
                    counts = await rig.api.by_status()
                except AssertionError:  # a 503 while the pool refills
                    return False
                return counts.get("sent", 0) + counts.get("delivered", 0) == KEYS

            await wait_until(all_acked, 60, "every send acked", progress=rig.api.by_status)
            print(
                f"\npromoted {promoted_s:.1f} s after kill -9; {refused_while_down} refusals "
                f"before the promotion, {len(refusals)} in all; WeChat dropped "
                f"{rig.sim.state.deduplicated} re-sends of leases the dead primary held"
            )
    finally:
        await asyncio.to_thread(cluster.close)
