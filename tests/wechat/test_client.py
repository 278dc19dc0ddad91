"""Every disposition reached through the real client against the real simulator."""

from __future__ import annotations

import asyncio
import socket

import pytest

from support.wechat import APP, message, settings_for
from wxgate.clock import SystemClock
from wxgate.errors import BadTokenEndpoint, Disposition, NotSent, OutcomeUnknown, WeChatError
from wxgate.models import MessageKind
from wxgate.settings import AppSettings
from wxgate.sim.config import SimConfig
from wxgate.sim.testing import SimHandle, running_simulator
from wxgate.wechat.client import WeChatClient


async def test_template_send_returns_a_64_bit_msgid(
    sim: SimHandle, client: WeChatClient, token: str
) -> None:
    msg = message()
    msgid = await client.send(msg, token)
    assert isinstance(msgid, int) and msgid > 2**32
    [delivery] = await sim.deliveries(openid="o_alice")
    assert delivery["client_msg_id"] == msg.id
    assert delivery["msgid"] == msgid
    assert delivery["data"] == {"thing1": {"value": "Order 42"}}


async def test_subscribe_send(sim: SimHandle, client: WeChatClient, token: str) -> None:
    msg = message(touser="o_bob", kind=MessageKind.SUBSCRIBE)
    msg.page = "pages/index"
    await client.send(msg, token)
    [delivery] = await sim.deliveries(openid="o_bob")
    assert delivery["kind"] == "subscribe" and delivery["page"] == "pages/index"


async def test_oa_subscribe_send_has_no_msgid(
    sim: SimHandle, client: WeChatClient, token: str
) -> None:
    msg = message(touser="o_carol", kind=MessageKind.OA_SUBSCRIBE)
    msg.url = "https://shop.example/o/1"
    assert await client.send(msg, token) is None, "bizsend answers without a msgid"
    [delivery] = await sim.deliveries(openid="o_carol")
    assert delivery["kind"] == "oa_subscribe" and delivery["page"] == "https://shop.example/o/1"
    assert delivery["msgid"] > 0, "WeChat has one all the same: its receipt carries it"


async def test_oa_subscribe_to_an_unsubscribed_user_is_a_drop(
    sim: SimHandle, client: WeChatClient, token: str
) -> None:
    with pytest.raises(WeChatError) as info:
        await client.send(message(touser="o_unsubscribed_1", kind=MessageKind.OA_SUBSCRIBE), token)
    assert (info.value.errcode, info.value.disposition) == (43101, Disposition.DROP)


@pytest.mark.parametrize(
    ("touser", "template_id", "errcode", "disposition"),
    [
        ("o_invalid_1", "tpl_order", 40003, Disposition.DROP),
        ("o_unfollowed_1", "tpl_order", 43004, Disposition.DROP),
        ("o_refused_1", "tpl_order", 43101, Disposition.DROP),
        ("o_baddata_1", "tpl_order", 47003, Disposition.DROP),
        ("o_unauthorized_1", "tpl_order", 48001, Disposition.CONFIG),
        ("o_notfollowing_1", "tpl_order", 50005, Disposition.DROP),
        ("o_alice", "tpl_invalid_x", 40037, Disposition.DROP),
    ],
)
async def test_error_dispositions(
    sim: SimHandle,
    client: WeChatClient,
    token: str,
    touser: str,
    template_id: str,
    errcode: int,
    disposition: Disposition,
) -> None:
    with pytest.raises(WeChatError) as info:
        await client.send(message(touser, template_id), token)
    assert (info.value.errcode, info.value.disposition) == (errcode, disposition)
    assert await sim.deliveries(openid=touser) == []


async def test_busy_retries_with_the_same_id(
    sim: SimHandle, client: WeChatClient, token: str
) -> None:
    msg = message("o_busy_1")
    for _ in range(2):
        with pytest.raises(WeChatError) as info:
            await client.send(msg, token)
        assert (info.value.errcode, info.value.disposition) == (-1, Disposition.RETRY)
    assert await client.send(msg, token)
    assert len(await sim.deliveries(openid="o_busy_1")) == 1


