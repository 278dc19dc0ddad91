"""`wxgate messages list` and `wxgate messages cancel` against a real `wxgate serve
--sandbox` (its simulator on loopback), as a script or a person runs them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_run import Ran, closed_port, run
from support.gateway_process import ServeProcess
from wxgate.sdk import GatewayClient


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    home = tmp_path_factory.mktemp("sandbox")
    port = closed_port()
    gw = ServeProcess(["--sandbox", "--port", str(port)], port, home / "gateway.log")
    gw.start()
    try:
        asyncio.run(gw.wait_ready())
        yield gw
    finally:
        gw.stop()


def _cli(gw: ServeProcess, args: list[str], cwd: Path) -> Ran:
    return run(["messages", *args, "--url", gw.url, "--key", "sandbox-key"], cwd)


def _send_wait(gw: ServeProcess, touser: str, cwd: Path) -> str:
    ran = run(["send", touser, "tpl_order", "thing1=a", "--wait", "--json", "--url", gw.url], cwd)
    assert ran.code in (0, 3), ran
    return str(json.loads(ran.out)["id"])


def test_list_finds_a_recipients_messages(gateway: ServeProcess, tmp_path: Path) -> None:
    first = _send_wait(gateway, "o_cli_find", tmp_path)
    second = _send_wait(gateway, "o_cli_find", tmp_path)
    dead = _send_wait(gateway, "o_unfollowed_cli", tmp_path)

    page = json.loads(_cli(gateway, ["list", "--touser", "o_cli_find", "--json"], tmp_path).out)
    assert [m["id"] for m in page["items"]] == [second, first]
    assert page["next_cursor"] is None

    table = _cli(gateway, ["list", "--touser", "o_unfollowed_cli"], tmp_path)
    assert table.code == 0 and dead in table.out  # whole, in an 80-column terminal
    assert "dead" in table.out or "failed" in table.out

    ids = _cli(gateway, ["list", "--status", "dead", "--ids-only"], tmp_path)
    assert dead in ids.out.split() and first not in ids.out.split()

    paged = _cli(gateway, ["list", "--touser", "o_cli_find", "--limit", "1"], tmp_path)
    assert second in paged.out and "more: --cursor" in paged.out

    later = _cli(gateway, ["list", "--since", "2999-01-01T00:00:00+08:00", "--json"], tmp_path)
    assert json.loads(later.out)["items"] == []


def test_bad_options_are_clear_errors(gateway: ServeProcess, tmp_path: Path) -> None:
    ran = _cli(gateway, ["list", "--since", "last tuesday"], tmp_path)
    assert ran.code == 2 and "ISO 8601" in ran.err
    ran = _cli(gateway, ["list", "--status", "lost"], tmp_path)
    assert ran.code == 2 and "lost" in ran.err


def test_cancel_one_waiting_message(gateway: ServeProcess, tmp_path: Path) -> None:
    with GatewayClient(gateway.url, api_key="sandbox-key") as gw:
        later = gw.send("o_cli_cancel", "tpl_order", {"thing1": "a"}, send_at=time.time() + 3600)
    ran = _cli(gateway, ["cancel", later.id, "--json"], tmp_path)
    assert ran.code == 0, ran
    assert json.loads(ran.out) == {"id": later.id, "status": "cancelled"}
    again = _cli(gateway, ["cancel", later.id], tmp_path)
    assert again.code == 1 and "cancelled" in again.err  # 409: only pending ones
    missing = _cli(gateway, ["cancel", "f" * 24], tmp_path)
    assert missing.code == 1 and "no message" in missing.err
