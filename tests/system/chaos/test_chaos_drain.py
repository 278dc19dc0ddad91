"""SIGTERM under load drains: the process finishes its in-flight sends, puts back what it held,
exits 0 within drain_timeout_s, and after a restart every message goes out exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from support.e2e import APP_A, db_query, db_status_counts, free_port, gateway_process, sim_config
from support.wait import wait_until
from wxgate.sim.testing import running_simulator

BATCHES = 2
BATCH_SIZE = 1_000
TOTAL = BATCHES * BATCH_SIZE
DRAIN_TIMEOUT_S = 5.0


@pytest.mark.timeout(90)
async def test_sigterm_under_load_drains_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "wxgate.db"
    # 200 ms per send: a SIGTERM always finds sends in flight.
    async with (
        running_simulator(sim_config(port, latency_ms=200.0)) as sim,
        gateway_process(
            tmp_path,
            port,
            sim.base_url,
            workers={"concurrency": 128, "drain_timeout_s": DRAIN_TIMEOUT_S},
            app_overrides={"max_concurrency": 128},
        ) as (gw, api),
    ):
        await api.send_batches(BATCHES, BATCH_SIZE)
        await wait_until(lambda: sim.state.delivered >= 500, 30, "500 deliveries")

        before = db_status_counts(db_file)
        assert before.get("sending", 0) > 0, f"sends in flight at the SIGTERM: {before}"
        started = time.monotonic()
        gw.terminate()
        code = await gw.wait_exit(DRAIN_TIMEOUT_S + 5.0)
        took = time.monotonic() - started
        assert code == 0, gw.log()
        assert took < DRAIN_TIMEOUT_S, f"drained in {took:.1f}s"

        # Nothing is left under a lease, every send WeChat took was recorded, and what
        # was put back is unharmed (no error, no attempt).
        after = db_status_counts(db_file)
        assert after.get("sending", 0) == 0, after
        delivered_before_restart = sim.state.delivered
        assert after.get("sent", 0) + after.get("delivered", 0) == delivered_before_restart
        assert delivered_before_restart < TOTAL, "the SIGTERM came while work was left"
        harmed = db_query(
            db_file,
            "SELECT COUNT(*) FROM messages WHERE status NOT IN ('sent', 'delivered') "
            "AND (attempts > 0 OR last_errcode IS NOT NULL)",
        )[0][0]
        assert harmed == 0

        gw.start()
        await gw.wait_ready()
        await wait_until(
            lambda: sim.state.delivered >= TOTAL,
            30,
            "everything delivered after the restart",
            progress=lambda: db_status_counts(db_file),
        )
        rows = await sim.deliveries(app=APP_A.appid)
        ids = [r["client_msg_id"] for r in rows]
        assert len(ids) == len(set(ids)) == TOTAL
        stored = {str(r[0]) for r in db_query(db_file, "SELECT id FROM messages")}
        assert set(ids) == stored
        # A drained message was either sent to the end or never sent: nothing was re-sent.
        assert sim.state.deduplicated == 0
        counts = {s: n for s, n in db_status_counts(db_file).items() if n}
        assert set(counts) <= {"sent", "delivered"}, counts
