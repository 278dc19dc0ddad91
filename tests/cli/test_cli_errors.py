"""The CLI's one mapping of gateway errors: a single line on stderr and exit code 1, for every
command that talks to the gateway (here with nothing listening on the port)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from wxgate.cli import app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["status", "m1"],
        ["send", "o_user", "tpl", "k=v"],
        ["batch", "pause", "b1"],
        ["batch", "rate", "b1", "5"],
        ["batch", "results", "b1"],
        ["dlq", "list"],
        ["dlq", "requeue", "m1"],
    ],
)
def test_unreachable_gateway_is_one_line_and_exit_1(args: list[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(app, [*args, "--url", url, "--key", "k"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("0 unreachable: ")
    assert "Traceback" not in result.output
