"""Roles and the supervisor's rules, fast: what an api-only and a worker-only process serve and
run, and what `wxgate serve --processes N` refuses before it starts anything."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from support.e2e import API_KEY, TEMPLATE, build_settings
from wxgate.cli import app as cli_app
from wxgate.errors import ConfigError
from wxgate.runtime import Runtime, parse_role
from wxgate.sandbox import free_port
from wxgate.serve import ServeOptions, check_options
from wxgate.supervisor import check_port_free, describe_exit, restart_delay_s

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _get(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url, headers=AUTH) as r:
        return r.status


async def test_a_worker_only_process_serves_probes_and_metrics_and_no_api(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, free_port(), "http://127.0.0.1:9")
    async with Runtime(settings, role="worker") as runtime:
        assert runtime.pool is not None
        assert await _get(f"{runtime.url}/healthz") == 200
        assert await _get(f"{runtime.url}/readyz") == 200
        assert await _get(f"{runtime.url}/metrics") == 200
        for path in ("/v1/stats", "/v1/messages/x", "/openapi.json"):
            assert await _get(f"{runtime.url}{path}") == 404, path


async def test_an_api_only_process_accepts_and_sends_nothing(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, free_port(), "http://127.0.0.1:9")
    async with Runtime(settings, role="api") as runtime, aiohttp.ClientSession() as s:
        assert runtime.pool is None, "no worker pool in an api-only process"
        body = {"touser": "o_a", "template_id": TEMPLATE, "data": {"thing1": "x"}}
        async with s.post(f"{runtime.url}/v1/messages", json=body, headers=AUTH) as r:
            assert r.status == 202
            msg_id = (await r.json())["id"]
        await asyncio.sleep(0.3)
        async with s.get(f"{runtime.url}/v1/messages/{msg_id}", headers=AUTH) as r:
            assert (await r.json())["status"] == "queued"
        assert await _get(f"{runtime.url}/readyz") == 200


def test_unknown_roles_are_refused() -> None:
    assert parse_role("worker") == "worker"
    with pytest.raises(ConfigError, match="role 'workers'"):
        parse_role("workers")


def test_restarts_back_off_from_1_s_to_30_s() -> None:
    assert [restart_delay_s(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


def test_a_port_someone_listens_on_is_refused() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="already in use"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)  # free again


def test_several_processes_need_a_shared_store(tmp_path: Path) -> None:
    settings = build_settings(tmp_path, free_port(), "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="shared store"):
        check_options(settings, ServeOptions(processes=2))
    with pytest.raises(ConfigError, match="needs --store redis"):
        check_options(settings, ServeOptions(processes=2, sandbox=True))
    with pytest.raises(ConfigError, match="--processes must be >= 1"):
        check_options(settings, ServeOptions(processes=0))
    # Every shared Redis topology will do (the port check is the only thing left to pass).
    for url in ("redis+sentinel://127.0.0.1:26379/m", "redis+cluster://127.0.0.1:7000"):
        check_options(settings, ServeOptions(processes=2, store=url, port=free_port()))


def test_the_cli_reports_a_bad_role_or_store(tmp_path: Path) -> None:
    runner = CliRunner()
    bad_role = runner.invoke(cli_app, ["serve", "--role", "both"])
    assert bad_role.exit_code == 2
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    shared = runner.invoke(cli_app, ["serve", "--processes", "2", "--store", sqlite])
    assert shared.exit_code == 2
    assert "shared store" in shared.output
