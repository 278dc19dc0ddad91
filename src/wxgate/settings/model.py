"""One Settings object: a TOML file, then WXGATE_* environment overrides, then defaults.

Environment overrides use double underscores between levels; a value for a text setting is
taken as it is (a numeric secret stays a string), any other is parsed as a TOML value:
`WXGATE_SERVER__PORT=9000`, `WXGATE_SERVER__API_KEYS='["k1", "k2"]'`,
`WXGATE_STORE__URL=redis://127.0.0.1:6379/0`, `WXGATE_APPS__sandbox__SECRET=...` (apps by name),
`WXGATE_SERVER__KEYS='[{name = "ci", key_sha256 = "<hex>", scopes = ["send"]}]'`.
Secrets (app secrets, callback tokens, AES keys, API keys and their hashes, store passwords)
are masked in `repr` and in `masked()`; library code never reads os.environ itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import tomllib
import types
from collections.abc import Mapping
from datetime import UTC, timedelta, tzinfo
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from wxgate.errors import ConfigError

MASK = "***"


ScopeName = Literal["send", "read", "admin", "token"]


class KeySettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One [[server.keys]] table: a named API key with scopes, optional apps and a rate limit.

    The name is what logs and metrics show (never the key). Give `key` (the key itself) or
    `key_sha256` (its SHA-256 as hex, so the file need not hold the key), not both.
    """

    name: str
    key: str | None = None
    key_sha256: str | None = None
    scopes: list[ScopeName]
    apps: list[str] | None = None  # only these apps (403 for any other); None = every app
    rate_per_s: float = 0.0  # requests per second at ingress, 429 beyond (0 = no limit)
    burst: float | None = None  # requests at once after an idle spell (default max(1, rate))
    # Hosts this key may name in a message's or batch's own callback_url, as well as the
    # app's callback_hosts (both must allow it; policy/callback_hosts.py has the syntax).
    # Empty = this key cannot choose callback URLs.
    callback_hosts: list[str] = msgspec.field(default_factory=list)

    def digest(self) -> bytes:
        """SHA-256 of the key: what the gateway keeps and compares."""
        if self.key is not None:
            return hashlib.sha256(self.key.encode("utf-8")).digest()
        return _hex_digest(self.key_sha256 or "", f"server.keys.{self.name}.key_sha256")

    def __repr__(self) -> str:
        return (
            f"KeySettings(name={self.name!r}, key={MASK!r}, scopes={self.scopes!r}, "
            f"apps={self.apps!r}, rate_per_s={self.rate_per_s})"
        )


def _hex_digest(hexdigest: str, where: str) -> bytes:
    try:
        raw = bytes.fromhex(hexdigest.strip())
    except ValueError:
        raise ConfigError(f"{where}: not a sha256 hex digest") from None
    if len(raw) != 32:
        raise ConfigError(f"{where}: not a sha256 hex digest (64 hex characters)")
    return raw


def api_key_digest(entry: str, where: str = "server.api_keys") -> bytes:
    """SHA-256 of one server.api_keys entry: a plain key, or "sha256:<hex>" given as a hash."""
    if entry.startswith("sha256:"):
        return _hex_digest(entry[len("sha256:") :], where)
    if not entry:
        raise ConfigError(f"{where}: empty key")
    return hashlib.sha256(entry.encode("utf-8")).digest()


class ServerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8080
    # Plain keys, or "sha256:<hex>" to keep only a hash in the file: every scope, no limit.
    api_keys: list[str] = msgspec.field(default_factory=list)
    # Named keys with scopes, app restrictions and rate limits ([[server.keys]] tables).
    keys: list[KeySettings] = msgspec.field(default_factory=list)
    max_body_bytes: int = 1_048_576
    # POST /v1/batches only: 10,000 recipients with their own data do not fit in 1 MiB.
    max_batch_body_bytes: int = 16_777_216
    max_batch_recipients: int = 10_000
    # A streamed batch (NDJSON or CSV body, committed in chunks): at most this many recipients.
    max_stream_recipients: int = 1_000_000
    # ... and at most this many bytes: 413 as soon as the body passes it. 64 MiB holds the
    # 1,000,000 recipients at ~64 bytes a row (an openid and a short field or two).
    max_stream_bytes: int = 67_108_864
    # Bytes of `data` one message may carry, as stored (JSON of {"k": {"value": "v"}}): its
    # effective data, a batch's shared data included. WeChat's own values are tiny (thing <= 20
    # chars; a template body <= 200), so 4 KiB is 20 keys of 200 bytes with room to spare.
    max_data_bytes: int = 4096
    # Bytes of `data` one batch may make the store keep: its shared data once plus every
    # recipient's own. 128 MiB is a 1,000,000-recipient upload with ~130 bytes each.
    max_batch_data_bytes: int = 134_217_728
    # 429 once this many messages are waiting (0 = no limit).
    max_queue_depth: int = 0
    public_url: str | None = None
    # WeChat callbacks: a push whose timestamp is further than this from our clock (either
    # way) is refused with 403, and its (timestamp, nonce) is remembered in the store until
    # the window has passed for it, so a replay inside the window is caught. At most a week.
    callback_max_skew_s: float = 300.0
    # --- Bounds on connections and the store (issue 11; README "Security").
    # A request-path store call that has not completed in this long is answered 503 at once:
    # `store_timeout` (outcome unknown, with the ids assigned) for a write, else the same code.
    store_timeout_s: float = 2.5
    # A new connection must send a complete request head within this, and so must each later
    # request once its first byte has arrived; else 408 and closed (slow-loris).
    header_timeout_s: float = 10.0
    # A request whose body stops arriving for this long (bytes missing, nothing received) is
    # closed; the time is between arrivals, so a long streamed upload that keeps sending is fine.
    read_timeout_s: float = 30.0
    # An idle keep-alive connection (between requests) is closed after this. Behind a load
    # balancer, set it longer than the balancer's own idle timeout.
    keepalive_timeout_s: float = 15.0
    # Open connections per listener (per process); one more is answered 503 and closed at once.
    max_connections: int = 1000
    # /metrics shows app names, key names and queue sizes. metrics_key (plain, or
    # "sha256:<hex>") makes it require `Authorization: Bearer <key>` (401 without); metrics_bind
    # ("127.0.0.1:9102", "[::1]:9102") serves it on its own listener instead of the API port.
    metrics_key: str | None = None
    metrics_bind: str | None = None

    def __repr__(self) -> str:
        return (
            f"ServerSettings(host={self.host!r}, port={self.port}, "
            f"api_keys=[{len(self.api_keys)} masked], keys={[k.name for k in self.keys]!r})"
        )


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
    # Status webhooks: final statuses of this app's messages are POSTed here (a message's or
    # batch's own callback_url wins), signed with webhook_secret (README "Status webhooks").
    callback_url: str | None = None
    webhook_secret: str = ""
    # Hosts a caller may name in a message's or batch's own callback_url ("hooks.example.com",
    # "*.shop.example"); a named key must allow the host too. Empty = caller URLs refused
    # (403). The app's own callback_url above is the operator's and may point anywhere.
    callback_hosts: list[str] = msgspec.field(default_factory=list)
    # Template checks at accept time against the app's template list fetched from WeChat:
    # "off" (accept anything, the default: the checks need the template-list API), "reject"
    # (400 naming the field) or "truncate" (cut over-long values as WeChat would, noted).
    validate: Literal["off", "reject", "truncate"] = "off"
    # "22:00-08:00" in `timezone`: normal and low priority messages due inside the window wait
    # for its end (urgent ones do not). None = no quiet hours.
    quiet_hours: str | None = None
    timezone: str = "Asia/Shanghai"
    # This app's WeChat callbacks: overrides server.callback_max_skew_s (None: the server's).
    callback_max_skew_s: float | None = None

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


class AdaptiveSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """AIMD on each app's send rate: halve it when WeChat struggles (-1, 45011, 5xx, timeouts),
    add back a step per clean interval, never above the app's rate_per_s nor below floor."""

    enabled: bool = True
    interval_s: float = 1.0  # at most one change per interval
    window: int = 100  # recent outcomes the bad ratio is taken over
    min_samples: int = 10  # no decrease on fewer outcomes than this
    threshold: float = 0.1  # bad ratio that halves the rate
    decrease: float = 0.5  # multiply the rate by this on a decrease
    increase_ratio: float = 0.05  # add this share of rate_per_s per clean interval
    floor_per_s: float = 1.0


class WorkerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    concurrency: int = 256
    lease_s: float = 60.0
    lease_batch: int = 256
    idle_poll_s: float = 0.05
    drain_timeout_s: float = 30.0
    retry: RetrySettings = msgspec.field(default_factory=RetrySettings)
    breaker: BreakerSettings = msgspec.field(default_factory=BreakerSettings)
    adaptive: AdaptiveSettings = msgspec.field(default_factory=AdaptiveSettings)


class WebhookSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The status-webhook sender: its own loop, concurrency and HTTP session."""

    concurrency: int = 32
    connect_timeout_s: float = 2.0
    timeout_s: float = 5.0  # one POST, end to end
    max_attempts: int = 12  # then the event is kept as failed (stats, metrics)
    base_s: float = 1.0  # backoff: full jitter, doubling from base_s up to cap_s
    cap_s: float = 600.0
    lease_s: float = 30.0  # an event being POSTed is not handed out again before this
    poll_s: float = 0.1  # look for due events this often (backing off to 1 s when idle)
    # While the worker pool is saturated (a send backlog), POST at most this many events a
    # second and leave the rest for when sends slack off: a POST costs about as much CPU as
    # a send. 0 = no such limit (webhooks compete with sends for the CPU).
    busy_rate_per_s: float = 100.0
    # Caller-chosen callback URLs reach public addresses only: loopback, private, link-local,
    # CGNAT, ULA, multicast, reserved (and IPv6 forms of them) are refused at connect time,
    # unless inside one of these CIDRs ("10.1.0.0/16"). Apps' own callback_urls are not checked.
    allow_private_networks: list[str] = msgspec.field(default_factory=list)


class TemplateSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The per-app template lists used by `validate`."""

    ttl_s: float = 600.0  # refreshed in the background once older than this
    # An unknown template_id refreshes the list at once, but at most this often per app.
    unknown_refresh_s: float = 30.0
    fetch_timeout_s: float = 5.0  # a first load longer than this accepts unchecked


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    wechat: WeChatSettings = msgspec.field(default_factory=WeChatSettings)
    workers: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    webhooks: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    templates: TemplateSettings = msgspec.field(default_factory=TemplateSettings)
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
        if raw["server"].get("metrics_key"):
            raw["server"]["metrics_key"] = MASK
        for key in raw["server"]["keys"]:
            for field in ("key", "key_sha256"):
                if key.get(field) is not None:
                    key[field] = MASK
        for app in raw["apps"]:
            app["secret"] = MASK
            if app.get("callback_token"):
                app["callback_token"] = MASK
            if app.get("encoding_aes_key"):
                app["encoding_aes_key"] = MASK
            if app.get("webhook_secret"):
                app["webhook_secret"] = MASK
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


_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def parse_quiet_hours(spec: str, where: str = "quiet_hours") -> tuple[int, int]:
    """Quiet hours like 22:00-08:00 -> (start, end) in minutes after local midnight; the end
    may be earlier than the start (the window spans midnight)."""
    m = _QUIET.match(spec.strip())
    if m is None:
        raise ConfigError(f"{where}: expected HH:MM-HH:MM (24-hour), e.g. 22:00-08:00")
    start = int(m[1]) * 60 + int(m[2])
    end = int(m[3]) * 60 + int(m[4])
    if start == end:
        raise ConfigError(f"{where}: the window is empty (start equals end)")
    return start, end


