"""wrk (Debian's package, installed here if missing) driven by bench/lua/post.lua."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wxbench.procs import BENCH, Proc, ProcError, clean_env

LUA = BENCH / "lua" / "post.lua"


def ensure_wrk() -> str:
    """The wrk binary; `apt-get install -y wrk` when it is missing (root on Debian)."""
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk is missing: apt-get install -y wrk", flush=True)
    for cmd in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"]):
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, timeout=600)
        path = shutil.which("wrk")
        if path:
            return path
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "wrk"], check=False, stdout=subprocess.DEVNULL
    )
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and `apt-get install -y wrk` did not work")
    return path


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    ok: int  # 2xx answers
    statuses: dict[str, int]
    errors: dict[str, int]
    latency_ms: dict[str, float]  # p50, p90, p99, p99.9, max, mean
    cdf_ms: list[tuple[float, float]]  # (percentile, ms)
    bins: list[tuple[float, int]]  # (seconds from the first bin, 2xx answers) per bin
    bin_s: float
    cpu: dict[str, float] = field(default_factory=dict)  # filled by the caller
    command: str = ""

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": round(self.duration_s, 3),
            "ok": self.ok,
            "ok_per_s": round(self.ok_per_s, 1),
            "statuses": self.statuses,
            "errors": self.errors,
            "latency_ms": self.latency_ms,
            "cpu": self.cpu,
            "command": self.command,
        }


def run_wrk(
    url: str,
    body_file: Path,
    *,
    duration_s: float,
    connections: int,
    threads: int = 1,
    api_key: str = "",
    unique: bool = False,
    log_dir: Path,
    name: str = "wrk",
    timeout_s: float = 10.0,
) -> WrkResult:
    wrk = ensure_wrk()
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_file),
        api_key,
        os.urandom(4).hex(),
    ]
    env = clean_env({"WXB_UNIQUE": "1" if unique else "0"})
    proc = Proc(name, cmd, log_dir, env=env)
    try:
        proc.wait(duration_s + timeout_s + 30)
    finally:
        proc.stop()
    text = proc.log_path.read_text(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise ProcError(f"wrk printed no result (exit {proc.popen.returncode}):\n{text[-2000:]}")
    raw = json.loads(line[len("WRKJSON ") :])
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    lat = raw["latency_us"]
    p = {float(k): v / 1000.0 for k, v in lat["p"].items()}
    bins_raw = sorted((int(t), int(n)) for t, n in raw["bins"])
    t_first = bins_raw[0][0] if bins_raw else 0
    bin_s = raw["bin_ms"] / 1000.0
    # Drop the last, partial bin (the run stopped inside it).
    bins = [((t - t_first) / 1000.0, n) for t, n in bins_raw[:-1]]
    result = WrkResult(
        requests=int(raw["requests"]),
        duration_s=raw["duration_us"] / 1e6,
        ok=ok,
        statuses=statuses,
        errors={k: int(v) for k, v in raw["errors"].items()},
        latency_ms={
            "p50": p[50.0],
            "p90": p[90.0],
            "p99": p[99.0],
            "p99.9": p[99.9],
            "max": lat["max"] / 1000.0,
            "mean": lat["mean"] / 1000.0,
        },
        cdf_ms=sorted(p.items()),
        bins=bins,
        bin_s=bin_s,
        command=" ".join(["wrk", *cmd[1:6], "-s bench/lua/post.lua <url> -- <body.json>"]),
    )
    if proc.rusage is not None:
        cpu = proc.rusage.ru_utime + proc.rusage.ru_stime
        result.cpu["wrk"] = round(cpu / max(result.duration_s, 1e-9), 2)
    time.sleep(0.05)
    return result
