"""One Settings object: a TOML file, then WXGATE_* environment overrides, then defaults.

model.py holds the sections, load.py reads file and environment, validate.py checks the result.

Environment overrides use double underscores between levels; a value for a text setting is
taken as it is (a numeric secret stays a string), any other is parsed as a TOML value:
`WXGATE_SERVER__PORT=9000`, `WXGATE_SERVER__API_KEYS='["k1", "k2"]'`,
`WXGATE_STORE__URL=redis://127.0.0.1:6379/0`, `WXGATE_APPS__sandbox__SECRET=...` (apps by name),
`WXGATE_SERVER__KEYS='[{name = "ci", key_sha256 = "<hex>", scopes = ["send"]}]'`.
Secrets (app secrets, callback tokens, AES keys, API keys and their hashes, store passwords)
are masked in `repr` and in `masked()`; library code never reads os.environ itself.
"""

from __future__ import annotations

from wxgate.settings.example import example_toml
from wxgate.settings.load import from_dict, load
from wxgate.settings.model import (
    MASK,
    AdaptiveSettings,
    AppSettings,
    BreakerSettings,
    KeySettings,
    RedrivePolicy,
    RetrySettings,
    ScopeName,
    ServerSettings,
    Settings,
    StoreSettings,
    TemplateSettings,
    TracingSettings,
    WebhookSettings,
    WeChatSettings,
    WorkerSettings,
    api_key_digest,
)
from wxgate.settings.validate import (
    MAX_CALLBACK_SKEW_S,
    callback_max_skew_s,
    load_zone,
    parse_bind,
    parse_quiet_hours,
    validate,
)

__all__ = [
    "MASK",
    "MAX_CALLBACK_SKEW_S",
    "AdaptiveSettings",
    "AppSettings",
    "BreakerSettings",
    "KeySettings",
    "RedrivePolicy",
    "RetrySettings",
    "ScopeName",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "TemplateSettings",
    "TracingSettings",
    "WeChatSettings",
    "WebhookSettings",
    "WorkerSettings",
    "api_key_digest",
    "callback_max_skew_s",
    "example_toml",
    "from_dict",
    "load",
    "load_zone",
    "parse_bind",
    "parse_quiet_hours",
    "validate",
]
