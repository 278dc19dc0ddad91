"""P5/P6 load: a steady offered load (open loop) of single messages, recording times per id.

Request i is started at t0 + i/rate whether or not earlier ones have been answered, so a slow
server shows up as latency, not as a lower offered rate (no coordinated omission).
  --target gateway  POST /v1/messages; the id is the gateway's; `acc` is when the 202 arrived.
  --target sim      the bare baseline: POST the WeChat send straight to the simulator with a
                    client_msg_id of our own; `acc` is when the request was handed to the client.
Writes JSON columns {id, sched, sent, acc, status} (epoch seconds) to --out, or with --no-record
only the per-second counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wxbench.services import API_KEY, APPID, SECRET, message_body, wechat_body

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:
        if args.target == "sim":
            token_req = {
                "grant_type": "client_credential",
                "appid": APPID,
                "secret": SECRET,
                "force_refresh": False,
            }
            async with session.post(
                f"{args.url}/cgi-bin/stable_token", data=_enc.encode(token_req), headers=headers
            ) as resp:
                token = _dec.decode(await resp.read())["access_token"]
            url = f"{args.url}/cgi-bin/message/template/send?access_token={token}"
        else:
            url = f"{args.url}/v1/messages"
            headers["Authorization"] = f"Bearer {API_KEY}"
        total = int(args.rate * args.duration)
        prefix = os.urandom(6).hex()
        rec: dict[str, list[Any]] = {"id": [], "sched": [], "sent": [], "acc": [], "status": []}
        per_second: dict[int, int] = {}
        lags: list[float] = []  # answer time - scheduled time, seconds (kept even unrecorded)
        errors = 0
        pending: set[asyncio.Task[None]] = set()

        async def one(i: int, sched: float) -> None:
            nonlocal errors
            sent = time.time()
            try:
                if args.target == "sim":
                    mid = f"{prefix}{i:012x}"
                    body = _enc.encode(wechat_body(i, mid))
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = resp.status
                    acc = sent
                else:
                    body = _enc.encode(message_body(i))
                    async with session.post(url, data=body, headers=headers) as resp:
                        raw = await resp.read()
                        status = resp.status
                    acc = time.time()
                    mid = _dec.decode(raw).get("id", "") if status == 202 else ""
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                return
            sec = int(acc)
            per_second[sec] = per_second.get(sec, 0) + 1
            lags.append(time.time() - sched)
            if args.record:
                rec["id"].append(mid)
                rec["sched"].append(sched)
                rec["sent"].append(sent)
                rec["acc"].append(acc)
                rec["status"].append(status)

        loop = asyncio.get_running_loop()
        t0_loop = loop.time() + 0.05
        t0_wall = time.time() + 0.05
        i = 0
        while i < total:
            now = loop.time()
            due = min(total, int((now - t0_loop) * args.rate) + 1)
            while i < due:
                task = asyncio.create_task(one(i, t0_wall + i / args.rate))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            next_at = t0_loop + i / args.rate
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if pending:
            await asyncio.wait(pending, timeout=args.drain_s)
        late = len(pending)
    lags.sort()

    def pct(p: float) -> float | None:
        return round(lags[min(len(lags) - 1, int(p / 100 * len(lags)))], 4) if lags else None

    out: dict[str, Any] = {
        "offered": total,
        # How far answers trailed the schedule: a server that keeps up stays near 0.
        "lag_s": {"p50": pct(50), "p99": pct(99), "max": lags[-1] if lags else None},
        "rate": args.rate,
        "duration_s": args.duration,
        "errors": errors,
        "unfinished": late,
        "per_second": sorted(per_second.items()),
    }
    if args.record:
        out["records"] = rec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--target", choices=("gateway", "sim"), default="gateway")
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--drain-s", type=float, default=30.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-record", dest="record", action="store_false")
    args = ap.parse_args()
    args.url = args.url.rstrip("/")
    import uvloop

    result = uvloop.run(run(args))
    Path(args.out).write_text(json.dumps(result))
    print(
        json.dumps({k: v for k, v in result.items() if k not in ("records", "per_second")}),
        flush=True,
    )


if __name__ == "__main__":
    main()
