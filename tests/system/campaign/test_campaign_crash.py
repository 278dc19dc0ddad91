"""kill -9 mid-campaign: a `python -m wxgate serve --config` process dies while a 5,000-recipient
streamed batch is being delivered; after a restart the batch finishes with every recipient
delivered exactly once (the simulator, in this process, sees each one once) and none skipped.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.e2e import (
    API_KEY,
    TEMPLATE,
    db_status_counts,
    free_port,
    gateway_process,
    short_leases,
    sim_config,
)
from support.wait import wait_until
from wxgate.sdk import AsyncGatewayClient
from wxgate.sim.testing import running_simulator

RECIPIENTS = 5_000
KILL_AT = 0.3  # the fraction the simulator has received when the gateway dies
FINAL = {"sent", "delivered"}


def _csv_body() -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["touser", "thing1"])
    for i in range(RECIPIENTS):
        w.writerow([f"o_crash{i}", f"hello {i}"])
    return out.getvalue().encode()


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_kill_9_mid_campaign_every_recipient_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    db_file = tmp_path / "wxgate.db"
    # Jittered answers, as WeChat's are: with one fixed latency the 64 sends of a lease come
    # back together and are acked together, leaving an instant with nothing in flight.
    sim_cfg = sim_config(port, latency_ms=20.0, jitter_ms=40.0)
    async with (
        running_simulator(sim_cfg) as sim,
        gateway_process(
            tmp_path, port, sim.base_url, app_overrides={"max_concurrency": 64}, **short_leases(64)
        ) as (gw, api),
    ):
        async with AsyncGatewayClient(gw.url, API_KEY, timeout=60) as client:
            accepted = await client.upload_batch(TEMPLATE, [_csv_body()], "text/csv")
        assert (accepted.total, accepted.status) == (RECIPIENTS, "running")

        # Kill only while the database shows sends in flight: on a loaded machine a stall
        # of this process (the simulator) can time out every send at once, open the
        # breaker and leave a moment with nothing leased, which would test less.
        await wait_until(
            lambda: (
                sim.state.delivered >= KILL_AT * RECIPIENTS
                and db_status_counts(db_file).get("sending", 0) > 0
            ),
            30,
            "deliveries under way",
            interval_s=0.01,
        )
        gw.kill9()
        in_flight = db_status_counts(db_file).get("sending", 0)
        assert sim.state.delivered < RECIPIENTS, "killed before the campaign was done"
        assert in_flight > 0, "sends were in flight when it died"
        gw.start()
        await gw.wait_ready()

        async def batch_done() -> bool:
            status, body = await api.get(f"/v1/batches/{accepted.id}")
            assert status == 200, body
            return bool(body["status"] == "done")

        await wait_until(
            batch_done, 60, "the batch done", progress=lambda: db_status_counts(db_file)
        )
        counts = {s: n for s, n in db_status_counts(db_file).items() if n}
        assert set(counts) <= FINAL and sum(counts.values()) == RECIPIENTS, counts

        rows = await sim.deliveries()
        users = [r["openid"] for r in rows]
        assert len(users) == len(set(users)) == RECIPIENTS, "each recipient exactly once"
        assert set(users) == {f"o_crash{i}" for i in range(RECIPIENTS)}, "none skipped"
        assert not await sim.duplicates()
        assert {r["data"]["thing1"]["value"] for r in rows if r["openid"] == "o_crash7"} == {
            "hello 7"
        }

        # The per-recipient results agree, one row each, with WeChat's msgid.
        async with api.session.get(f"/v1/batches/{accepted.id}/results") as resp:
            table = list(csv.DictReader(io.StringIO(await resp.text())))
        assert len(table) == RECIPIENTS
        by_user = {r["touser"]: r for r in table}
        assert {int(by_user[r["openid"]]["wechat_msgid"]) for r in rows} == {
            int(r["msgid"]) for r in rows
        }

        # The restarted process counts the leases it took over from the dead one.
        expired = 0.0
        for family in text_string_to_metric_families(await api.metrics_text()):
            for sample in family.samples:
                if sample.name == "wxgate_lease_expirations_total":
                    expired += sample.value
        assert 0 < expired <= in_flight + 64, (expired, in_flight)
