"""`[[apps.redrive]]` in settings: parsed from TOML, refused with the key named when wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wxgate.errors import ConfigError
from wxgate.settings import from_dict, load

TOML = """
[[apps]]
name = "shop"
appid = "wx_shop"
secret = "s"

[[apps.redrive]]
errcodes = [-1, 45009]
every_s = 21600
rounds = 3

[[apps.redrive]]
errcodes = [43004]
every_s = 86400
rounds = 1
"""


def test_policies_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "wxgate.toml"
    path.write_text(TOML)
    [app] = load(path, {}).apps
    assert [(p.errcodes, p.every_s, p.rounds) for p in app.redrive] == [
        ([-1, 45009], 21600.0, 3),
        ([43004], 86400.0, 1),
    ]


def test_no_policy_by_default() -> None:
    [app] = from_dict({"apps": [{"name": "shop", "appid": "wx", "secret": "s"}]}).apps
    assert app.redrive == []


def _with(policy: dict[str, Any]) -> dict[str, Any]:
    return {"apps": [{"name": "shop", "appid": "wx", "secret": "s", "redrive": [policy]}]}


@pytest.mark.parametrize(
    ("policy", "needle"),
    [
        ({"errcodes": []}, r"apps\.shop\.redrive\[0\]\.errcodes"),
        ({"errcodes": [-1], "every_s": 0}, r"redrive\[0\]\.every_s"),
        ({"errcodes": [-1], "every_s": float("inf")}, r"redrive\[0\]\.every_s"),
        ({"errcodes": [-1], "rounds": 0}, r"redrive\[0\]\.rounds"),
        ({"every_s": 60}, "errcodes"),  # required
        ({"errcodes": [-1], "round": 3}, "invalid settings"),  # a typo is not ignored
    ],
)
def test_bad_policies_are_refused(policy: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_dict(_with(policy))
