"""Loading: the TOML file, then WXGATE_* environment overrides, then validation."""

from __future__ import annotations

import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import msgspec

from wxgate.errors import ConfigError
from wxgate.settings.model import (
    AppSettings,
    Settings,
)
from wxgate.settings.validate import validate


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _is_text(cls: Any, path: list[str]) -> bool:
    """Whether the setting at `path` under Struct `cls` holds text (str or str | None)."""
    for name in path:
        if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
            return False
        types_by_name = {f.name: f.type for f in msgspec.structs.fields(cls)}
        if name not in types_by_name:
            return False
        cls = types_by_name[name]
    if cls is str:
        return True
    return get_origin(cls) in (Union, types.UnionType) and set(get_args(cls)) == {
        str,
        type(None),
    }


def _env_value(raw: str, cls: Any, path: list[str]) -> Any:
    return raw if _is_text(cls, path) else _parse_env_value(raw)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for key, raw in env.items():
        if not key.startswith("WXGATE_") or "__" not in key:
            continue
        parts = key[len("WXGATE_") :].split("__")
        section = parts[0].lower()
        if section == "apps":
            if len(parts) != 3:
                raise ConfigError(f"{key}: use WXGATE_APPS__<name>__<FIELD>")
            name, field = parts[1], parts[2].lower()
            value = _env_value(raw, AppSettings, [field])
            apps = data.setdefault("apps", [])
            match = next((a for a in apps if a.get("name") == name), None)
            if match is None:
                match = {"name": name}
                apps.append(match)
            match[field] = value
            continue
        value = _env_value(raw, Settings, [p.lower() for p in parts])
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part.lower(), {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part.lower()} is not a table")
        node[parts[-1].lower()] = value


def from_dict(data: dict[str, Any]) -> Settings:
    try:
        return validate(msgspec.convert(data, Settings, strict=False))
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None


def load(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file (missing is fine only when no path was asked for), then env overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.exists():
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{p}: {exc}") from None
        elif p.name != "wxgate.toml" or p.parent != Path("."):
            raise ConfigError(f"{p}: no such file")
    if env:
        _apply_env(data, env)
    return from_dict(data)
