"""`--log-format json` / server.log_format / WXGATE_SERVER__LOG_FORMAT: one JSON object per line
with the message's context, from a real `wxgate serve` against the real simulator, and no
secret anywhere in it (as the metrics test checks for /metrics)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support.e2e import API_KEY, APP_A, Api, settings_dict, sim_config, write_config
from support.gateway_process import http_status
from support.wait import wait_until
from wxgate import logs
from wxgate.errors import ConfigError
from wxgate.sandbox import free_port
from wxgate.settings import load
from wxgate.sim.testing import running_simulator

WEBHOOK_SECRET = "whsec-never-logged-7f3a"


@contextmanager
def _serve(config: Path, env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m wxgate serve` with stderr (the logs) in its own file next to the config."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WXGATE_")}
    full.update(env, PYTHONUNBUFFERED="1")
    with (
        open(config.parent / "stdout", "wb") as out,
        open(config.parent / "stderr", "wb") as err,
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "wxgate", "serve", "--config", str(config), *args],
            stdout=out,
            stderr=err,
            env=full,
            cwd=config.parent,
            start_new_session=True,  # our SIGTERM only, not the terminal's Ctrl-C
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


def _records(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, "the gateway logged nothing"
    out = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object, tracebacks included
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        out.append(record)
    return out


@pytest.mark.timeout(90)
async def test_serve_logs_json_lines_with_context_and_no_secret(tmp_path: Path) -> None:
    port = free_port()
    async with running_simulator(sim_config(port, [APP_A])) as sim:
        data = settings_dict(
            tmp_path, port, sim.base_url, [APP_A], app_overrides={"webhook_secret": WEBHOOK_SECRET}
        )
        config = write_config(tmp_path / "wxgate.toml", data)
        env = {"WXGATE_SERVER__LOG_FORMAT": "json"}  # the variable alone switches the format
        with _serve(config, env) as proc:
            url = f"http://127.0.0.1:{port}"
            await wait_until(
                lambda: _ready(url, proc), 30, "the gateway to be ready", interval_s=0.05
            )
            api = Api(url)
            try:
                ok = await api.send("o_alice")  # fetches a token, sends
                await wait_until(lambda: _is_sent(api, ok), 20, f"{ok} to be sent")
                # 48001 (api unauthorized) is a config error: the app pauses with an ALERT.
                await sim.set_faults(error_rates={"48001": 1.0})
                bad = await api.send("o_bob")
                await wait_until(
                    lambda: "misconfigured" in (tmp_path / "stderr").read_text(),
                    20,
                    "the config ALERT to be logged",
                )
            finally:
                await api.close()
            token = sim.state.tokens.current(APP_A.appid, "stable")
            assert token is not None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    records = _records(tmp_path / "stderr")
    [alert] = [r for r in records if "misconfigured" in r["message"]]
    assert alert["level"] == "error" and alert["logger"] == "wxgate.delivery"
    assert alert["message_id"] == bad and alert["app"] == APP_A.name
    assert alert["errcode"] == 48001
    assert alert["time"].endswith("+00:00")
    for secret in (APP_A.secret, APP_A.callback_token, API_KEY, WEBHOOK_SECRET, token.token):
        assert secret not in stderr


async def _ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"wxgate exited with {proc.returncode}")
    return await http_status(f"{url}/readyz") == 200


async def _is_sent(api: Api, msg_id: str) -> bool:
    return (await api.message(msg_id))["status"] in ("sent", "delivered")


@pytest.mark.timeout(90)
async def test_supervised_processes_log_json_with_their_index(
    tmp_path: Path, redis_url: str
) -> None:
    """--processes 2: the flag reaches the spawned children through their settings."""
    port = free_port()
    config = tmp_path / "wxgate.toml"
    config.write_text("")
    args = ["--sandbox", "--processes", "2", "--store", redis_url, "--port", str(port)]
    with _serve(config, {}, *args, "--log-format", "json") as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_until(lambda: _ready(url, proc), 60, "the group to be ready", interval_s=0.05)

        def group_banner() -> bool:
            # One child answering /readyz is not both: the banner waits for every child.
            return "wxgate listening on" in (tmp_path / "stdout").read_text(encoding="utf-8")

        await wait_until(group_banner, 60, "every child to be ready", interval_s=0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    records = _records(tmp_path / "stderr")
    drained = {r.get("process") for r in records if r["message"].startswith("signal received")}
    assert {0, 1} <= drained, records  # each child's own line, with its index
    assert all(isinstance(r["pid"], int) for r in records if "process" in r)


def test_a_bad_log_format_is_refused_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "wxgate.toml"
    config.write_text('[server]\nport = 1\n[[apps]]\nname = "a"\nappid = "wx"\nsecret = "s"\n')
    result = subprocess.run(
        [sys.executable, "-m", "wxgate", "serve", "--config", str(config), "--log-format", "xml"],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert b"text or json" in result.stderr
    with pytest.raises(ConfigError, match="log_format"):
        load(config, {"WXGATE_SERVER__LOG_FORMAT": "yaml"})
    assert load(config, {"WXGATE_SERVER__LOG_FORMAT": "json"}).server.log_format == "json"
    assert load(config, {}).server.log_format == "text"


def test_only_the_named_context_fields_reach_a_json_line() -> None:
    logger = logging.getLogger("wxgate.test_json")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter(process_index=2))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(
            "sent %s", "m1", extra={**logs.fields(app="shop", errcode=0), "secret": "hunter2"}
        )
        try:
            raise RuntimeError("boom\nsecond line")
        except RuntimeError:
            logger.exception("failed", extra=logs.fields(message_id="m2", batch="b1"))
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    first, second = stream.getvalue().splitlines()  # a traceback stays on its line
    one, two = json.loads(first), json.loads(second)
    assert one["message"] == "sent m1" and one["app"] == "shop" and one["errcode"] == 0
    assert "message_id" not in one and "hunter2" not in first  # not named: not copied
    assert one["process"] == 2 and isinstance(one["pid"], int)
    assert two["message_id"] == "m2" and two["batch"] == "b1" and two["level"] == "error"
    assert "RuntimeError: boom\nsecond line" in two["exc"]


def test_the_text_format_stays_the_default() -> None:
    assert logs.parse_format("text") == "text" and logs.parse_format("json") == "json"
    with pytest.raises(ValueError, match="text or json"):
        logs.parse_format("JSON ")
