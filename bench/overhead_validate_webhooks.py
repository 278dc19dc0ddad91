"""What template validation and status webhooks cost, before/after, on this machine.

    .venv/bin/python bench/overhead_validate_webhooks.py [--rounds 3] [--n 20000]

- Ingest (P1's shape): one `--role api` gateway on SQLite beside the simulator, wrk with 64
  connections POSTing single messages for `--ingest-s` seconds (about --n messages), with the
  app's `validate = "off"` and then `"reject"` (the template list cached after the first).
- Delivery (P3's shape): --n messages enqueued as batches, then one `--role worker` gateway
  delivers them to the simulator (0 and 50 ms latency), without and with a `callback_url`:
  with it every `sent` also writes an outbox row and is POSTed to a local 204 receiver.
  The delivery rate is the simulator's (first to last delivery); "webhooks done" is when the
  outbox is empty again.
Runs alternate (off, on, off, on, ...) and the medians are printed. Results are noisy on a
shared 2-core machine; compare within one run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wxbench import services
from wxbench.loadgen import run_wrk
from wxbench.procs import BENCH, Proc, free_port, http_get, stop_all, venv_python, wait_http
from wxbench.services import (
    API_KEY,
    APPID,
    AUTH,
    SECRET,
    TEMPLATE_ID,
    Sim,
    enqueue_batches,
    message_body,
    start_gateway,
    write_gateway_config,
)

OUT = BENCH / "out" / "overhead"
KEYS = ("thing1", "time2", "amount3", "name4")  # what bench messages and batches carry


def start_sim(run_dir: Path, latency_ms: float) -> Sim:
    """The bench simulator, knowing the bench template (so `validate` passes)."""
    return services.start_sim(run_dir, latency_ms=latency_ms, templates={TEMPLATE_ID: KEYS})


def gateway_config(run_dir: Path, sim_url: str, app_extra: list[str]) -> Path:
    cfg = write_gateway_config(
        run_dir / "gw.toml",
        port=free_port(),
        store_url=f"sqlite:///{run_dir / 'wxgate.db'}",
        sim_url=sim_url,
        concurrency=256,
    )
    cfg.write_text(cfg.read_text() + "\n".join(app_extra) + "\n")
    return cfg


# ---------------------------------------------------------------- ingest


def ingest(run_dir: Path, validate: str, seconds: float) -> dict[str, Any]:
    with ExitStack() as stack:
        sim = start_sim(run_dir, 0.0)
        stack.callback(sim.proc.stop)
        cfg = gateway_config(run_dir, sim.url, [f'validate = "{validate}"'])
        gw = start_gateway(run_dir, "gateway", cfg, "api")
        stack.callback(gw.proc.stop)
        body = run_dir / "body.json"
        body.write_text(json.dumps(message_body(1)))
        target = f"{gw.url}/v1/messages"
        run_wrk(
            target,
            body,
            duration_s=1,
            connections=64,
            api_key=API_KEY,
            log_dir=run_dir,
            name="wrk-warmup",
        )
        res = run_wrk(
            target,
            body,
            duration_s=seconds,
            connections=64,
            api_key=API_KEY,
            log_dir=run_dir,
            name="wrk",
        )
        bad = {s: n for s, n in res.statuses.items() if not s.startswith("2")}
        if bad:
            raise RuntimeError(f"non-2xx answers with validate={validate}: {bad}")
        return {"rate": res.ok_per_s, "p99_ms": res.latency_ms["p99"], "n": res.ok}


# ---------------------------------------------------------------- delivery


def start_sink(run_dir: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc("sink", [venv_python(), __file__, "--sink", str(port)], run_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/count", proc)
    return proc, url


def webhooks_pending(gw_url: str) -> float:
    for line in http_get(f"{gw_url}/metrics", headers=AUTH, timeout=30).decode().splitlines():
        if line.startswith("wxgate_webhooks_pending "):
            return float(line.split()[1])
    return -1.0


def delivery(run_dir: Path, webhooks: bool, n: int, latency_ms: float) -> dict[str, Any]:
    with ExitStack() as stack:
        sim = start_sim(run_dir, latency_ms)
        stack.callback(sim.proc.stop)
        extra: list[str] = []
        if webhooks:
            sink, sink_url = start_sink(run_dir)
            stack.callback(sink.stop)
            extra = [f'callback_url = "{sink_url}/hook"', 'webhook_secret = "bench-secret"']
        cfg = gateway_config(run_dir, sim.url, extra)
        api = start_gateway(run_dir, "gateway-api", cfg, "api")
        try:
            enqueue_batches(api.url, n, 1000)
        finally:
            api.proc.stop()
        t0 = time.monotonic()
        gw = start_gateway(run_dir, "gateway-worker", cfg, "worker")
        stack.callback(gw.proc.stop)
        cpu0 = gw.proc.cpu_seconds()
        deadline = t0 + n / 100 + 60
        while int(sim.stats().get("delivered", 0)) < n:
            if time.monotonic() > deadline or not gw.proc.alive():
                raise RuntimeError(f"not delivered in time:\n{gw.proc.tail()}")
            time.sleep(0.05)
        t_sent = time.monotonic()
        # CPU of the worker process per message while delivering (ms), and in all.
        out: dict[str, Any] = {"cpu_ms_per_msg": round((gw.proc.cpu_seconds() - cpu0) / n * 1e3, 3)}
        if webhooks:
            while webhooks_pending(gw.url) != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("webhooks did not drain")
                time.sleep(0.05)
            out["webhooks_done_s"] = round(time.monotonic() - t_sent, 2)
            out["sink_got"] = int(http_get(f"{sink_url}/count"))
            out["cpu_ms_per_msg_with_hooks"] = round((gw.proc.cpu_seconds() - cpu0) / n * 1e3, 3)
            out["sink_cpu_s"] = round(sink.cpu_seconds(), 2)
        times = sorted(t for _, t in sim.delivery_times())
        out["rate"] = (len(times) - 1) / (times[-1] - times[0])
        return out


# ---------------------------------------------------------------- the webhook receiver


def sink(port: int) -> None:
    """A receiver that takes every event (204) and counts them: GET /count."""
    from aiohttp import web

    got = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal got
        await request.read()
        got += 1
        return web.Response(status=204)

    async def count(request: web.Request) -> web.Response:
        return web.Response(text=str(got))

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# ---------------------------------------------------------------- the ingest path, in-process


def micro_validate(n: int) -> dict[str, float]:
    """CPU microseconds per message that `validate = "reject"` adds to POST /v1/messages: the
    cached lookup and the checks (api/template_check.py), beside the work it always does
    (decode + message_from), timed in this process with nothing else running in it."""
    import asyncio

    import msgspec

    from wxgate.api.intake import message_from
    from wxgate.api.template_check import checked_message
    from wxgate.models import MessageIn, MessageKind
    from wxgate.policy.template_rules import CompiledTemplate
    from wxgate.settings import AppSettings
    from wxgate.wechat.templates import TemplateLookup

    app = AppSettings(name="bench", appid=APPID, secret=SECRET, validate="reject")
    found = TemplateLookup(CompiledTemplate.of(TEMPLATE_ID, "template", KEYS))

    class Cached:  # what TemplateCatalog.lookup is once the list is loaded: a dict hit
        async def lookup(self, app: AppSettings, kind: MessageKind, tid: str) -> TemplateLookup:
            return found

    source = Cached()
    decoder = msgspec.json.Decoder(MessageIn)
    raw = json.dumps(message_body(1)).encode()

    async def run(validate: bool) -> float:
        t0 = time.process_time()
        for i in range(n):
            m = message_from(decoder.decode(raw), app, 1.7e9, f"{i:024x}", None)
            if validate:
                await checked_message(source, app, m)
        return (time.process_time() - t0) / n * 1e6

    base, checked = [], []
    for _ in range(5):
        base.append(asyncio.run(run(False)))
        checked.append(asyncio.run(run(True)))
    b, c = statistics.median(base), statistics.median(checked)
    return {"base_us": round(b, 2), "with_reject_us": round(c, 2), "added_us": round(c - b, 2)}


# ---------------------------------------------------------------- main


def alternate(
    rounds: int, off: Callable[[int], dict[str, Any]], on: Callable[[int], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    a, b = [], []
    for k in range(rounds):
        a.append(off(k))
        b.append(on(k))
    return a, b


def med(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20_000, help="messages per delivery run")
    ap.add_argument("--ingest-s", type=float, default=3.0, help="wrk seconds per ingest run")
    ap.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-delivery", action="store_true")
    ap.add_argument("--micro", action="store_true", help="only the in-process ingest timing")
    args = ap.parse_args()
    if args.sink:
        sink(args.sink)
        return
    if args.micro:
        print(json.dumps(micro_validate(args.n)))
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report: dict[str, Any] = {}
    try:
        if not args.skip_ingest:
            off, on = alternate(
                args.rounds,
                lambda k: ingest(OUT / stamp / f"ingest-off-{k}", "off", args.ingest_s),
                lambda k: ingest(OUT / stamp / f"ingest-reject-{k}", "reject", args.ingest_s),
            )
            report["ingest"] = {
                "off": {"msg_s": med(off, "rate"), "p99_ms": med(off, "p99_ms")},
                "reject": {"msg_s": med(on, "rate"), "p99_ms": med(on, "p99_ms")},
                "runs": {"off": off, "reject": on},
            }
            print(json.dumps(report["ingest"], indent=1), flush=True)
        if not args.skip_delivery:
            for latency in (0.0, 50.0):
                off, on = alternate(
                    args.rounds,
                    lambda k, lat=latency: delivery(
                        OUT / stamp / f"deliver-{lat:g}ms-plain-{k}", False, args.n, lat
                    ),
                    lambda k, lat=latency: delivery(
                        OUT / stamp / f"deliver-{lat:g}ms-hooks-{k}", True, args.n, lat
                    ),
                )
                report[f"delivery_{latency:g}ms"] = {
                    "plain_msg_s": med(off, "rate"),
                    "webhooks_msg_s": med(on, "rate"),
                    "runs": {"plain": off, "webhooks": on},
                }
                print(json.dumps(report[f"delivery_{latency:g}ms"], indent=1), flush=True)
    finally:
        stop_all()
    (OUT / stamp).mkdir(parents=True, exist_ok=True)
    (OUT / stamp / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {OUT / stamp / 'report.json'}")


if __name__ == "__main__":
    main()
