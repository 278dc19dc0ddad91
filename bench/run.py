"""wxgate benchmark harness: the scenarios of docs/architecture.md §12.1, each against its baseline.

    .venv/bin/python bench/run.py --quick            # what `make bench` runs (a few minutes)
    .venv/bin/python bench/run.py --full             # everything, longer
    .venv/bin/python bench/run.py --quick --only P1,P3
    .venv/bin/python bench/run.py --micro            # pytest-benchmark suite in bench/micro/
    .venv/bin/python bench/run.py --quick --profile  # + a py-spy profile of each missed target

Scenarios: SIM (simulator alone), P1 (ingest), P2 (batch ingest), P3 (delivery), P4 (pooled
vs new connections), P5 (end-to-end latency), P6 (memory). Every process is started with the
venv's python on 127.0.0.1 and stopped at the end, even on failure. Raw artifacts go to
bench/out/ (git-ignored); the latest result per scenario to bench/results/, the report to
bench/RESULTS.md, plots to bench/plots/.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.metadata
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wxbench import plots, report
from wxbench.loadgen import ensure_wrk
from wxbench.procs import BENCH, REPO, stop_all, venv_python
from wxbench.scenarios import SCENARIOS, Ctx
from wxbench.services import postgres_ready, redis_ready

# --quick is what `make bench` runs: a few minutes. P6 (memory) and the Redis rows of P1/P3
# are in --full, or in quick sizes with --only P6 / --redis.
QUICK_DEFAULT = ("SIM", "P1", "P2", "P3", "P4", "P5")
FULL_DEFAULT = ("SIM", "P1", "P2", "P3", "P4", "P5", "P6")


class Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Timeout("the benchmark ran past --max-minutes")


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def ensure_bench_extra() -> None:
    """Install the `bench` extra's packages that are missing (matplotlib, pytest-benchmark...)."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = data["project"].get("optional-dependencies", {}).get("bench", [])
    missing = []
    for req in reqs:
        name = req.split(";")[0]
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
    if missing:
        print(f"installing the bench extra: {', '.join(missing)}", flush=True)
        subprocess.run([venv_python(), "-m", "pip", "install", "-q", *missing], check=False)


