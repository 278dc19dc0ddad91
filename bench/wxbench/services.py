"""Starting the pieces of a scenario: simulator, gateway, no-op server; configs and payloads."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wxbench.procs import BENCH, Proc, free_port, http_get, http_post, venv_python, wait_http

APPID = "wx_bench"
SECRET = "bench_secret"
APP = "bench"
API_KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TEMPLATE_ID = "tpl_bench_order"
# What every benchmark message carries (valid for the simulator's template checks).
DATA = {
    "thing1": "Your order shipped",
    "time2": "2024-06-01 10:00",
    "amount3": "99.50",
}
REDIS_URL = "redis://127.0.0.1:6379/14"  # a spare db, flushed before each use


# ------------------------------------------------------------------------------ payloads


def recipient_name(i: int) -> str:
    """A name of recipient i that WeChat accepts: letters only (digits spelled a-j)."""
    return "user " + str(i).translate(_DIGITS_AS_LETTERS)


_DIGITS_AS_LETTERS = str.maketrans("0123456789", "abcdefghij")


def message_body(i: int = 0) -> dict[str, Any]:
    return {"touser": f"o_bench_{i:07d}", "template_id": TEMPLATE_ID, "data": DATA}


def batch_body(start: int, n: int) -> dict[str, Any]:
    """One template to n recipients, each with a field of its own (per-recipient data)."""
    return {
        "template_id": TEMPLATE_ID,
        "data": DATA,
        "recipients": [
            {"touser": f"o_bench_{i:07d}", "data": {"name4": recipient_name(i)}}
            for i in range(start, start + n)
        ],
    }


def wechat_body(i: int, client_msg_id: str) -> dict[str, Any]:
    """The WeChat template-send body the gateway would build for message i."""
    return {
        "touser": f"o_bench_{i:07d}",
        "template_id": TEMPLATE_ID,
        "data": {k: {"value": v} for k, v in {**DATA, "name4": recipient_name(i)}.items()},
        "client_msg_id": client_msg_id,
    }


# ------------------------------------------------------------------------------ simulator


@dataclass
class Sim:
    proc: Proc
    url: str
    ca_file: str | None

    def stats(self) -> dict[str, Any]:
        return json.loads(http_get(f"{self.url}/_sim/stats", context_ca=self.ca_file))

    def delivery_times(self) -> list[tuple[str | None, float]]:
        """(client_msg_id, receipt time) of every delivery, in order."""
        out: list[tuple[str | None, float]] = []
        offset, page = 0, 20000
        while True:
            raw = http_get(
                f"{self.url}/_sim/deliveries?offset={offset}&limit={page}",
                timeout=60,
                context_ca=self.ca_file,
            )
            rows = json.loads(raw)
            if isinstance(rows, dict):
                rows = rows.get("deliveries", [])
            out.extend((r.get("client_msg_id"), float(r["time"])) for r in rows)
            if len(rows) < page:
                return out
            offset += page

    def token(self) -> str:
        body = json.dumps(
            {
                "grant_type": "client_credential",
                "appid": APPID,
                "secret": SECRET,
                "force_refresh": False,
            }
        ).encode()
        _, raw = http_post(f"{self.url}/cgi-bin/stable_token", body, context_ca=self.ca_file)
        return str(json.loads(raw)["access_token"])


def start_sim(
    run_dir: Path,
    name: str = "sim",
    latency_ms: float = 0.0,
    tls: bool = False,
    templates: Mapping[str, Sequence[str]] | None = None,
) -> Sim:
    """The simulator with the bench app; `templates` (template_id -> keywords) gives it a
    template list, for gateways that validate against it."""
    port = free_port()
    template_lines = [
        line
        for template_id, keys in (templates or {}).items()
        for line in (
            "[[apps.templates]]",
            f'template_id = "{template_id}"',
            f"keys = {json.dumps(list(keys))}",
        )
    ]
    tls_dir = run_dir / f"{name}-tls"
    cfg = run_dir / f"{name}.toml"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "\n".join(
            [
                'host = "127.0.0.1"',
                f"port = {port}",
                f"tls = {'true' if tls else 'false'}",
                f'tls_dir = "{tls_dir}"',
                "keep_data = false",
                "[faults]",
                f"latency_ms = {float(latency_ms)}",
                "[[apps]]",
                f'appid = "{APPID}"',
                f'secret = "{SECRET}"',
                "daily_quota = 1000000000",
                "token_daily_limit = 0",
                "stable_daily_limit = 0",
                *template_lines,
                "",
            ]
        )
    )
    # --host/--port again on the command line: the CLI's defaults override the file's values.
    cmd = [venv_python(), "-m", "wxgate", "sim", "--config", str(cfg)]
    proc = Proc(name, [*cmd, "--host", "127.0.0.1", "--port", str(port)], run_dir)
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    ca = str(tls_dir / "ca.pem") if tls else None
    # The CA file appears once the simulator has started; wait for it before a TLS poll.
    deadline = time.monotonic() + 30
    while tls and not Path(ca or "").exists() and time.monotonic() < deadline and proc.alive():
        time.sleep(0.05)
    wait_http(f"{url}/_sim/health", proc, ca_file=ca)
    return Sim(proc, url, ca)


# ------------------------------------------------------------------------------ gateway


@dataclass
class GatewayProcess:
    proc: Proc
    url: str
    config: Path

    def stats(self) -> dict[str, Any]:
        return json.loads(http_get(f"{self.url}/v1/stats", headers=AUTH, timeout=30))

    def metrics(self) -> str:
        return http_get(f"{self.url}/metrics", headers=AUTH, timeout=30).decode()


def write_gateway_config(
    path: Path,
    *,
    port: int,
    store_url: str,
    sim_url: str,
    ca_file: str | None = None,
    concurrency: int = 256,
) -> Path:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f'api_keys = ["{API_KEY}"]',
        "[store]",
        f'url = "{store_url}"',
        "[wechat]",
        f'base_url = "{sim_url}"',
        f"pool_size = {concurrency}",
    ]
    if ca_file:
        lines.append(f'ca_file = "{ca_file}"')
    lines += [
        "[workers]",
        f"concurrency = {concurrency}",
        "[[apps]]",
        f'name = "{APP}"',
        f'appid = "{APPID}"',
        f'secret = "{SECRET}"',
        # No rate limit or quota in the way: the benchmark measures the pipeline.
        "rate_per_s = 10000000.0",
        "daily_quota = 1000000000",
        f"max_concurrency = {concurrency}",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def gateway_command(
    config: Path, role: str, processes: int = 1, unpooled: bool = False
) -> list[str]:
    head = (
        [venv_python(), str(BENCH / "gateway_unpooled.py")]
        if unpooled
        else [venv_python(), "-m", "wxgate"]
    )
    return [
        *head,
        "serve",
        "--config",
        str(config),
        "--role",
        role,
        "--processes",
        str(processes),
        "--log-level",
        "warning",
    ]


def start_gateway(
    run_dir: Path,
    name: str,
    config: Path,
    role: str,
    processes: int = 1,
    unpooled: bool = False,
) -> GatewayProcess:
    port = _config_port(config)
    proc = Proc(name, gateway_command(config, role, processes, unpooled), run_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc, timeout=60)
    if processes > 1:
        time.sleep(1.5)  # the first child answered; give the others time to bind too
    return GatewayProcess(proc, url, config)


def _config_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("port = "):
            return int(line.split("=")[1])
    raise ValueError(f"{config}: no port")


def start_noop(run_dir: Path, name: str = "noop") -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(name, [venv_python(), str(BENCH / "noop_server.py"), "--port", str(port)], run_dir)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    return proc, url


def enqueue_batches(url: str, n: int, per_batch: int = 1000, parallel: int = 4) -> float:
    """POST n messages as batches; return the seconds it took. Raises on any non-202."""
    starts = list(range(0, n, per_batch))

    def one(start: int) -> None:
        size = min(per_batch, n - start)
        body = json.dumps(batch_body(start, size)).encode()
        status, raw = http_post(f"{url}/v1/batches", body, timeout=120, headers=AUTH)
        if status != 202:
            raise RuntimeError(f"batch enqueue answered {status}: {raw[:300]!r}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, starts))
    return time.monotonic() - t0


# ------------------------------------------------------------------------------ redis


def redis_ready(url: str = REDIS_URL) -> str | None:
    """None when a Redis answers at `url` (and was flushed); else why not."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed"
    try:
        r = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
        r.ping()
        r.flushdb()
        r.close()
    except Exception as exc:
        return f"no Redis at {url}: {type(exc).__name__}: {exc}"
    return None


