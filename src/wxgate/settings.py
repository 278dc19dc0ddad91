"""One Settings object: a TOML file, then WXGATE_* environment overrides, then defaults.

Environment overrides use double underscores between levels; a value for a text setting is
taken as it is (a numeric secret stays a string), any other is parsed as a TOML value:
`WXGATE_SERVER__PORT=9000`, `WXGATE_SERVER__API_KEYS='["k1", "k2"]'`,
`WXGATE_STORE__URL=redis://127.0.0.1:6379/0`, `WXGATE_APPS__sandbox__SECRET=...` (apps by name).
Secrets are masked in `repr` and in `masked()`; library code never reads os.environ itself.
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import msgspec

from wxgate.errors import ConfigError

MASK = "***"


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    # Plain keys, or "sha256:<hex>" to keep only a hash in the file. See [[server.keys]] for scopes.
    api_keys: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: int = 1_048_576
    # POST /v1/batches only: 10,000 recipients with their own data do not fit in 1 MiB.
    max_batch_body_bytes: int = 16_777_216
    max_batch_recipients: int = 10_000
    # 429 once this many messages are waiting (0 = no limit).
    max_queue_depth: int = 0
    public_url: str | None = None


class StoreSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str = "sqlite:///wxgate.db"
    # Finished messages are kept this long (Redis TTL; SQLite prunes on the same horizon).
    retention_s: float = 7 * 86400


class WeChatSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    base_url: str = "https://api.weixin.qq.com"
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 5.0
    total_timeout_s: float = 10.0
    pool_size: int = 256
    pool_size_per_host: int = 0  # 0 = same as pool_size
    keepalive_timeout_s: float = 30.0
    dns_cache_s: int = 300
    ca_file: str | None = None  # extra CA bundle (the simulator's --tls CA, a corporate proxy)
    verify_tls: bool = True


class AppSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    appid: str
    secret: str
    callback_token: str = ""
    encoding_aes_key: str | None = None
    original_id: str | None = None  # gh_xxx, the ToUserName of callbacks
    token_mode: Literal["stable", "classic"] = "stable"
    rate_per_s: float = 500.0
    daily_quota: int = 100_000
    max_concurrency: int = 64
    callback_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"AppSettings(name={self.name!r}, appid={self.appid!r}, secret={MASK!r}, "
            f"token_mode={self.token_mode!r}, rate_per_s={self.rate_per_s})"
        )


class RetrySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max_attempts: int = 8
    base_s: float = 1.0
    cap_s: float = 300.0


class BreakerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    consecutive_failures: int = 20
    failure_ratio: float = 0.5
    window: int = 100  # outcomes the ratio is taken over
    min_calls: int = 20
    open_s: float = 10.0
    half_open_probes: int = 3


class WorkerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    concurrency: int = 256
    lease_s: float = 60.0
    lease_batch: int = 256
    idle_poll_s: float = 0.05
    drain_timeout_s: float = 30.0
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    wechat: WeChatSettings = msgspec.field(default_factory=WeChatSettings)
    workers: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    apps: list[AppSettings] = msgspec.field(default_factory=list)

    def app(self, name: str | None) -> AppSettings:
        """The app by name; the only app when `name` is None and exactly one is configured."""
        if name is None:
            if len(self.apps) == 1:
                return self.apps[0]
            raise ConfigError("app is required when more than one app is configured")
        for app in self.apps:
            if app.name == name:
                return app
        raise ConfigError(f"unknown app {name!r}")

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret replaced by ***."""
        raw: dict[str, Any] = msgspec.to_builtins(self)
        raw["server"]["api_keys"] = [MASK for _ in raw["server"]["api_keys"]]
        for app in raw["apps"]:
            app["secret"] = MASK
            if app.get("callback_token"):
                app["callback_token"] = MASK
            if app.get("encoding_aes_key"):
                app["encoding_aes_key"] = MASK
        raw["store"]["url"] = _mask_url(raw["store"]["url"])
        return raw

    def __repr__(self) -> str:
        return f"Settings({self.masked()!r})"


def _mask_url(url: str) -> str:
    """Hide a password in scheme://user:password@host URLs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:{MASK}@{host}"
    return url


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


def validate(settings: Settings) -> Settings:
    names = [a.name for a in settings.apps]
    if len(set(names)) != len(names):
        raise ConfigError("apps: names must be unique")
    for app in settings.apps:
        if not app.name or not app.appid or not app.secret:
            raise ConfigError("apps: every app needs name, appid and secret")
        if app.rate_per_s <= 0:
            raise ConfigError(f"apps.{app.name}.rate_per_s: must be > 0")
        if app.max_concurrency < 1:
            raise ConfigError(f"apps.{app.name}.max_concurrency: must be >= 1")
        if app.encoding_aes_key is not None and len(app.encoding_aes_key) != 43:
            raise ConfigError(f"apps.{app.name}.encoding_aes_key: must be 43 characters")
    if not settings.store.url.startswith(("sqlite://", "redis://", "rediss://")):
        raise ConfigError("store.url: must start with sqlite:// or redis://")
    if not 0 < settings.server.port < 65536:
        raise ConfigError("server.port: must be 1-65535")
    if settings.workers.concurrency < 1:
        raise ConfigError("workers.concurrency: must be >= 1")
    if settings.workers.retry.max_attempts < 1:
        raise ConfigError("workers.retry.max_attempts: must be >= 1")
    return settings


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
