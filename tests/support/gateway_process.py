"""`python -m wxgate serve ARGS` as a child of the test: the one subprocess-gateway helper of the
crash, campaign, webhook and multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import aiohttp

from support.wait import wait_until


async def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    """The status of a GET of `url`, or None when nothing answers in time."""
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r,
        ):
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return None


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
        """Runs in the log file's folder (so no stray ./wxgate.toml is read); `env` is laid over
        the test's environment minus every WXGATE_* variable."""
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
        # These tests are about delivery, not the request deadline (tests/system/security has
        # those): a loaded 2-core box can stall one Redis call past the 2.5 s default.
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

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

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
