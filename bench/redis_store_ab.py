"""Two versions of the Redis store side by side, on one redis-server of their own: the
store's enqueue path (`--messages` single-message enqueue calls, 64 at a time, over `--apps`
apps) and its delivery path (4 loops each leasing 128 and acking them), with the client's and
Redis's CPU per message. Each version runs in a child process importing wxgate from the given
`src` directory; runs of the two alternate, and the medians and their ratio are printed.

    .venv/bin/python bench/redis_store_ab.py OLD_SRC NEW_SRC [--runs 5] [--apps 6]

e.g. OLD_SRC from `git worktree add /tmp/old <commit>`, /tmp/old/src; NEW_SRC ./src. It
measures the store alone, not a gateway (P1 and P3 in bench/run.py do that).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent / "tests"

# The child: one run against a fresh redis-server, one JSON line on stdout.
_CHILD = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])
import redis
from support.redis_server import RedisServer
from support.store import make_message
from wxgate.clock import SystemClock
from wxgate.models import SendResult
from wxgate.store.redis import RedisStore

N, APPS = int(sys.argv[2]), [f"app{i}" for i in range(int(sys.argv[3]))]


async def run(url):
    clock = SystemClock()
    store = RedisStore(url, clock, retention_s=3600, key_prefix="ab")
    await store.open()
    admin = redis.Redis.from_url(url)

    def redis_cpu():
        info = admin.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    msgs = [make_message(clock, APPS[i % len(APPS)]) for i in range(N)]
    gate = asyncio.Semaphore(64)

    async def one(m):
        async with gate:
            await store.enqueue([m])

    c0, r0, t0 = time.process_time(), redis_cpu(), time.perf_counter()
    await asyncio.gather(*(one(m) for m in msgs))
    c1, r1, t1 = time.process_time(), redis_cpu(), time.perf_counter()
    done = 0

    async def loop():
        nonlocal done
        while done < N:
            got = await store.lease(128, 60, clock.now())
            if not got:
                await asyncio.sleep(0.001)
                continue
            sent = SendResult(1, clock.now())
            await asyncio.gather(*(store.ack(m.id, m.lease_token, sent) for m in got))
            done += len(got)

    await asyncio.gather(*(loop() for _ in range(4)))
    c2, r2, t2 = time.process_time(), redis_cpu(), time.perf_counter()
    await store.close()
    admin.close()
    us = lambda a, b: round((b - a) / N * 1e6, 1)
    return {
        "enqueue": N / (t1 - t0), "deliver": N / (t2 - t1),
        "enqueue_client_us": us(c0, c1), "enqueue_redis_us": us(r0, r1),
        "deliver_client_us": us(c1, c2), "deliver_redis_us": us(r1, r2),
    }


with RedisServer() as server:
    print(json.dumps(asyncio.run(run(server.url()))))
"""


def _run(src: Path, messages: int, apps: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(TESTS), str(messages), str(apps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="the src/ directory of the baseline version")
    ap.add_argument("new", type=Path, help="the src/ directory of the version measured")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--apps", type=int, default=6)
    ap.add_argument("--messages", type=int, default=20_000)
    args = ap.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for k in range(args.runs):
        for name, src in (("old", args.old), ("new", args.new)):
            rows[name].append(_run(src.resolve(), args.messages, args.apps))
            print(f"run {k + 1} {name}: {json.dumps(rows[name][-1])}", flush=True)
    print(f"\n{args.messages} messages over {args.apps} apps, medians of {args.runs} runs:")
    print("| | old | new | new / old |\n|---|---:|---:|---:|")
    for field in rows["old"][0]:
        old = statistics.median(r[field] for r in rows["old"])
        new = statistics.median(r[field] for r in rows["new"])
        print(f"| {field} | {old:,.1f} | {new:,.1f} | {new / old:.2f}x |")


if __name__ == "__main__":
    main()
