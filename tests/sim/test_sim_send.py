"""Template and subscribe sends: validation errcodes, test recipients, dedupe, msgids, quotas."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from support.sim import (
    APPID,
    SECRET,
    SUBSCRIBE_PATH,
    TEMPLATE_PATH,
    assert_err,
    classic_token,
    send,
    sub,
    token,
    tpl,
)
from wxgate.clock import FakeClock
from wxgate.sim.config import SimApp, SimConfig, SimTemplate
from wxgate.sim.testing import SimHandle, running_simulator


@pytest.fixture
async def tok(sim: SimHandle, http: aiohttp.ClientSession) -> str:
    return await token(http, sim.base_url)


async def test_send_is_delivered_and_recorded(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    answer = await send(http, sim.base_url, tok, tpl("oAlice", cmid="m1"))
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok"
    assert answer["msgid"] > 2**32  # a client truncating to int32 would break
    [d] = await sim.deliveries(openid="oAlice")
    assert d["msgid"] == answer["msgid"]
    assert d["app"] == APPID and d["kind"] == "template" and d["client_msg_id"] == "m1"
    assert d["data"] == tpl()["data"]
    assert d["url"] == "https://example.com/orders/42"
    assert d["status"] == "success"
    assert sim.state.delivered == 1


async def test_msgids_increase(sim: SimHandle, http: aiohttp.ClientSession, tok: str) -> None:
    ids = [(await send(http, sim.base_url, tok, tpl(f"oU{i}")))["msgid"] for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    url = f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}"
    async with http.post(url, json=tpl()) as resp:
        raw = await resp.read()
    assert b'"msgid":' + str(ids[-1] + 1).encode() + b"}" in raw  # a JSON integer, not a string


@pytest.mark.parametrize(
    ("body", "errcode", "in_msg"),
    [
        (b"", 44002, "empty post data"),
        (b'{"touser": "oA",', 47001, "data format error"),
        (b"[1, 2]", 47001, "data format error"),
        (tpl(touser=""), 40003, "invalid openid"),
        ({**tpl(), "touser": 123}, 40003, "invalid openid"),
        (tpl(touser="o bad id"), 40003, "invalid openid"),
        ({"template_id": "t", "data": {"k": {"value": "v"}}}, 40003, "invalid openid"),
        (tpl(template_id=""), 40037, "invalid template_id"),
        (tpl(template_id="tpl_invalid_gone"), 40037, "invalid template_id"),
        (tpl(template_id="t" * 200), 40036, "template_id size"),
        (tpl(data=None), 47003, "data is empty"),
        (tpl(data={}), 47003, "data is empty"),
        (tpl(data=[1]), 47003, "data invalid"),
        (tpl(data={"thing1": "text"}), 47003, "data.thing1 invalid"),
        (tpl(data={"thing1": {"color": "#000"}}), 47003, "data.thing1.value is empty"),
        (tpl(data={"thing1": {"value": 5}}), 47003, "data.thing1.value invalid"),
        (tpl(data={"bad key": {"value": "x"}}), 47003, "data.bad key invalid"),
        (tpl(url=5), 47001, "data format error"),
    ],
)
async def test_template_validation(
    sim: SimHandle,
    http: aiohttp.ClientSession,
    tok: str,
    body: dict[str, Any] | bytes,
    errcode: int,
    in_msg: str,
) -> None:
    answer = await send(http, sim.base_url, tok, body)
    assert_err(answer, errcode)
    assert in_msg in answer["errmsg"]
    assert sim.state.delivered == 0 and not await sim.deliveries()


async def test_old_style_template_values_are_only_cut_and_color_is_accepted(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    """first / keywordN / remark are cut on screen by WeChat, not refused (2023 rules)."""
    long = "x" * 50
    data = {
        "first": {"value": long, "color": "#173177"},
        "keyword1": {"value": long},
        "remark": {"value": "two\nlines"},
    }
    assert (await send(http, sim.base_url, tok, tpl(data=data)))["errcode"] == 0


async def test_category_template_value_over_its_limit_is_47003(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    body = tpl(data={"thing1": {"value": "x" * 21, "color": "#173177"}})
    answer = await send(http, sim.base_url, tok, body)
    assert_err(answer, 47003)
    assert "data.thing1.value" in answer["errmsg"]
    assert sim.state.delivered == 0


@pytest.mark.parametrize(
    ("data", "ok"),
    [
        ({"thing1": {"value": "x" * 20}}, True),
        ({"thing1": {"value": "x" * 21}}, False),
        ({"thing1": {"value": ""}}, False),
        ({"thing1": {"value": "two\nlines"}}, False),
        ({"number01": {"value": "12.50"}}, True),
        ({"number01": {"value": "12a"}}, False),
        ({"letter2": {"value": "abc"}}, True),
        ({"letter2": {"value": "ab1"}}, False),
        ({"symbol3": {"value": "%$"}}, True),
        ({"symbol3": {"value": "%%%%%%"}}, False),
        ({"character_string4": {"value": "SF-1234_5678"}}, True),
        ({"character_string4": {"value": "x" * 33}}, False),
        ({"time5": {"value": "2024-05-01 10:00"}}, True),
        ({"date6": {"value": "2024年5月1日 ~ 2024年5月2日"}}, True),
        ({"time5": {"value": "tomorrow"}}, False),
        ({"amount7": {"value": "¥128.50"}}, True),
        ({"amount7": {"value": "128元"}}, True),
        ({"amount7": {"value": "12345678901"}}, False),
        ({"phone_number8": {"value": "+86-10-12345678"}}, True),
        ({"phone_number8": {"value": "1" * 18}}, False),
        ({"car_number9": {"value": "粤A12345"}}, True),
        ({"car_number9": {"value": "粤A1234567"}}, False),
        ({"name10": {"value": "张三"}}, True),
        ({"name10": {"value": "张" * 11}}, False),
        ({"name10": {"value": "A" * 20}}, True),
        ({"phrase11": {"value": "已发货"}}, True),
        ({"phrase11": {"value": "已经发货了啊"}}, False),
        ({"phrase11": {"value": "OK"}}, False),
        ({"enum12": {"value": "anything"}}, True),
        ({"short_thing13": {"value": "五个字以内"}}, True),
        ({"short_thing13": {"value": "六个字的东西"}}, False),
        ({"character_string4": {"value": "订单12"}}, False),
        ({"name10": {"value": "Tom3"}}, False),
        ({"const14": {"value": "x" * 21}}, False),
        ({"number01": {"value": "1" * 33}}, False),
        ({"letter2": {"value": "a" * 33}}, False),
        ({"car_number9": {"value": "A-12345"}}, False),
    ],
)
@pytest.mark.parametrize("path", [SUBSCRIBE_PATH, TEMPLATE_PATH])
async def test_typed_value_limits(
    sim: SimHandle,
    http: aiohttp.ClientSession,
    tok: str,
    data: dict[str, Any],
    ok: bool,
    path: str,
) -> None:
    body = sub(data=data) if path == SUBSCRIBE_PATH else tpl(data=data)
    answer = await send(http, sim.base_url, tok, body, path)
    if ok:
        assert answer["errcode"] == 0, answer
        [delivered] = await sim.deliveries()
        assert delivered["msgid"] > 2**32
    else:
        assert_err(answer, 47003)
        assert f"data.{next(iter(data))}.value" in answer["errmsg"]


@pytest.mark.parametrize(
    ("extra", "errcode"),
    [
        ({"page": "pages/invalid/x"}, 41030),
        ({"miniprogram_state": "beta"}, 47003),
        ({"lang": "fr_FR"}, 47003),
        ({"touser": "o_invalid_1"}, 40003),
        ({"template_id": "tpl_invalid"}, 40037),
        ({"miniprogram_state": "trial", "lang": "en_US"}, 0),
    ],
)
async def test_subscribe_fields(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str, extra: dict[str, Any], errcode: int
) -> None:
    answer = await send(http, sim.base_url, tok, sub(**extra), SUBSCRIBE_PATH)
    assert answer["errcode"] == errcode, answer
    if errcode == 0:
        [d] = await sim.deliveries()
        assert d["kind"] == "subscribe" and d["miniprogram_state"] == "trial"


async def test_get_on_send_is_43002(sim: SimHandle, http: aiohttp.ClientSession, tok: str) -> None:
    async with http.get(f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}") as resp:
        assert_err(await resp.json(content_type=None), 43002)


# -- test recipients ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("openid", "errcode"),
    [
        ("o_invalid_7", 40003),
        ("o_unfollowed_7", 43004),
        ("o_refused_7", 43101),
        ("o_baddata_7", 47003),
        ("o_unauthorized_7", 48001),
    ],
)
async def test_permanent_recipients(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str, openid: str, errcode: int
) -> None:
    for _ in range(2):
        assert_err(await send(http, sim.base_url, tok, tpl(openid, cmid="c1")), errcode)
    assert not await sim.deliveries()
    assert sim.state.errors[errcode] == 2


async def test_o_busy_fails_twice_then_delivers(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    codes = [
        (await send(http, sim.base_url, tok, tpl("o_busy_1", cmid="c1")))["errcode"]
        for _ in range(4)
    ]
    assert codes == [-1, -1, 0, 0]
    assert len(await sim.deliveries(openid="o_busy_1")) == 1
    assert sim.state.deduplicated == 1
    # Without client_msg_id every try is a first try.
    codes = [(await send(http, sim.base_url, tok, tpl("o_busy_2")))["errcode"] for _ in range(3)]
    assert codes == [-1, -1, -1]


@pytest.mark.parametrize(("openid", "errcode"), [("o_minute_1", 45011), ("o_quota_1", 45009)])
async def test_throttled_first_try(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str, openid: str, errcode: int
) -> None:
    assert_err(await send(http, sim.base_url, tok, tpl(openid, cmid="c1")), errcode)
    assert (await send(http, sim.base_url, tok, tpl(openid, cmid="c1")))["errcode"] == 0
    assert (await send(http, sim.base_url, tok, tpl(openid, cmid="c2")))["errcode"] == errcode


async def test_o_5xx_first_try(sim: SimHandle, http: aiohttp.ClientSession, tok: str) -> None:
    url = f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}"
    async with http.post(url, json=tpl("o_5xx_1", cmid="c1")) as resp:
        assert resp.status == 502
        assert resp.content_type == "text/html"
        assert "502 Bad Gateway" in await resp.text()
    assert not await sim.deliveries()
    assert (await send(http, sim.base_url, tok, tpl("o_5xx_1", cmid="c1")))["errcode"] == 0
    assert sim.state.http_errors[502] == 1


async def test_o_reset_delivers_but_drops_the_answer(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    url = f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}"
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(url, json=tpl("o_reset_1", cmid="c1")) as resp:
            await resp.read()
    [d] = await sim.deliveries(openid="o_reset_1")
    retry = await send(http, sim.base_url, tok, tpl("o_reset_1", cmid="c1"))
    assert retry["msgid"] == d["msgid"]
    assert sim.state.deduplicated == 1 and sim.state.resets == 1


async def test_o_slow_is_delivered_before_the_late_answer(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    url = f"{sim.base_url}{TEMPLATE_PATH}?access_token={tok}"
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            url, json=tpl("o_slow_1", cmid="c1"), timeout=aiohttp.ClientTimeout(total=0.1)
        ) as resp:
            await resp.read()
    [d] = await sim.deliveries(openid="o_slow_1")  # recorded although the client gave up
    retry = await send(http, sim.base_url, tok, tpl("o_slow_1", cmid="c1"))
    assert retry["msgid"] == d["msgid"] and time.monotonic() - started < 0.3
    # A patient client gets the answer after slow_s (0.3 s here).
    started = time.monotonic()
    answer = await send(http, sim.base_url, tok, tpl("o_slow_1", cmid="c2"))
    assert answer["errcode"] == 0 and time.monotonic() - started >= 0.25


@pytest.mark.parametrize(
    ("openid", "status"),
    [("o_blocked_1", "failed:user block"), ("o_sysfail_1", "failed: system failed")],
)
async def test_accepted_but_not_seen(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str, openid: str, status: str
) -> None:
    assert (await send(http, sim.base_url, tok, tpl(openid)))["errcode"] == 0
    [d] = await sim.deliveries(openid=openid)
    assert d["status"] == status
    assert sim.state.accepted == 1 and sim.state.delivered == 0


# -- dedupe ------------------------------------------------------------------------------


async def test_client_msg_id_dedupe(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str, clock: FakeClock
) -> None:
    first = await send(http, sim.base_url, tok, tpl("oAlice", cmid="m1"))
    again = await send(http, sim.base_url, tok, tpl("oAlice", cmid="m1"))
    assert again == first  # the original answer, same msgid
    other = await send(http, sim.base_url, tok, tpl("oBob", cmid="m1"))  # another openid
    assert other["msgid"] != first["msgid"]
    clock.advance(599)
    assert (await send(http, sim.base_url, tok, tpl("oAlice", cmid="m1")))["msgid"] == first[
        "msgid"
    ]
    clock.advance(2)  # the 10-minute window is over
    late = await send(http, sim.base_url, tok, tpl("oAlice", cmid="m1"))
    assert late["msgid"] not in (first["msgid"], other["msgid"])
    assert sim.state.deduplicated == 2
    assert len(await sim.deliveries(openid="oAlice")) == 2
    [dup_a, dup_b] = await sim.duplicates()
    assert dup_a["client_msg_id"] == dup_b["client_msg_id"] == "m1"


async def test_dedupe_is_per_app(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    apps = [SimApp(appid="wx_a", secret="sa"), SimApp(appid="wx_b", secret="sb")]
    async with running_simulator(SimConfig(apps=apps), clock=clock) as sim:
        answers = []
        for appid, secret in (("wx_a", "sa"), ("wx_b", "sb")):
            params = {"grant_type": "client_credential", "appid": appid, "secret": secret}
            async with http.get(f"{sim.base_url}/cgi-bin/token", params=params) as resp:
                t = (await resp.json())["access_token"]
            answers.append(await send(http, sim.base_url, t, tpl("oAlice", cmid="m1")))
        assert answers[0]["msgid"] != answers[1]["msgid"]
        assert {d["app"] for d in await sim.deliveries()} == {"wx_a", "wx_b"}


# -- quotas ------------------------------------------------------------------------------


async def test_daily_quota_resets_at_shanghai_midnight(
    http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    clock.set(1_714_579_200.0 - 10)  # 2024-05-02 00:00 Asia/Shanghai (16:00 UTC), minus 10 s
    app = SimApp(appid=APPID, secret=SECRET, daily_quota=3)
    async with running_simulator(SimConfig(apps=[app]), clock=clock) as sim:
        tok = await token(http, sim.base_url)
        codes = [(await send(http, sim.base_url, tok, tpl(f"oU{i}")))["errcode"] for i in range(4)]
        assert codes == [0, 0, 0, 45009]
        clock.advance(11)
        assert (await send(http, sim.base_url, tok, tpl("oU9")))["errcode"] == 0
        assert sim.state.delivered == 4 and sim.state.errors[45009] == 1


async def test_minute_limit(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    clock.set(1_714_536_000.0)  # on a minute boundary
    app = SimApp(appid=APPID, secret=SECRET, minute_limit=2)
    async with running_simulator(SimConfig(apps=[app]), clock=clock) as sim:
        tok = await token(http, sim.base_url)
        codes = [(await send(http, sim.base_url, tok, tpl(f"oU{i}")))["errcode"] for i in range(3)]
        assert codes == [0, 0, 45011]
        clock.advance(60)
        assert (await send(http, sim.base_url, tok, tpl("oU9")))["errcode"] == 0


async def test_quota_get_and_clear(sim: SimHandle, http: aiohttp.ClientSession, tok: str) -> None:
    await send(http, sim.base_url, tok, tpl())
    url = f"{sim.base_url}/cgi-bin/openapi/quota/get?access_token={tok}"
    async with http.post(url, json={"cgi_path": TEMPLATE_PATH}) as resp:
        quota = (await resp.json())["quota"]
    assert quota["used"] == 1 and quota["remain"] == quota["daily_limit"] - 1
    async with http.post(url, json={"cgi_path": "/nope"}) as resp:
        assert_err(await resp.json(), 76003)
    clear = f"{sim.base_url}/cgi-bin/clear_quota?access_token={tok}"
    for _ in range(10):
        async with http.post(clear, json={"appid": APPID}) as resp:
            assert (await resp.json())["errcode"] == 0
    async with http.post(clear, json={"appid": APPID}) as resp:
        assert_err(await resp.json(), 48006)


@pytest.mark.parametrize(("value", "errcode"), [("已发货", 0), ("已签收", 0), ("已丢失", 47003)])
async def test_const_takes_only_the_templates_approved_values(
    http: aiohttp.ClientSession, value: str, errcode: int
) -> None:
    template = SimTemplate(
        template_id="tpl_const", keys=["thing1", "const2"], values={"const2": ["已发货", "已签收"]}
    )
    app = SimApp(appid=APPID, secret=SECRET, templates=[template])
    async with running_simulator(SimConfig(apps=[app])) as sim:
        tok = (await classic_token(http, sim.base_url))["access_token"]
        data = {"thing1": {"value": "订单 42"}, "const2": {"value": value}}
        answer = await send(http, sim.base_url, tok, tpl(template_id="tpl_const", data=data))
        assert answer["errcode"] == errcode, answer
        assert len(await sim.deliveries()) == (1 if errcode == 0 else 0)


# -- OA subscription notifications (bizsend) -----------------------------------------------

BIZSEND_PATH = "/cgi-bin/message/subscribe/bizsend"


def biz(touser: str = "oAlice", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": touser,
        "template_id": "oa_tpl_1",
        "page": "https://shop.example/o/42",
        "miniprogram": {"appid": "wx_mini", "pagepath": "pages/o?id=42"},
        "data": {"thing1": {"value": "Order 42"}, "character_string2": {"value": "A-42"}},
    }
    body.update(extra)
    return body


async def test_bizsend_is_delivered_without_msgid(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    answer = await send(http, sim.base_url, tok, biz(), BIZSEND_PATH)
    assert answer == {"errcode": 0, "errmsg": "ok"}
    [d] = await sim.deliveries()
    assert d["kind"] == "oa_subscribe" and d["page"] == "https://shop.example/o/42"
    assert d["miniprogram"] == {"appid": "wx_mini", "pagepath": "pages/o?id=42"}
    assert d["client_msg_id"] is None and d["msgid"] > 2**32


@pytest.mark.parametrize(
    ("extra", "errcode"),
    [
        ({"touser": "o_unsubscribed_1"}, 43101),
        ({"touser": "o_invalid_1"}, 40003),
        ({"template_id": "tpl_invalid"}, 40037),
        ({"data": {"thing1": {"value": "x" * 21}}}, 47003),  # thing <= 20
        ({"data": {"character_string2": {"value": "订单"}}}, 47003),  # no Chinese
        ({"data": {"thing1": {"value": ""}}}, 47003),
        ({"data": {}}, 47003),
        ({"data": {"thing1": "not an object"}}, 47003),
    ],
)
async def test_bizsend_refusals(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str, extra: dict[str, Any], errcode: int
) -> None:
    answer = await send(http, sim.base_url, tok, biz(**extra), BIZSEND_PATH)
    assert_err(answer, errcode)
    assert await sim.deliveries() == []


async def test_bizsend_get_is_43002(sim: SimHandle, http: aiohttp.ClientSession, tok: str) -> None:
    async with http.get(f"{sim.base_url}{BIZSEND_PATH}?access_token={tok}") as resp:
        assert_err(await resp.json(content_type=None), 43002)


async def test_subscribe_msgid_is_an_option(http: aiohttp.ClientSession) -> None:
    config = SimConfig(apps=[SimApp(appid=APPID, secret=SECRET)], subscribe_msgid=True)
    async with running_simulator(config) as sim:
        tok = await token(http, sim.base_url)
        answer = await send(http, sim.base_url, tok, sub(), SUBSCRIBE_PATH)
        assert answer["errcode"] == 0 and answer["msgid"] > 0
        answer = await send(http, sim.base_url, tok, biz(), BIZSEND_PATH)
        assert "msgid" not in answer, "bizsend never has one"


async def test_a_rejected_template_answers_43101_until_accepted(
    sim: SimHandle, http: aiohttp.ClientSession, tok: str
) -> None:
    await sim.subscription(APPID, "oAlice", "oa_tpl_1", accepted=False)
    assert_err(await send(http, sim.base_url, tok, biz(), BIZSEND_PATH), 43101)
    other = biz(template_id="oa_tpl_2")
    assert (await send(http, sim.base_url, tok, other, BIZSEND_PATH))["errcode"] == 0
    await sim.subscription(APPID, "oAlice", "oa_tpl_1", accepted=True)
    assert (await send(http, sim.base_url, tok, biz(), BIZSEND_PATH))["errcode"] == 0
