"""Delivery throughput of the pool into the simulator (not a test; prints messages/s).

    .venv/bin/python tests/delivery/throughput.py --n 20000
    .venv/bin/python -m wxgate.sim --port 9100 --app wx_bench:bench_secret --latency-ms 0 &
    .venv/bin/python tests/delivery/throughput.py --n 20000 --sim-url http://127.0.0.1:9100

Without --sim-url the simulator runs in this process and shares its CPU core.
The store is a SQLite file in a temp dir; messages are enqueued before the pool starts.
Then the same number of sends go through a bare loop on the same WeChatClient (a semaphore of
`concurrency` tasks, no store): the pool's share of that is its overhead, measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop

from wxgate.clock import SystemClock
from wxgate.delivery.dispatcher import Dispatcher
from wxgate.delivery.workers import WorkerPool
from wxgate.errors import WeChatError
from wxgate.models import Message, new_id
from wxgate.settings import AppSettings, WeChatSettings, WorkerSettings
from wxgate.sim.config import Faults, SimApp, SimConfig
from wxgate.sim.testing import running_simulator
from wxgate.store.sqlite import SQLiteStore
from wxgate.wechat.client import WeChatClient
from wxgate.wechat.tokens import TokenBroker

APPID, SECRET = "wx_bench", "bench_secret"


@contextlib.asynccontextmanager
async def simulator(url: str | None, latency_ms: float) -> AsyncIterator[str]:
    if url:
        yield url
        return
    config = SimConfig(
        apps=[SimApp(appid=APPID, secret=SECRET, daily_quota=10**9)],
        keep_data=False,
        faults=Faults(latency_ms=latency_ms),
    )
    async with running_simulator(config) as sim:
        yield sim.base_url


async def bare_loop(client: WeChatClient, token: str, n: int, concurrency: int) -> float:
    """Sends/s of the client alone: no store, no dispatcher, no pool."""
    sem = asyncio.Semaphore(concurrency)
    now = time.time()
    failures: list[int] = []

    async def one(i: int) -> None:
        message = Message(
            id=new_id(),
            app="bench",
            touser=f"o_bare_{i}",
            template_id="tpl_bench",
            data={"first": {"value": "hello"}},
            created_at=now,
            not_before=now,
        )
        async with sem:
            try:
                await client.send(message, token)
            except WeChatError:
                failures.append(i)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    if failures:
        print(f"bare loop: {len(failures)} sends failed (timeouts on a loaded machine?)")
    return (n - len(failures)) / elapsed


async def main(args: argparse.Namespace) -> None:
    clock = SystemClock()
    async with simulator(args.sim_url, args.latency_ms) as base_url:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(str(Path(tmp) / "bench.db"), clock, retention_s=3600)
            await store.open()
            now = clock.now()
            for start in range(0, args.n, 5000):
                await store.enqueue(
                    [
                        Message(
                            id=new_id(),
                            app="bench",
                            touser=f"o_user_{i}",
                            template_id="tpl_bench",
                            data={"first": {"value": "hello"}},
                            created_at=now,
                            not_before=now,
                        )
                        for i in range(start, min(args.n, start + 5000))
                    ]
                )
            wechat = WeChatSettings(base_url=base_url, pool_size=args.concurrency)
            async with WeChatClient(wechat, clock) as client:
                broker = TokenBroker(client, store, clock)
                app = AppSettings(
                    name="bench",
                    appid=APPID,
                    secret=SECRET,
                    rate_per_s=1e6,
                    daily_quota=10**9,
                    max_concurrency=args.concurrency,
                )
                settings = WorkerSettings(
                    concurrency=args.concurrency, lease_batch=args.lease_batch
                )
                dispatcher = Dispatcher(store, broker, {"bench": app}, settings, clock)
                pool = WorkerPool(store, dispatcher, settings, clock)
                t0 = time.perf_counter()
                cpu0 = time.process_time()
                await pool.start()
                while True:
                    await asyncio.sleep(0.1)
                    state = dispatcher.app_state("bench")
                    assert state is not None
                    if state.sent + state.dead >= args.n:
                        break
                elapsed = time.perf_counter() - t0
                pool_cpu_us = (time.process_time() - cpu0) / args.n * 1e6
                await pool.drain(5)
                cpu0 = time.process_time()
                if args.skip_bare:
                    print(f"pool: {args.n / elapsed:,.0f} msg/s, {pool_cpu_us:.0f} us CPU/msg")
                    return
                bare = await bare_loop(client, await broker.get(app), args.n, args.concurrency)
                bare_cpu_us = (time.process_time() - cpu0) / args.n * 1e6
                print(
                    f"pool: {args.n} messages in {elapsed:.2f} s = {args.n / elapsed:,.0f} msg/s; "
                    f"bare client loop: {bare:,.0f} msg/s; pool/bare = "
                    f"{args.n / elapsed / bare:.0%} (concurrency {args.concurrency}, latency "
                    f"{args.latency_ms} ms in-process, or the external sim's); "
                    f"CPU per message: pool {pool_cpu_us:.0f} us, bare {bare_cpu_us:.0f} us"
                )
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--lease-batch", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--sim-url", default=None)
    parser.add_argument("--skip-bare", action="store_true")
    uvloop.run(main(parser.parse_args()))
