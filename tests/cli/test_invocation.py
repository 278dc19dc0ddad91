"""Hints spell wxgate the way this process was started, so pasting them works."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from support.cli_run import run
from wxgate.invocation import command


def _script(folder: Path, name: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_script_on_path_is_named_bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _script(tmp_path / "bin", "wxgate")
    monkeypatch.setenv("PATH", str(script.parent))
    assert command(str(script), sys.executable) == "wxgate"


def test_a_script_off_path_is_named_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script(tmp_path / "venv", "wxgate")
    monkeypatch.setenv("PATH", str(_script(tmp_path / "other", "wxgate").parent))
    assert command(str(script), sys.executable) == str(script)


def test_python_m_uses_the_interpreter_path_unless_path_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    main = "/x/wxgate/__main__.py"
    assert command(main, sys.executable) == f"{sys.executable} -m wxgate"
    os.symlink(sys.executable, tmp_path / "python3")  # another python: not this one's packages
    assert command(main, sys.executable) == f"{sys.executable} -m wxgate"
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    name = os.path.basename(sys.executable)
    assert command(main, sys.executable) == (
        f"{name} -m wxgate" if name in ("python", "python3") else f"{sys.executable} -m wxgate"
    )


def test_the_refusal_hint_is_the_command_that_ran(tmp_path: Path) -> None:
    ran = run(["serve"], tmp_path, {"PATH": "/nonexistent"})  # python -m wxgate, off PATH
    assert f"`{sys.executable} -m wxgate config init`" in ran.err
    assert f"`{sys.executable} -m wxgate serve --sandbox`" in ran.err
