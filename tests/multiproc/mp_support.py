"""Helpers of the multi-process tests: `python -m wxgate serve` children against one Redis, the
simulator in the test's loop, and readings of what each process and the simulator saw.

Builds on tests/e2e/e2e_support.py (settings, TOML, the API client); nothing is faked.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from e2e_support import (
    API_KEY,
    APP_A,
    TEMPLATE,
    AppSpec,
    settings_dict,
    wait_until,
    write_config,
)

from wxgate.sim.testing import SimHandle


class ServeProcess:
    """`python -m wxgate serve ARGS` as a child of the test; its output goes to `log_file`.

    Only this object's own process (and, for --processes, the children it reports) is ever
    signalled, by pid.
    """

    def __init__(
        self,
        args: Sequence[str],
        port: int,
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Runs in the log file's folder (so no stray ./wxgate.toml is read)."""
        self.args = list(args)
        self.port = port
        self.log_file = log_file
        self.url = f"http://127.0.0.1:{port}"
        self._env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WXGATE_")}
        # These tests are about delivery, not the request deadline (tests/security has those):
        # a loaded 2-core box can stall one Redis call past the 2.5 s default.
        env["WXGATE_SERVER__STORE_TIMEOUT_S"] = "30"
        env.update(self._env)
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.log_file, "ab") as log:
            log.write(f"\n===== start {time.strftime('%H:%M:%S')}\n".encode())
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wxgate", "serve", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.log_file.parent,
            )

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"wxgate exited with {self.proc.returncode}: {self.log()}")
            return await http_status(f"{self.url}/readyz") == 200

        await wait_until(ready, timeout_s, f"wxgate on port {self.port} to be ready")

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        proc = self.proc
        await wait_until(
            lambda: proc.poll() is not None, timeout_s, "wxgate to exit", interval_s=0.05
        )
        return int(proc.returncode)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, extra_pids: Iterable[int] = ()) -> None:
        """Teardown: SIGKILL our process if it still runs, and the listed children of it."""
        for pid in extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


async def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r,
        ):
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return None


def gateway_config(
    tmp_path: Path,
    name: str,
    port: int,
    sim_url: str,
    redis_url: str,
    apps: Sequence[AppSpec] = (APP_A,),
    *,
    app_overrides: Mapping[str, Any] | None = None,
    per_app: Mapping[str, Mapping[str, Any]] | None = None,
    **sections: Mapping[str, Any],
) -> Path:
    """A TOML file for one gateway process on `port` against the Redis at `redis_url`.

    `app_overrides` apply to every app, `per_app` to the app of that name."""
    data = settings_dict(
        tmp_path,
        port,
        sim_url,
        apps,
        app_overrides=app_overrides,
        **{**sections, "store": {"url": redis_url, **sections.get("store", {})}},
    )
    for app in data["apps"]:
        app.update((per_app or {}).get(app["name"], {}))
    return write_config(tmp_path / f"{name}.toml", data)


async def start_all(procs: Sequence[ServeProcess], timeout_s: float = 60.0) -> None:
    """Start every process at once, then wait until each is ready."""
    for p in procs:
        p.start()
    await asyncio.gather(*(p.wait_ready(timeout_s) for p in procs))


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or m["name"] != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m["labels"] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m["value"])
    return total


async def scrape(url: str) -> str:
    """GET url/metrics on a connection of its own (a fresh one lands on any SO_REUSEPORT
    listener)."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s,
        s.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        assert r.status == 200, r.status
        return await r.text()


def steady_rate(times: Sequence[float], skip_s: float) -> float:
    """Sends per second from `skip_s` after the first send on: the least-squares slope of
    sends so far against time.

    Skipping the start leaves out a token bucket's initial burst (it starts full) and the
    start-up lag; the slope, unlike count / span, does not read a late send at either end of
    the span (a busy event loop) as extra speed."""
    ordered = sorted(times)
    points = [(t, i) for i, t in enumerate(ordered) if t > ordered[0] + skip_s]
    mean_t = sum(t for t, _ in points) / len(points)
    mean_i = sum(i for _, i in points) / len(points)
    cov = sum((t - mean_t) * (i - mean_i) for t, i in points)
    return cov / sum((t - mean_t) ** 2 for t, _ in points)


async def sim_sends(sim: SimHandle, appid: str | None = None) -> tuple[list[str], list[float]]:
    """client_msg_id and receive time of every send the simulator took (one row per message
    a user would see: WeChat's dedupe already dropped repeats of a client_msg_id)."""
    rows = await sim.deliveries(app=appid)
    return [str(r["client_msg_id"]) for r in rows], [float(r["time"]) for r in rows]


def repeats(ids: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in ids:
        if i in seen:
            out.append(i)
        seen.add(i)
    return out


async def send_keys(
    url: str,
    keys: Sequence[str],
    accepted: dict[str, str],
    refusals: list[int],
    *,
    app: str | None = None,
    concurrency: int = 8,
    give_up_s: float = 60.0,
) -> None:
    """POST one message per idempotency key (recipient o_<key>), retrying a key until it gets
    its 202; `accepted` maps key -> id, `refusals` collects every other status (None = no
    answer is recorded as 0). A retried key whose first POST committed but lost its answer
    gets the same id back."""
    todo = iter(keys)
    deadline = time.monotonic() + give_up_s
    timeout = aiohttp.ClientTimeout(total=5)

    async def worker(session: aiohttp.ClientSession) -> None:
        for key in todo:
            body: dict[str, Any] = {
                "touser": f"o_{key}",
                "template_id": TEMPLATE,
                "data": {"thing1": "x"},
            }
            if app is not None:
                body["app"] = app
            while True:
                assert time.monotonic() < deadline, f"no 202 for {key} in {give_up_s}s"
                try:
                    async with session.post(
                        f"{url}/v1/messages",
                        json=body,
                        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
                        timeout=timeout,
                    ) as resp:
                        answer = await resp.json(content_type=None)
                        if resp.status == 202:
                            accepted[key] = str(answer["id"])
                            break
                        refusals.append(resp.status)
                except (aiohttp.ClientError, TimeoutError):
                    refusals.append(0)
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
