"""Child processes: started in their own session with the venv's python, sampled, always stopped.

Every process the harness starts is registered here; `stop_all()` (run from `finally`, atexit
and the signal handlers of run.py) ends each one by its own pid and process group.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

_LIVE: list[Proc] = []
_LOCK = threading.Lock()


def venv_python() -> str:
    """The project's venv interpreter (every process is started with it)."""
    p = REPO / ".venv" / "bin" / "python"
    return str(p) if p.exists() else sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without WXGATE_* overrides (a stray one would change what is measured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class ProcError(RuntimeError):
    pass


class Proc:
    """One child process (and its descendants) with a log file."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.cmd = [str(c) for c in cmd]
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env if env is not None else clean_env(),
            cwd=REPO,
        )
        self.started = time.monotonic()
        self.rusage: Any = None
        with _LOCK:
            _LIVE.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tree(self) -> list[int]:
        """This pid and every live descendant (serve --processes N spawns children)."""
        return [self.pid, *descendants(self.pid)] if self.alive() else []

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def wait(self, timeout: float) -> int:
        """Wait for exit (keeping its rusage); raise ProcError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                pid, status, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            if pid:
                self.rusage = ru
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                return self.popen.returncode
            if time.monotonic() > deadline:
                raise ProcError(f"{self.name} did not finish within {timeout:.0f} s")
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process (it drains and stops its children), then SIGKILL the group."""
        try:
            if self.alive():
                self.signal(signal.SIGTERM)
                try:
                    self.wait(timeout)
                except ProcError:
                    pass
        finally:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self.popen.returncode is None:
                try:
                    self.wait(5.0)
                except ProcError:
                    pass
            if not self._log.closed:
                self._log.close()
            with _LOCK:
                if self in _LIVE:
                    _LIVE.remove(self)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p) for p in self.tree())

    def rss_mb(self) -> float:
        return sum(status_kb(p, "VmRSS") for p in self.tree()) / 1024

    def hwm_mb(self) -> float:
        """Peak RSS (VmHWM) of the process tree: each process's own peak, summed."""
        return sum(status_kb(p, "VmHWM") for p in self.tree()) / 1024

    def __repr__(self) -> str:
        return f"<Proc {self.name} pid={self.pid} alive={self.alive()}>"


def stop_all() -> None:
    with _LOCK:
        live = list(reversed(_LIVE))
    for p in live:
        p.stop(timeout=5.0)


# ------------------------------------------------------------------------------ /proc


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Samples RSS (MB) and CPU seconds of some processes every `interval` seconds."""

    def __init__(self, procs: dict[str, Proc], interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="wxbench-sampler")
        self.procs = procs
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._stop_evt = threading.Event()
        self.t0 = time.monotonic()

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"t": time.monotonic() - self.t0}
        for name, p in self.procs.items():
            row[name] = {"rss_mb": p.rss_mb(), "cpu_s": p.cpu_seconds()}
        return row

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.samples.append(self.sample())
            self._stop_evt.wait(self.interval)

    def stop(self) -> list[dict[str, Any]]:
        self._stop_evt.set()
        self.join(timeout=5)
        self.samples.append(self.sample())
        return self.samples


def cpu_share(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Per process: CPU seconds used / wall seconds (1.0 = one core busy)."""
    return {k: round((after[k] - before.get(k, 0.0)) / wall, 2) for k in after if wall > 0}


# ------------------------------------------------------------------------------ HTTP


def _ctx(url: str, ca_file: str | None) -> ssl.SSLContext | None:
    if url.startswith("https://") and ca_file:
        return ssl.create_default_context(cafile=ca_file)
    return None


def http_get(
    url: str,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
    context_ca: str | None = None,
) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout, context=_ctx(url, context_ca)) as resp:
        body: bytes = resp.read()
        return body


def http_post(
    url: str,
    body: bytes,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
    context_ca: str | None = None,
) -> tuple[int, bytes]:
    h = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=_ctx(url, context_ca)) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, proc: Proc, timeout: float = 30.0, ca_file: str | None = None) -> None:
    """Poll `url` until it answers 200; fail early (with the log tail) if `proc` exits."""
    ctx = _ctx(url, ca_file)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise ProcError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2.0, context=ctx) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.05)
    raise ProcError(
        f"{proc.name} not ready at {url} after {timeout:.0f} s ({last}):\n{proc.tail()}"
    )
