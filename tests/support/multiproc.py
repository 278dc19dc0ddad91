"""Helpers of the multi-process tests: `python -m wxgate serve` children against one Redis, the
simulator in the test's loop, and readings of what each process and the simulator saw.

Builds on support.e2e (settings, TOML, the API client) and support.gateway_process (the
child process); nothing is faked.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from support.e2e import API_KEY, APP_A, TEMPLATE, AppSpec, settings_dict, write_config
from support.gateway_process import ServeProcess
from wxgate.sim.testing import SimHandle


def gateway_config(
    tmp_path: Path,
    name: str,
    port: int,
    sim_url: str,
    store_url: str,
    apps: Sequence[AppSpec] = (APP_A,),
    *,
    app_overrides: Mapping[str, Any] | None = None,
    per_app: Mapping[str, Mapping[str, Any]] | None = None,
    **sections: Mapping[str, Any],
) -> Path:
    """A TOML file for one gateway process on `port` against the shared store at `store_url`.

    `app_overrides` apply to every app, `per_app` to the app of that name."""
    data = settings_dict(
        tmp_path,
        port,
        sim_url,
        apps,
        app_overrides=app_overrides,
        **{**sections, "store": {"url": store_url, **sections.get("store", {})}},
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
