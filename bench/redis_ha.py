"""Redis high availability, what it costs (issue 14): P1 ingest with store.min_replica_acks 0
against 1 (a primary with one replica), and the store's delivery path (lease + ack) on a
3-master Redis Cluster against one primary.

    .venv/bin/python bench/redis_ha.py [--runs 3] [--duration 4] [--messages 20000]

Every Redis here is a redis-server of its own on free loopback ports (started by the tests'
support modules, tests/support/redis_*.py, so the bench and the tests run the same servers),
stopped at the end. P1 is the harness's (wxbench): a role=api gateway process, wrk -c64 after
a 1 s warm-up, runs of the variants interleaved, medians with the min-max spread.

The delivery figure is the store alone, in this process: one RedisStore (key prefix
`wxgate`, the default), `--messages` enqueued over its apps, then 4 concurrent loops each
leasing 128 and acking them (the acks coalesced as the delivery pool's are); rate = messages /
time to ack them all. It isolates what the topology changes (the store round trips), not the
whole P3 pipeline with its WeChat calls. Every app's keys sit under a hash tag of its own,
`{prefix:app}` (src/wxgate/store/redis/connection.py), so on the Cluster different apps land on
different slots; the variants:
- one primary, 3 apps, against the 3-master Cluster with 3 apps whose tags 3 different masters
  own (chosen from the cluster's slot map) and with 3 random app names (drawn from a seeded
  generator, a new draw each run, landing wherever CRC16 puts them: often two on one master;
  each run prints the masters);
- one primary, 6 apps (app0..app5), against the Cluster with the same 6 names, and a primary
  with a replica (appendonly no, no WAIT: min_replica_acks 0) with them.
Each delivery run also prints the CPU the client (this process) and every redis-server it uses
spent over the lease + ack phase, as a share of one core (INFO cpu; the JSON's cpu_by_run).
Before each delivery run the nodes it uses are flushed (FLUSHALL), so every run starts empty.
`--delivery-only` skips P1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
PREFIX = "wxgate"
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


def _slot_owners(cluster: RedisCluster) -> list[tuple[int, int, int]]:
    """(first slot, last slot, master port) of every range in CLUSTER SLOTS, by first slot."""
    with contextlib.closing(redis.Redis(port=cluster.ports[0])) as c:
        rows = c.execute_command("CLUSTER SLOTS")
    return sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in rows)


def owner_of(ranges: list[tuple[int, int, int]], app: str) -> int:
    """The master port owning the slot of `app`'s tag `{PREFIX:app}`."""
    slot = key_slot(f"{{{PREFIX}:{app}}}".encode())
    return next(port for lo, hi, port in ranges if lo <= slot <= hi)


def spread_apps(ranges: list[tuple[int, int, int]], count: int = 3) -> list[str]:
    """The first `count` of app0, app1, ... whose tags `count` different masters own."""
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < count:
        chosen.setdefault(owner_of(ranges, f"app{i}"), f"app{i}")
        i += 1
    return list(chosen.values())


def random_apps(run: int, count: int = 3) -> list[str]:
    """`count` app names drawn from a generator seeded by the run: not chosen by their slot."""
    rng = random.Random(run)
    return [f"app-{rng.getrandbits(24):06x}" for _ in range(count)]


def landing(ranges: list[tuple[int, int, int]], apps: list[str]) -> str:
    """Which master each app's tag is on (m0 owns the lowest slots), e.g. `app0:m1 app1:m0`."""
    masters = [port for _, _, port in ranges]
    return " ".join(f"{a}:m{masters.index(owner_of(ranges, a))}" for a in apps)


def server_cpu(ports: list[int]) -> list[float]:
    """CPU seconds (user + sys) each redis-server has used so far (INFO cpu)."""
    out = []
    for port in ports:
        with contextlib.closing(redis.Redis(port=port)) as c:
            info = c.info("cpu")
        out.append(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]))
    return out


def flush(ports: list[int]) -> None:
    for port in ports:
        with contextlib.closing(redis.Redis(port=port)) as c:
            c.flushall()


