"""`--role api` and `--role worker` on one PostgreSQL: what an api-only gateway accepts, a
worker-only gateway (another Runtime, its own pool and connections) delivers exactly once,
woken by NOTIFY rather than by polling the table while it had nothing to do."""

from __future__ import annotations

from pathlib import Path

from support.e2e import APP_A, Api, build_settings, free_port, sim_config
from support.multiproc import repeats, sim_sends
from support.wait import wait_until
from wxgate.runtime import Runtime
from wxgate.sim.testing import running_simulator
from wxgate.store.postgres import PostgresStore

N = 300


async def test_an_api_gateway_and_a_worker_gateway_share_postgres(
    tmp_path: Path, postgres_db: str
) -> None:
    port = free_port()
    async with running_simulator(sim_config(port)) as sim:
        store = {"url": postgres_db, "pool_size": 4}
        (tmp_path / "api").mkdir()
        (tmp_path / "worker").mkdir()
        api_settings = build_settings(tmp_path / "api", port, sim.base_url, store=store)
        worker_settings = build_settings(
            tmp_path / "worker", free_port(), sim.base_url, store=store
        )
        async with (
            Runtime(api_settings, role="api") as api_gw,
            Runtime(worker_settings, role="worker") as worker_gw,
        ):
            worker_store = worker_gw.store
            assert isinstance(worker_store, PostgresStore)
            await wait_until(
                lambda: worker_store._wakeups.skipped > 0, 10, "the idle worker to stop querying"
            )
            api = Api(api_gw.url)
            try:
                ids = await api.send_many(N, lambda i: f"o_{i}")
                await wait_until(
                    lambda: sim.state.delivered >= N,
                    60,
                    f"{N} deliveries by the worker gateway",
                    progress=lambda: sim.state.stats(),
                )
                sent_ids, _ = await sim_sends(sim, APP_A.appid)
                assert sorted(sent_ids) == sorted(ids)
                assert repeats(sent_ids) == []
                assert api_gw.pool is None, "the api gateway sent nothing itself"
            finally:
                await api.close()