def run_micro(extra: list[str]) -> int:
    ensure_bench_extra()
    out = BENCH / "out"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        venv_python(),
        "-m",
        "pytest",
        str(BENCH / "micro"),
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
        "--benchmark-only",
        "--benchmark-columns=min,median,mean,ops,rounds",
        "--benchmark-sort=name",
        f"--benchmark-json={out / 'micro.json'}",
        *extra,
    ]
    print(" ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=REPO).returncode
    if rc == 0:
        _micro_summary(out / "micro.json")
    return rc


def _micro_summary(path: Path) -> None:
    """Keep the micro results next to the others, as a table RESULTS.md shows."""
    import json

    data = json.loads(path.read_text())
    rows = [
        {
            "name": b["name"],
            "group": b.get("group"),
            "median_us": b["stats"]["median"] * 1e6,
            "min_us": b["stats"]["min"] * 1e6,
            "ops": b["stats"]["ops"],
            "extra": b.get("extra_info", {}),
        }
        for b in data["benchmarks"]
    ]
    report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (report.RESULTS_DIR / "micro.json").write_text(
        json.dumps({"machine": report.machine(), "benchmarks": rows}, indent=1)
    )
    report.write_results_md()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="short runs (default)")
    mode.add_argument("--full", action="store_true", help="everything, longer")
    ap.add_argument("--only", default="", help="comma-separated scenarios, e.g. P1,P3,SIM")
    ap.add_argument("--runs", type=int, default=3, help="runs per variant (>= 3 for medians)")
    ap.add_argument("--micro", action="store_true", help="run the pytest-benchmark suite only")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="one extra py-spy-profiled run of each variant that misses a target",
    )
    ap.add_argument(
        "--profile-store",
        choices=("sqlite", "redis", "postgres"),
        help="with --profile: profile the first missing variant of this store (default: any)",
    )
    ap.add_argument(
        "--redis",
        action="store_true",
        help="add the Redis rows of P1/P3 in --quick mode (on by default in --full)",
    )
    ap.add_argument("--no-redis", action="store_true", help="skip the Redis rows in --full")
    ap.add_argument(
        "--postgres",
        action="store_true",
        help="add PostgreSQL rows to P1/P2/P3/P5 (the local server on 127.0.0.1:5432, "
        "database wxgate_bench made afresh for every run)",
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=0,
        help="stop everything after this long (default 30 quick, 180 full)",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite bench/RESULTS.md from bench/results/ and exit",
    )
    args, rest = ap.parse_known_args()

    if args.report_only:
        import json

        from wxbench import profile

        for path in sorted(report.RESULTS_DIR.glob("*.json")):
            data = json.loads(path.read_text())
            if "profile" in data:
                profile.resummarize(data)
                path.write_text(json.dumps(data, indent=1))
        print(f"wrote {report.write_results_md()}")
        return 0
    if args.micro:
        return run_micro(rest)
    if rest:
        ap.error(f"unknown arguments: {rest}")

    mode_name = "full" if args.full else "quick"
    chosen = [s.strip().upper() for s in args.only.split(",") if s.strip()] or list(
        FULL_DEFAULT if args.full else QUICK_DEFAULT
    )
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    ensure_bench_extra()
    ensure_wrk()
    if args.no_redis or not (args.full or args.redis):
        redis_why: str | None = "not asked for (--redis, or --full)"
    else:
        redis_why = redis_ready()
    if redis_why:
        print(f"note: Redis rows are skipped ({redis_why})", flush=True)

    pg_why: str | None = postgres_ready() if args.postgres else "not asked for (--postgres)"
    if pg_why:
        print(f"note: PostgreSQL rows are skipped ({pg_why})", flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = BENCH / "out" / stamp
    out.mkdir(parents=True, exist_ok=True)
    cmd = f".venv/bin/python bench/run.py --{mode_name}"
    if args.runs != 3:
        cmd += f" --runs {args.runs}"
    if args.redis and not args.full:
        cmd += " --redis"
    if args.postgres:
        cmd += " --postgres"
    ctx = Ctx(
        mode=mode_name,
        runs=args.runs,
        out=out,
        redis_why=redis_why,
        pg_why=pg_why,
        profile=args.profile,
        profile_store=args.profile_store,
        command=cmd,
        log=lambda m: print(m, flush=True),
    )

    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)  # also when started in the background (SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    limit_min = args.max_minutes or (180 if args.full else 30)
    signal.alarm(int(limit_min * 60))

    info = report.machine()
    print(
        f"wxgate bench ({mode_name}, {args.runs} runs): {', '.join(chosen)}; "
        f"{info['cpus']} CPUs, load average {info['loadavg_at_start']:.2f}; artifacts in "
        f"{out.relative_to(REPO)}",
        flush=True,
    )
    done = []
    t_all = time.monotonic()
    try:
        for name in chosen:
            t0 = time.monotonic()
            print(f"== {name}", flush=True)
            result = SCENARIOS[name](ctx)
            result["plots"] = plots.make(result)
            result["elapsed_s"] = round(time.monotonic() - t0, 1)
            report.save(result, {**info, "loadavg_at_start": report.machine()["loadavg_at_start"]})
            report.write_results_md()
            done.append(result)
            print(f"   {name} done in {result['elapsed_s']:.0f} s", flush=True)
    except (KeyboardInterrupt, Timeout) as exc:
        print(f"stopped: {exc}", flush=True)
        return 130
    finally:
        signal.alarm(0)
        stop_all()
        if done:
            print()
            print(report.console_table(done))
            print(
                f"\n{len(done)} scenarios in {time.monotonic() - t_all:.0f} s; "
                f"report: {report.RESULTS_MD.relative_to(REPO)}",
                flush=True,
            )
    return 0  # targets are reported (RESULTS.md), not enforced: the run itself worked


if __name__ == "__main__":
    sys.exit(main())