@pytest.mark.parametrize(("touser", "errcode"), [("o_quota_1", 45009), ("o_minute_1", 45011)])
async def test_quota_codes_throttle(
    sim: SimHandle, client: WeChatClient, token: str, touser: str, errcode: int
) -> None:
    msg = message(touser)
    with pytest.raises(WeChatError) as info:
        await client.send(msg, token)
    assert (info.value.errcode, info.value.disposition) == (errcode, Disposition.THROTTLE)
    assert await client.send(msg, token)


@pytest.mark.parametrize("touser", ["o_5xx_1", "o_reset_1"])
async def test_5xx_and_reset_are_outcome_unknown(
    sim: SimHandle, client: WeChatClient, token: str, touser: str
) -> None:
    msg = message(touser)
    with pytest.raises(OutcomeUnknown) as info:
        await client.send(msg, token)
    assert info.value.disposition is Disposition.RETRY
    assert token not in str(info.value) and token not in repr(info.value)
    # No chained aiohttp exception whose text could hold the URL and its token.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    # The re-send with the same client_msg_id reaches the user once.
    assert await client.send(msg, token)
    assert len(await sim.deliveries(openid=touser)) == 1
    assert await sim.duplicates() == []


async def test_ambiguous_timeout_then_resend_delivers_once(sim: SimHandle, token: str) -> None:
    settings = settings_for(sim.base_url, read_timeout_s=0.3, total_timeout_s=1.0)
    async with WeChatClient(settings, SystemClock()) as short:
        msg = message("o_slow_1")
        with pytest.raises(OutcomeUnknown) as info:
            await short.send(msg, token)
        assert "/cgi-bin/message/template/send" in info.value.errmsg
        assert token not in str(info.value)
        # WeChat had taken the first try; the second is dropped as a duplicate, same msgid.
        msgid = await short.send(msg, token)
    [delivery] = await sim.deliveries(openid="o_slow_1")
    assert delivery["msgid"] == msgid
    stats = await sim.stats()
    assert stats["deduplicated"] == 1 and stats["delivered"] == 1


async def test_connection_refused_is_not_sent() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on `port` now.
    async with WeChatClient(settings_for(f"http://127.0.0.1:{port}"), SystemClock()) as c:
        with pytest.raises(NotSent) as info:
            await c.send(message(), "SECRET_TOKEN_VALUE")
        assert "SECRET_TOKEN_VALUE" not in str(info.value)
        with pytest.raises(NotSent):
            await c.fetch_token(APP)
        assert c.transport_errors == 2 and c.in_flight == 0


@pytest.mark.parametrize(("bad", "errcode"), [("x", 40014), ("9" * 40, 40001)])
async def test_unknown_tokens_ask_for_a_refresh(
    client: WeChatClient, bad: str, errcode: int
) -> None:
    with pytest.raises(WeChatError) as info:
        await client.send(message(), bad)
    assert (info.value.errcode, info.value.disposition) == (errcode, Disposition.REFRESH_TOKEN)


async def test_revoked_token_asks_for_a_refresh(
    sim: SimHandle, client: WeChatClient, token: str
) -> None:
    assert await sim.revoke_tokens("wx_sandbox") >= 1
    with pytest.raises(WeChatError) as info:
        await client.send(message(), token)
    assert (info.value.errcode, info.value.disposition) == (40001, Disposition.REFRESH_TOKEN)


async def test_expired_token_asks_for_a_refresh() -> None:
    async with running_simulator(SimConfig(token_ttl_s=1.0, stable_renew_s=0.0)) as sim:
        async with WeChatClient(settings_for(sim.base_url), SystemClock()) as c:
            entry = await c.fetch_token(APP)
            assert 0 < entry.expires_at - entry.fetched_at <= 1
            await asyncio.sleep(1.05)
            with pytest.raises(WeChatError) as info:
                await c.send(message(), entry.access_token)
    assert (info.value.errcode, info.value.disposition) == (42001, Disposition.REFRESH_TOKEN)


