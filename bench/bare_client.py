"""P3 baseline: a bare aiohttp client loop sending template messages straight to the simulator.

One ClientSession, one pooled connector, `--concurrency` tasks (the gateway's
workers.concurrency), the access_token fetched once, the same message bodies the gateway sends
(with a unique client_msg_id each). No store, no leasing, no policy: the bare stack.
Prints one JSON line: {"sent": n, "errors": n, "elapsed_s": s}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from pathlib import Path

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wxbench.services import APPID, SECRET, wechat_body


class _Answer(msgspec.Struct):
    errcode: int = 0
    access_token: str | None = None


_dec = msgspec.json.Decoder(_Answer)
_enc = msgspec.json.Encoder()
_JSON = {"Content-Type": "application/json"}


async def run(url: str, n: int, concurrency: int, ca_file: str | None) -> dict[str, object]:
    ssl_ctx: ssl.SSLContext | bool = True
    if url.startswith("https://") and ca_file:
        ssl_ctx = ssl.create_default_context(cafile=ca_file)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ssl=ssl_ctx)
    async with aiohttp.ClientSession(connector=connector) as session:
        token_req = {
            "grant_type": "client_credential",
            "appid": APPID,
            "secret": SECRET,
            "force_refresh": False,
        }
        async with session.post(
            f"{url}/cgi-bin/stable_token", data=_enc.encode(token_req), headers=_JSON
        ) as resp:
            token = _dec.decode(await resp.read()).access_token
        send_url = f"{url}/cgi-bin/message/template/send?access_token={token}"
        prefix = os.urandom(6).hex()
        state = {"next": 0, "sent": 0, "errors": 0}

        async def worker() -> None:
            while state["next"] < n:
                i = state["next"]
                state["next"] = i + 1
                body = _enc.encode(wechat_body(i, f"{prefix}{i:012x}"))
                async with session.post(send_url, data=body, headers=_JSON) as resp:
                    answer = _dec.decode(await resp.read())
                if resp.status == 200 and answer.errcode == 0:
                    state["sent"] += 1
                else:
                    state["errors"] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"sent": state["sent"], "errors": state["errors"], "elapsed_s": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True, help="simulator base URL")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--ca-file", default=None)
    args = ap.parse_args()
    import uvloop

    result = uvloop.run(run(args.url.rstrip("/"), args.n, args.concurrency, args.ca_file))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
