"""[[server.keys]] in settings: parsing, validation, hashing, and secrets kept out of every
repr and of `wxgate config show`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from wxgate.api.auth import ApiKey, KeyRing, Scope
from wxgate.cli import app as cli
from wxgate.clock import FakeClock
from wxgate.errors import ConfigError
from wxgate.settings import from_dict, load

PLAIN = "k-billing-5f1c2d9e"
HIDDEN = "k-crm-77a0b3c4"
HIDDEN_SHA = hashlib.sha256(HIDDEN.encode()).hexdigest()
LEGACY = "legacy-key-0123"

TOML = f"""
[server]
api_keys = ["{LEGACY}"]

[[server.keys]]
name = "billing"
key = "{PLAIN}"
scopes = ["send", "read"]
apps = ["shop"]
rate_per_s = 50
burst = 100

[[server.keys]]
name = "crm"
key_sha256 = "{HIDDEN_SHA}"
scopes = ["token"]

[[apps]]
name = "shop"
appid = "wx_shop"
secret = "shop-secret-xyz"

[[apps]]
name = "news"
appid = "wx_news"
secret = "news-secret-xyz"
"""


def _settings(tmp_path: Path) -> Path:
    path = tmp_path / "wxgate.toml"
    path.write_text(TOML, encoding="utf-8")
    return path


def test_keys_load_from_toml(tmp_path: Path) -> None:
    s = load(_settings(tmp_path))
    billing, crm = s.server.keys
    assert billing.scopes == ["send", "read"] and billing.apps == ["shop"]
    assert billing.rate_per_s == 50 and billing.burst == 100
    assert crm.key is None and crm.apps is None and crm.rate_per_s == 0
    ring = KeyRing.from_settings(s.server, FakeClock())
    by_name = {k.name: k for k in ring}
    assert set(by_name) == {"api_keys[0]", "billing", "crm"}
    assert ring.authenticate(f"Bearer {PLAIN}") is by_name["billing"]
    assert ring.authenticate(f"Bearer {HIDDEN}") is by_name["crm"]
    assert ring.authenticate(f"Bearer {LEGACY}") is by_name["api_keys[0]"]
    assert ring.authenticate(f"Bearer {HIDDEN_SHA}") is None  # the hash is not the key
    # Asked again (a remembered match), spelled differently, or nearly right.
    for _ in range(2):
        assert ring.authenticate(f"Bearer {PLAIN}") is by_name["billing"]
        assert ring.authenticate(f"bearer   {PLAIN} ") is by_name["billing"]
        assert ring.authenticate(f"Bearer {PLAIN}x") is None
        assert ring.authenticate(f"Basic {PLAIN}") is None
    assert by_name["api_keys[0]"].scopes == frozenset(Scope)  # old keys keep every scope
    assert by_name["api_keys[0]"].apps is None and by_name["api_keys[0]"].limit is None
    assert by_name["billing"].limit is not None and by_name["billing"].limit.burst == 100
    assert by_name["crm"].scopes == {Scope.TOKEN}


def test_keys_from_the_environment() -> None:
    env = {
        "WXGATE_SERVER__KEYS": f'[{{name = "ci", key = "{PLAIN}", scopes = ["send"]}}]',
    }
    s = load(None, env)
    assert s.server.keys[0].name == "ci" and s.server.keys[0].key == PLAIN


def test_only_digests_are_kept_in_memory() -> None:
    key = ApiKey("ops", PLAIN)
    held = [getattr(key, slot) for slot in ApiKey.__slots__]
    assert not any(PLAIN in repr(v) or PLAIN.encode() == v for v in held)
    assert hashlib.sha256(PLAIN.encode()).digest() in held


def test_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    s = load(_settings(tmp_path))
    shown = [repr(s), repr(s.server), repr(s.server.keys[0]), repr(s.server.keys[1])]
    shown += [repr(KeyRing.from_settings(s.server)), *map(repr, KeyRing.from_settings(s.server))]
    shown.append(str(s.masked()))
    result = CliRunner().invoke(cli, ["config", "show", "--config", str(_settings(tmp_path))])
    assert result.exit_code == 0, result.output
    shown.append(result.output)
    for text in shown:
        for secret in (PLAIN, HIDDEN_SHA, LEGACY, "shop-secret-xyz"):
            assert secret not in text, (secret, text)
    assert '"billing"' in result.output and '"crm"' in result.output  # names are shown
    keys = s.masked()["server"]["keys"]
    assert keys[0]["key"] == "***" and keys[1]["key_sha256"] == "***"


def _with_key(**key: Any) -> dict[str, Any]:
    entry = {"name": "k", "key": PLAIN, "scopes": ["send"], **key}
    entry = {k: v for k, v in entry.items() if v is not None}
    return {
        "server": {"keys": [entry]},
        "apps": [{"name": "shop", "appid": "wx", "secret": "s"}],
    }


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (_with_key(key_sha256=HIDDEN_SHA), "exactly one"),
        (_with_key(key=None), "exactly one"),
        (_with_key(key=None, key_sha256="abc"), "sha256"),
        (_with_key(key=None, key_sha256="zz" * 32), "sha256"),
        (_with_key(scopes=["send", "root"]), "invalid settings"),
        (_with_key(scopes=[]), "at least one"),
        (_with_key(apps=["nope"]), "unknown app"),
        (_with_key(apps=[]), "at least one app"),
        (_with_key(rate_per_s=-1), "rate_per_s"),
        (_with_key(burst=10), "burst"),
        (_with_key(name=""), "name"),
        (_with_key(scope=["send"]), "invalid settings"),  # a typo is not ignored
        ({**_with_key(), "server": {"api_keys": [PLAIN], **_with_key()["server"]}}, "twice"),
    ],
)
def test_bad_keys_are_refused(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        from_dict(data)


def test_the_same_key_twice_is_refused_even_as_a_hash() -> None:
    data = _with_key()
    data["server"]["keys"].append(
        {"name": "k2", "key_sha256": hashlib.sha256(PLAIN.encode()).hexdigest(), "scopes": ["read"]}
    )
    with pytest.raises(ConfigError, match="twice"):
        from_dict(data)
    data = _with_key()
    data["server"]["keys"].append({"name": "k", "key": "other", "scopes": ["read"]})
    with pytest.raises(ConfigError, match="used twice"):
        from_dict(data)


def test_the_examples_commented_keys_are_valid_settings(tmp_path: Path) -> None:
    """Uncomment examples/wxgate.toml's [[server.keys]], [workers.adaptive] and quiet-hours
    lines: the result loads."""
    lines = (Path(__file__).parents[2] / "examples" / "wxgate.toml").read_text().splitlines()
    out, block, hexes = [], False, iter(hashlib.sha256(bytes([i])).hexdigest() for i in range(9))
    for line in lines:
        if line.startswith(("# [[server.keys]]", "# [workers.adaptive]")):
            block = True
        elif not line.startswith("#"):
            block = False
        if block or line.startswith(("# quiet_hours", "# timezone")):
            line = line.removeprefix("#").removeprefix(" ")
            if "<hex>" in line:
                line = line.replace("<hex>", next(hexes))
        out.append(line)
    path = tmp_path / "wxgate.toml"
    path.write_text("\n".join(out), encoding="utf-8")
    s = load(path)
    assert [k.name for k in s.server.keys] == ["shop-backend", "crm"]
    assert s.apps[0].quiet_hours == "22:00-08:00" and s.workers.adaptive.threshold == 0.1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw-9f2@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://wx:pw-9f2@h1:5432,h2/db?sslmode=require", None),
        ("postgresql://wx@h/db?sslmode=require&password=pw-9f2", None),
    ],
)
def test_store_url_passwords_are_masked(url: str, shown: str | None) -> None:
    masked = from_dict({"store": {"url": url}}).masked()["store"]["url"]
    assert "pw-9f2" not in masked
    assert shown is None or masked == shown
    assert masked.split("://")[0] == url.split("://")[0]
