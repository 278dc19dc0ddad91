"""Redis high availability, what it costs (issue 14): P1 ingest with store.min_replica_acks 0
against 1 (a primary with one replica), and the store's delivery path (lease + ack) on a
3-master Redis Cluster against one primary.

    .venv/bin/python bench/redis_ha.py [--runs 3] [--duration 4] [--messages 20000]

Every Redis here is a redis-server of its own on free loopback ports (started by the tests'
support modules, tests/support/redis_*.py, so the bench and the tests run the same servers),
stopped at the end. P1 is the harness's (wxbench): a role=api gateway process, wrk -c64 after
a 1 s warm-up, runs of the variants interleaved, medians with the min-max spread.

The delivery figure is the store alone, in this process: `--messages` enqueued over 6 apps,
then 4 concurrent loops each leasing 128 and acking them (the acks coalesced as the delivery
pool's are); rate = messages / time to ack them all. It isolates what the topology changes
(the store round trips), not the whole P3 pipeline with its WeChat calls.

"3 prefixes" variants emulate the per-app hash tags of docs/architecture.md §4.5.1 (designed,
not built) with today's code: the same 6 apps split over 3 RedisStores, each with its own key
prefix (so its own `{prefix}` slot on Cluster, chosen so the 3 land on 3 different masters),
and each loop leasing a third of its 128 (or, in the "128 each" rows, 128) from every store
at once, then acking them. On Cluster that is the Redis-side ceiling of spreading apps over
the shards; on one primary it is what the extra per-store calls cost without a spread.
`--delivery-only` skips P1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

import redis  # noqa: E402
from redis.crc import key_slot  # noqa: E402
from wxbench.loadgen import run_wrk  # noqa: E402
from wxbench.procs import free_port  # noqa: E402
from wxbench.services import API_KEY, message_body, start_gateway, write_gateway_config  # noqa: E402

from support.redis_cluster import RedisCluster  # noqa: E402
from support.redis_server import RedisServer  # noqa: E402
from wxgate.clock import SystemClock  # noqa: E402
from wxgate.models import Message, SendResult  # noqa: E402
from wxgate.store.redis import RedisStore  # noqa: E402

OUT = BENCH / "out" / "redis_ha"
APPS = [f"app{i}" for i in range(6)]
LEASE_N = 128
LOOPS = 4


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


@contextlib.contextmanager
def primary_with_replica() -> Iterator[RedisServer]:
    with RedisServer() as primary, RedisServer() as replica:
        with contextlib.closing(redis.Redis(port=replica.port)) as admin:
            admin.replicaof("127.0.0.1", primary.port)
        with contextlib.closing(redis.Redis(port=primary.port, decode_responses=True)) as c:
            deadline = time.monotonic() + 30
            while c.info("replication").get("slave0", {}).get("state") != "online":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not come online")
                time.sleep(0.05)
        yield primary


def p1_run(
    name: str, store_url: str, extra_store: str, duration: float, k: int
) -> dict[str, float]:
    d = OUT / f"p1-{name}-{k}"
    cfg = write_gateway_config(
        d / "gw.toml", port=free_port(), store_url=store_url, sim_url="http://127.0.0.1:9"
    )
    if extra_store:
        text = cfg.read_text().replace("[wechat]", f"{extra_store}\n[wechat]", 1)
        cfg.write_text(text)
    body = d / "message.json"
    body.write_text(json.dumps(message_body(1)))
    gw = start_gateway(d, "gateway", cfg, "api")
    try:
        target = gw.url + "/v1/messages"
        run_wrk(target, body, duration_s=1, connections=64, api_key=API_KEY, log_dir=d, name="w0")
        res = run_wrk(
            target, body, duration_s=duration, connections=64, api_key=API_KEY, log_dir=d, name="w"
        )
    finally:
        gw.proc.stop()
    return {"rate": res.ok_per_s, "p99_ms": res.latency_ms["p99"], "p50_ms": res.latency_ms["p50"]}


def spread_prefixes(cluster: RedisCluster, base: str, count: int = 3) -> list[str]:
    """`count` key prefixes whose `{prefix}` tags are owned by `count` different masters (CLUSTER
    SLOTS of the running cluster), so each store of a spread run is on a shard of its own."""
    with contextlib.closing(redis.Redis(port=cluster.ports[0])) as c:
        ranges = [(int(r[0]), int(r[1]), int(r[2][1])) for r in c.execute_command("CLUSTER SLOTS")]
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < count:
        prefix = f"{base}s{i}"
        slot = key_slot(f"{{{prefix}}}".encode())
        owner = next(port for lo, hi, port in ranges if lo <= slot <= hi)
        chosen.setdefault(owner, prefix)
        i += 1
    return list(chosen.values())


def _messages(n: int, now: float) -> list[Message]:
    return [
        Message(
            id=f"m{i:08d}",
            app=APPS[i % len(APPS)],
            touser=f"o_{i}",
            template_id="tpl",
            data={"thing1": {"value": "x"}},
            created_at=now,
            not_before=now,
        )
        for i in range(n)
    ]


async def delivery_run(url: str, n: int, prefix: str) -> float:
    clock = SystemClock()
    store = RedisStore(url, clock, retention_s=3600, key_prefix=prefix)
    await store.open()
    try:
        msgs = _messages(n, clock.now())
        for start in range(0, n, 1000):
            await store.enqueue(msgs[start : start + 1000])
        done = 0
        t0 = time.monotonic()

        async def loop() -> None:
            nonlocal done
            while True:
                leased = await store.lease(LEASE_N, 60, clock.now())
                if not leased:
                    return
                sent = SendResult(wechat_msgid=1, sent_at=clock.now())
                await asyncio.gather(*(store.ack(m.id, m.lease_token, sent) for m in leased))
                done += len(leased)

        await asyncio.gather(*(loop() for _ in range(LOOPS)))
        elapsed = time.monotonic() - t0
        if done != n:
            raise RuntimeError(f"acked {done} of {n}")
        return n / elapsed
    finally:
        await store.close()


async def spread_run(url: str, n: int, prefixes: list[str], share: int) -> float:
    """The delivery loop of `delivery_run` over one store per prefix: app i goes to store
    i % len(prefixes), and each loop leases `share` from every store concurrently."""
    clock = SystemClock()
    stores = [RedisStore(url, clock, retention_s=3600, key_prefix=p) for p in prefixes]
    for store in stores:
        await store.open()
    try:
        msgs = _messages(n, clock.now())
        for k, store in enumerate(stores):
            mine = [m for m in msgs if APPS.index(m.app) % len(stores) == k]
            for start in range(0, len(mine), 1000):
                await store.enqueue(mine[start : start + 1000])
        done = 0
        t0 = time.monotonic()

        async def one(store: RedisStore) -> int:
            leased = await store.lease(share, 60, clock.now())
            sent = SendResult(wechat_msgid=1, sent_at=clock.now())
            await asyncio.gather(*(store.ack(m.id, m.lease_token, sent) for m in leased))
            return len(leased)

        async def loop() -> None:
            nonlocal done
            while True:
                got = sum(await asyncio.gather(*(one(s) for s in stores)))
                if not got:
                    return
                done += got

        await asyncio.gather(*(loop() for _ in range(LOOPS)))
        elapsed = time.monotonic() - t0
        if done != n:
            raise RuntimeError(f"acked {done} of {n}")
        return n / elapsed
    finally:
        for store in stores:
            await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument(
        "--delivery-only", action="store_true", help="skip P1 (the gateway and wrk runs)"
    )
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    p1: dict[str, list[dict[str, float]]] = {"acks0": [], "acks1": [], "cluster": []}
    deliver: dict[str, list[float]] = {
        "primary + replica": [],
        "lone primary": [],
        "cluster": [],
        "lone primary, 3 prefixes": [],
        "cluster, 3 prefixes on 3 masters": [],
        "lone primary, 3 prefixes, 128 each": [],
        "cluster, 3 prefixes on 3 masters, 128 each": [],
    }
    with primary_with_replica() as primary, RedisServer() as lone, RedisCluster() as cluster:
        variants: dict[str, Callable[[int], dict[str, float]]] = {
            "acks0": lambda k: p1_run("acks0", primary.url(), "", args.duration, k),
            "acks1": lambda k: p1_run(
                "acks1",
                primary.url(),
                "min_replica_acks = 1\nreplica_ack_timeout_ms = 1000",
                args.duration,
                k,
            ),
            "cluster": lambda k: p1_run("cluster", cluster.url(), "", args.duration, k),
        }
        for k in range(args.runs):
            for name, run in variants.items() if not args.delivery_only else ():
                with contextlib.closing(redis.Redis(port=primary.port)) as c:
                    c.flushall()
                p1[name].append(run(k))
                print(f"P1 {name} run {k + 1}: {p1[name][-1]}", flush=True)
            stores = {"primary + replica": primary.url(), "lone primary": lone.url()}
            for name, url in {**stores, "cluster": cluster.url()}.items():
                prefix = f"bd{k}{name.replace(' ', '')}"
                rate = asyncio.run(delivery_run(url, args.messages, prefix))
                deliver[name].append(rate)
                print(f"deliver {name} run {k + 1}: {rate:,.0f}/s", flush=True)
            third = -(-LEASE_N // 3)
            spreads = {
                "lone primary, 3 prefixes": (lone.url(), [f"bs{k}p{j}" for j in range(3)], third),
                "cluster, 3 prefixes on 3 masters": (
                    cluster.url(),
                    spread_prefixes(cluster, f"bs{k}c"),
                    third,
                ),
                "lone primary, 3 prefixes, 128 each": (
                    lone.url(),
                    [f"bf{k}p{j}" for j in range(3)],
                    LEASE_N,
                ),
                "cluster, 3 prefixes on 3 masters, 128 each": (
                    cluster.url(),
                    spread_prefixes(cluster, f"bf{k}c"),
                    LEASE_N,
                ),
            }
            for name, (url, prefixes, share) in spreads.items():
                rate = asyncio.run(spread_run(url, args.messages, prefixes, share))
                deliver[name].append(rate)
                print(f"deliver {name} run {k + 1}: {rate:,.0f}/s", flush=True)
    if not args.delivery_only:
        print("\n| variant | accepted/s | p99 ms | p50 ms |\n|---|---:|---:|---:|")
    labels = {
        "acks0": "one primary + replica, min_replica_acks 0",
        "acks1": "one primary + replica, min_replica_acks 1",
        "cluster": "3-master Cluster",
    }
    for name, rows in p1.items() if not args.delivery_only else ():
        print(
            f"| {labels[name]} | {_median([r['rate'] for r in rows])} | "
            f"{_median([r['p99_ms'] for r in rows])} | {_median([r['p50_ms'] for r in rows])} |"
        )
    print("\n| store | lease+ack messages/s |\n|---|---:|")
    for name, rates in deliver.items():
        print(f"| {name} | {_median(rates)} |")
    (OUT / "results.json").write_text(json.dumps({"p1": p1, "deliver": deliver}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
