"""`wxgate serve --sandbox --processes 2 --store redis://...` through the real CLI: one simulator
in the parent, two gateway processes on one port (SO_REUSEPORT). Both take requests; every one
answers with the deployment's numbers (stats, dead letters, batch progress); a child killed
with -9 is reported and restarted; SIGTERM drains both and the parent exits 0. A group that
cannot start at all exits 1 rather than restarting forever."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.gateway_process import ServeProcess
from support.multiproc import metric, scrape
from support.redis_server import RedisServer
from support.wait import wait_until
from wxgate.sandbox import SANDBOX_APP, SANDBOX_KEY, free_port

GOOD, INVALID, BATCH = 381, 20, 100
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _fresh(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    """One request on a connection of its own, so the kernel picks a listener each time."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
        s.request(method, url, headers=AUTH, timeout=aiohttp.ClientTimeout(total=10), **kw) as r,
    ):
        return r.status, await r.json(content_type=None)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_processes_2_with_sandbox_and_redis_via_the_cli(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ServeProcess(
        ["--sandbox", "--processes", "2", "--store", private_redis.url(), "--port", str(port)],
        port,
        tmp_path / "serve.log",
    )
    pids: list[int] = []
    try:
        serve.start()
        banner = await wait_until(
            lambda: re.search(r"processes 2: pids (\d+) (\d+)", serve.log()),
            60,
            "the banner naming both processes",
            progress=serve.log,
        )
        pids = [int(banner[1]), int(banner[2])]
        await serve.wait_ready()

        sem = asyncio.Semaphore(16)

        async def send(touser: str) -> str:
            async with sem:
                status, body = await _fresh(
                    "POST",
                    f"{url}/v1/messages",
                    json={"touser": touser, "template_id": "tpl_order", "data": {"thing1": "x"}},
                )
            assert status == 202, (status, body)
            return str(body["id"])

        ids = await asyncio.gather(
            *(send(f"o_{i}") for i in range(GOOD)),
            *(send(f"o_invalid_{i}") for i in range(INVALID)),
        )
        assert len(set(ids)) == GOOD + INVALID
        status, batch = await _fresh(
            "POST",
            f"{url}/v1/batches",
            json={
                "template_id": "tpl_order",
                "data": {"thing1": "x"},
                "recipients": [{"touser": f"o_batch_{i}"} for i in range(BATCH)],
            },
        )
        assert status == 202, batch
        accepted = GOOD + INVALID + BATCH  # odd, so the two processes cannot count the same

        # Each process counts what it accepted; scrapes on fresh connections reach both.
        seen = {
            metric(await scrape(url), "wxgate_messages_accepted_total", app=SANDBOX_APP)
            for _ in range(40)
        }
        assert len(seen) == 2 and sum(seen) == accepted and min(seen) > 0, seen

        async def settled() -> bool:
            """Whichever process answers, it has the deployment's numbers: receipts posted to
            either one, dead letters and batch progress included."""
            status, stats = await _fresh("GET", f"{url}/v1/stats")
            assert status == 200, stats
            counts = stats["by_status"]
            _, dead = await _fresh("GET", f"{url}/v1/dead-letters?limit=100")
            _, progress = await _fresh("GET", f"{url}/v1/batches/{batch['id']}")
            return (
                counts["delivered"] == GOOD + BATCH
                and counts["dead"] == INVALID
                and sorted(m["touser"] for m in dead["items"])
                == sorted(f"o_invalid_{i}" for i in range(INVALID))
                and progress["counts"] == {"delivered": BATCH}
            )

        await wait_until(settled, 60, "every message delivered or dead")
        for _ in range(10):
            assert await settled()

        # A child killed with -9 is reported and replaced; the group keeps serving.
        os.kill(pids[0], signal.SIGKILL)
        back = await wait_until(
            lambda: re.search(r"gateway process 0 is back \(pid (\d+)\)", serve.log()),
            30,
            "the killed process to be restarted",
            progress=serve.log,
        )
        assert "exited unexpectedly (killed by SIGKILL)" in serve.log()
        pids = [int(back[1]), pids[1]]
        for i in range(20):
            status, _ = await _fresh(
                "POST",
                f"{url}/v1/messages",
                json={"touser": f"o_after_{i}", "template_id": "tpl_order", "data": {"t": "x"}},
            )
            assert status == 202

        serve.send_signal(signal.SIGTERM)
        assert await serve.wait_exit(30) == 0, serve.log()
        assert not any(_alive(p) for p in pids), "the children exited with the parent"
        assert serve.log().count("signal received: draining") == 3, serve.log()
    finally:
        serve.stop(extra_pids=[p for p in pids if _alive(p)])


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_a_group_whose_store_is_unreachable_exits_2_before_starting_any(
    tmp_path: Path,
) -> None:
    """The parent opens the shared store first: an unreachable Redis is two lines naming it
    and exit 2 (cli/startup_errors.py), with no child started, none restarted."""
    port = free_port()
    redis_port = free_port()
    dead_redis = f"redis://127.0.0.1:{redis_port}/0"  # nothing listens there
    serve = ServeProcess(
        ["--sandbox", "--processes", "2", "--store", dead_redis, "--port", str(port)],
        port,
        tmp_path / "serve.log",
    )
    try:
        serve.start()
        assert await serve.wait_exit(45) == 2, serve.log()
        assert f"cannot reach Redis at 127.0.0.1:{redis_port}" in serve.log(), serve.log()
        assert "gateway process" not in serve.log() and "restarting" not in serve.log()
        assert "Traceback" not in serve.log()
    finally:
        serve.stop()
