"""`wxgate apps`, `apps pause` and `apps resume` through subprocess against a real
`wxgate serve --sandbox`: a person pauses the app, its messages wait, a resume sends them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_run import Ran, closed_port, run
from support.gateway_process import ServeProcess
from support.wait import wait_until


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
    return run([*args, "--url", gw.url, "--key", "sandbox-key"], cwd)


def _pause(gw: ServeProcess, cwd: Path, *opts: str) -> Ran:
    return _cli(gw, ["apps", "pause", "sandbox", "--reason", *opts], cwd)


def _sandbox(gw: ServeProcess, cwd: Path) -> dict[str, object]:
    ran = _cli(gw, ["apps", "list", "--json"], cwd)
    assert ran.code == 0, ran
    [app] = [a for a in json.loads(ran.out)["apps"] if a["name"] == "sandbox"]
    return dict(app)


def test_list_pause_resume_round_trip(gateway: ServeProcess, tmp_path: Path) -> None:
    listed = _cli(gateway, ["apps"], tmp_path)
    assert listed.code == 0, listed
    assert "sandbox" in listed.out and "running" in listed.out
    assert _sandbox(gateway, tmp_path)["state"] == "running"

    paused = _pause(gateway, tmp_path, "template review", "--for", "2h")
    assert paused.code == 0, paused
    assert "paused sandbox until" in paused.out and "template review" in paused.out
    app = _sandbox(gateway, tmp_path)
    pause = app["pause"]
    assert app["state"] == "paused" and isinstance(pause, dict)
    assert pause["reason"] == "template review" and str(pause["by"]).startswith("api_keys[")
    table = _cli(gateway, ["apps"], tmp_path).out
    assert "paused" in table and "template review" in table

    # A message sent while paused waits; the resume lets it go.
    sent = _cli(gateway, ["send", "o_alice", "tpl_order", "thing1=a", "--json"], tmp_path)
    msg_id = json.loads(sent.out)["id"]
    resumed = _cli(gateway, ["apps", "resume", "sandbox", "--json"], tmp_path)
    assert resumed.code == 0, resumed
    view = json.loads(resumed.out)
    assert view["state"] == "running" and view["pause"] is None

    def reached() -> bool:
        shown = _cli(gateway, ["status", msg_id, "--json"], tmp_path)
        return json.loads(shown.out)["status"] in ("sent", "delivered")

    asyncio.run(wait_until(reached, 30, "the message to be sent after the resume"))
    log = gateway.log()
    assert "app sandbox paused by api_keys[" in log and "template review" in log
    assert "app sandbox resumed by api_keys[" in log


def test_bad_input_is_a_clear_error(gateway: ServeProcess, tmp_path: Path) -> None:
    unknown = _cli(gateway, ["apps", "pause", "nope", "--reason", "x"], tmp_path)
    assert unknown.code == 1 and "no app 'nope'" in unknown.err
    both = _pause(gateway, tmp_path, "x", "--for", "1h", "--until", "1")
    assert both.code == 2 and "not both" in both.err
    bad_for = _pause(gateway, tmp_path, "x", "--for", "soon")
    assert bad_for.code == 2 and "90s, 30m, 2h or 1d" in bad_for.err
    no_zone = _pause(gateway, tmp_path, "x", "--until", "2030-01-01T00:00")
    assert no_zone.code == 2 and "no zone" in no_zone.err
    past = _pause(gateway, tmp_path, "x", "--until", "1")
    assert past.code == 1 and "future" in past.err
    assert _sandbox(gateway, tmp_path)["state"] == "running"  # none of them paused it
