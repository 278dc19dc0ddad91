"""The Redis store's Lua scripts as files: each parses as Lua 5.1 (the Lua inside Redis), so
does each script as Redis receives it, and the store loads every file (no orphans).

luac5.1 is Debian's lua5.1 package, installed here when missing (as tests/support/redis_server.py
installs redis-server).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from wxgate.models import BATCH_HELD
from wxgate.store.redis import batches, outbox, queue, scripts, shared

LUA_FILES = sorted(scripts.available())
# Every script text the store sends to Redis (module constants put together by scripts.script).
SENT = {
    f"{module.__name__.rsplit('.', 1)[1]}.{name}": value
    for module in (queue, batches, shared, outbox)
    for name, value in vars(module).items()
    if name.isupper() and isinstance(value, str) and value.startswith("#!lua")
}


@pytest.fixture(scope="module")
def luac() -> str:
    """Path of luac5.1, installing Debian's lua5.1 when it is missing."""
    found = shutil.which("luac5.1")
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "lua5.1"],
            check=True,
            env=env,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        # Not a skip: a lint that never runs proves nothing (make test installs what it needs).
        raise RuntimeError(f"luac5.1 missing and apt-get could not install lua5.1: {exc}") from exc
    found = shutil.which("luac5.1")
    if not found:
        raise RuntimeError("luac5.1 is still missing after apt-get install lua5.1")
    return found


def parse(luac: str, path: Path) -> None:
    done = subprocess.run([luac, "-p", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", LUA_FILES)
def test_every_lua_file_parses(luac: str, name: str) -> None:
    with resources.as_file(resources.files(scripts) / f"{name}.lua") as path:
        parse(luac, path)


@pytest.mark.parametrize("name", sorted(SENT))
def test_every_script_parses_as_redis_receives_it(luac: str, name: str, tmp_path: Path) -> None:
    """Constants, included snippets and the script together (luac skips the `#!lua` line, as
    Redis does): also within Lua's limits, such as 200 locals per function."""
    path = tmp_path / f"{name}.lua"
    path.write_text(SENT[name], encoding="utf-8")
    parse(luac, path)


def test_the_store_loads_every_lua_file() -> None:
    assert scripts.loaded() == scripts.available(), "orphan .lua files"
    assert len(SENT) == len(scripts.available() - {"prelude"}), "one script text per file"


def test_held_batch_statuses_in_lua_are_models_batch_held() -> None:
    prelude = (resources.files(scripts) / "prelude.lua").read_text(encoding="utf-8")
    held = re.search(r"^local HELD = \{(.*)\}$", prelude, re.MULTILINE)
    assert held is not None
    assert set(re.findall(r"(\w+) = true", held.group(1))) == set(BATCH_HELD)
