"""`serve --sandbox` leaves nothing behind (its temporary store is removed on a clean exit,
kept with --keep), its banner names the dashboard, the store and the WeChat base URL, and a
standalone `wxgate sim --callback-url` posts receipts so by-hand messages reach delivered."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from support.cli_run import closed_port, run
from support.gateway_process import ServeProcess
from support.wait import wait_until


async def _run_sandbox(tmp_path: Path, *extra: str) -> str:
    """Start, check ready, stop with SIGTERM; the whole log."""
    port = closed_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    gw = ServeProcess(
        ["--sandbox", "--port", str(port), *extra],
        port,
        tmp_path / "gateway.log",
        env={"TMPDIR": str(temp)},
    )
    gw.start()
    try:
        await gw.wait_ready()
        gw.terminate()
        assert await gw.wait_exit(30) == 0, gw.log()
    finally:
        gw.stop()
    return gw.log()


async def test_sandbox_removes_its_store_and_names_everything(tmp_path: Path) -> None:
    log = await _run_sandbox(tmp_path)
    store = re.search(r"store:\s+sqlite:///(\S+)", log)
    assert store, log
    assert Path(store.group(1)).parent.parent == tmp_path / "tmp"
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/dashboard", log)
    assert re.search(r"WeChat:\s+http://127\.0\.0\.1:\d+", log)
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary store is gone


async def test_sandbox_keep_keeps_it_and_says_where(tmp_path: Path) -> None:
    log = await _run_sandbox(tmp_path, "--keep")
    kept = list((tmp_path / "tmp").iterdir())
    assert len(kept) == 1 and (kept[0] / "wxgate.db").is_file()
    assert f"sandbox store kept in {kept[0]}" in log


async def test_standalone_sim_with_callback_url_brings_receipts(tmp_path: Path) -> None:
    """The by-hand setup: `config init`, `wxgate sim --callback-url ...` (nothing else) and
    `wxgate serve`; a message sent with the CLI reaches delivered."""
    gw_port, sim_port = closed_port(), closed_port()
    assert run(["config", "init"], tmp_path).code == 0
    callback = f"http://127.0.0.1:{gw_port}/wechat/callback/sandbox"
    sim_args = ["sim", "--port", str(sim_port), "--callback-url", callback]
    sim = subprocess.Popen(
        [sys.executable, "-m", "wxgate", *sim_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    env = {  # the example file as written, moved to free ports
        "WXGATE_SERVER__PORT": str(gw_port),
        "WXGATE_WECHAT__BASE_URL": f"http://127.0.0.1:{sim_port}",
    }
    gw = ServeProcess([], gw_port, tmp_path / "gateway.log", env=env)
    try:
        gw.start()
        await gw.wait_ready()
        url = ["--url", gw.url, "--key", "sandbox-key"]
        sent = await asyncio.to_thread(
            run, ["send", "o_alice", "tpl_order", "thing1=hi", "--json", *url], tmp_path
        )
        assert sent.code == 0, sent
        msg_id = json.loads(sent.out)["id"]

        async def delivered() -> bool:
            shown = await asyncio.to_thread(run, ["status", msg_id, "--json", *url], tmp_path)
            return json.loads(shown.out)["status"] == "delivered"

        await wait_until(delivered, 30, "the receipt from the standalone simulator")
    finally:
        gw.stop()
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)


async def test_the_readme_token_key_works_with_the_sandbox(tmp_path: Path) -> None:
    """A [[server.keys]] table naming the sandbox app, in ./wxgate.toml beside `serve
    --sandbox`, loads and lends the sandbox app's token (the README's token-service example)."""
    (tmp_path / "wxgate.toml").write_text(
        '[[server.keys]]\nname = "crm"\nkey = "crm-4f0c"\nscopes = ["token"]\n'
        'apps = ["sandbox"]\nrate_per_s = 5\n'
    )
    port = closed_port()
    gw = ServeProcess(["--sandbox", "--port", str(port)], port, tmp_path / "gateway.log")
    gw.start()
    try:
        await gw.wait_ready()
        async with aiohttp.ClientSession() as s:
            url = f"{gw.url}/v1/apps/sandbox/access-token"
            async with s.get(url, headers={"Authorization": "Bearer crm-4f0c"}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["access_token"]
            async with s.post(
                f"{gw.url}/v1/messages",
                headers={"Authorization": "Bearer crm-4f0c"},
                json={"touser": "o_a", "template_id": "t", "data": {}},
            ) as r:
                assert r.status == 403  # the token scope only
    finally:
        gw.stop()
