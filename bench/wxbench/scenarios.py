"""The scenarios of the performance issue (docs/architecture.md §12.1), each against its baseline.

Every scenario starts what it needs in separate processes, measures, and stops everything
(ExitStack, even on failure). Runs are interleaved (baseline, ours, baseline, ours, ...) so
that drift on a shared machine hits both sides alike; figures are medians over the runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wxbench import profile as prof
from wxbench.loadgen import run_wrk
from wxbench.procs import BENCH, Proc, Sampler, cpu_share, free_port, venv_python
from wxbench.services import (
    API_KEY,
    PG_URL,
    REDIS_URL,
    PgBackends,
    Sim,
    batch_body,
    enqueue_batches,
    message_body,
    postgres_ready,
    redis_ready,
    start_gateway,
    start_noop,
    start_sim,
    wechat_body,
    write_gateway_config,
)
from wxbench.stats import bins_of, cdf, percentile, ratio, slope_per_min, summary

CONCURRENCY = 256  # workers.concurrency of the gateway = the bare client's concurrency
P1_CONNECTIONS = 64
P2_CONNECTIONS = 4
BATCH_SIZE = 1000
STEADY_WARMUP = 0.5  # P6: the slope is taken after this fraction of the steady run
STEADY_BASELINE_S = 120  # P6: the no-op's steady run is at most this long


@dataclass
class Ctx:
    mode: str  # quick | full
    runs: int
    out: Path
    redis_why: str | None  # None = Redis available
    profile: bool
    command: str
    log: Callable[[str], None] = print
    pg_why: str | None = "not asked for (--postgres)"  # None = PostgreSQL available
    profile_store: str | None = None  # --profile-store: profile that store's variants only

    def d(self, quick: Any, full: Any) -> Any:
        return quick if self.mode == "quick" else full

    def rdir(self, *parts: str) -> Path:
        p = self.out.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class Variant:
    key: str
    label: str
    side: str  # ours | baseline
    store: str = "sqlite"  # sqlite | redis | postgres
    role: str = "api"
    processes: int = 1
    opts: dict[str, Any] = field(default_factory=dict)


def _store_url(v: Variant, run_dir: Path) -> str:
    if v.store == "redis":
        why = redis_ready()  # also FLUSHDB: every run starts from an empty db
        if why:
            raise RuntimeError(why)
        return REDIS_URL
    if v.store == "postgres":
        why = postgres_ready()  # a fresh, empty database for every run
        if why:
            raise RuntimeError(why)
        return PG_URL
    return f"sqlite:///{run_dir / 'gw.db'}"


def _interleave(
    ctx: Ctx, scen: str, variants: list[Variant], run: Callable[[Variant, int], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {v.key: [] for v in variants}
    for k in range(ctx.runs):
        for v in variants:
            t0 = time.monotonic()
            r = {}
            # One retry: a run that fails (a port taken, a module being rewritten under a
            # shared work tree) is run again rather than leaving fewer runs for the median.
            for attempt in (1, 2):
                try:
                    r = run(v, k if attempt == 1 else k + 50)
                    break
                except Exception as exc:
                    ctx.log(
                        f"    {scen} {v.label} run {k + 1} (try {attempt}): FAILED "
                        f"{type(exc).__name__}: {str(exc)[:300]}"
                    )
                    (ctx.rdir(scen) / f"error-{v.key}-{k}-{attempt}.txt").write_text(
                        traceback.format_exc()
                    )
                    r = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            r["elapsed_s"] = round(time.monotonic() - t0, 1)
            # The stores are the bulk of bench/out (P6 full: GBs); the logs are what we keep.
            for db in ctx.out.joinpath(scen).glob("*/gw.db*"):
                db.unlink(missing_ok=True)
            results[v.key].append(r)
            ctx.log(f"    {scen} run {k + 1}/{ctx.runs} {v.label}: {_brief(r)}")
    return results


def _brief(r: dict[str, Any]) -> str:
    if "error" in r:
        return "error"
    keys = ("rate", "p50_ms", "p99_ms", "peak_rss_mb", "slope_mb_per_min")
    return ", ".join(f"{k}={r[k]:,.1f}" for k in keys if isinstance(r.get(k), int | float))


def _vals(results: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in results if isinstance(r.get(key), int | float)]


def _row(
    *,
    name: str,
    metric: str,
    unit: str,
    ours: list[float],
    baseline_name: str | None,
    baseline: list[float] | None,
    target: str,
    met: Callable[[float, float | None], bool] | None,
    higher_is_better: bool = True,
    note: str = "",
) -> dict[str, Any]:
    o = summary(ours)
    b = summary(baseline) if baseline is not None else None
    r = ratio(o["median"], b["median"]) if b is not None else None
    ok = None
    if met is not None and o["median"] is not None:
        ok = bool(met(o["median"], r))
    return {
        "name": name,
        "metric": metric,
        "unit": unit,
        "ours": o,
        "baseline_name": baseline_name,
        "baseline": b,
        "ratio": r,
        "target": target,
        "met": ok,
        "higher_is_better": higher_is_better,
        "note": note,
    }


def _series(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Plot data from the median run (by rate) of one variant."""
    good = [r for r in results if "error" not in r]
    if not good:
        return {}
    key = "rate" if any("rate" in r for r in good) else None
    if key:
        good = sorted(good, key=lambda r: r.get(key) or 0)
    mid = good[len(good) // 2]
    return {k: mid[k] for k in ("bins", "bin_s", "cdf", "rss", "bins2") if k in mid}


def _scenario(
    ctx: Ctx,
    scen: str,
    title: str,
    variants: list[Variant],
    results: dict[str, list[dict[str, Any]]],
    rows: list[dict[str, Any]],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "scenario": scen,
        "title": title,
        "mode": ctx.mode,
        "runs": ctx.runs,
        "command": f"{ctx.command} --only {scen}",
        "variants": {v.key: v.label for v in variants},
        "rows": rows,
        "series": {v.key: _series(results[v.key]) for v in variants},
        "details": {
            k: [
                {kk: vv for kk, vv in r.items() if kk not in ("bins", "cdf", "rss", "bins2")}
                for r in rs
            ]
            for k, rs in results.items()
        },
        **extra,
    }


def _profiled(
    ctx: Ctx,
    scen: str,
    rows: list[dict[str, Any]],
    variants: list[Variant],
    run: Callable[..., dict[str, Any]],
) -> dict[str, Any] | None:
    """With --profile: one extra run of the first single-process variant that missed a target."""
    if not ctx.profile:
        return None
    missed = {r["name"] for r in rows if r["met"] is False}
    for v in variants:
        if ctx.profile_store is not None and v.store != ctx.profile_store:
            continue
        if v.side == "ours" and v.processes == 1 and v.label in missed:
            ctx.log(f"    {scen}: profiling {v.label} (py-spy, one extra run)")
            try:
                r = run(v, 99, profile=True)
            except Exception as exc:
                ctx.log(f"    {scen}: profile run failed: {exc}")
                return {"variant": v.label, "error": str(exc)}
            p = r.get("profile") or {}
            p["variant"] = v.label
            p["rate_while_profiled"] = r.get("rate")
            return p
    return None


# ---------------------------------------------------------------------------------- P1 / P2


def _ingest_variants(ctx: Ctx, with_all: bool) -> list[Variant]:
    vs = [
        Variant("noop", "no-op aiohttp+msgspec", "baseline"),
        Variant("sqlite-api", "SQLite, role api", "ours", role="api"),
    ]
    if with_all:
        vs.append(Variant("sqlite-all", "SQLite, role all", "ours", role="all"))
    if with_all and ctx.redis_why is None:
        vs += [
            Variant("redis-api", "Redis, role api", "ours", store="redis", role="api"),
            Variant("redis-all", "Redis, role all", "ours", store="redis", role="all"),
            Variant("redis-api-2p", "Redis, role api, 2 processes", "ours", "redis", "api", 2),
        ]
    if ctx.pg_why is None:
        vs.append(Variant("pg-api", "PostgreSQL, role api", "ours", store="postgres"))
    if with_all and ctx.pg_why is None:
        vs.append(Variant("pg-all", "PostgreSQL, role all", "ours", "postgres", "all"))
    return vs


def _ingest_run(
    ctx: Ctx,
    scen: str,
    v: Variant,
    k: int,
    *,
    path: str,
    body_file: Path,
    connections: int,
    duration: float,
    per_request: int,
    profile: bool = False,
) -> dict[str, Any]:
    d = ctx.rdir(scen, f"{v.key}-{k}")
    with ExitStack() as stack:
        procs: dict[str, Proc] = {}
        sim: Sim | None = None
        if v.side == "baseline":
            proc, url = start_noop(d)
            stack.callback(proc.stop)
            procs["server"] = proc
        else:
            sim_url = "http://127.0.0.1:9"  # role api never calls WeChat
            if v.role == "all":
                sim = start_sim(d)
                stack.callback(sim.proc.stop)
                procs["sim"] = sim.proc
                sim_url = sim.url
            cfg = write_gateway_config(
                d / "gw.toml", port=free_port(), store_url=_store_url(v, d), sim_url=sim_url
            )
            gw = start_gateway(d, "gateway", cfg, v.role, v.processes)
            stack.callback(gw.proc.stop)
            procs["server"] = gw.proc
            if v.store == "postgres":
                procs["postgres"] = PgBackends()  # type: ignore[assignment]
            url = gw.url
        target = url + path
        run_wrk(
            target,
            body_file,
            duration_s=1,
            connections=connections,
            api_key=API_KEY,
            log_dir=d,
            name="wrk-warmup",
        )
        before = {n: p.cpu_seconds() for n, p in procs.items()}
        t0 = time.monotonic()
        spy = None
        if profile:
            spy = prof.start(procs["server"].pid, duration + 5, d / "py-spy.txt", d)
            time.sleep(0.5)
        res = run_wrk(
            target,
            body_file,
            duration_s=duration,
            connections=connections,
            api_key=API_KEY,
            log_dir=d,
            name="wrk",
        )
        wall = time.monotonic() - t0
        res.cpu.update(cpu_share(before, {n: p.cpu_seconds() for n, p in procs.items()}, wall))
        out: dict[str, Any] = {
            "rate": res.ok_per_s * per_request,
            "p50_ms": res.latency_ms["p50"],
            "p99_ms": res.latency_ms["p99"],
            "wrk": res.to_json(),
            "bins": [(t, n * per_request / res.bin_s) for t, n in res.bins],
            "bin_s": res.bin_s,
            "cdf": res.cdf_ms,
        }
        if spy is not None:
            out["profile"] = prof.finish(spy, d / "py-spy.txt")
        if sim is not None:
            out["sim_delivered"] = sim.stats().get("delivered")
        bad = {s: n for s, n in res.statuses.items() if not s.startswith("2")}
        if bad:
            out["non_2xx"] = bad
        return out


def p1(ctx: Ctx) -> dict[str, Any]:
    scen = "P1"
    duration = ctx.d(4, 15)
    body = ctx.rdir(scen) / "message.json"
    body.write_text(json.dumps(message_body(1)))
    variants = _ingest_variants(ctx, with_all=True)

    def run(v: Variant, k: int, profile: bool = False) -> dict[str, Any]:
        return _ingest_run(
            ctx,
            scen,
            v,
            k,
            path="/v1/messages",
            body_file=body,
            connections=P1_CONNECTIONS,
            duration=duration,
            per_request=1,
            profile=profile,
        )

    results = _interleave(ctx, scen, variants, run)
    base = _vals(results["noop"], "rate")
    base_p99 = _vals(results["noop"], "p99_ms")
    rows = []
    for v in variants[1:]:
        # The target is for ingest alone. A role=all process also delivers every message it
        # takes (P3's work, on the same core), and 2 processes are not "per process".
        single = v.processes == 1 and v.role == "api"
        why = "ingest + delivery in one process" if v.role == "all" else "2 processes"
        rows.append(
            _row(
                name=v.label,
                metric="accepted/s",
                unit="/s",
                ours=_vals(results[v.key], "rate"),
                baseline_name="no-op",
                baseline=base,
                target=">= 10,000/s and >= 80% of no-op" if single else f"info ({why})",
                met=(lambda o, r: o >= 10_000 and r is not None and r >= 0.8) if single else None,
            )
        )
        rows.append(
            _row(
                name=v.label,
                metric="p99 latency",
                unit="ms",
                ours=_vals(results[v.key], "p99_ms"),
                baseline_name="no-op",
                baseline=base_p99,
                target="<= 25 ms" if single else "info",
                met=(lambda o, r: o <= 25.0) if single else None,
                higher_is_better=False,
            )
        )
        rows.append(
            _row(
                name=v.label,
                metric="p50 latency",
                unit="ms",
                ours=_vals(results[v.key], "p50_ms"),
                baseline_name="no-op",
                baseline=_vals(results["noop"], "p50_ms"),
                target="info",
                met=None,
                higher_is_better=False,
            )
        )
    notes = [
        f"wrk -t1 -c{P1_CONNECTIONS} -d{duration}s after a 1 s warm-up; one message per "
        "request; every run starts fresh processes and a fresh store"
    ]
    if ctx.redis_why:
        notes.append(f"Redis rows skipped: {ctx.redis_why}")
    return _scenario(
        ctx,
        scen,
        "Single-message ingest (POST /v1/messages)",
        variants,
        results,
        rows,
        notes=notes,
        profile=_profiled(ctx, scen, rows, variants, run),
    )


def p2(ctx: Ctx) -> dict[str, Any]:
    scen = "P2"
    duration = ctx.d(4, 15)
    body = ctx.rdir(scen) / "batch.json"
    body.write_text(json.dumps(batch_body(0, BATCH_SIZE)))
    variants = _ingest_variants(ctx, with_all=False)

    def run(v: Variant, k: int, profile: bool = False) -> dict[str, Any]:
        return _ingest_run(
            ctx,
            scen,
            v,
            k,
            path="/v1/batches",
            body_file=body,
            connections=P2_CONNECTIONS,
            duration=duration,
            per_request=BATCH_SIZE,
            profile=profile,
        )

    results = _interleave(ctx, scen, variants, run)
    return _scenario(
        ctx,
        scen,
        "Batch ingest (POST /v1/batches, 1,000 recipients)",
        variants,
        results,
        p2_rows(variants, results),
        notes=[
            f"wrk -t1 -c{P2_CONNECTIONS} -d{duration}s, {BATCH_SIZE} recipients per request, "
            f"each with a data field of its own ({body.stat().st_size:,} bytes per body)"
        ],
        profile=_profiled(ctx, scen, p2_rows(variants, results), variants, run),
    )


def p2_rows(variants: list[Variant], results: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """P2's rows: every store's recipients/s and batch p99 against the parse-only no-op."""
    rows = []
    for v in variants[1:]:
        rows += [
            _row(
                name=v.label,
                metric="recipients accepted/s",
                unit="/s",
                ours=_vals(results[v.key], "rate"),
                baseline_name="no-op (parse only)",
                baseline=_vals(results["noop"], "rate"),
                target=">= 100,000/s",
                met=lambda o, r: o >= 100_000,
            ),
            _row(
                name=v.label,
                metric="p99 latency per batch",
                unit="ms",
                ours=_vals(results[v.key], "p99_ms"),
                baseline_name="no-op (parse only)",
                baseline=_vals(results["noop"], "p99_ms"),
                target="info",
                met=None,
                higher_is_better=False,
            ),
        ]
    return rows


# ---------------------------------------------------------------------------------- P3 / P4


def _wait_delivered(sim: Sim, n: int, timeout: float, watch: Proc | None = None) -> float:
    """Poll the simulator until n deliveries; return when (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        got = int(sim.stats().get("delivered", 0))
        if got >= n:
            return time.monotonic()
        if watch is not None and not watch.alive():
            raise RuntimeError(f"{watch.name} exited with {got}/{n} delivered:\n{watch.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {got}/{n} delivered after {timeout:.0f} s")
        time.sleep(0.1)


_GAUGE = re.compile(r'^wxgate_queue_messages\{app="[^"]*",status="([^"]+)"\} ([0-9.e+]+)$')


def _queue_gauges(metrics_text: str) -> dict[str, int]:
    """Messages by status from the gateway's wxgate_queue_messages gauges (non-zero only)."""
    out: dict[str, int] = {}
    for line in metrics_text.splitlines():
        m = _GAUGE.match(line)
        if m and float(m.group(2)):
            out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
    return out


def _time_wait(port: int) -> int | None:
    """TIME_WAIT sockets to or from `port`: about one per connection opened and closed (on
    whichever side closed first)."""
    try:
        r = subprocess.run(
            ["ss", "-Htan", "state", "time-wait", f"( dport = :{port} or sport = :{port} )"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return len([ln for ln in r.stdout.splitlines() if ln.strip()])


def _delivery_run(
    ctx: Ctx,
    scen: str,
    v: Variant,
    k: int,
    *,
    n: int,
    latency_ms: float,
    tls: bool = False,
    profile: bool = False,
) -> dict[str, Any]:
    d = ctx.rdir(scen, f"{v.key}-{k}")
    with ExitStack() as stack:
        sim = start_sim(d, latency_ms=latency_ms, tls=tls)
        stack.callback(sim.proc.stop)
        procs: dict[str, Proc] = {"sim": sim.proc}
        out: dict[str, Any] = {"n": n}
        timeout = n / 100 + 60
        if v.side == "baseline":
            cmd = [
                venv_python(),
                str(BENCH / "bare_client.py"),
                "--url",
                sim.url,
                "--n",
                str(n),
                "--concurrency",
                str(CONCURRENCY),
            ]
            if sim.ca_file:
                cmd += ["--ca-file", sim.ca_file]
            before = {"sim": sim.proc.cpu_seconds()}
            t0 = time.monotonic()
            client = Proc("bare-client", cmd, d)
            stack.callback(client.stop)
            client.wait(timeout)
            wall = time.monotonic() - t0
            lines = [ln for ln in client.tail(5).splitlines() if ln.startswith("{")]
            out["client"] = json.loads(lines[-1]) if lines else {"error": client.tail()}
            cpu = cpu_share(before, {"sim": sim.proc.cpu_seconds()}, wall)
            if client.rusage is not None:
                cpu["client"] = round((client.rusage.ru_utime + client.rusage.ru_stime) / wall, 2)
            out["cpu"] = cpu
        else:
            cfg = write_gateway_config(
                d / "gw.toml",
                port=free_port(),
                store_url=_store_url(v, d),
                sim_url=sim.url,
                ca_file=sim.ca_file,
                concurrency=CONCURRENCY,
            )
            api = start_gateway(d, "gateway-api", cfg, "api")
            try:
                out["enqueue_s"] = round(enqueue_batches(api.url, n, BATCH_SIZE), 2)
            finally:
                api.proc.stop()
            t0 = time.monotonic()
            gw = start_gateway(
                d,
                "gateway-worker",
                cfg,
                "worker",
                v.processes,
                unpooled=bool(v.opts.get("unpooled")),
            )
            stack.callback(gw.proc.stop)
            procs["gateway"] = gw.proc
            if v.store == "postgres":
                procs["postgres"] = PgBackends()  # type: ignore[assignment]
            before = {n_: p.cpu_seconds() for n_, p in procs.items()}
            t1 = time.monotonic()
            spy = prof.start(gw.proc.pid, timeout, d / "py-spy.txt", d) if profile else None
            t_done = _wait_delivered(sim, n, timeout, gw.proc)
            if spy is not None:
                out["profile"] = prof.finish(spy, d / "py-spy.txt")
            out["cpu"] = cpu_share(
                before, {n_: p.cpu_seconds() for n_, p in procs.items()}, t_done - t1
            )
            out["wall_s"] = round(t_done - t0, 2)
            # A role=worker process serves no /v1 routes: its queue gauges are on /metrics.
            try:
                out["gateway_by_status"] = _queue_gauges(gw.metrics())
            except OSError as exc:
                out["gateway_by_status"] = {"error": str(exc)}
            gw.proc.stop()
        sim_stats = sim.stats()
        out["sim"] = {
            k_: sim_stats.get(k_)
            for k_ in ("delivered", "deduplicated", "errors", "requests", "token_fetches")
        }
        times = sorted(t for _, t in sim.delivery_times())
        port = int(sim.url.rsplit(":", 1)[1])
        out["time_wait_sockets"] = _time_wait(port)
    if len(times) >= 2 and times[-1] > times[0]:
        out["rate"] = (len(times) - 1) / (times[-1] - times[0])
        out["send_window_s"] = round(times[-1] - times[0], 3)
    out["bins"] = [(t, c / 0.25) for t, c in bins_of(times, 0.25)]
    out["bin_s"] = 0.25
    return out


def _delivery_variants(ctx: Ctx) -> list[Variant]:
    vs = [
        Variant("bare", "bare aiohttp client", "baseline"),
        Variant("sqlite", "SQLite, 1 worker process", "ours", role="worker"),
    ]
    if ctx.redis_why is None:
        vs += [
            Variant("redis", "Redis, 1 worker process", "ours", "redis", "worker"),
            Variant("redis-2p", "Redis, 2 worker processes", "ours", "redis", "worker", 2),
        ]
    if ctx.pg_why is None:
        vs.append(Variant("pg", "PostgreSQL, 1 worker process", "ours", "postgres", "worker"))
    return vs


def p3(ctx: Ctx) -> dict[str, Any]:
    scen = "P3"
    n = ctx.d(10_000, 50_000)
    variants = _delivery_variants(ctx)
    rows: list[dict[str, Any]] = []
    all_results: dict[str, list[dict[str, Any]]] = {}
    all_variants: list[Variant] = []
    profiles = {}
    for latency in (0, 50):
        lv = [
            Variant(
                f"{v.key}-{latency}ms",
                f"{v.label}, {latency} ms",
                v.side,
                v.store,
                v.role,
                v.processes,
                v.opts,
            )
            for v in variants
        ]

        def run(v: Variant, k: int, profile: bool = False, _lat: int = latency) -> dict[str, Any]:
            return _delivery_run(ctx, scen, v, k, n=n, latency_ms=_lat, profile=profile)

        results = _interleave(ctx, scen, lv, run)
        all_results.update(results)
        all_variants += lv
        base = _vals(results[f"bare-{latency}ms"], "rate")
        lrows = []
        for v in lv[1:]:
            single = v.processes == 1
            if latency == 50 and single:
                target, met = (
                    ">= 4,000/s and >= 70% of bare",
                    (lambda o, r: o >= 4000 and r is not None and r >= 0.7),
                )
            elif single:
                target, met = ">= 70% of bare", (lambda o, r: r is not None and r >= 0.7)
            else:
                target, met = "info (2 processes)", None
            lrows.append(
                _row(
                    name=v.label,
                    metric="delivered/s",
                    unit="/s",
                    ours=_vals(results[v.key], "rate"),
                    baseline_name="bare client",
                    baseline=base,
                    target=target,
                    met=met,
                )
            )
        rows += lrows
        p = _profiled(ctx, scen, lrows, lv, run)
        if p:
            profiles[f"{latency}ms"] = p
    notes = [
        f"{n:,} messages enqueued through POST /v1/batches by a role=api gateway, which is then "
        "stopped; a role=worker gateway is started and the simulator's delivery log is read "
        f"at the end. Rate = deliveries / (last - first delivery time). "
        f"workers.concurrency = bare client concurrency = {CONCURRENCY}.",
    ]
    if ctx.redis_why:
        notes.append(f"Redis rows skipped: {ctx.redis_why}")
    return _scenario(
        ctx,
        scen,
        "Delivery throughput to the simulator (queue pre-filled)",
        all_variants,
        all_results,
        rows,
        notes=notes,
        profile=profiles or None,
    )


def p4(ctx: Ctx) -> dict[str, Any]:
    scen = "P4"
    n_pooled = ctx.d(6_000, 20_000)
    n_new = ctx.d(2_000, 6_000)
    variants = [
        Variant("tls-pooled", "TLS, pooled", "ours", role="worker"),
        Variant(
            "tls-new",
            "TLS, new connection per request",
            "baseline",
            role="worker",
            opts={"unpooled": True},
        ),
        Variant("plain-pooled", "plain HTTP, pooled", "ours", role="worker"),
        Variant(
            "plain-new",
            "plain HTTP, new connection per request",
            "baseline",
            role="worker",
            opts={"unpooled": True},
        ),
    ]

    def run(v: Variant, k: int, profile: bool = False) -> dict[str, Any]:
        unpooled = bool(v.opts.get("unpooled"))
        # The gateway (not the bare client) on both sides: `side` only labels the baseline.
        gv = Variant(v.key, v.label, "ours", role="worker", opts=v.opts)
        return _delivery_run(
            ctx,
            scen,
            gv,
            k,
            n=n_new if unpooled else n_pooled,
            latency_ms=0,
            tls=v.key.startswith("tls"),
            profile=profile,
        )

    results = _interleave(ctx, scen, variants, run)
    rows = [
        _row(
            name="TLS",
            metric="delivered/s pooled vs new connection",
            unit="/s",
            ours=_vals(results["tls-pooled"], "rate"),
            baseline_name="new connection",
            baseline=_vals(results["tls-new"], "rate"),
            target="pooled/new >= 5x",
            met=lambda o, r: r is not None and r >= 5.0,
        ),
        _row(
            name="plain HTTP",
            metric="delivered/s pooled vs new connection",
            unit="/s",
            ours=_vals(results["plain-pooled"], "rate"),
            baseline_name="new connection",
            baseline=_vals(results["plain-new"], "rate"),
            target="info (the target is on TLS)",
            met=None,
        ),
    ]
    notes = [
        "Both sides are the same gateway (role=worker, queue pre-filled as in P3, simulator at "
        "0 ms); the baseline runs bench/gateway_unpooled.py, which builds "
        "WeChatClient(pooled=False) (aiohttp force_close: one TCP/TLS connection per send). "
        f"{n_pooled:,} messages pooled, {n_new:,} unpooled. time_wait_sockets in the details "
        "counts closed connections towards the simulator (about 1 per send when unpooled)."
    ]
    return _scenario(
        ctx,
        scen,
        "Connection reuse: pooled vs a new connection per request",
        variants,
        results,
        rows,
        notes=notes,
    )


# ---------------------------------------------------------------------------------- P5


_BUCKET = re.compile(r'^wxgate_accept_to_sent_seconds_bucket\{.*le="([^"]+)".*\} ([0-9.e+]+)$')


def _histogram_quantiles(metrics_text: str) -> dict[str, float | None]:
    """p50/p99 upper bounds from the gateway's accept_to_sent histogram (bucket resolution)."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        m = _BUCKET.match(line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets.append((le, float(m.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out: dict[str, float | None] = {"count": total}
    for q in (50, 99):
        out[f"p{q}_le_ms"] = next(
            (le * 1000 for le, c in buckets if total and c >= total * q / 100), None
        )
    return out


def _openloop_run(
    ctx: Ctx,
    scen: str,
    v: Variant,
    k: int,
    *,
    rate: float,
    duration: float,
    latency_ms: float,
    profile: bool = False,
) -> dict[str, Any]:
    d = ctx.rdir(scen, f"{v.key}-{k}")
    with ExitStack() as stack:
        sim = start_sim(d, latency_ms=latency_ms)
        stack.callback(sim.proc.stop)
        if v.side == "ours":
            cfg = write_gateway_config(
                d / "gw.toml", port=free_port(), store_url=_store_url(v, d), sim_url=sim.url
            )
            gw = start_gateway(d, "gateway", cfg, "all")
            stack.callback(gw.proc.stop)
            url, target = gw.url, "gateway"
        else:
            url, target = sim.url, "sim"
        out_file = d / "openloop.json"
        lg = Proc(
            "openloop",
            [
                venv_python(),
                str(BENCH / "openloop.py"),
                "--url",
                url,
                "--target",
                target,
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--out",
                str(out_file),
            ],
            d,
        )
        stack.callback(lg.stop)
        spy = None
        if profile and v.side == "ours":
            spy = prof.start(gw.proc.pid, duration + 5, d / "py-spy.txt", d)
        lg.wait(duration + 90)
        prof_summary = prof.finish(spy, d / "py-spy.txt") if spy is not None else None
        data = json.loads(out_file.read_text())
        rec = data["records"]
        ok_ids = [
            (i, a, s)
            for i, a, s, st in zip(rec["id"], rec["acc"], rec["sent"], rec["status"], strict=True)
            if st in (200, 202)
        ]
        res: dict[str, Any] = {
            "offered": data["offered"],
            "accepted": len(ok_ids),
            "errors": data["errors"],
            "unfinished": data["unfinished"],
        }
        try:
            _wait_delivered(sim, len(ok_ids), 30)
        except RuntimeError as exc:
            res["delivery_wait"] = str(exc)
        if v.side == "ours":
            res["accept_to_sent_histogram"] = _histogram_quantiles(gw.metrics())
        seen = dict(sim.delivery_times())
    e2e = sorted((seen[i] - a) * 1000 for i, a, _ in ok_ids if i in seen)
    ingest = sorted((a - s) * 1000 for _, a, s in ok_ids)
    res["missing"] = len(ok_ids) - len(e2e)
    res["p50_ms"] = percentile(e2e, 50)
    res["p99_ms"] = percentile(e2e, 99)
    res["max_ms"] = e2e[-1] if e2e else None
    res["rate"] = len(ok_ids) / duration
    if v.side == "ours":
        res["ingest_p99_ms"] = percentile(ingest, 99)
    if prof_summary is not None:
        res["profile"] = prof_summary
    res["cdf"] = cdf(e2e)
    res["bins"] = [(t, c) for t, c in bins_of([a for _, a, _ in ok_ids], 1.0)]
    res["bins2"] = [(t, c) for t, c in bins_of(sorted(seen.values()), 1.0)]
    res["bin_s"] = 1.0
    return res


def p5(ctx: Ctx) -> dict[str, Any]:
    scen = "P5"
    rate, latency = 1000.0, 50.0
    duration = ctx.d(15, 60)
    variants = [
        Variant("bare", "bare client straight to the simulator", "baseline"),
        Variant("sqlite-all", "gateway, SQLite, role all", "ours", role="all"),
    ]
    if ctx.pg_why is None:
        variants.append(
            Variant("pg-all", "gateway, PostgreSQL, role all", "ours", "postgres", "all")
        )

    def run(v: Variant, k: int, profile: bool = False) -> dict[str, Any]:
        return _openloop_run(
            ctx, scen, v, k, rate=rate, duration=duration, latency_ms=latency, profile=profile
        )

    results = _interleave(ctx, scen, variants, run)
    base = results["bare"]
    limit = latency + 50
    rows = []
    for v in variants[1:]:
        ours = results[v.key]
        rows += [
            _row(
                name=v.label,
                metric="accept -> simulator p99",
                unit="ms",
                ours=_vals(ours, "p99_ms"),
                baseline_name="bare client",
                baseline=_vals(base, "p99_ms"),
                target=f"<= {limit:.0f} ms (latency + 50 ms)",
                met=lambda o, r: o <= limit,
                higher_is_better=False,
            ),
            _row(
                name=v.label,
                metric="accept -> simulator p50",
                unit="ms",
                ours=_vals(ours, "p50_ms"),
                baseline_name="bare client",
                baseline=_vals(base, "p50_ms"),
                target="info",
                met=None,
                higher_is_better=False,
            ),
            _row(
                name=v.label,
                metric="accept -> simulator max",
                unit="ms",
                ours=_vals(ours, "max_ms"),
                baseline_name="bare client",
                baseline=_vals(base, "max_ms"),
                target="info",
                met=None,
                higher_is_better=False,
            ),
        ]
    notes = [
        f"open-loop load (bench/openloop.py) of {rate:,.0f} msg/s for {duration} s; simulator "
        f"latency {latency:.0f} ms. Ours: from the 202 reaching the load generator to the "
        "simulator's receipt time of that id (the simulator stamps a send when it arrives, "
        "before its latency). Baseline: the same load sent straight to the simulator, from the "
        "hand-off to the client to the receipt. Same clock (one machine).",
    ]
    return _scenario(
        ctx,
        scen,
        "End-to-end latency at a steady 1,000 msg/s",
        variants,
        results,
        rows,
        notes=notes,
        profile=_profiled(ctx, scen, rows, variants, run),
    )


# ---------------------------------------------------------------------------------- P6


def _peak_run(ctx: Ctx, scen: str, v: Variant, k: int, *, n: int, work_s: float) -> dict[str, Any]:
    d = ctx.rdir(scen, f"{v.key}-{k}")
    out: dict[str, Any] = {"n": n}
    rss: list[tuple[float, float]] = []
    t_base = time.monotonic()
    with ExitStack() as stack:
        if v.side == "baseline":
            proc, url = start_noop(d)
            stack.callback(proc.stop)
            sampler = Sampler({"p": proc}, 0.25)
            sampler.start()
            out["enqueue_s"] = round(enqueue_batches(url, n, BATCH_SIZE), 2)
            out["peak_rss_mb"] = proc.hwm_mb()
            rss += [(s["t"], s["p"]["rss_mb"]) for s in sampler.stop()]
        else:
            cfg_path = d / "gw.toml"
            sim = start_sim(d, latency_ms=50)
            stack.callback(sim.proc.stop)
            cfg = write_gateway_config(
                cfg_path, port=free_port(), store_url=_store_url(v, d), sim_url=sim.url
            )
            api = start_gateway(d, "gateway-api", cfg, "api")
            stack.callback(api.proc.stop)
            sampler = Sampler({"p": api.proc}, 0.25)
            sampler.start()
            out["enqueue_s"] = round(enqueue_batches(api.url, n, BATCH_SIZE), 2)
            out["queued"] = api.stats()["queue_depth"]
            out["peak_rss_api_mb"] = api.proc.hwm_mb()
            rss += [(s["t"], s["p"]["rss_mb"]) for s in sampler.stop()]
            api.proc.stop()
            t1 = time.monotonic() - t_base
            gw = start_gateway(d, "gateway-all", cfg, "all")
            stack.callback(gw.proc.stop)
            sampler = Sampler({"p": gw.proc}, 0.25)
            sampler.start()
            time.sleep(work_s)
            out["peak_rss_all_mb"] = gw.proc.hwm_mb()
            out["delivered_while_sampled"] = sim.stats().get("delivered")
            rss += [(t1 + s["t"], s["p"]["rss_mb"]) for s in sampler.stop()]
            out["peak_rss_mb"] = max(out["peak_rss_api_mb"], out["peak_rss_all_mb"])
    out["rss"] = rss
    return out


def _steady_run(ctx: Ctx, scen: str, v: Variant, *, duration: float) -> dict[str, Any]:
    d = ctx.rdir(scen, f"{v.key}-steady")
    with ExitStack() as stack:
        sim = start_sim(d, latency_ms=50)
        stack.callback(sim.proc.stop)
        if v.side == "baseline":
            proc, url = start_noop(d)
        else:
            cfg = write_gateway_config(
                d / "gw.toml", port=free_port(), store_url=_store_url(v, d), sim_url=sim.url
            )
            gw = start_gateway(d, "gateway", cfg, "all")
            proc, url = gw.proc, gw.url
        stack.callback(proc.stop)
        sampler = Sampler({"p": proc}, 1.0)
        sampler.start()
        lg = Proc(
            "openloop",
            [
                venv_python(),
                str(BENCH / "openloop.py"),
                "--url",
                url,
                "--rate",
                "1000",
                "--duration",
                str(duration),
                "--no-record",
                "--out",
                str(d / "openloop.json"),
            ],
            d,
        )
        stack.callback(lg.stop)
        lg.wait(duration + 90)
        samples = sampler.stop()
        lag = json.loads((d / "openloop.json").read_text()).get("lag_s", {})
    rss = [(s["t"], s["p"]["rss_mb"]) for s in samples]
    # The gateway's RSS climbs for its first ~90 s at 1,000 msg/s (caches and the allocator
    # filling up) and then holds; the slope is taken over the second half of the run, which
    # is what "flat" is about. The whole curve is in the plot and the first-half growth here.
    warm = duration * STEADY_WARMUP
    steady = [(t, m) for t, m in rss if t >= warm]
    slope = slope_per_min([t for t, _ in steady], [m for _, m in steady])
    first = [m for t, m in rss if t < warm]
    return {
        "duration_s": duration,
        # answer time - schedule: if the p99 is large the server fell behind and the RSS
        # includes a backlog of requests in progress, not only what it keeps.
        "load_lag_s": lag,
        "slope_mb_per_min": slope,
        "rss_first_mb": rss[0][1] if rss else None,
        "rss_at_warmup_end_mb": first[-1] if first else None,
        "rss_end_mb": steady[-1][1] if steady else None,
        "rss_max_mb": max((m for _, m in rss), default=None),
        "rss": rss,
    }


def p6(ctx: Ctx) -> dict[str, Any]:
    scen = "P6"
    n = ctx.d(100_000, 1_000_000)
    work_s = ctx.d(15, 60)
    steady_s = ctx.d(150, 600)
    variants = [
        Variant("noop", "no-op aiohttp+msgspec", "baseline"),
        Variant("sqlite", "gateway, SQLite", "ours"),
    ]

    def run(v: Variant, k: int, profile: bool = False) -> dict[str, Any]:
        return _peak_run(ctx, scen, v, k, n=n, work_s=work_s)

    results = _interleave(ctx, scen, variants, run)
    ctx.log(f"    {scen}: steady run, 1,000 msg/s for {steady_s} s, each side")
    steady = {
        "noop-steady": [
            _steady_run(ctx, scen, variants[0], duration=min(steady_s, STEADY_BASELINE_S))
        ],
        "sqlite-steady": [_steady_run(ctx, scen, variants[1], duration=steady_s)],
    }
    for key, rs in steady.items():
        ctx.log(f"    {scen} {key}: {_brief(rs[0])}")
    results.update(steady)
    steady_variants = [
        Variant("noop-steady", "no-op, steady 1,000/s", "baseline"),
        Variant("sqlite-steady", "gateway, steady 1,000/s", "ours"),
    ]
    rows = [
        _row(
            name="gateway, SQLite",
            metric=f"peak RSS with {n:,} queued",
            unit="MB",
            ours=_vals(results["sqlite"], "peak_rss_mb"),
            baseline_name="no-op (same batches)",
            baseline=_vals(results["noop"], "peak_rss_mb"),
            target="<= 200 MB",
            met=lambda o, r: o <= 200,
            higher_is_better=False,
        ),
        _row(
            name="gateway, SQLite",
            metric="RSS slope at 1,000 msg/s",
            unit="MB/min",
            ours=_vals(steady["sqlite-steady"], "slope_mb_per_min"),
            baseline_name="no-op",
            baseline=_vals(steady["noop-steady"], "slope_mb_per_min"),
            target="flat (<= 1 MB/min)",
            met=lambda o, r: o <= 1.0,
            higher_is_better=False,
        ),
    ]
    notes = [
        f"Peak: a role=api gateway takes {n:,} messages through POST /v1/batches, then a "
        f"role=all gateway runs {work_s} s on that queue (simulator at 50 ms); peak = VmHWM of "
        "either. Baseline: the no-op server fed the same batches.",
        f"Slope: role=all gateway at an open-loop 1,000 msg/s for {steady_s} s (no-op: "
        f"{min(steady_s, STEADY_BASELINE_S)} s), RSS sampled every second; least-squares "
        "slope over the second half of the run (the first half is warm-up: see the plot).",
    ]
    for key, rs in steady.items():
        lag = (rs[0].get("load_lag_s") or {}).get("p99")
        if lag is not None and lag > 1.0:
            notes.append(
                f"{key}: the server fell behind the offered load (answers trailed the schedule "
                f"by {lag:.1f} s at p99), so its RSS includes a backlog of requests in progress: "
                "the slope is an upper bound, not a leak rate."
            )
    return _scenario(ctx, scen, "Memory", variants + steady_variants, results, rows, notes=notes)


# ---------------------------------------------------------------------------------- SIM


def sim_alone(ctx: Ctx) -> dict[str, Any]:
    scen = "SIM"
    duration = ctx.d(4, 15)
    sim_body = ctx.rdir(scen) / "send.json"
    sim_body.write_text(json.dumps(wechat_body(1, "__CMID__")))
    noop_body = ctx.rdir(scen) / "message.json"
    noop_body.write_text(json.dumps(message_body(1)))
    variants = [
        Variant("noop", "no-op aiohttp+msgspec", "baseline"),
        Variant("sim", "simulator, template send, 0 ms", "ours"),
    ]

    def run(v: Variant, k: int, profile: bool = False) -> dict[str, Any]:
        d = ctx.rdir(scen, f"{v.key}-{k}")
        with ExitStack() as stack:
            if v.side == "baseline":
                proc, url = start_noop(d)
                stack.callback(proc.stop)
                target, body, unique = url + "/v1/messages", noop_body, False
            else:
                sim = start_sim(d)
                stack.callback(sim.proc.stop)
                proc = sim.proc
                token = sim.token()
                target = f"{sim.url}/cgi-bin/message/template/send?access_token={token}"
                body, unique = sim_body, True
            run_wrk(
                target,
                body,
                duration_s=1,
                connections=P1_CONNECTIONS,
                unique=unique,
                log_dir=d,
                name="wrk-warmup",
            )
            before_n = sim.stats()["delivered"] if v.side == "ours" else 0
            c0, t0 = proc.cpu_seconds(), time.monotonic()
            res = run_wrk(
                target,
                body,
                duration_s=duration,
                connections=P1_CONNECTIONS,
                unique=unique,
                log_dir=d,
                name="wrk",
            )
            res.cpu["server"] = round((proc.cpu_seconds() - c0) / (time.monotonic() - t0), 2)
            out: dict[str, Any] = {
                "wrk": res.to_json(),
                "p99_ms": res.latency_ms["p99"],
                "cdf": res.cdf_ms,
                "bin_s": res.bin_s,
                "bins": [(t, c / res.bin_s) for t, c in res.bins],
            }
            if v.side == "ours":
                delivered = sim.stats()["delivered"] - before_n
                out["delivered"] = delivered
                out["rate"] = delivered / res.duration_s
            else:
                out["rate"] = res.ok_per_s
            return out

    results = _interleave(ctx, scen, variants, run)
    rows = [
        _row(
            name="simulator",
            metric="sends/s (delivered)",
            unit="/s",
            ours=_vals(results["sim"], "rate"),
            baseline_name="no-op",
            baseline=_vals(results["noop"], "rate"),
            target=">= 8,000/s",
            met=lambda o, r: o >= 8000,
        ),
    ]
    notes = [
        f"wrk -t1 -c{P1_CONNECTIONS} -d{duration}s; each send carries a fresh "
        "client_msg_id (Lua request()); counted from the simulator's delivered counter"
    ]
    return _scenario(ctx, scen, "Simulator throughput alone", variants, results, rows, notes=notes)


SCENARIOS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "SIM": sim_alone,
    "P1": p1,
    "P2": p2,
    "P3": p3,
    "P4": p4,
    "P5": p5,
    "P6": p6,
}
