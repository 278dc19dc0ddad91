"""Checks run once at load on the whole Settings: each names the setting it refuses."""

from __future__ import annotations

import contextlib
import ipaddress
import math
import re
from datetime import UTC, timedelta, tzinfo
from datetime import timezone as dt_timezone
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wxgate.errors import ConfigError
from wxgate.settings.model import (
    AdaptiveSettings,
    AppSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    api_key_digest,
)
from wxgate.settings.redis_urls import SCHEMES, is_redis_url, parse_redis_url

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
        for k, policy in enumerate(app.redrive):
            where = f"apps.{app.name}.redrive[{k}]"
            if not policy.errcodes:
                raise ConfigError(f"{where}.errcodes: list at least one errcode")
            if not math.isfinite(policy.every_s) or policy.every_s < 1:
                raise ConfigError(f"{where}.every_s: must be >= 1 (seconds)")
            if policy.rounds < 1:
                raise ConfigError(f"{where}.rounds: must be >= 1")
        if app.encoding_aes_key is not None and len(app.encoding_aes_key) != 43:
            raise ConfigError(f"apps.{app.name}.encoding_aes_key: must be 43 characters")
    _validate_store_url(settings.store.url)
    _validate_replica_acks(settings.store.url, settings.store)
    if settings.store.pool_size < 1:
        raise ConfigError("store.pool_size: must be >= 1")
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
    _validate_tracing(settings)
    return settings


def _validate_replica_acks(url: str, store: StoreSettings) -> None:
    """store.min_replica_acks needs replicas to ask (Redis, one primary or Sentinel's): SQLite
    has none, and on Cluster WAIT would have to reach the shard of each write."""
    if store.min_replica_acks < 0:
        raise ConfigError("store.min_replica_acks: must be >= 0")
    if not 1 <= store.replica_ack_timeout_ms <= 60_000:
        raise ConfigError("store.replica_ack_timeout_ms: must be 1-60000 (0 would wait forever)")
    if store.min_replica_acks == 0:
        return
    if url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "store.min_replica_acks: Redis only; on PostgreSQL set synchronous_standby_names "
            "on the primary (every commit then waits for the standby)"
        )
    if url.startswith("sqlite://"):
        raise ConfigError(
            "store.min_replica_acks: SQLite has no replicas; set it to 0 or use Redis"
        )
    if parse_redis_url(url).topology == "cluster":
        raise ConfigError(
            "store.min_replica_acks: not supported on redis+cluster:// "
            "(use a primary with replicas, or redis+sentinel://)"
        )


def _validate_store_url(url: str) -> None:
    """A store URL the store can open: SQLite, PostgreSQL (libpq parses it at open), or a Redis
    URL of a known topology (the same parse the Redis store uses, so `redis://h1:p1,h2:p2`
    fails here, naming the Sentinel and Cluster forms, not later as a crash)."""
    if url.startswith(("sqlite://", "postgresql://", "postgres://")):
        return
    if not is_redis_url(url):
        raise ConfigError(
            "store.url: must start with sqlite://, postgresql:// or one of " + ", ".join(SCHEMES)
        )
    parse_redis_url(url)


def _validate_tracing(settings: Settings) -> None:
    t = settings.tracing
    if t.endpoint is not None and not t.endpoint.startswith(("http://", "https://")):
        raise ConfigError("tracing.endpoint: expected an http:// or https:// OTLP/HTTP URL")
    if not 0.0 <= t.sample_ratio <= 1.0:
        raise ConfigError("tracing.sample_ratio: must be between 0 and 1")
    if not t.service_name.strip():
        raise ConfigError("tracing.service_name: must not be empty")


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
