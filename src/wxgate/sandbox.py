"""Sandbox mode: the gateway wired to the built-in WeChat simulator on loopback.

Lets a newcomer see deliveries with no WeChat account: app `sandbox`, API key `sandbox-key`.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import msgspec

from wxgate.settings import AppSettings, Settings, validate

SANDBOX_APP = "sandbox"
SANDBOX_APPID = "wx_sandbox"
SANDBOX_SECRET = "sandbox_secret"
SANDBOX_KEY = "sandbox-key"
SANDBOX_CALLBACK_TOKEN = "sandbox-token"
SANDBOX_ORIGINAL_ID = "gh_sandbox"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def temp_store() -> tuple[Path, str]:
    """A fresh temporary directory and the SQLite store URL of a file in it. The caller
    removes the directory when the sandbox ends (unless told to keep it)."""
    tmp = Path(tempfile.mkdtemp(prefix="wxgate-sandbox-"))
    return tmp, f"sqlite:///{tmp / 'wxgate.db'}"


def sandbox_settings(base: Settings, sim_url: str, store_url: str) -> Settings:
    """`base` with the sandbox app, key and simulator filled in where they are missing."""
    apps = [a for a in base.apps if a.name != SANDBOX_APP]
    apps.insert(
        0,
        AppSettings(
            name=SANDBOX_APP,
            appid=SANDBOX_APPID,
            secret=SANDBOX_SECRET,
            callback_token=SANDBOX_CALLBACK_TOKEN,
            original_id=SANDBOX_ORIGINAL_ID,
            rate_per_s=100_000.0,
            daily_quota=100_000_000,
            max_concurrency=256,
        ),
    )
    keys = list(base.server.api_keys)
    if SANDBOX_KEY not in keys:
        keys.append(SANDBOX_KEY)
    return validate(
        msgspec.structs.replace(
            base,
            apps=apps,
            server=msgspec.structs.replace(base.server, api_keys=keys),
            store=msgspec.structs.replace(base.store, url=store_url),
            wechat=msgspec.structs.replace(base.wechat, base_url=sim_url),
        )
    )
