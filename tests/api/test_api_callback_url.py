"""Who may name a message's or batch's own callback_url (api/callback_url.py), as pure
functions: the URL's shape (400), then the app's and the key's callback_hosts (403); and the
settings that configure it, checked at start."""

from __future__ import annotations

import re
from typing import Any

import pytest

from wxgate.api.callback_url import caller_callback_url
from wxgate.api.errors import ApiError
from wxgate.api.intake import batch_from, message_from
from wxgate.errors import ConfigError
from wxgate.models import BatchIn, MessageIn, Recipient
from wxgate.settings import AppSettings, from_dict

NOW = 1_700_000_000.0
CLOSED = AppSettings(name="shop", appid="wx_shop", secret="s")
OPEN = AppSettings(
    name="shop",
    appid="wx_shop",
    secret="s",
    callback_url="http://10.0.0.5/operator-hook",
    callback_hosts=["hooks.example.com", "*.shop.example", "203.0.113.7"],
)


def refused(url: str, app: AppSettings = OPEN, key: list[str] | None = None) -> ApiError:
    with pytest.raises(ApiError) as info:
        caller_callback_url(url, app, key)
    assert info.value.field == "callback_url"
    return info.value


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "hooks.example.com/x",
        "http:///x",
        "http://user:pass@hooks.example.com/x",
        "http://user@hooks.example.com/x",
        "http://:@hooks.example.com/x",
        "http://hooks.example.com/x#frag",
        "http://evil.example#@hooks.example.com",
        "http://hooks.example.com\\@evil.example/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://%31%32%37.0.0.1/",
        "http://hooks.example.com:99999/",
    ],
)
def test_bad_shapes_are_400_even_when_the_host_is_allowed(url: str) -> None:
    assert refused(url).status == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/x",
        "http://127.0.0.1/x",
        "http://0.0.0.0/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://hooks.example.com.evil.net/x",
        "http://shop.example/x",  # *.shop.example wants one more label
    ],
)
def test_hosts_not_allowlisted_are_403(url: str) -> None:
    err = refused(url)
    assert (err.status, err.error) == (403, "callback_url_not_allowed")


def test_without_callback_hosts_no_caller_url_at_all() -> None:
    err = refused("https://hooks.example.com/x", CLOSED)
    assert err.status == 403 and "callback_hosts" in err.message


def test_allowlisted_hosts_pass() -> None:
    for url in (
        "https://hooks.example.com/x?order=1",
        "https://HOOKS.example.com./x",
        "http://a.shop.example:8443/x",
        "http://203.0.113.7/x",
    ):
        assert caller_callback_url(url, OPEN, None) == url
    assert caller_callback_url(None, CLOSED, []) is None


def test_a_named_key_must_allow_the_host_too() -> None:
    url = "https://hooks.example.com/x"
    assert caller_callback_url(url, OPEN, ["hooks.example.com"]) == url
    assert refused(url, OPEN, []).status == 403  # a named key without callback_hosts
    assert refused(url, OPEN, ["*.shop.example"]).status == 403
    # The key cannot widen the app's list.
    assert refused("https://partner.example/x", OPEN, ["partner.example"]).status == 403


def test_message_and_batch_intake_apply_it() -> None:
    def msg(**kw: Any) -> MessageIn:
        return MessageIn(touser="o", template_id="t", data={}, **kw)

    own = message_from(msg(callback_url="https://hooks.example.com/m"), OPEN, NOW, "m1", None)
    assert own.callback_url == "https://hooks.example.com/m"
    assert message_from(msg(), OPEN, NOW, "m2", None).callback_url == OPEN.callback_url
    with pytest.raises(ApiError) as info:
        message_from(msg(callback_url="http://127.0.0.1/x"), OPEN, NOW, "m3", None)
    assert info.value.status == 403
    with pytest.raises(ApiError) as info:
        message_from(msg(callback_url="https://hooks.example.com/m"), OPEN, NOW, "m4", None, [])
    assert info.value.status == 403
    body = BatchIn(template_id="t", recipients=[Recipient("o")], callback_url="http://[::1]/x")
    with pytest.raises(ApiError) as info:
        batch_from(body, OPEN, NOW, "b1", 10)
    assert (info.value.status, info.value.field) == (403, "callback_url")


def _settings(**app: Any) -> dict[str, Any]:
    return {"apps": [{"name": "a", "appid": "wx_a", "secret": "s", **app}]}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (_settings(callback_hosts=["*"]), "apps.a.callback_hosts"),
        (_settings(callback_hosts=["*.com"]), "apps.a.callback_hosts"),
        (_settings(callback_hosts=["0x7f000001"]), "apps.a.callback_hosts"),
        (_settings(callback_hosts=["https://hooks.example.com"]), "apps.a.callback_hosts"),
        (_settings(callback_url="https://u:p@hooks.example.com/x"), "apps.a.callback_url"),
        (
            {**_settings(), "webhooks": {"allow_private_networks": ["10.0.0.1/8"]}},
            "webhooks.allow_private_networks[0]",
        ),
        (
            {
                **_settings(),
                "server": {
                    "keys": [
                        {"name": "k", "key": "x", "scopes": ["send"], "callback_hosts": ["a b"]}
                    ]
                },
            },
            "server.keys.k.callback_hosts",
        ),
    ],
)
def test_bad_settings_are_refused_at_start(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(where)}:"):
        from_dict(data)


def test_good_settings_load() -> None:
    s = from_dict(
        {
            **_settings(callback_hosts=["hooks.example.com", "*.shop.example", "[2001:db8::7]"]),
            "webhooks": {"allow_private_networks": ["10.1.0.0/16", "fd12::/16"]},
        }
    )
    assert s.apps[0].callback_hosts[1] == "*.shop.example"
    assert s.webhooks.allow_private_networks == ["10.1.0.0/16", "fd12::/16"]
