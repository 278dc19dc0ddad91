"""py-spy attached to a running gateway for the measured window; folded stacks -> top frames."""

from __future__ import annotations

import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from wxbench.procs import REPO, Proc

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    exe = REPO / ".venv" / "bin" / "py-spy"
    if exe.exists():
        return str(exe)
    return shutil.which("py-spy")


def start(pid: int, duration_s: float, out: Path, log_dir: Path, rate: int = 250) -> Proc | None:
    exe = py_spy()
    if exe is None:
        print("  (py-spy is not installed: pip install '.[bench]'; no profile)", file=sys.stderr)
        return None
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(duration_s))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--threads",
        "--nonblocking",
        "--subprocesses",
        "--output",
        str(out),
    ]
    return Proc("py-spy", cmd, log_dir)


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    line = m.group("line")
    return f"{m.group('func')} ({file}{':' + line if line else ''})"


# The entry chain every sample shares (CLI, runner, thread bootstrap): left out of "inclusive".
_ENTRY = (
    "<frozen runpy>",
    "typer/",
    "_click/",
    "wxgate/cli/",
    "wxgate/__main__.py",
    "wxgate/serve.py",
    "asyncio/runners.py)",
    "threading.py)",
)
# A sample whose innermost Python frame is the runner is in uvloop's C code (I/O, callbacks).
_LOOP = "Runner.run (asyncio/runners.py:118)"


def _func(frame: str) -> str:
    """The frame without its line number (inclusive time is per function)."""
    return re.sub(r":\d+\)$", ")", frame)


def _area(frame: str) -> str:
    f = frame
    for name in (
        "wxgate/",
        "aiohttp/",
        "multidict",
        "yarl/",
        "msgspec",
        "asyncio/",
        "sqlite3",
        "redis/",
        "uvloop",
        "prometheus_client/",
        "ssl",
        "concurrent/",
        "threading",
    ):
        if name in f:
            return name.rstrip("/")
    return "other"


def summarize(raw_file: Path, top: int = 15) -> dict[str, Any]:
    """Top frames by self time and by inclusive time, and self time by area and by thread."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    area_c: Counter[str] = Counter()
    thread_c: Counter[str] = Counter()
    total = 0
    try:
        lines = raw_file.read_text(errors="replace").splitlines()
    except OSError:
        return {"error": f"no profile written at {raw_file}"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = "main"
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            thread = frames[0]
            frames = frames[1:]
        frames = [_short(f) for f in frames if f]
        if not frames:
            continue
        if frames[-1] == _LOOP:
            frames[-1] = "event loop, in C (uvloop: sockets, callbacks) [Runner.run]"
        total += n
        thread_c[thread] += n
        self_c[frames[-1]] += n
        area_c[_area(frames[-1])] += n
        for f in {g for g in map(_func, frames) if not any(e in g for e in _ENTRY)}:
            incl_c[f] += n

    def pct(c: Counter[str], k: int) -> list[dict[str, Any]]:
        return [
            {"frame": f, "samples": s, "pct": round(100.0 * s / total, 1)}
            for f, s in c.most_common(k)
        ]

    return {
        "samples": total,
        "self": pct(self_c, top),
        "inclusive": pct(incl_c, top + 10),
        "self_by_area": pct(area_c, 12),
        "threads": pct(thread_c, 8),
    }


def resummarize(result: dict[str, Any]) -> None:
    """Recompute the profile summaries of a saved result from their raw files, if still there."""
    prof = result.get("profile")
    if not prof:
        return
    items = [prof] if "raw" in prof else [p for p in prof.values() if isinstance(p, dict)]
    for p in items:
        raw = REPO / p.get("raw", "")
        if p.get("raw") and raw.exists():
            keep = {k: p[k] for k in ("variant", "rate_while_profiled", "raw") if k in p}
            p.clear()
            p.update(summarize(raw))
            p.update(keep)


def finish(proc: Proc | None, out: Path, timeout: float = 30.0) -> dict[str, Any] | None:
    """Stop sampling now (SIGINT makes py-spy write what it has) and summarize."""
    if proc is None:
        return None
    if proc.alive():
        proc.signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except Exception:
        pass
    proc.stop()
    summary = summarize(out)
    summary["raw"] = str(out.relative_to(REPO)) if out.is_relative_to(REPO) else str(out)
    return summary
