"""The settings sections as msgspec Structs, their defaults, and secret masking."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

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
    # "text" for a terminal; "json" writes one JSON object per line (time, level, logger,
    # message, message_id / app / batch / errcode where a record has one) for a log pipeline.
    # `wxgate serve --log-format` overrides it.
    log_format: Literal["text", "json"] = "text"

    def __repr__(self) -> str:
        return (
            f"ServerSettings(host={self.host!r}, port={self.port}, "
            f"api_keys=[{len(self.api_keys)} masked], keys={[k.name for k in self.keys]!r})"
        )


class StoreSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str = "sqlite:///wxgate.db"
    # Finished messages are kept this long (Redis TTL; SQLite and PostgreSQL prune on the
    # same horizon).
    retention_s: float = 7 * 86400
    # PostgreSQL connections per process (each gateway process has a pool of its own).
    pool_size: int = 10
    # Redis only: replicas that must confirm each group commit of enqueues and acks (WAIT)
    # before a 202; fewer within replica_ack_timeout_ms is a 503 (retry with the same key).
    min_replica_acks: int = 0
    replica_ack_timeout_ms: int = 1000


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


# WeChat's default daily limits per account and kind (docs/wechat-api.md §6.1). No source
# states one for OA subscription notifications (bizsend), so they get the template-message
# default, the smaller one: a limit met too early is a pause, one met too late is 45009s.
DAILY_QUOTA_BY_KIND: dict[str, int] = {
    "template": 100_000,
    "subscribe": 10_000_000,
    "oa_subscribe": 100_000,
}
DEFAULT_DAILY_QUOTA = DAILY_QUOTA_BY_KIND["template"]


class RedrivePolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[[apps.redrive]]`: dead letters of these errcodes go back to the queue `every_s`
    after they died, at most `rounds` times each (delivery/redrive.py). Only the errcodes
    listed are ever re-driven: permanent ones (40003 invalid openid, 43004 not following)
    only if an operator lists them."""

    errcodes: list[int]
    every_s: float = 21600.0
    rounds: int = 3


class AppSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    appid: str
    secret: str
    callback_token: str = ""
    encoding_aes_key: str | None = None
    original_id: str | None = None  # gh_xxx, the ToUserName of callbacks
    token_mode: Literal["stable", "classic"] = "stable"
    rate_per_s: float = 500.0
    # Sends per Asia/Shanghai day and message kind; None = WeChat's default for the kind
    # (DAILY_QUOTA_BY_KIND: 100,000 template messages and OA subscription notifications,
    # 10,000,000 mini-program subscribe messages).
    daily_quota: int | None = None
    max_concurrency: int = 64
    # Status webhooks: final statuses of this app's messages are POSTed here (a message's or
    # batch's own callback_url wins), signed with webhook_secret (README "Status webhooks").
    callback_url: str | None = None
    webhook_secret: str = ""
    # Hosts a caller may name in a message's or batch's own callback_url ("hooks.example.com",
    # "*.shop.example"); a named key must allow the host too. Empty = caller URLs refused
    # (403). The app's own callback_url above is the operator's and may point anywhere.
    callback_hosts: list[str] = msgspec.field(default_factory=list)
    # Template checks at accept time (api/template_check.py): "types" (the default) refuses
    # a typed key's value that WeChat would refuse with 47003 (`thing1` over 20 characters),
    # from key names alone; "reject" adds checks against the app's template list fetched
    # from WeChat (unknown and missing keys, old-style field limits); "truncate" is "reject"
    # but cuts over-long values WeChat would refuse, noted (never a const); "off" checks none.
    validate: Literal["off", "types", "reject", "truncate"] = "types"
    # "22:00-08:00" in `timezone`: normal and low priority messages due inside the window wait
    # for its end (urgent ones do not). None = no quiet hours.
    quiet_hours: str | None = None
    timezone: str = "Asia/Shanghai"
    # This app's WeChat callbacks: overrides server.callback_max_skew_s (None: the server's).
    callback_max_skew_s: float | None = None
    # A subscribe or oa_subscribe message to a user who rejected its template (popup or
    # change event) is dead-lettered with 43101 when leased, without a send; an accept lifts
    # it. False: sent anyway (WeChat answers 43101 itself, spending a call).
    suppress_rejected: bool = True
    # Scheduled redrive of this app's dead letters (RedrivePolicy); none by default.
    redrive: list[RedrivePolicy] = msgspec.field(default_factory=list)

    def quota_for(self, kind: str) -> int:
        """Sends a day of one kind (`daily_quota` if set, else WeChat's default for it)."""
        if self.daily_quota is not None:
            return self.daily_quota
        return DAILY_QUOTA_BY_KIND.get(kind, DEFAULT_DAILY_QUOTA)

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


class TracingSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """OpenTelemetry traces (wxgate/tracing): exported over OTLP/HTTP only when `endpoint` is
    set, which needs the optional extra (`pip install wxgate[tracing]`). Without an endpoint
    the caller's traceparent is still kept and passed on to status webhooks, nothing else."""

    endpoint: str | None = None  # e.g. "http://otel-collector:4318/v1/traces"
    service_name: str = "wxgate"
    sample_ratio: float = 1.0  # of new traces; a caller's sampled flag is followed (parent-based)


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    wechat: WeChatSettings = msgspec.field(default_factory=WeChatSettings)
    workers: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    webhooks: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    templates: TemplateSettings = msgspec.field(default_factory=TemplateSettings)
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
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
        if raw["tracing"]["endpoint"]:
            raw["tracing"]["endpoint"] = _mask_url(raw["tracing"]["endpoint"])
        return raw

    def __repr__(self) -> str:
        return f"Settings({self.masked()!r})"


def _mask_url(url: str) -> str:
    """Hide a password in scheme://user:password@host URLs, and libpq's `password=` query
    parameter (postgresql://user@host/db?password=...)."""
    base, sep, query = url.partition("?")
    if query:
        query = "&".join(
            f"password={MASK}" if pair.startswith("password=") else pair
            for pair in query.split("&")
        )
    if "@" in base and "://" in base:
        scheme, rest = base.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        base = f"{scheme}://{user}:{MASK}@{host}"
    return base + sep + query
