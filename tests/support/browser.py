"""The dashboard tests' pieces: a sandbox gateway as a subprocess (`python -m wxgate serve
--sandbox`, the simulator inside it), a blocking client for its API, and Debian's Chromium
driven by Playwright (Playwright's own browser download is not used).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from wxgate.sandbox import SANDBOX_APP, SANDBOX_KEY, free_port

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
APP = SANDBOX_APP
KEY = SANDBOX_KEY
TEMPLATE = "tpl_order"
GOOD_USER = "o_alice"
BAD_USER = "o_invalid"  # the simulator answers 40003 (invalid openid): a dead letter


def chromium_path() -> str:
    """Debian's Chromium (`make test` installs it), or a clear failure."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError(
            "Chromium is missing: run `make test` (it installs it) or `apt-get install -y chromium`"
        )
    return found


class Api:
    """Blocking calls to the gateway's /v1 API with the sandbox key."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert 200 <= status < 300, (method, path, status, out)
        return out

    def stats(self) -> Any:
        return self.ok("GET", "/v1/stats")

    def send(self, touser: str, **extra: Any) -> str:
        body = {"touser": touser, "template_id": TEMPLATE, "data": {"thing1": "hi"}, **extra}
        out = self.ok("POST", "/v1/messages", body)
        return str(out["id"])

    def batch(self, users: list[str], **extra: Any) -> str:
        body = {
            "template_id": TEMPLATE,
            "data": {"thing1": "hi"},
            "recipients": [{"touser": u} for u in users],
            **extra,
        }
        return str(self.ok("POST", "/v1/batches", body)["id"])


def wait_for(
    probe: Callable[[], T | None], timeout_s: float = 10.0, every_s: float = 0.1, what: str = ""
) -> T:
    """Call `probe` until it returns something other than None/False; that value."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or probe}")
        time.sleep(every_s)


@contextmanager
def sandbox_gateway(workdir: Path, store_url: str | None = None) -> Iterator[Api]:
    """`python -m wxgate serve --sandbox` on a free port; its store in `workdir` unless given."""
    port = free_port()
    log = (workdir / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wxgate",
            "serve",
            "--sandbox",
            "--port",
            str(port),
            "--store",
            store_url or f"sqlite:///{workdir / 'wxgate.db'}",
            "--log-level",
            "warning",
        ],
        cwd=workdir,  # no stray wxgate.toml is picked up
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = Api(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited: {(workdir / 'gateway.log').read_text()}")
            try:
                with urllib.request.urlopen(api.base_url + "/readyz", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(ready, timeout_s=20, what="the gateway to start")
        yield api
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
