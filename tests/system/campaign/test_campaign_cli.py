"""`wxgate batch send|follow|pause|resume|cancel|rate|results` against a real gateway (the CLI
runs in a thread beside the in-process gateway and simulator)."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

from typer.testing import CliRunner

from support.e2e import API_KEY, TEMPLATE, running_rig
from wxgate.cli import app

ROWS = 300


def write_csv(path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["touser", "thing1"])
        for i in range(ROWS - 1):
            w.writerow([f"o_cli{i}", f"hi {i}"])
        w.writerow(["o_invalid_cli", ""])
    return path


async def test_batch_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    async with running_rig(tmp_path) as rig:
        common = ["--url", rig.runtime.url, "--key", API_KEY]

        async def wxgate(*args: str) -> tuple[int, str]:
            result = await asyncio.to_thread(runner.invoke, app, [*args, *common])
            return result.exit_code, result.output

        code, out = await wxgate(
            "batch", "send", TEMPLATE, "--csv", str(write_csv(tmp_path / "r.csv")),
            "--data", "thing1=shared", "--timeout", "30",
        )  # fmt: skip
        assert code == 0, out
        assert f"{ROWS} recipients, running" in out
        batch_id = out.split("batch ")[1].split(":")[0].strip()
        assert f"batch {batch_id} done" in out and "1 dead" in out
        assert rig.sim.state.delivered == ROWS - 1

        code, out = await wxgate("batch", "follow", batch_id, "--timeout", "5")
        assert code == 0 and "done" in out, out

        target = tmp_path / "results.csv"
        code, out = await wxgate("batch", "results", batch_id, "-o", str(target))
        assert code == 0, out
        table = list(csv.DictReader(target.read_text().splitlines()))
        assert len(table) == ROWS
        assert {r["status"] for r in table} <= {"sent", "delivered", "dead"}
        [dead] = [r for r in table if r["status"] == "dead"]
        assert (dead["touser"], dead["errcode"]) == ("o_invalid_cli", "40003")

        # A finished batch cannot be paused; rate and cancel answer with its state.
        code, out = await wxgate("batch", "pause", batch_id)
        assert code == 1 and "409" in out, out
        code, out = await wxgate("batch", "rate", batch_id, "50")
        assert code == 1 and "409" in out, out
        code, out = await wxgate("batch", "resume", "nope")
        assert code == 1 and "404" in out, out
