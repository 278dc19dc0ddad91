"""How to spell `wxgate` in a hint so that pasting it works, however wxgate was installed.

A hint that says `wxgate serve --sandbox` fails for someone who ran `python -m wxgate` from
a checkout (no script on PATH) or `.venv/bin/wxgate` (a venv not activated). The spelling
is taken from how this process was started: the script's name if PATH finds that same
script, else its path; `python -m wxgate` if PATH's python is this interpreter, else this
interpreter's path.
"""

from __future__ import annotations

import os
import shutil
import sys


def _same(a: str | None, b: str) -> bool:
    """The same path, symlinks not followed: a venv's python is a symlink to the system's,
    and only the venv's one sees the venv's packages."""
    return a is not None and os.path.abspath(a) == os.path.abspath(b)


def command(argv0: str | None = None, executable: str | None = None) -> str:
    """The words that run wxgate as this process was run ("wxgate", ".venv/bin/wxgate",
    "python -m wxgate", "/usr/bin/python3.11 -m wxgate")."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    name = os.path.basename(argv0)
    if name.startswith("wxgate") and not name.endswith(".py"):
        return name if _same(shutil.which(name), argv0) else argv0
    for python in ("python", "python3"):
        if _same(shutil.which(python), executable):
            return f"{python} -m wxgate"
    return f"{executable} -m wxgate"
