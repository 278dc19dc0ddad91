"""Issue 11, low: /metrics without a key shows app and key names.

It stays open by default (documented); server.metrics_key puts it behind a bearer key of its
own, server.metrics_bind moves it to a listener of its own (a private interface) and off the
API port. Both on the API role and on the worker role's ops port.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from support.e2e import API_KEY, build_settings
from wxgate.api.metrics_access import bearer_matches
from wxgate.errors import ConfigError
from wxgate.runtime import Role, Runtime
from wxgate.settings import api_key_digest, parse_bind

METRICS_KEY = "scrape-only-key-42"


@asynccontextmanager
async def gateway(tmp_path: Path, role: Role, **server: Any) -> AsyncIterator[Runtime]:
    settings = build_settings(tmp_path, 1, "http://127.0.0.1:9", server=server)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with Runtime(settings, role=role, sock=sock) as runtime:
        yield runtime


async def get(url: str, key: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize("role", ["api", "worker"])
async def test_metrics_open_by_default(tmp_path: Path, role: Role) -> None:
    async with gateway(tmp_path, role) as runtime:
        status, text = await get(f"{runtime.url}/metrics")
        assert status == 200 and "wxgate_" in text


@pytest.mark.parametrize("role", ["api", "worker"])
@pytest.mark.parametrize("stored", [METRICS_KEY, "sha256:" + api_key_digest(METRICS_KEY).hex()])
async def test_metrics_key_is_required_when_set(tmp_path: Path, role: Role, stored: str) -> None:
    async with gateway(tmp_path, role, metrics_key=stored) as runtime:
        url = f"{runtime.url}/metrics"
        for key in (None, "wrong", API_KEY):  # an API key is not the metrics key
            status, text = await get(url, key)
            assert status == 401, (key, status)
            assert "wxgate_" not in text and '"unauthorized"' in text
            assert "Authorization: Bearer <server.metrics_key>" in text  # what to send
            assert METRICS_KEY not in text
        status, text = await get(url, METRICS_KEY)
        assert status == 200 and "wxgate_" in text
        assert (await get(f"{runtime.url}/healthz"))[0] == 200  # probes need no key


@pytest.mark.parametrize("role", ["api", "worker"])
async def test_metrics_bind_moves_metrics_off_the_api_port(tmp_path: Path, role: Role) -> None:
    async with gateway(tmp_path, role, metrics_bind="127.0.0.1:0") as runtime:
        assert runtime.metrics_port is not None and runtime.metrics_port != runtime.port
        status, text = await get(f"{runtime.url}/metrics")
        assert status == 404 and "wxgate_" not in text
        separate = f"http://127.0.0.1:{runtime.metrics_port}"
        status, text = await get(f"{separate}/metrics")
        assert status == 200 and "wxgate_" in text
        assert (await get(f"{separate}/healthz"))[0] == 404  # only /metrics there


async def test_metrics_bind_with_key(tmp_path: Path) -> None:
    async with gateway(
        tmp_path, "api", metrics_bind="127.0.0.1:0", metrics_key=METRICS_KEY
    ) as runtime:
        separate = f"http://127.0.0.1:{runtime.metrics_port}/metrics"
        assert (await get(separate))[0] == 401
        assert (await get(separate, METRICS_KEY))[0] == 200


def test_bearer_matches() -> None:
    digest = api_key_digest(METRICS_KEY)
    assert bearer_matches(f"Bearer {METRICS_KEY}", digest)
    assert bearer_matches(f"bearer  {METRICS_KEY} ", digest)
    for header in (None, "", METRICS_KEY, f"Basic {METRICS_KEY}", "Bearer ", "Bearer \udcff"):
        assert not bearer_matches(header, digest)


def test_bind_and_key_settings_are_validated(tmp_path: Path) -> None:
    assert parse_bind("127.0.0.1:9102") == ("127.0.0.1", 9102)
    assert parse_bind("[::1]:9102") == ("::1", 9102)
    for bad in ("9102", "127.0.0.1", "host:port", ":9102", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="metrics_bind"):
            build_settings(tmp_path, 1, "http://127.0.0.1:9", server={"metrics_bind": bad})
    with pytest.raises(ConfigError, match="metrics_key"):
        build_settings(tmp_path, 1, "http://127.0.0.1:9", server={"metrics_key": ""})
    settings = build_settings(tmp_path, 1, "http://127.0.0.1:9", server={"metrics_key": "s3"})
    assert settings.masked()["server"]["metrics_key"] == "***"
    assert "s3" not in repr(settings)