# ------------------------------------------------------------------------------ postgresql

# WXBENCH_PG_PORT points the bench at another local server (e.g. a private one started
# with shared_preload_libraries = pg_stat_statements, for a per-statement profile).
PG_ADMIN = ("127.0.0.1", int(os.environ.get("WXBENCH_PG_PORT", "5432")))
PG_DB = "wxgate_bench"
PG_URL = f"postgresql://postgres@{PG_ADMIN[0]}:{PG_ADMIN[1]}/{PG_DB}"


def _psql(sql: str) -> None:
    """One statement on the local server's `postgres` database (asyncpg on a thread-free
    event loop of its own: the bench is synchronous)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=PG_ADMIN[0], port=PG_ADMIN[1], user="postgres", database="postgres", timeout=5
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def postgres_ready() -> str | None:
    """None when the local PostgreSQL answers and `wxgate_bench` was made afresh (every run
    starts from an empty database); else why not."""
    try:
        _psql(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        _psql(f"CREATE DATABASE {PG_DB}")
    except Exception as exc:
        return f"no PostgreSQL at {PG_ADMIN[0]}:{PG_ADMIN[1]}: {type(exc).__name__}: {exc}"
    return None


class PgBackends:
    """CPU of the PostgreSQL backends serving the bench database, read from /proc/<pid>/stat
    (utime + stime) of every `postgres: ... wxgate_bench ...` process: the server's own cost
    of our queries. Shared server processes (WAL writer, checkpointer) are not included, and a
    backend that exits between two readings takes its seconds with it (the pool keeps its
    connections for the whole run, so that is rare)."""

    name = "postgres"

    def cpu_seconds(self) -> float:
        import glob
        import os

        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for cmd in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                if f" {PG_DB} ".encode() not in open(cmd, "rb").read():
                    continue
                text = open(cmd[: -len("cmdline")] + "stat").read()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total
