"""What one message costs, for sizing deploy/k8s: CPU per 1,000 msg/s and memory per queued and
per finished message, on SQLite and on Redis.

    .venv/bin/python bench/footprint.py                 # both stores, 20,000 messages
    .venv/bin/python bench/footprint.py --store sqlite --messages 5000

Each store is measured in two phases against the real simulator (0 ms latency), so that the
two roles' costs come apart:

1. an API-only gateway (`--role api`: no delivery) takes N messages as batches of 100 and
   `--singles` more one POST /v1/messages at a time; they stay queued. Its CPU per message is
   the ingest cost; the store's growth over N is the memory per queued message (Redis: the
   server's used_memory, from a redis-server of our own on a free port so that nobody else's
   keys count; SQLite: the database file and its WAL); the gateway's RSS growth is shown too.
   redis-server's own CPU is measured beside the gateway's.
2. the API process stops; a worker (`--role worker`) starts on the same store and sends all
   of them. Its CPU over the drain is the delivery cost per message; the store's size once
   every message is sent (kept for retention_s as history) is the memory per finished message.

CPU per 1,000 msg/s is CPU-seconds per message x 1,000: the cores a steady 1,000 msg/s needs.
The figures go to bench/results/footprint.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wxbench.procs import (
    Proc,
    cpu_seconds,
    free_port,
    http_post,
    status_kb,
    stop_all,
    wait_http,
)
from wxbench.services import (
    AUTH,
    enqueue_batches,
    message_body,
    start_gateway,
    start_sim,
    write_gateway_config,
)

RESULTS = Path(__file__).resolve().parent / "results" / "footprint.json"


class OwnRedis:
    """A redis-server of this run's own (no persistence) on a free port."""

    def __init__(self, run_dir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.proc = Proc(
            "redis",
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(run_dir),
            ],
            run_dir,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                self.used_memory()
                return
            except OSError:
                if time.monotonic() > deadline or not self.proc.alive():
                    raise
                time.sleep(0.05)

    def used_memory(self) -> int:
        import redis

        r = redis.Redis.from_url(self.url, socket_connect_timeout=1.0)
        try:
            return int(r.info("memory")["used_memory"])
        except redis.ConnectionError as exc:
            raise OSError(str(exc)) from exc
        finally:
            r.close()


def _sqlite_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def _post_singles(url: str, n: int, parallel: int = 8) -> None:
    def one(i: int) -> None:
        body = json.dumps(message_body(1_000_000 + i)).encode()
        status, raw = http_post(f"{url}/v1/messages", body, timeout=60, headers=AUTH)
        if status != 202:
            raise RuntimeError(f"POST /v1/messages answered {status}: {raw[:200]!r}")

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))


def _queued(url: str) -> int:
    from wxbench.procs import http_get

    stats = json.loads(http_get(f"{url}/v1/stats", headers=AUTH, timeout=30))
    by_status: dict[str, int] = stats.get("by_status", {})
    return int(by_status.get("queued", 0))


