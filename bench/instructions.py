"""Instructions per message on the hot paths, counted by valgrind's callgrind.

Wall-clock figures on these shared machines move by 2-3x from one hour to the next; an
instruction count does not (same binary, same inputs: the same total, whatever else the
machine is doing). So a change to the hot paths is compared here, before and after:

    .venv/bin/python bench/instructions.py                # every case
    .venv/bin/python bench/instructions.py enqueue ack    # some

Each case runs in a fresh process under `valgrind --tool=callgrind --instr-atstart=no`;
counting is switched on (callgrind_control) only around the measured loop, so start-up and
set-up are left out. Printed: instructions per message. Needs valgrind (Debian's package).

The store's cases (enqueue, batch, lease, ack) and message_from run their code directly. The
pairs ingest / ingest_noop (P1) and deliver / deliver_bare (P3) count a whole server or
client side against its benchmark baseline, with the other end (wrk, the simulator) in a
process of its own that is not counted: their ratio is the noise-free version of the
benchmark's.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

N = 5000
CASES = {
    "enqueue": "single-message enqueues, 64 at a time (one writer group each)",
    "batch": "batch ingest: batch_from + enqueue of 1,000 recipients per call",
    "lease": "leases of 256",
    "ack": "acks, 256 submitted together (one writer group)",
    "message_from": "POST /v1/messages body -> Message (validation, normalisation, id)",
    "ingest": "P1 server side: POST /v1/messages to a role=api gateway (SQLite), wrk -c64",
    "ingest_noop": "P1's baseline: the same POSTs to bench/noop_server.py's handler",
    "deliver": "P3 worker side: a role=worker gateway (SQLite) drains queued messages (0 ms)",
    "deliver_bare": "P3's baseline: bench/bare_client.py sends as many to the simulator",
}
DELIVER_N = 3000  # messages per delivery case
INGEST_S = 10  # the measured wrk run (under callgrind a server answers a few hundred a second)


def _count(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        stdout=subprocess.DEVNULL,
        check=False,
    )


async def _measure(case: str) -> int:
    """Run `case` in this process (under callgrind); return how many messages it handled."""
    import msgspec
    from wxbench.services import batch_body, message_body

    from wxgate.api.intake import batch_from, message_from
    from wxgate.clock import SystemClock
    from wxgate.models import BatchIn, Message, MessageIn, SendResult, new_id
    from wxgate.process import tune_gc
    from wxgate.settings import AppSettings
    from wxgate.store.sqlite import SQLiteStore

    if case in ("ingest", "ingest_noop"):
        return await _ingest(noop=case == "ingest_noop")
    if case in ("deliver", "deliver_bare"):
        return await _deliver(bare=case == "deliver_bare")
    tune_gc()  # as a serving gateway has it (the cases above do it once they are set up)
    app = AppSettings(name="shop", appid="wx_bench", secret="s")
    one = msgspec.json.Decoder(MessageIn).decode(json.dumps(message_body(1)).encode())
    if case == "message_from":
        for _ in range(100):
            message_from(one, app, time.time(), new_id(), None)
        _count(True)
        for _ in range(N):
            message_from(one, app, time.time(), new_id(), None)
        _count(False)
        return N
    tmp = tempfile.mkdtemp(prefix="wxgate-instr-")
    store = SQLiteStore(f"{tmp}/runtime.db", SystemClock(), retention_s=3600)
    await store.open()
    try:

        def fresh(n: int) -> list[Message]:
            return [message_from(one, app, time.time(), new_id(), None) for _ in range(n)]

        async def in_groups(calls: list[Callable[[], Awaitable[object]]], size: int) -> None:
            for i in range(0, len(calls), size):
                await asyncio.gather(*(c() for c in calls[i : i + size]))

        if case == "enqueue":
            msgs = fresh(N)
            _count(True)
            await in_groups([lambda m=m: store.enqueue((m,)) for m in msgs], 64)
            _count(False)
            return N
        if case == "batch":
            raw = json.dumps(batch_body(0, 1000)).encode()
            decode = msgspec.json.Decoder(BatchIn).decode
            for k in range(N // 1000 + 1):
                if k == 1:  # the first batch warms caches and the statement cache
                    _count(True)
                batch, msgs = batch_from(decode(raw), app, time.time(), new_id(), 10_000)
                await store.enqueue(msgs, batch)
            _count(False)
            return N
        for _ in range(N // 1000):
            await store.enqueue(fresh(1000))
        if case == "lease":
            _count(True)
            got = 0
            while got < N:
                got += len(await store.lease(256, 600.0, time.time()))
            _count(False)
            return N
        leased = []
        while len(leased) < N:
            leased += await store.lease(256, 600.0, time.time())
        now = time.time()
        _count(True)
        await in_groups(
            [
                lambda m=m, k=k: store.ack(m.id, m.lease_token, SendResult(10_000 + k, now))
                for k, m in enumerate(leased)
            ],
            256,
        )
        _count(False)
        return N
    finally:
        await store.close()
        shutil.rmtree(tmp, ignore_errors=True)


async def _ingest(noop: bool) -> int:
    """Serve POST /v1/messages in this process while wrk (not counted) sends them; return
    the 2xx answers of the measured run. Counts the server's every thread (the SQLite
    writer too), as P1 puts them all on the same two cores."""
    import noop_server
    from wxbench.loadgen import run_wrk
    from wxbench.procs import free_port
    from wxbench.services import API_KEY, message_body, write_gateway_config

    from wxgate.process import tune_gc
    from wxgate.runtime import Runtime
    from wxgate.settings import load

    tmp = Path(tempfile.mkdtemp(prefix="wxgate-instr-"))
    body = tmp / "message.json"
    body.write_text(json.dumps(message_body(1)))
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/messages"
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        if noop:
            stack.push_async_callback((await noop_server.start("127.0.0.1", port)).cleanup)
        else:
            cfg = write_gateway_config(
                tmp / "runtime.toml",
                port=port,
                store_url=f"sqlite:///{tmp}/runtime.db",
                sim_url="http://127.0.0.1:9",  # role=api sends nothing
            )
            await stack.enter_async_context(Runtime(load(cfg), role="api"))
        tune_gc()  # as `wxgate serve` does once it is up

        def wrk(name: str, seconds: float) -> int:
            return run_wrk(
                url,
                body,
                duration_s=seconds,
                connections=64,
                api_key=API_KEY,
                log_dir=tmp,
                name=name,
            ).ok

        await asyncio.to_thread(wrk, "warm-up", 2)
        _count(True)
        ok = await asyncio.to_thread(wrk, "measured", INGEST_S)
        _count(False)
        return ok


async def _deliver(bare: bool) -> int:
    """Deliver DELIVER_N messages to a simulator in another process (not counted) with 256
    in flight, as P3 at 0 ms does; return how many were delivered while counting."""
    import bare_client
    import msgspec
    from wxbench.procs import free_port
    from wxbench.services import batch_body, start_sim, write_gateway_config

    from wxgate.api.intake import batch_from
    from wxgate.clock import SystemClock
    from wxgate.models import BatchIn, new_id
    from wxgate.process import tune_gc
    from wxgate.runtime import Runtime
    from wxgate.settings import load
    from wxgate.store.sqlite import SQLiteStore

    tmp = Path(tempfile.mkdtemp(prefix="wxgate-instr-"))
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        sim = start_sim(tmp)
        stack.callback(sim.proc.stop)
        if bare:
            tune_gc()
            _count(True)
            result = await bare_client.run(sim.url, DELIVER_N, 256, None)
            _count(False)
            return int(str(result["sent"]))
        cfg = write_gateway_config(
            tmp / "runtime.toml",
            port=free_port(),
            store_url=f"sqlite:///{tmp}/runtime.db",
            sim_url=sim.url,
        )
        settings = load(cfg)
        store = SQLiteStore(f"{tmp}/runtime.db", SystemClock(), retention_s=3600)
        await store.open()
        decode = msgspec.json.Decoder(BatchIn).decode
        for start in range(0, DELIVER_N, 1000):
            raw = json.dumps(batch_body(start, min(1000, DELIVER_N - start))).encode()
            batch, msgs = batch_from(decode(raw), settings.apps[0], time.time(), new_id(), 10_000)
            await store.enqueue(msgs, batch)
        await store.close()

        runtime = await stack.enter_async_context(Runtime(settings, role="worker"))
        assert runtime.pool is not None
        pool = runtime.pool

        def sent() -> int:  # acked sends, read in-process (an HTTP poll would be counted)
            return sum(int(s["sent"]) for s in pool.app_states().values())

        tune_gc()
        _count(True)
        before = sent()
        while (done := sent()) < DELIVER_N:
            await asyncio.sleep(0.5)
        _count(False)
        return done - before


def _run_case(case: str) -> float:
    out = tempfile.mkdtemp(prefix="wxgate-callgrind-")
    try:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}/cg.%p",
            sys.executable,
            __file__,
            "--inside",
            case,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        handled = [line for line in done.stdout.splitlines() if line.startswith("handled ")]
        if done.returncode != 0 or not handled:
            raise RuntimeError(f"{case}: {done.stderr[-2000:]}")
        n = int(handled[-1].split()[1])
        total = 0
        for path in glob.glob(f"{out}/cg.*"):
            with open(path) as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("totals:"))
        return total / n
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    if sys.argv[1:2] == ["--inside"]:
        import uvloop

        print(f"handled {uvloop.run(_measure(sys.argv[2]))}", flush=True)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install -y valgrind")
    cases = sys.argv[1:] or list(CASES)
    for case in cases:
        if case not in CASES:
            sys.exit(f"unknown case {case!r}; one of {', '.join(CASES)}")
    print(f"{'case':14} {'instructions/message':>22}  what")
    for case in cases:
        print(f"{case:14} {_run_case(case):>22,.0f}  {CASES[case]}", flush=True)


if __name__ == "__main__":
    main()
