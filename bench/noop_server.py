"""The P1/P2 baseline: a no-op aiohttp handler that parses the same body with msgspec, answers 202.

Same stack as the gateway (aiohttp + msgspec + uvloop, no access log), same request types
(wxgate.models.MessageIn / BatchIn), no store, no validation beyond the decode, no auth.
Usage: python bench/noop_server.py --port 18090
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import msgspec
from aiohttp import web

from wxgate.models import Accepted, BatchAccepted, BatchIn, MessageIn, Status

_MSG = msgspec.json.Decoder(MessageIn)
_BATCH = msgspec.json.Decoder(BatchIn)
_ENC = msgspec.json.Encoder()


def _id() -> str:
    return os.urandom(12).hex()


async def message(request: web.Request) -> web.Response:
    _MSG.decode(await request.read())
    body = _ENC.encode(Accepted(_id(), Status.QUEUED))
    return web.Response(body=body, status=202, content_type="application/json")


async def batch(request: web.Request) -> web.Response:
    b = _BATCH.decode(await request.read())
    body = _ENC.encode(BatchAccepted(_id(), len(b.recipients), "running"))
    return web.Response(body=body, status=202, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def start(host: str, port: int) -> web.AppRunner:
    """The no-op server listening (also run in-process by bench/instructions.py)."""
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.add_routes(
        [
            web.post("/v1/messages", message),
            web.post("/v1/batches", batch),
            web.get("/healthz", health),
        ]
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner


async def serve(host: str, port: int) -> None:
    runner = await start(host, port)
    print(f"noop listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18090)
    args = ap.parse_args()
    import uvloop

    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
