"""The CLI in scripts, against a real `wxgate serve --sandbox` (its simulator on loopback):
valid JSON, exit codes that say how a message ended, whole ids, a clear error for a bad rate,
NDJSON as well as CSV, plain progress lines without a terminal, ISO 8601 times."""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_run import Ran, closed_port, run
from support.gateway_process import ServeProcess

NO_FOLLOW = ("--no-follow", "--json")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


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


def test_send_wait_is_json_and_exit_0_when_delivered(gateway: ServeProcess, tmp_path: Path) -> None:
    ran = _cli(gateway, ["send", "o_alice", "tpl_order", "thing1=" + "x" * 19, "--wait"], tmp_path)
    assert ran.code == 0, ran
    view = json.loads(ran.out)  # the whole of stdout, though COLUMNS is 80
    assert view["status"] in ("sent", "delivered")
    assert ISO.match(view["created_at"]) and ISO.match(view["sent_at"])
    machine = _cli(
        gateway, ["send", "o_alice", "tpl_order", "thing1=a", "--wait", "--json"], tmp_path
    )
    assert machine.code == 0 and machine.out.count("\n") == 1
    assert isinstance(json.loads(machine.out)["created_at"], float)  # the API's epoch seconds


def test_send_wait_exits_3_when_the_message_did_not_reach_the_user(
    gateway: ServeProcess, tmp_path: Path
) -> None:
    ran = _cli(gateway, ["send", "o_unfollowed_1", "tpl_order", "thing1=a", "--wait"], tmp_path)
    assert ran.code == 3, ran
    assert json.loads(ran.out)["status"] in ("dead", "failed")


def test_send_without_wait_json_is_the_accepted_answer(
    gateway: ServeProcess, tmp_path: Path
) -> None:
    ran = _cli(gateway, ["send", "o_bob", "tpl_order", "thing1=a", "--json"], tmp_path)
    assert ran.code == 0, ran
    accepted = json.loads(ran.out)
    shown = _cli(gateway, ["status", accepted["id"], "--json"], tmp_path)
    assert json.loads(shown.out)["id"] == accepted["id"]


def test_send_kind_oa_subscribe_and_its_field_rules(gateway: ServeProcess, tmp_path: Path) -> None:
    link = "https://shop.example/o/1"
    args = ["send", "o_carol", "oa_order_status", "thing1=a", "--kind", "oa_subscribe"]
    ran = _cli(gateway, [*args, "--link", link, "--wait"], tmp_path)
    assert ran.code == 0, ran
    view = json.loads(ran.out)
    assert view["kind"] == "oa_subscribe" and view["status"] in ("sent", "delivered")
    # A page is a mini program's: refused for an OA subscription notification, by name.
    refused = _cli(gateway, [*args, "--page", "pages/o"], tmp_path)
    assert refused.code == 1 and "page" in refused.err, refused
    sub = _cli(
        gateway,
        ["send", "o_dan", "sub_order_status", "thing1=a", "--kind", "subscribe", "--wait"],
        tmp_path,
    )
    assert sub.code == 0 and json.loads(sub.out)["kind"] == "subscribe", sub


def test_dlq_list_shows_whole_ids(gateway: ServeProcess, tmp_path: Path) -> None:
    sent = _cli(gateway, ["send", "o_unfollowed_2", "tpl_order", "thing1=a", "--wait"], tmp_path)
    msg_id = json.loads(sent.out)["id"]
    listed = _cli(gateway, ["dlq", "list"], tmp_path)
    assert listed.code == 0 and msg_id in listed.out  # whole, in an 80-column terminal
    ids = _cli(gateway, ["dlq", "list", "--ids-only"], tmp_path)
    assert msg_id in ids.out.split("\n")
    assert all(re.fullmatch(r"[0-9a-f]+", line) for line in ids.out.split())
    page = json.loads(_cli(gateway, ["dlq", "list", "--json"], tmp_path).out)
    assert msg_id in [m["id"] for m in page["items"]]
    requeued = _cli(gateway, ["dlq", "requeue", msg_id, "--json"], tmp_path)
    assert json.loads(requeued.out) == {"requeued": 1}


