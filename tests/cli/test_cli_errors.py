"""The CLI's one mapping of gateway errors: a single line on stderr and exit code 1, for every
command that talks to the gateway (here with nothing listening on the port), and a --url the
client could only misread refused with exit code 2 before any connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli_run import closed_port, run

COMMANDS = [
    ["status", "m1"],
    ["send", "o_user", "tpl", "k=v"],
    ["batch", "pause", "b1"],
    ["batch", "rate", "b1", "5"],
    ["batch", "results", "b1"],
    ["dlq", "list"],
    ["dlq", "requeue", "m1"],
]


@pytest.mark.parametrize("args", COMMANDS)
def test_unreachable_gateway_names_the_url_and_the_fix(args: list[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ran = run([*args, "--url", url, "--key", "k"], tmp_path)
    assert ran.code == 1, ran
    assert ran.err.startswith(f"no gateway answering at {url}: "), ran.err
    assert "wxgate serve" in ran.err and "--url" in ran.err and "WXGATE_URL" in ran.err
    assert len(ran.err.strip().splitlines()) == 1
    assert "Traceback" not in ran.err and not ran.err.startswith("0 ")


def test_the_url_from_the_environment_is_the_one_named(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    ran = run(["status", "m1"], tmp_path, {"WXGATE_URL": url})
    assert ran.code == 1 and url in ran.err


@pytest.mark.parametrize("bad", ["127.0.0.1:8080", "localhost", "ftp://h:1", "http://"])
def test_a_url_without_scheme_or_host_is_refused(bad: str, tmp_path: Path) -> None:
    ran = run(["status", "m1", "--url", bad], tmp_path)
    assert ran.code == 2, ran
    assert f"--url {bad!r} is not a gateway URL" in ran.err and "http://" in ran.err
    assert "Traceback" not in ran.err