def load_zone(name: str, where: str = "timezone") -> tzinfo:
    """An IANA zone; without tzdata on the machine only Asia/Shanghai and UTC are known."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Shanghai":
            # China has kept UTC+8 without DST since 1991.
            return dt_timezone(timedelta(hours=8), "CST")
        if name == "UTC":
            return UTC
        raise ConfigError(f"{where}: unknown time zone {name!r}") from None


def _validate_keys(settings: Settings) -> None:
    server = settings.server
    digests = [api_key_digest(k, f"server.api_keys[{i}]") for i, k in enumerate(server.api_keys)]
    names: set[str] = set()
    app_names = {a.name for a in settings.apps}
    for key in server.keys:
        where = f"server.keys.{key.name or '?'}"
        if not key.name:
            raise ConfigError("server.keys: every key needs a name")
        if key.name in names:
            raise ConfigError(f"server.keys: the name {key.name!r} is used twice")
        names.add(key.name)
        if (key.key is None) == (key.key_sha256 is None):
            raise ConfigError(f"{where}: give key or key_sha256, exactly one")
        if key.key is not None and not key.key:
            raise ConfigError(f"{where}.key: empty")
        if not key.scopes:
            raise ConfigError(f"{where}.scopes: name at least one of send, read, admin, token")
        if key.apps is not None:
            if not key.apps:
                raise ConfigError(f"{where}.apps: name at least one app, or leave it out")
            unknown = sorted(set(key.apps) - app_names)
            if unknown:
                raise ConfigError(f"{where}.apps: unknown app {unknown[0]!r}")
        if key.rate_per_s < 0:
            raise ConfigError(f"{where}.rate_per_s: must be >= 0 (0 = no limit)")
        if key.burst is not None and (key.burst < 1 or key.rate_per_s == 0):
            raise ConfigError(f"{where}.burst: must be >= 1, and needs rate_per_s")
        digests.append(key.digest())
    if len(set(digests)) != len(digests):
        raise ConfigError("server: the same API key is configured twice")


MAX_CALLBACK_SKEW_S = 604_800.0  # a week: past that the check means nothing


def callback_max_skew_s(settings: Settings, app: AppSettings) -> float:
    """The timestamp window of `app`'s WeChat callbacks (its own, else the server's)."""
    own = app.callback_max_skew_s
    return settings.server.callback_max_skew_s if own is None else own


def _validate_callbacks(settings: Settings) -> None:
    windows = [("server.callback_max_skew_s", settings.server.callback_max_skew_s)]
    windows += [
        (f"apps.{a.name}.callback_max_skew_s", a.callback_max_skew_s)
        for a in settings.apps
        if a.callback_max_skew_s is not None
    ]
    for where, value in windows:
        if not 0 < value <= MAX_CALLBACK_SKEW_S:
            raise ConfigError(f"{where}: must be > 0 and at most {MAX_CALLBACK_SKEW_S:.0f}")


def parse_bind(value: str, where: str = "server.metrics_bind") -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port); port 0 takes a free one."""
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: expected host:port, e.g. 127.0.0.1:9102 or [::1]:9102")
    return host, int(port)


def _validate_bounds(server: ServerSettings) -> None:
    timeouts = ("store_timeout_s", "header_timeout_s", "read_timeout_s", "keepalive_timeout_s")
    for name in timeouts:
        if not getattr(server, name) > 0:
            raise ConfigError(f"server.{name}: must be > 0")
    if server.max_connections < 1:
        raise ConfigError("server.max_connections: must be >= 1")
    if server.metrics_key is not None:
        api_key_digest(server.metrics_key, "server.metrics_key")
    if server.metrics_bind is not None:
        parse_bind(server.metrics_bind)


def _validate_adaptive(a: AdaptiveSettings) -> None:
    where = "workers.adaptive"
    if a.interval_s <= 0 or a.window < 1 or a.min_samples < 1:
        raise ConfigError(f"{where}: interval_s must be > 0, window and min_samples >= 1")
    if not 0 < a.threshold <= 1 or not 0 < a.decrease < 1:
        raise ConfigError(f"{where}: threshold must be in (0, 1], decrease in (0, 1)")
    if a.increase_ratio <= 0 or a.floor_per_s <= 0:
        raise ConfigError(f"{where}: increase_ratio and floor_per_s must be > 0")


