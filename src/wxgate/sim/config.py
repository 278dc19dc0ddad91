"""Simulator settings: the apps it knows, WeChat's windows and the faults to inject.

Everything is a msgspec Struct so a TOML file, the CLI and `POST /_sim/*` share one schema.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

MASK = "***"


class SimTemplate(msgspec.Struct, forbid_unknown_fields=True):
    """A template the app has added in its backend: served by the template-list endpoints
    (sim/templates.py), its `keys` rendered as `{{key.DATA}}` placeholders."""

    template_id: str
    keys: list[str]
    # template: /cgi-bin/template/get_all_private_template; subscribe (mini program) and
    # oa_subscribe (OA subscription notification): /wxaapi/newtmpl/gettemplate.
    kind: Literal["template", "subscribe", "oa_subscribe"] = "template"
    title: str = ""
    # The approved values of its const keys and the listed ones of its enum keys
    # ({"const4": ["已发货", "已签收"]}): any other value is refused with 47003.
    values: dict[str, list[str]] = msgspec.field(default_factory=dict)


def default_templates() -> list[SimTemplate]:
    """What every simulated app has unless configured: the ids the docs and demo use."""
    return [
        SimTemplate(
            template_id="tpl_order_shipped",
            keys=["thing1", "character_string2", "time3"],
            title="订单发货通知",
        ),
        SimTemplate(template_id="tpl_order", keys=["thing1", "amount2"], title="订单状态通知"),
        SimTemplate(
            template_id="sub_order_status",
            keys=["thing1", "character_string2", "phrase3", "time4"],
            kind="subscribe",
            title="订单状态提醒",
        ),
        SimTemplate(
            template_id="oa_order_status",
            keys=["thing1", "character_string2", "time3"],
            kind="oa_subscribe",
            title="订单进度通知",
        ),
    ]


class SimApp(msgspec.Struct, forbid_unknown_fields=True):
    """One Official Account / mini program as WeChat knows it."""

    appid: str
    secret: str
    callback_url: str | None = None
    callback_token: str = ""
    encoding_aes_key: str | None = None  # set = AES safe mode for receipts
    original_id: str = "gh_sandbox"  # ToUserName of the receipts
    # Event pushes as XML (every account) or JSON (a mini program's choice; `List` an object
    # for one item, an array for several): docs/wechat-api.md §5.4.
    push_format: Literal["xml", "json"] = "xml"
    # Sends per Asia/Shanghai day (45009). WeChat's default is 100,000; higher here so that
    # benchmarks do not stop at it. Set it to test the quota.
    daily_quota: int = 10_000_000
    minute_limit: int | None = None  # sends per clock minute (45011); None = no limit
    token_daily_limit: int = 2_000  # /cgi-bin/token calls per day (45009); 0 = no limit
    stable_daily_limit: int = 500_000  # /cgi-bin/stable_token calls per day; 0 = no limit
    stable_minute_limit: int = 10_000  # stable_token calls per clock minute (45011); 0 = none
    templates: list[SimTemplate] = msgspec.field(default_factory=default_templates)
    # Sends name a listed template and only its keys (40037 / 47003 otherwise). Off by
    # default: any template_id and any keys are sent, as before templates were listed.
    validate_templates: bool = False

    def __repr__(self) -> str:
        return (
            f"SimApp(appid={self.appid!r}, secret={MASK!r}, callback_url={self.callback_url!r}, "
            f"aes={self.encoding_aes_key is not None}, daily_quota={self.daily_quota})"
        )


LatencyDist = Literal["uniform", "exponential", "normal"]


class Faults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What goes wrong, globally or for one app. Rates are probabilities per request."""

    latency_ms: float = 0.0  # added before every API answer
    latency_jitter_ms: float = 0.0  # spread on top of latency_ms, shaped by latency_dist
    latency_dist: LatencyDist = "uniform"  # uniform [0, jitter), exponential (mean), normal (sd)
    error_rates: dict[str, float] = msgspec.field(default_factory=dict)  # sends: errcode -> rate
    token_error_rates: dict[str, float] = msgspec.field(default_factory=dict)  # token endpoints
    http_5xx_rate: float = 0.0  # answer http_5xx_status with an HTML body, deliver nothing
    http_5xx_status: int = 502
    stall_rate: float = 0.0  # deliver, then answer only after stall_s
    stall_s: float = 30.0
    reset_rate: float = 0.0  # deliver, then close the connection without an answer
    outage_until: float | None = None  # epoch s; every API endpoint fails until then
    outage_mode: Literal["503", "reset"] = "503"


class SimConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The whole simulator: apps, listening address, WeChat's time windows, receipts, faults."""

    # The gateway's sandbox app as WeChat would know it: its appid, secret and callback Token
    # (wxgate.sandbox and examples/wxgate.toml use the same), so `wxgate sim --callback-url
    # http://127.0.0.1:8080/wechat/callback/sandbox` brings receipts to a by-hand gateway.
    apps: list[SimApp] = msgspec.field(
        default_factory=lambda: [
            SimApp(appid="wx_sandbox", secret="sandbox_secret", callback_token="sandbox-token")
        ]
    )
    host: str = "127.0.0.1"
    port: int = 9100
    tls: bool = False
    tls_dir: str | None = None  # where the generated CA and cert go; None = a temp dir
    token_ttl_s: float = 7200.0
    token_overlap_s: float = 300.0  # a replaced classic token lives this long
    stable_renew_s: float = 300.0  # stable_token hands out a new token this close to expiry
    stable_force_per_day: int = 20
    stable_force_gap_s: float = 30.0
    # A wrong secret on /cgi-bin/token: 40125 as WeChat now usually answers, 40001 as it did
    # (docs/wechat-api.md §1.1); stable_token always answers 40125.
    wrong_secret_errcode: int = 40125
    dedupe_window_s: float = 600.0  # client_msg_id memory
    slow_s: float = 15.0  # how long o_slow's first try is held
    msgid_start: int | None = None  # None = epoch microseconds at start (> 2**32, rising)
    keep_data: bool = True  # keep each delivery's data for /_sim/deliveries (memory)
    receipt_delay_s: float = 0.05
    receipt_timeout_s: float = 5.0
    receipt_tries: int = 3
    receipt_workers: int = 16
    receipt_queue_max: int = 100_000  # beyond this receipts are dropped and counted
    subscribe_receipts: bool = True  # push subscribe_msg_sent_event after subscribe sends
    # Whether subscribe/send answers carry a msgid: WeChat's page lists errcode and errmsg
    # only, SDKs disagree (docs/wechat-api.md §3.1), so none by default. bizsend never has one.
    subscribe_msgid: bool = False
    faults: Faults = msgspec.field(default_factory=Faults)

    def app(self, appid: str) -> SimApp | None:
        for a in self.apps:
            if a.appid == appid:
                return a
        return None


# Command-line spellings also accepted at the top of a TOML file.
_APP_WIDE = {
    "callback_url": "callback_url",
    "callback_token": "callback_token",
    "aes_key": "encoding_aes_key",
    "encoding_aes_key": "encoding_aes_key",
    "original_id": "original_id",
}


def _app_entry(entry: Any) -> Any:
    """ "APPID:SECRET" (the --app spelling) or a table of SimApp fields."""
    if isinstance(entry, str):
        appid, sep, secret = entry.partition(":")
        if not sep or not appid or not secret:
            raise ValueError("an app string must look like APPID:SECRET")
        return {"appid": appid, "secret": secret}
    return entry


def config_from_dict(raw: dict[str, Any]) -> SimConfig:
    """Validate a plain mapping (TOML, JSON) into a SimConfig.

    Takes SimConfig's own keys plus the CLI spellings: `app = ["wx1:secret1"]`, and
    `callback_url`, `callback_token`, `aes_key`, `original_id` (applied to every app) and
    `latency_ms` (a fault) at the top level. Raises msgspec.ValidationError or ValueError.
    """
    raw = dict(raw)
    listed = [raw.pop(k) for k in ("apps", "app") if k in raw]
    entries = [e for group in listed for e in (group if isinstance(group, list) else [group])]
    apps = [_app_entry(a) for a in entries]
    app_wide = {_APP_WIDE[k]: raw.pop(k) for k in list(raw) if k in _APP_WIDE}
    if "latency_ms" in raw:
        raw["faults"] = {**raw.get("faults", {}), "latency_ms": raw.pop("latency_ms")}
    if apps:
        raw["apps"] = apps
    config = msgspec.convert(raw, SimConfig)
    if app_wide:
        config.apps = [msgspec.structs.replace(a, **app_wide) for a in config.apps]
        msgspec.convert(msgspec.to_builtins(config), SimConfig)
    return config


def load_config(path: str | Path) -> SimConfig:
    with open(path, "rb") as f:
        return config_from_dict(tomllib.load(f))