@pytest.mark.parametrize("rate", ["-5", "0", "fast"])
def test_batch_rate_refuses_a_bad_rate_clearly(
    gateway: ServeProcess, tmp_path: Path, rate: str
) -> None:
    ran = _cli(gateway, ["batch", "rate", "b1", rate], tmp_path)
    assert ran.code == 2, ran
    assert f"rate {rate!r}: give msg/s above 0" in ran.err
    assert "No such option" not in ran.err


def _results(gw: ServeProcess, out: str, cwd: Path) -> list[dict[str, str]]:
    batch_id = re.search(r"batch (\S+): ", out)
    assert batch_id, out
    ran = _cli(gw, ["batch", "results", batch_id.group(1)], cwd)
    return list(csv.DictReader(ran.out.splitlines()))


def test_batch_send_takes_ndjson_and_csv_with_plain_progress(
    gateway: ServeProcess, tmp_path: Path
) -> None:
    rows = [{"touser": f"o_nd{i}", "data": {"thing1": {"value": f"n{i}"}}} for i in range(20)]
    nd = tmp_path / "r.ndjson"
    nd.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ran = _cli(gateway, ["batch", "send", "tpl_order", "--ndjson", str(nd)], tmp_path)
    assert ran.code == 0, ran
    # No terminal: plain lines, no bar redraws or escape codes.
    assert "\x1b[" not in ran.out and "\r" not in ran.out
    assert "accepted 20/20" in ran.out and "sent 20/20" in ran.out
    table = _results(gateway, ran.out, tmp_path)
    assert sorted(r["touser"] for r in table) == sorted(r["touser"] for r in rows)
    assert all(ISO.match(r["sent_at"]) for r in table)  # the CSV export's times
    path = tmp_path / "r.csv"
    path.write_text("touser,thing1\n" + "".join(f"o_cs{i},c{i}\n" for i in range(5)))
    ran = _cli(gateway, ["batch", "send", "tpl_order", "--csv", str(path)], tmp_path)
    assert ran.code == 0 and "accepted 5/5" in ran.out, ran
    both = _cli(
        gateway, ["batch", "send", "tpl_order", "--csv", str(path), "--ndjson", str(nd)], tmp_path
    )
    assert both.code == 2 and "one of them" in both.err


def test_batch_commands_print_json_with_progress_on_stderr(
    gateway: ServeProcess, tmp_path: Path
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("touser,thing1\n" + "".join(f"o_js{i},j{i}\n" for i in range(3)))
    ran = _cli(gateway, ["batch", "send", "tpl_order", "--csv", str(path), "--json"], tmp_path)
    assert ran.code == 0, ran
    final = json.loads(ran.out)  # stdout is the JSON alone
    assert final["total"] == 3 and final["status"] == "done"
    assert "accepted 3/3" in ran.err
    many = tmp_path / "many.csv"  # at 0.2-0.3 msg/s it runs for minutes: no race with pause
    many.write_text("touser,thing1\n" + "".join(f"o_sl{i},s{i}\n" for i in range(50)))
    slow = _cli(
        gateway,
        ["batch", "send", "tpl_order", "--csv", str(many), "--rate", "0.2", *NO_FOLLOW],
        tmp_path,
    )
    running = json.loads(slow.out)["id"]
    rated = _cli(gateway, ["batch", "rate", running, "0.3", "--json"], tmp_path)
    assert rated.code == 0 and json.loads(rated.out)["rate_per_s"] == 0.3, rated
    paused = _cli(gateway, ["batch", "pause", running, "--json"], tmp_path)
    assert json.loads(paused.out)["status"] == "paused"
    cancelled = _cli(gateway, ["batch", "cancel", running, "--json"], tmp_path)
    assert json.loads(cancelled.out)["status"] == "cancelled"
