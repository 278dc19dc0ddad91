"""`python -m wxgate ARGS` as a subprocess, as a person or a script runs it: the exit code and
what reached stdout and stderr, with no WXGATE_* variable of the test's own environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


def run(
    args: list[str],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
    stdin: str | None = None,
) -> Ran:
    """Run the CLI to its end in `cwd` (a bound on time, never a fixed sleep)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WXGATE_")}
    full.update(env or {})
    full["COLUMNS"] = "80"  # a narrow terminal: nothing may be hard-wrapped even then
    done = subprocess.run(
        [sys.executable, "-m", "wxgate", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        input=stdin,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# One app from the environment: enough for `serve` to have something to deliver for.
ONE_APP = {"WXGATE_APPS__shop__APPID": "wx1", "WXGATE_APPS__shop__SECRET": "s1"}
