"""`wxgate config init`: writes the commented example (the package's copy, the same text as
examples/wxgate.toml), which loads, names every settings key, and is never overwritten
unless asked."""

from __future__ import annotations

import re
import tomllib
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from support.cli_run import run
from wxgate import settings
from wxgate.settings import Settings

EXAMPLES = Path(__file__).parents[2] / "examples" / "wxgate.toml"


def test_init_writes_the_example_which_loads(tmp_path: Path) -> None:
    ran = run(["config", "init"], tmp_path)
    assert ran.code == 0, ran
    written = (tmp_path / "wxgate.toml").read_text()
    assert written == EXAMPLES.read_text() == settings.example_toml()
    loaded = settings.load(tmp_path / "wxgate.toml", {})
    assert [a.name for a in loaded.apps] == ["sandbox"]
    shown = run(["config", "show"], tmp_path)  # and the CLI reads it from the same folder
    assert shown.code == 0 and '"sandbox"' in shown.out


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    target = tmp_path / "mine.toml"
    target.write_text("# my settings\n")
    ran = run(["config", "init", str(target)], tmp_path)
    assert ran.code == 2 and "already exists" in ran.err and "--force" in ran.err
    assert target.read_text() == "# my settings\n"
    assert run(["config", "init", str(target), "--force"], tmp_path).code == 0
    assert target.read_text() == settings.example_toml()


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct a field holds: itself, a list of it, or it | None."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if get_origin(tp) in (list, Union, types.UnionType):
        for arg in get_args(tp):
            found = _struct_of(arg)
            if found is not None:
                return found
    return None


def _model_keys(cls: type[msgspec.Struct], prefix: str) -> set[str]:
    keys: set[str] = set()
    for f in msgspec.structs.fields(cls):
        inner = _struct_of(f.type)
        if inner is None:
            keys.add(f"{prefix}{f.name}")
        else:
            keys |= _model_keys(inner, f"{prefix}{f.name}.")
    return keys


_HEADER = re.compile(r"^\[\[?([a-z_.]+)\]\]?")
_ASSIGN = re.compile(r"^([a-z_0-9]+)\s*=")


def _example_keys(text: str) -> set[str]:
    """Every `key = ...` of the example, commented or not, under its [table] header."""
    keys: set[str] = set()
    section = ""
    for raw in text.splitlines():
        line = raw.lstrip("#").strip()
        header = _HEADER.match(line)
        if header:
            section = header.group(1) + "."
            continue
        assign = _ASSIGN.match(line)
        if assign:
            keys.add(section + assign.group(1))
    return keys


def test_the_example_names_every_settings_key() -> None:
    wanted = _model_keys(Settings, "")
    assert {"server.max_batch_body_bytes", "server.max_stream_recipients"} <= wanted
    assert "server.public_url" in wanted and "workers.retry.max_attempts" in wanted
    missing = wanted - _example_keys(settings.example_toml())
    assert not missing, f"examples/wxgate.toml lacks {sorted(missing)}"


def test_the_example_ships_in_the_wheel_and_examples_links_to_it() -> None:
    root = Path(__file__).parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    assert "settings/example.toml" in data["tool"]["setuptools"]["package-data"]["wxgate"]
    assert EXAMPLES.resolve() == (root / "src/wxgate/settings/example.toml").resolve()
