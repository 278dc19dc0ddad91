"""Shared pieces of the end-to-end and crash tests: the real simulator, the real gateway (in
this process or as a `python -m wxgate serve` subprocess), a clock that can jump, and helpers
that drive the HTTP API over loopback and read what the simulator saw.

Nothing here fakes a component: the clock is real time plus an offset that a test moves.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from support.gateway_process import ServeProcess
from support.wait import wait_until
from wxgate.clock import Clock
from wxgate.runtime import Runtime
from wxgate.sandbox import free_port
from wxgate.settings import Settings, from_dict
from wxgate.sim.config import Faults, SimApp, SimConfig
from wxgate.sim.testing import SimHandle, running_simulator
from wxgate.tracing import Tracer

API_KEY = "e2e-key"
TEMPLATE = "tpl_order"
DATA = {"thing1": "Your order shipped", "amount2": "12.50"}


def cpu_s() -> float:
    """CPU seconds this process (and its threads) used so far: an in-process gateway's cost."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class JumpClock:
    """Real time plus an offset that `jump` moves forward: a VM resumed after a day asleep.

    `sleep` is real, so everything keeps running at real speed around the jumps.
    """

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def jump(self, seconds: float) -> None:
        self.offset += seconds

    def __repr__(self) -> str:
        return f"<JumpClock offset={self.offset:.0f}s>"


@dataclass(frozen=True)
class AppSpec:
    """One app as both sides know it: the gateway's name and WeChat's appid/secret/token."""

    name: str
    appid: str
    secret: str
    callback_token: str
    daily_quota: int = 10_000_000  # the simulator's (WeChat's) daily limit


APP_A = AppSpec("a", "wx_a", "secret_a", "token_a")
APP_B = AppSpec("b", "wx_b", "secret_b", "token_b")


def sim_config(
    gw_port: int,
    apps: Sequence[AppSpec] = (APP_A,),
    *,
    latency_ms: float = 0.0,
    jitter_ms: float = 0.0,
    **kw: Any,
) -> SimConfig:
    """A simulator that knows `apps` and posts their receipts to the gateway on `gw_port`;
    `jitter_ms` spreads answers uniformly over [latency_ms, latency_ms + jitter_ms). A
    `faults=` among `kw` replaces both."""
    return SimConfig(
        apps=[
            SimApp(
                appid=a.appid,
                secret=a.secret,
                callback_url=f"http://127.0.0.1:{gw_port}/wechat/callback/{a.name}",
                callback_token=a.callback_token,
                daily_quota=a.daily_quota,
            )
            for a in apps
        ],
        **{"faults": Faults(latency_ms=latency_ms, latency_jitter_ms=jitter_ms), **kw},
    )


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def settings_dict(
    tmp_path: Path,
    gw_port: int,
    sim_url: str,
    apps: Sequence[AppSpec] = (APP_A,),
    *,
    app_overrides: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> dict[str, Any]:
    """The gateway's settings as plain data (so it can also be written as TOML).

    `sections` are merged over the defaults by section (`workers={"retry": {"base_s": 1}}`);
    `app_overrides` applies to every app.
    """
    base: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": gw_port, "api_keys": [API_KEY]},
        "store": {"url": f"sqlite:///{tmp_path / 'wxgate.db'}", "retention_s": 86_400.0},
        "wechat": {
            "base_url": sim_url,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 2.0,
            "total_timeout_s": 2.0,
        },
        "workers": {
            "concurrency": 128,
            "lease_s": 10.0,
            "lease_batch": 128,
            "idle_poll_s": 0.02,
            "drain_timeout_s": 5.0,
            "retry": {"max_attempts": 8, "base_s": 0.05, "cap_s": 0.5},
            "breaker": {"consecutive_failures": 20, "open_s": 1.0},
        },
        "apps": [
            {
                "name": a.name,
                "appid": a.appid,
                "secret": a.secret,
                "callback_token": a.callback_token,
                "rate_per_s": 100_000.0,
                "daily_quota": 10_000_000,
                "max_concurrency": 128,
                **(app_overrides or {}),
            }
            for a in apps
        ],
    }
    return _merge(base, sections)


def build_settings(*args: Any, **kw: Any) -> Settings:
    return from_dict(settings_dict(*args, **kw))


# ---------------------------------------------------------------- TOML for subprocess gateways


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return msgspec.json.encode(v).decode()  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def _toml_table(prefix: str, table: Mapping[str, Any], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    if prefix:
        out.append(f"[{prefix}]")
    out.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items() if v is not None)
    out.append("")
    for k, v in table.items():
        if isinstance(v, Mapping):
            _toml_table(f"{prefix}.{k}" if prefix else k, v, out)


