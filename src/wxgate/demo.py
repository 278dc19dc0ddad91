"""`make demo`: a sandbox gateway in a child process, a few thousand messages, a report.

The child is the real `wxgate serve --sandbox` (gateway + simulator + a temporary SQLite file);
the messages go in over HTTP like any caller's, and a few go to the simulator's test recipients
so the report shows retries, throttling, dead letters and blocked receipts.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter

from rich.console import Console
from rich.table import Table

from wxgate import invocation
from wxgate.errors import WxgateError
from wxgate.sandbox import SANDBOX_KEY, free_port
from wxgate.sdk import AsyncGatewayClient, GatewayError

# (openid prefix, share of the messages, what the simulator does with it)
MIX = [
    ("o_invalid", 0.01, "40003 invalid openid -> dead letter at once"),
    ("o_unfollowed", 0.01, "43004 not a follower -> dead letter at once"),
    ("o_busy", 0.02, "-1 system busy twice -> sent on the 3rd try"),
    ("o_blocked", 0.01, "sent, receipt 'failed:user block' -> blocked"),
    ("o_sysfail", 0.01, "sent, receipt 'failed: system failed' -> failed"),
]
WAITING = ("queued", "scheduled", "retrying", "sending")


def _recipients(n: int) -> list[str]:
    out: list[str] = []
    for prefix, share, _ in MIX:
        out += [f"{prefix}_{i}" for i in range(max(1, int(n * share)))]
    out += [f"o_follower_{i}" for i in range(n - len(out))]
    return out


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise WxgateError(f"gateway exited with {proc.returncode}")
            try:
                async with s.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise WxgateError("gateway did not become ready")


async def run_demo(n: int, latency_ms: float, console: Console) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "wxgate", "serve", "--sandbox", "--port", str(port),
        "--sim-latency-ms", str(latency_ms), "--log-level", "warning",
    ]  # fmt: skip
    console.print(f"[bold]starting[/bold] {' '.join(cmd[2:])}")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
    try:
        await _wait_healthy(url, proc, 30)
        return await _push_and_report(url, n, latency_ms, console)
    except (WxgateError, GatewayError) as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        console.print(f"gateway stopped (exit {proc.returncode})")


async def _push_and_report(url: str, n: int, latency_ms: float, console: Console) -> int:
    recipients = _recipients(n)
    data = {"thing1": "Order 1042 shipped", "character_string2": "SF1234567890"}
    async with AsyncGatewayClient(url, SANDBOX_KEY) as gw:
        t0 = time.monotonic()
        sem = asyncio.Semaphore(64)
        ids: list[str] = []

        async def one(openid: str) -> None:
            async with sem:
                ids.append((await gw.send(openid, "tpl_order_shipped", data)).id)

        await asyncio.gather(*(one(r) for r in recipients))
        t_accept = time.monotonic() - t0
        console.print(
            f"accepted {len(ids)} messages in {t_accept:.2f} s ({len(ids) / t_accept:,.0f}/s)"
        )
        deadline = time.monotonic() + 120
        while True:
            stats = await gw.stats()
            waiting = sum(stats.by_status.get(s, 0) for s in WAITING)
            if waiting == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        t_done = time.monotonic() - t0
        await asyncio.sleep(0.5)  # the last receipts
        stats = await gw.stats()
        dead = await gw.dead_letters(limit=1000)

    table = Table(title="wxgate demo", show_header=True)
    table.add_column("status")
    table.add_column("messages", justify="right")
    for status, count in sorted(stats.by_status.items(), key=lambda kv: -kv[1]):
        if count:
            table.add_row(status, f"{count:,}")
    console.print(table)
    reasons = Counter(
        f"{m.last_errcode} {m.last_errmsg or ''}".split(" rid:")[0] for m in dead.items
    )
    if reasons:
        console.print("[bold]dead letters by reason[/bold]")
        for reason, count in reasons.most_common():
            console.print(f"  {count:5d}  {reason}")
    finished = sum(stats.by_status.get(s, 0) for s in ("sent", "delivered", "blocked", "failed"))
    console.print(
        f"delivered to the simulator: {finished:,} in {t_done:.2f} s "
        f"({finished / t_done:,.0f}/s end to end, simulated WeChat latency {latency_ms:.0f} ms)"
    )
    console.print("[bold]test recipients in this run[/bold]")
    for prefix, _, what in MIX:
        console.print(f"  {prefix:<14} {what}")
    console.print(
        f"look closer: `{invocation.command()} serve --sandbox --port 8080`, then open "
        f"http://127.0.0.1:8080/dashboard (key {SANDBOX_KEY}) or GET /v1/stats"
    )
    waiting = sum(stats.by_status.get(s, 0) for s in WAITING)
    if waiting:
        console.print(f"[red]{waiting} messages still waiting after the deadline[/red]")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(asyncio.run(run_demo(3000, 20.0, Console())))
