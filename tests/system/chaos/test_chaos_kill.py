"""kill -9 under load, twice: no accepted message is lost, none reaches a user twice.

The gateway runs as `python -m wxgate serve --config FILE` on a SQLite file; the simulator
runs in this process with 30-70 ms of latency, so hundreds of sends are in flight when the
gateway dies. Expired leases (lease_s is short) bring those messages back after a restart,
and WeChat's client_msg_id dedupe drops the re-sends of ones it had already taken.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from support.e2e import (
    APP_A,
    db_query,
    db_status_counts,
    free_port,
    gateway_process,
    send_through_crashes,
    short_leases,
    sim_config,
)
from support.wait import wait_until
from wxgate.sim.testing import running_simulator

BATCHES = 8
BATCH_SIZE = 1_000
SINGLES = 2_000
TOTAL = BATCHES * BATCH_SIZE + SINGLES
KILL_AT = (0.2, 0.55)  # fractions of TOTAL the simulator has delivered when we kill
FINAL = {"sent", "delivered"}


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {s: n for s, n in counts.items() if n}


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_kill_9_twice_under_load_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    port = free_port()
    db_file = tmp_path / "wxgate.db"
    # Jittered answers, as WeChat's are: hundreds of sends in flight at any moment.
    sim_cfg = sim_config(port, latency_ms=30.0, jitter_ms=40.0)
    async with (
        running_simulator(sim_cfg) as sim,
        gateway_process(
            tmp_path,
            port,
            sim.base_url,
            app_overrides={"max_concurrency": 256},
            **short_leases(256),
        ) as (gw, api),
    ):
        # Batches commit 8,000 messages in a few requests...
        batch_ids = await api.send_batches(BATCHES, BATCH_SIZE)
        # ...and 2,000 singles trickle in across both crashes, each retried under its
        # idempotency key until it gets a 202.
        singles: dict[str, str] = {}
        keys = [f"single-{i}" for i in range(SINGLES)]
        feeding = asyncio.create_task(
            send_through_crashes(gw.url, keys, singles, concurrency=4, pause_s=0.01)
        )

        in_flight_at_kill = []
        for fraction in KILL_AT:
            await wait_until(  # and only while the database shows sends in flight
                lambda f=fraction: (
                    sim.state.delivered >= f * TOTAL
                    and db_status_counts(db_file).get("sending", 0) > 0
                ),
                60,
                f"{fraction:.0%} delivered",
                interval_s=0.01,
            )
            gw.kill9()
            delivered_at_kill = sim.state.delivered
            # What the dead process held under lease: sends that were in flight.
            in_flight_at_kill.append(db_status_counts(db_file).get("sending", 0))
            assert delivered_at_kill < TOTAL, "killed before the work was done"
            gw.start()
            await gw.wait_ready()

        lost_posts = await feeding
        assert len(singles) == SINGLES

        def all_final() -> bool:
            counts = _nonzero(db_status_counts(db_file))
            return sum(counts.values()) == TOTAL and set(counts) <= FINAL

        await wait_until(
            all_final,
            60,
            "every message final",
            progress=lambda: (db_status_counts(db_file), sim.state.delivered),
        )

        # Accepted: every single's 202 id, and every member of every 202'd batch.
        accepted = set(singles.values())
        assert len(accepted) == SINGLES, "one message per idempotency key, crash or not"
        for batch_id in batch_ids:
            members = db_query(db_file, "SELECT id FROM messages WHERE batch_id = ?", batch_id)
            assert len(members) == BATCH_SIZE, batch_id
            accepted.update(str(m[0]) for m in members)
        assert len(accepted) == TOTAL
        stored = db_query(db_file, "SELECT COUNT(*) FROM messages")[0][0]
        assert stored == TOTAL, "a POST retried after a crash made no second message"

        rows = await sim.deliveries(app=APP_A.appid)
        delivered = [r["client_msg_id"] for r in rows]
        assert set(delivered) == accepted, (
            f"lost: {len(accepted - set(delivered))}, unknown: {len(set(delivered) - accepted)}"
        )
        assert len(delivered) == TOTAL, "no user saw a message twice"
        assert not await sim.duplicates()
        assert sim.state.delivered == TOTAL
        counts = _nonzero(db_status_counts(db_file))
        assert set(counts) <= FINAL, f"nothing dead, failed or stuck: {counts}"
        assert all(n > 0 for n in in_flight_at_kill), (
            f"sends were in flight at each kill: {in_flight_at_kill}"
        )
        print(
            f"in flight at kills {in_flight_at_kill}, re-sends deduplicated by WeChat "
            f"{sim.state.deduplicated}, POSTs lost to the crashes {lost_posts}"
        )