async def test_fetch_token_stable_and_classic(sim: SimHandle, client: WeChatClient) -> None:
    first = await client.fetch_token(APP)
    again = await client.fetch_token(APP)
    assert first.access_token == again.access_token  # stable, normal mode: same token
    assert 7000 < first.expires_at - first.fetched_at <= 7200
    classic = AppSettings(
        name="c", appid="wx_sandbox", secret="sandbox_secret", token_mode="classic"
    )
    c1 = await client.fetch_token(classic)
    c2 = await client.fetch_token(classic)
    assert len({first.access_token, c1.access_token, c2.access_token}) == 3
    assert client.fetch_count["wx_sandbox"] == 4
    by_kind = (await sim.stats())["token_fetches_by_kind"]["wx_sandbox"]
    assert by_kind == {"stable": 2, "classic": 2}
    assert first.access_token not in repr(first)


@pytest.mark.parametrize("mode", ["stable", "classic"])
@pytest.mark.parametrize(
    ("appid", "secret", "codes"),
    [("wx_sandbox", "wrong", {40125}), ("wx_nobody", "x", {40013})],
)
async def test_token_config_errors(
    client: WeChatClient, mode: str, appid: str, secret: str, codes: set[int]
) -> None:
    app = AppSettings(name="bad", appid=appid, secret=secret, token_mode=mode)  # type: ignore[arg-type]
    with pytest.raises(WeChatError) as info:
        await client.fetch_token(app)
    assert info.value.errcode in codes
    assert info.value.disposition is Disposition.CONFIG
    assert secret not in str(info.value) or secret == "x"


@pytest.mark.parametrize("errcode", [89501, 89503, 89506, 89507, 40243, 61004, 40164])
async def test_token_answers_that_need_a_human_are_config(
    sim: SimHandle, client: WeChatClient, errcode: int
) -> None:
    await sim.set_faults(token_error_rates={str(errcode): 1.0})
    with pytest.raises(WeChatError) as info:
        await client.fetch_token(APP)
    assert (info.value.errcode, info.value.disposition) == (errcode, Disposition.CONFIG)


@pytest.mark.parametrize("mode", ["stable", "classic"])
async def test_token_endpoint_that_is_not_wechat_is_config_naming_the_url(
    sim: SimHandle, mode: str
) -> None:
    wrong = f"{sim.base_url}/elsewhere"
    app = AppSettings(name="c", appid="wx_sandbox", secret="TOP_SECRET_42", token_mode=mode)  # type: ignore[arg-type]
    async with WeChatClient(settings_for(wrong), SystemClock()) as c:
        with pytest.raises(BadTokenEndpoint) as info:
            await c.fetch_token(app)
    assert info.value.disposition is Disposition.CONFIG
    assert "HTTP 404" in info.value.errmsg
    path = "/cgi-bin/token" if mode == "classic" else "/cgi-bin/stable_token"
    assert f"{wrong}{path} " in info.value.errmsg
    assert "TOP_SECRET_42" not in str(info.value)


async def test_a_bad_token_endpoint_url_is_named_without_credentials(sim: SimHandle) -> None:
    base = sim.base_url.replace("http://", "http://proxyuser:PROXY_PW_9@") + "/elsewhere"
    async with WeChatClient(settings_for(base), SystemClock()) as c:
        with pytest.raises(BadTokenEndpoint) as info:
            await c.fetch_token(APP)
    assert "PROXY_PW_9" not in str(info.value) and "proxyuser" not in str(info.value)
    assert "/elsewhere/cgi-bin/stable_token" in info.value.errmsg


async def test_token_endpoint_5xx(sim: SimHandle, client: WeChatClient) -> None:
    await sim.set_faults(http_5xx_rate=1.0)
    with pytest.raises(OutcomeUnknown):
        await client.fetch_token(APP)