def validate(settings: Settings) -> Settings:
    names = [a.name for a in settings.apps]
    if len(set(names)) != len(names):
        raise ConfigError("apps: names must be unique")
    for app in settings.apps:
        if app.quiet_hours is not None:
            parse_quiet_hours(app.quiet_hours, f"apps.{app.name}.quiet_hours")
        load_zone(app.timezone, f"apps.{app.name}.timezone")
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
    if settings.server.max_stream_bytes < 1:
        raise ConfigError("server.max_stream_bytes: must be >= 1")
    if settings.server.max_data_bytes < 64:
        raise ConfigError("server.max_data_bytes: must be >= 64")
    if settings.server.max_batch_data_bytes < settings.server.max_data_bytes:
        raise ConfigError("server.max_batch_data_bytes: must be >= server.max_data_bytes")
    if settings.workers.concurrency < 1:
        raise ConfigError("workers.concurrency: must be >= 1")
    if settings.workers.retry.max_attempts < 1:
        raise ConfigError("workers.retry.max_attempts: must be >= 1")
    _validate_keys(settings)
    _validate_callbacks(settings)
    _validate_bounds(settings.server)
    _validate_adaptive(settings.workers.adaptive)
    _validate_webhooks(settings)
    return settings


def _validate_webhooks(settings: Settings) -> None:
    w = settings.webhooks
    if w.concurrency < 1 or w.max_attempts < 1:
        raise ConfigError("webhooks: concurrency and max_attempts must be >= 1")
    if min(w.timeout_s, w.connect_timeout_s, w.base_s, w.poll_s) <= 0 or w.cap_s < w.base_s:
        raise ConfigError("webhooks: timeouts, base_s and poll_s must be > 0, cap_s >= base_s")
    if w.busy_rate_per_s < 0:
        raise ConfigError("webhooks.busy_rate_per_s: must be >= 0 (0 = no limit)")
    if w.lease_s <= w.timeout_s:
        raise ConfigError("webhooks.lease_s: must be longer than webhooks.timeout_s")
    for app in settings.apps:
        if app.callback_url is not None and not app.callback_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"apps.{app.name}.callback_url: expected an http(s):// URL")
    _validate_egress(settings)


# ---------------------------------------------------------------- caller callback URLs (SSRF)

_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?:\*\.)?{_HOST_LABEL}(?:\.{_HOST_LABEL})*$")


def _check_host_pattern(entry: str, where: str) -> None:
    """One callback_hosts entry: a name, "*." and a name of two labels or more, or an IP."""
    h = entry.strip().lower().removesuffix(".")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(h[1:-1] if h.startswith("[") and h.endswith("]") else h)
        return
    if not _HOST_NAME.match(h) or re.match(r"^(?:0x[0-9a-f]*|[0-9]+)$", h.rsplit(".", 1)[-1]):
        raise ConfigError(f"{where}: {entry!r} is not a host name, *.name or IP address")
    if h.startswith("*.") and h.count(".") < 2:
        raise ConfigError(f"{where}: {entry!r} is too wide (name two labels after *.)")


def _validate_egress(settings: Settings) -> None:
    for i, cidr in enumerate(settings.webhooks.allow_private_networks):
        try:
            ipaddress.ip_network(cidr.strip(), strict=True)
        except ValueError as exc:
            raise ConfigError(f"webhooks.allow_private_networks[{i}]: {exc}") from None
    for app in settings.apps:
        if app.callback_url is not None and urlsplit(app.callback_url).username is not None:
            # They would be sent as Basic auth and show in logs: sign with webhook_secret.
            raise ConfigError(f"apps.{app.name}.callback_url: no user:password@ in the URL")
        for entry in app.callback_hosts:
            _check_host_pattern(entry, f"apps.{app.name}.callback_hosts")
    for key in settings.server.keys:
        for entry in key.callback_hosts:
            _check_host_pattern(entry, f"server.keys.{key.name}.callback_hosts")


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