def _messages(n: int, now: float, apps: list[str]) -> list[Message]:
    return [
        Message(
            id=f"m{i:08d}",
            app=apps[i % len(apps)],
            touser=f"o_{i}",
            template_id="tpl",
            data={"thing1": {"value": "x"}},
            created_at=now,
            not_before=now,
        )
        for i in range(n)
    ]


async def delivery_run(
    url: str, n: int, apps: list[str], ports: list[int]
) -> tuple[float, dict[str, Any]]:
    """Messages acked per second, and the CPU the client (this process) and each redis-server
    of `ports` used over the lease + ack phase, as a share of one core (1.0 = a core busy)."""
    clock = SystemClock()
    store = RedisStore(url, clock, retention_s=3600, key_prefix=PREFIX)
    await store.open()
    try:
        msgs = _messages(n, clock.now(), apps)
        for start in range(0, n, 1000):
            await store.enqueue(msgs[start : start + 1000])
        done = 0
        servers0 = server_cpu(ports)
        cpu0 = time.process_time()
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
        client = (time.process_time() - cpu0) / elapsed
        servers = [(b - a) / elapsed for a, b in zip(servers0, server_cpu(ports), strict=True)]
        if done != n:
            raise RuntimeError(f"acked {done} of {n}")
        return n / elapsed, {"client": round(client, 2), "servers": [round(x, 2) for x in servers]}
    finally:
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
    six = [f"app{i}" for i in range(6)]
    deliver: dict[str, list[float]] = {
        "one primary, 3 apps": [],
        "3-master Cluster, 3 apps on 3 masters": [],
        "3-master Cluster, 3 random app names": [],
        "one primary, 6 apps": [],
        "3-master Cluster, 6 apps": [],
        "one primary + replica, 6 apps": [],
    }
    placed: dict[str, list[str]] = {name: [] for name in deliver if "Cluster" in name}
    cpu: dict[str, list[dict[str, Any]]] = {name: [] for name in deliver}
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
            ranges = _slot_owners(cluster)
            masters = [port for _, _, port in ranges]
            runs: dict[str, tuple[str, list[int], list[str]]] = {
                "one primary, 3 apps": (lone.url(), [lone.port], six[:3]),
                "3-master Cluster, 3 apps on 3 masters": (
                    cluster.url(),
                    masters,
                    spread_apps(ranges),
                ),
                "3-master Cluster, 3 random app names": (cluster.url(), masters, random_apps(k)),
                "one primary, 6 apps": (lone.url(), [lone.port], six),
                "3-master Cluster, 6 apps": (cluster.url(), masters, six),
                "one primary + replica, 6 apps": (primary.url(), [primary.port], six),
            }
            for name, (url, ports, apps) in runs.items():
                flush(ports)
                rate, used = asyncio.run(delivery_run(url, args.messages, apps, ports))
                deliver[name].append(rate)
                cpu[name].append(used)
                where = ""
                if name in placed:
                    placed[name].append(landing(ranges, apps))
                    where = f" [{placed[name][-1]}]"
                print(
                    f"deliver {name} run {k + 1}: {rate:,.0f}/s{where} "
                    f"cpu client {used['client']}, redis {used['servers']}",
                    flush=True,
                )
            flush([lone.port, primary.port, *masters])
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
    for name, rows in placed.items():
        print(f"{name}, masters by run: " + "; ".join(rows))
    for name, base in (
        ("3-master Cluster, 3 apps on 3 masters", "one primary, 3 apps"),
        ("3-master Cluster, 3 random app names", "one primary, 3 apps"),
        ("3-master Cluster, 6 apps", "one primary, 6 apps"),
    ):
        ratio = statistics.median(deliver[name]) / statistics.median(deliver[base])
        paired = [c / b for c, b in zip(deliver[name], deliver[base], strict=True)]
        print(
            f"{name} / {base}: {ratio:.2f}x the medians; by run "
            + ", ".join(f"{r:.2f}x" for r in paired)
        )
    out = {
        "p1": p1,
        "deliver": deliver,
        "masters_by_run": placed,
        "cpu_by_run": cpu,
        "messages": args.messages,
    }
    (OUT / "results.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
