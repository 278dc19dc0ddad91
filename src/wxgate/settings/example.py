"""The commented example wxgate.toml, shipped in the package (so `wxgate config init` works
from a wheel) and linked from examples/wxgate.toml (one text, never two drifting copies)."""

from __future__ import annotations

from importlib.resources import files


def example_toml() -> str:
    """The text of example.toml: every settings key, commented, with the sandbox app."""
    return files("wxgate.settings").joinpath("example.toml").read_text(encoding="utf-8")
