"""Throughput of the simulator's send endpoint, measured with a bare aiohttp client loop.

    .venv/bin/python tests/sim/bench_sim.py --seconds 10 --concurrency 64 [--latency-ms 0]

Starts `python -m wxgate.sim` in its own process (uvloop), fetches a token, then 64 workers
post template sends for the given time. Not a test (pytest does not collect it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import aiohttp


async def _worker(
    session: aiohttp.ClientSession, url: str, deadline: float, wid: int, lat: list[float]
) -> int:
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        body = (
            f'{{"touser":"oUser{wid}x{n}abcdefghijklmnopq","template_id":"tpl_order_shipped",'
            f'"client_msg_id":"m-{wid}-{n}","url":"https://example.com/o/1","data":'
            '{"thing1":{"value":"Order 12345 shipped"},"character_string2":'
            '{"value":"SF1234567890"},"time3":{"value":"2024-05-01 10:00"}}}'
        ).encode()
        t0 = time.perf_counter()
        async with session.post(url, data=body) as resp:
            answer = await resp.read()
        lat.append(time.perf_counter() - t0)
        if b'"errcode":0' not in answer:
            raise RuntimeError(answer.decode())
    return n


async def _client(base: str, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        params = {
            "grant_type": "client_credential",
            "appid": "wx_sandbox",
            "secret": "sandbox_secret",
        }
        async with session.get(f"{base}/cgi-bin/token", params=params) as resp:
            token = (await resp.json())["access_token"]
        url = f"{base}/cgi-bin/message/template/send?access_token={token}"
        lat: list[float] = []
        deadline = time.perf_counter() + seconds
        counts = await asyncio.gather(
            *(_worker(session, url, deadline, i, lat) for i in range(concurrency))
        )
        return sum(counts), lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=9123)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "wxgate.sim", "--port", str(args.port)]
    cmd += ["--latency-ms", str(args.latency_ms)]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        print(sim.stdout.readline().strip())
        base = f"http://127.0.0.1:{args.port}"
        t0 = time.perf_counter()
        coro = _client(base, args.seconds, args.concurrency)
        try:
            import uvloop
        except ImportError:
            n, lat = asyncio.run(coro)
        else:
            n, lat = uvloop.run(coro)
        took = time.perf_counter() - t0
        lat.sort()
        p50 = statistics.median(lat) * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        print(
            f"{n} sends in {took:.1f}s = {n / took:,.0f}/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"(concurrency {args.concurrency}, latency {args.latency_ms} ms, cpus {os.cpu_count()})"
        )
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