async def test_classic_secret_never_in_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = AppSettings(name="c", appid="wx_sandbox", secret="TOP_SECRET_42", token_mode="classic")
    async with WeChatClient(settings_for(f"http://127.0.0.1:{port}"), SystemClock()) as c:
        with pytest.raises(NotSent) as info:
            await c.fetch_token(app)
    assert "TOP_SECRET_42" not in str(info.value)


async def test_unpooled_mode_opens_a_connection_per_request(sim: SimHandle, token: str) -> None:
    async with WeChatClient(settings_for(sim.base_url), SystemClock(), pooled=False) as c:
        for _ in range(3):
            assert await c.send(message(), token)
        assert "pooled=False" in repr(c)
    assert len(await sim.deliveries(openid="o_alice")) == 3


async def test_repr_shows_the_pool(client: WeChatClient) -> None:
    text = repr(client)
    assert text.startswith("<WeChatClient base=http://127.0.0.1:") and "pool=256" in text
    assert "active=0" in text


async def test_not_started_client_refuses(sim: SimHandle) -> None:
    c = WeChatClient(settings_for(sim.base_url), SystemClock())
    with pytest.raises(RuntimeError):
        await c.send(message(), "t")
    assert "closed" in repr(c)


async def test_tls_with_the_simulators_ca() -> None:
    async with running_simulator(SimConfig(tls=True)) as sim:
        assert sim.base_url.startswith("https://") and sim.ca_file is not None
        trusted = settings_for(sim.base_url, ca_file=str(sim.ca_file))
        async with WeChatClient(trusted, SystemClock()) as c:
            assert (await c.fetch_token(APP)).access_token
        async with WeChatClient(settings_for(sim.base_url), SystemClock()) as c:
            with pytest.raises(NotSent):  # unknown CA: the handshake fails before any byte
                await c.fetch_token(APP)
        insecure = settings_for(sim.base_url, verify_tls=False)
        async with WeChatClient(insecure, SystemClock()) as c:
            assert (await c.fetch_token(APP)).access_token


# Every value rule (policy/template_values.py) as the real client meets it: WeChat's 47003,
# a `drop`, for category templates and subscribe messages alike (docs/wechat-api.md §2.3).
_BAD_VALUES = [
    ("thing1", "x" * 21),
    ("short_thing2", "六个字的东西"),
    ("phrase3", "OK"),
    ("character_string4", "订单42"),
    ("number5", "12a"),
    ("letter6", "ab1"),
    ("symbol7", "%%%%%%"),
    ("amount8", "twelve"),
    ("time9", "tomorrow"),
    ("date10", "someday"),
    ("phone_number11", "1" * 18),
    ("car_number12", "粤A1234567"),
    ("name13", "张" * 11),
    ("const14", "x" * 21),
]


@pytest.mark.parametrize(("key", "value"), _BAD_VALUES)
@pytest.mark.parametrize("kind", [MessageKind.TEMPLATE, MessageKind.SUBSCRIBE])
async def test_a_value_breaking_its_type_rule_is_47003_drop(
    sim: SimHandle, client: WeChatClient, token: str, kind: MessageKind, key: str, value: str
) -> None:
    m = message("o_alice", "tpl_order", kind)
    m.data = {key: {"value": value}}
    with pytest.raises(WeChatError) as info:
        await client.send(m, token)
    assert (info.value.errcode, info.value.disposition) == (47003, Disposition.DROP)
    assert f"data.{key}.value" in info.value.errmsg
    assert await sim.deliveries(openid="o_alice") == []


async def test_old_style_keys_are_sent_whatever_their_length(
    sim: SimHandle, client: WeChatClient, token: str
) -> None:
    m = message("o_alice", "tpl_order")
    m.data = {"first": {"value": "x" * 60}, "keyword1": {"value": "y" * 60}}
    assert await client.send(m, token) is not None
    assert len(await sim.deliveries(openid="o_alice")) == 1