def measure(store: str, n: int, singles: int, run_dir: Path) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    sim = start_sim(run_dir)
    redis_srv = OwnRedis(run_dir) if store == "redis" else None
    db = run_dir / "wxgate.db"
    store_url = redis_srv.url if redis_srv else f"sqlite:///{db}"

    def store_bytes() -> int:
        return redis_srv.used_memory() if redis_srv else _sqlite_bytes(db)

    def redis_cpu() -> float:
        return cpu_seconds(redis_srv.proc.pid) if redis_srv else 0.0

    port = free_port()
    config = write_gateway_config(
        run_dir / "gw.toml", port=port, store_url=store_url, sim_url=sim.url
    )
    try:
        # ---- phase 1: ingest, nothing sent
        api = start_gateway(run_dir, "api", config, "api")
        enqueue_batches(api.url, 200, per_batch=100)  # warm up: connections, caches, JIT-less paths
        base_store, base_rss = store_bytes(), status_kb(api.proc.pid, "VmRSS")
        cpu0, t0, rcpu0 = cpu_seconds(api.proc.pid), time.monotonic(), redis_cpu()
        enqueue_batches(api.url, n, per_batch=100)
        batch_cpu, batch_wall = cpu_seconds(api.proc.pid) - cpu0, time.monotonic() - t0
        cpu1, t1 = cpu_seconds(api.proc.pid), time.monotonic()
        _post_singles(api.url, singles)
        single_cpu, single_wall = cpu_seconds(api.proc.pid) - cpu1, time.monotonic() - t1
        ingest_redis_cpu = redis_cpu() - rcpu0
        total = 200 + n + singles
        queued = _queued(api.url)
        if queued != total:
            raise RuntimeError(f"{queued} queued, expected {total}")
        queued_store = store_bytes() - base_store
        rss_growth_kb = status_kb(api.proc.pid, "VmRSS") - base_rss
        api_rss_mb = status_kb(api.proc.pid, "VmRSS") / 1024
        api.proc.stop()

        # ---- phase 2: deliver everything
        worker = start_gateway(run_dir, "worker", config, "worker")
        cpu2, t2, rcpu2 = cpu_seconds(worker.proc.pid), time.monotonic(), redis_cpu()
        peak_rss_kb = 0
        deadline = t2 + max(120.0, total / 100)
        while int(sim.stats().get("delivered", 0)) < total:
            peak_rss_kb = max(peak_rss_kb, status_kb(worker.proc.pid, "VmRSS"))
            if time.monotonic() > deadline or not worker.proc.alive():
                raise RuntimeError(f"not delivered in time:\n{worker.proc.tail()}")
            time.sleep(0.05)
        send_cpu, send_wall = cpu_seconds(worker.proc.pid) - cpu2, time.monotonic() - t2
        send_redis_cpu = redis_cpu() - rcpu2
        wait_http(f"{worker.url}/healthz", worker.proc)
        time.sleep(0.5)  # the last acks' writes land (a bound, not a wait for a condition)
        finished_store = store_bytes() - base_store
        worker.proc.stop()
    finally:
        stop_all()
    return {
        "store": store,
        "messages": total,
        "ingest_batch_cpu_ms_per_msg": 1000 * batch_cpu / n,
        "ingest_batch_msg_per_s": n / batch_wall,
        "ingest_single_cpu_ms_per_msg": 1000 * single_cpu / singles,
        "ingest_single_msg_per_s": singles / single_wall,
        "send_cpu_ms_per_msg": 1000 * send_cpu / total,
        "send_msg_per_s": total / send_wall,
        # redis-server's own CPU (0 on SQLite, whose work is inside the gateway's figures).
        "redis_cpu_ms_per_ingested_msg": 1000 * ingest_redis_cpu / (n + singles),
        "redis_cpu_ms_per_sent_msg": 1000 * send_redis_cpu / total,
        "cores_per_1000_msg_s_batch_ingest": batch_cpu / n * 1000,
        "cores_per_1000_msg_s_single_ingest": single_cpu / singles * 1000,
        "cores_per_1000_msg_s_send": send_cpu / total * 1000,
        "store_bytes_per_queued_msg": queued_store / (n + singles),
        "store_bytes_per_finished_msg": finished_store / total,
        "api_rss_growth_bytes_per_queued_msg": 1024 * rss_growth_kb / (n + singles),
        "api_rss_mb": api_rss_mb,
        "worker_peak_rss_mb": peak_rss_kb / 1024,
    }


ROWS = [
    ("ingest, batches of 100: CPU ms/msg", "ingest_batch_cpu_ms_per_msg", "{:.3f}"),
    ("ingest, single POSTs: CPU ms/msg", "ingest_single_cpu_ms_per_msg", "{:.3f}"),
    ("send (worker): CPU ms/msg", "send_cpu_ms_per_msg", "{:.3f}"),
    ("cores per 1,000 msg/s sent", "cores_per_1000_msg_s_send", "{:.2f}"),
    ("cores per 1,000 msg/s, batch ingest", "cores_per_1000_msg_s_batch_ingest", "{:.2f}"),
    ("cores per 1,000 msg/s, single ingest", "cores_per_1000_msg_s_single_ingest", "{:.2f}"),
    ("redis-server CPU ms per ingested msg", "redis_cpu_ms_per_ingested_msg", "{:.3f}"),
    ("redis-server CPU ms per sent msg", "redis_cpu_ms_per_sent_msg", "{:.3f}"),
    ("store bytes per queued msg", "store_bytes_per_queued_msg", "{:.0f}"),
    ("store bytes per finished msg", "store_bytes_per_finished_msg", "{:.0f}"),
    ("API RSS growth bytes per queued msg", "api_rss_growth_bytes_per_queued_msg", "{:.0f}"),
    ("API RSS MB (after ingest)", "api_rss_mb", "{:.0f}"),
    ("worker peak RSS MB", "worker_peak_rss_mb", "{:.0f}"),
    ("send msg/s (wall, this machine)", "send_msg_per_s", "{:.0f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--messages", type=int, default=20_000, help="batched messages")
    parser.add_argument("--singles", type=int, default=2_000, help="single POSTs")
    args = parser.parse_args()
    stores = ["sqlite", "redis"] if args.store == "both" else [args.store]
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wxgate-footprint-") as tmp:
        for store in stores:
            print(f"measuring {store} ({args.messages} + {args.singles} messages)...", flush=True)
            out.append(measure(store, args.messages, args.singles, Path(tmp) / store))
    width = max(len(r[0]) for r in ROWS)
    print(f"{'':{width}}  " + "  ".join(f"{r['store']:>8}" for r in out))
    for label, key, fmt in ROWS:
        print(f"{label:{width}}  " + "  ".join(f"{fmt.format(r[key]):>8}" for r in out))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    info = {"cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0], "when": time.time()}
    RESULTS.write_text(json.dumps({"machine": info, "results": out}, indent=2) + "\n")
    print(f"-> {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
