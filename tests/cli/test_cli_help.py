"""Every command and option explains itself in --help, and flags carry no `<bool>` (which
reads as if they took a value)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from support.cli_run import run
from wxgate.cli import app


def _commands(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    """Every leaf command (typer carries its own click, so this goes by shape, not type)."""
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, [*path, name])
    else:
        yield path, cmd


ALL = list(_commands(typer.main.get_command(app), []))


def test_every_command_and_option_has_help() -> None:
    assert len(ALL) >= 15
    missing = [
        f"{' '.join(path)} {param.opts[0]}"
        for path, cmd in ALL
        for param in cmd.params
        if param.param_type_name == "option" and not param.help
    ]
    assert not missing, missing
    assert all(cmd.help for _, cmd in ALL)


@pytest.mark.parametrize(
    "path", [["send"], ["dlq", "list"], ["batch", "send"], ["serve"], ["sim"], ["config", "init"]]
)
def test_help_shows_no_bool_metavar(path: list[str], tmp_path: Path) -> None:
    ran = run([*path, "--help"], tmp_path)
    assert ran.code == 0, ran
    assert "<bool>" not in ran.out and "--help" in ran.out