def to_toml(data: Mapping[str, Any]) -> str:
    out: list[str] = []
    for section, value in data.items():
        if section == "apps":
            continue
        _toml_table(section, value, out)
    for app in data.get("apps", []):
        out.append("[[apps]]")
        out.extend(f"{k} = {_toml_value(v)}" for k, v in app.items() if v is not None)
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- the API over loopback


class Api:
    """A thin aiohttp client for the gateway's HTTP API, with the helpers the tests share."""

    def __init__(self, base_url: str, key: str = API_KEY, connections: int = 64) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(
            base_url,
            headers={"Authorization": f"Bearer {key}"},
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.session.close()

    async def post(
        self, path: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.post(path, json=body, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(path) as resp:
            return resp.status, await resp.json(content_type=None)

    async def send(self, touser: str = "o_user", **fields: Any) -> str:
        """POST one message; returns its id (asserts 202)."""
        body = {"touser": touser, "template_id": TEMPLATE, "data": DATA, **fields}
        status, answer = await self.post("/v1/messages", body)
        assert status == 202, (status, answer)
        return str(answer["id"])

    async def send_many(
        self,
        n: int,
        touser: Callable[[int], str] | str = "o_user",
        concurrency: int = 64,
        **fields: Any,
    ) -> list[str]:
        """n single POST /v1/messages from `concurrency` tasks; ids in index order."""
        ids: list[str] = [""] * n
        counter = iter(range(n))

        async def worker() -> None:
            for i in counter:
                to = touser(i) if callable(touser) else touser
                ids[i] = await self.send(to, **fields)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ids

    async def send_batches(self, batches: int, size: int, prefix: str = "o_b") -> list[str]:
        """`batches` POST /v1/batches of `size` recipients each, touser f"{prefix}{b}_{i}";
        their ids (asserts 202)."""
        ids = []
        for b in range(batches):
            recipients = [{"touser": f"{prefix}{b}_{i}"} for i in range(size)]
            status, answer = await self.post(
                "/v1/batches",
                {"template_id": TEMPLATE, "data": {"thing1": "x"}, "recipients": recipients},
            )
            assert status == 202, answer
            ids.append(str(answer["id"]))
        return ids

    async def message(self, msg_id: str) -> dict[str, Any]:
        status, body = await self.get(f"/v1/messages/{msg_id}")
        assert status == 200, (status, body)
        return dict(body)

    async def messages(self, ids: Iterable[str], concurrency: int = 32) -> list[dict[str, Any]]:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: str) -> dict[str, Any]:
            async with sem:
                return await self.message(i)

        return list(await asyncio.gather(*(one(i) for i in ids)))

    async def stats(self) -> dict[str, Any]:
        status, body = await self.get("/v1/stats")
        assert status == 200, (status, body)
        return dict(body)

    async def by_status(self) -> dict[str, int]:
        return dict((await self.stats())["by_status"])

    async def metrics_text(self) -> str:
        async with self.session.get("/metrics") as resp:
            assert resp.status == 200
            return await resp.text()


async def wait_status(
    api: Api, status: str, n: int, timeout_s: float, *, what: str = ""
) -> dict[str, int]:
    """Wait until /v1/stats counts at least n messages in `status`; returns by_status."""

    async def reached() -> dict[str, int] | None:
        counts = await api.by_status()
        return counts if counts.get(status, 0) >= n else None

    result: dict[str, int] = await wait_until(
        reached, timeout_s, what or f"{n} {status}", interval_s=0.2, progress=api.by_status
    )
    return result


# ---------------------------------------------------------------- what the simulator saw


@dataclass
class SimView:
    """The simulator's deliveries, reduced to what the tests assert on."""

    rows: list[dict[str, Any]]
    ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = [str(r["client_msg_id"]) for r in self.rows]

    @property
    def distinct(self) -> set[str]:
        return set(self.ids)


async def sim_view(sim: SimHandle, app: AppSpec | None = None) -> SimView:
    return SimView(await sim.deliveries(app=app.appid if app is not None else None))


# ---------------------------------------------------------------- in-process rig


@dataclass
class Rig:
    sim: SimHandle
    runtime: Runtime
    api: Api
    settings: Settings
    port: int


@asynccontextmanager
async def running_rig(
    tmp_path: Path,
    apps: Sequence[AppSpec] = (APP_A,),
    *,
    latency_ms: float = 0.0,
    gw_clock: Clock | None = None,
    sim_clock: Clock | None = None,
    sim_kw: Mapping[str, Any] | None = None,
    app_overrides: Mapping[str, Any] | None = None,
    tracer: Tracer | None = None,
    **sections: Mapping[str, Any],
) -> AsyncIterator[Rig]:
    """The simulator and an in-process Runtime (SQLite file in tmp_path), wired both ways;
    `tracer` as Runtime's."""
    port = free_port()
    config = sim_config(port, apps, latency_ms=latency_ms, **(sim_kw or {}))
    async with running_simulator(config, clock=sim_clock) as sim:
        settings = build_settings(
            tmp_path, port, sim.base_url, apps, app_overrides=app_overrides, **sections
        )
        async with Runtime(settings, clock=gw_clock, tracer=tracer) as runtime:
            api = Api(runtime.url)
            try:
                yield Rig(sim, runtime, api, settings, port)
            finally:
                await api.close()


# ---------------------------------------------------------------- subprocess gateway


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(to_toml(data), encoding="utf-8")
    from_dict(dict(data))  # what we wrote must be valid settings
    return path


def short_leases(concurrency: int) -> dict[str, Any]:
    """Settings sections for a gateway that a test kills: a send gives up after 1 s, and a
    lease (just above the 2 x 1 s send budget + 1 s rate look-ahead) comes back 3.5 s after
    its holder died, so a restarted process takes the dead one's messages over soon."""
    return {
        "wechat": {"total_timeout_s": 1.0, "read_timeout_s": 1.0},
        "workers": {"concurrency": concurrency, "lease_batch": concurrency, "lease_s": 3.5},
    }


@asynccontextmanager
async def gateway_process(
    tmp_path: Path,
    port: int,
    sim_url: str,
    *,
    app_overrides: Mapping[str, Any] | None = None,
    **sections: Mapping[str, Any],
) -> AsyncIterator[tuple[ServeProcess, Api]]:
    """`python -m wxgate serve --config` on `port` with `settings_dict`'s settings (its
    SQLite file is tmp_path / "wxgate.db"), started and ready, and an Api client for it;
    killed at the end if still running."""
    config = write_config(
        tmp_path / "wxgate.toml",
        settings_dict(tmp_path, port, sim_url, app_overrides=app_overrides, **sections),
    )
    gw = ServeProcess(["--config", str(config)], port, tmp_path / "gateway.log")
    api = Api(gw.url)
    try:
        gw.start()
        await gw.wait_ready()
        yield gw, api
    finally:
        await api.close()
        gw.stop()


def db_query(db_file: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the gateway's SQLite file directly (WAL lets a reader in beside the writer)."""
    conn = sqlite3.connect(db_file, timeout=10)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def db_status_counts(db_file: Path) -> dict[str, int]:
    rows = db_query(db_file, "SELECT status, COUNT(*) FROM messages GROUP BY status")
    return {str(s): int(n) for s, n in rows}


async def send_through_crashes(
    url: str,
    keys: Sequence[str],
    accepted: dict[str, str],
    *,
    concurrency: int = 8,
    pause_s: float = 0.0,
    give_up_s: float = 60.0,
) -> int:
    """POST one message per idempotency key, retrying a key until it gets its 202 even while
    the gateway is down; `accepted` maps key -> id. Returns how many POSTs got no answer.

    A retried key whose first POST was committed but lost its answer must get the same id.
    """
    failures = 0
    todo = iter(keys)
    deadline = time.monotonic() + give_up_s
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = aiohttp.ClientTimeout(total=5)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for key in todo:
            body = {"touser": f"o_{key}", "template_id": TEMPLATE, "data": DATA}
            while True:
                assert time.monotonic() < deadline, f"no 202 for {key} in {give_up_s}s"
                try:
                    async with session.post(
                        f"{url}/v1/messages",
                        json=body,
                        headers={**headers, "Idempotency-Key": key},
                        timeout=timeout,
                    ) as resp:
                        answer = await resp.json(content_type=None)
                        if resp.status == 202:
                            accepted[key] = str(answer["id"])
                            break
                        assert resp.status in (429, 503), (resp.status, answer)
                except (aiohttp.ClientError, TimeoutError):
                    pass
                failures += 1
                await asyncio.sleep(0.05)
            if pause_s:
                await asyncio.sleep(pause_s)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return failures
