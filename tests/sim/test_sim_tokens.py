"""access_token semantics: classic overlap, stable reuse and force limits, isolation, errors."""

from __future__ import annotations

import aiohttp
import pytest

from support.sim import (
    APPID,
    SECRET,
    assert_err,
    classic_token,
    send,
    stable_token,
    tpl,
)
from wxgate.clock import FakeClock
from wxgate.sim.config import SimApp, SimConfig
from wxgate.sim.testing import SimHandle, running_simulator


async def _use(http: aiohttp.ClientSession, sim: SimHandle, token: str | None) -> int:
    answer = await send(http, sim.base_url, token, tpl())
    code: int = answer["errcode"]
    return code


async def test_classic_token_answer(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    answer = await classic_token(http, sim.base_url)
    assert answer["expires_in"] == 7200
    assert len(answer["access_token"]) >= 100
    assert await _use(http, sim, answer["access_token"]) == 0
    assert sim.state.token_fetches[APPID] == 1


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"grant_type": "client_credential", "appid": APPID, "secret": "wrong"}, 40125),
        ({"grant_type": "client_credential", "appid": "wx_nobody", "secret": SECRET}, 40013),
        ({"grant_type": "password", "appid": APPID, "secret": SECRET}, 40002),
        ({"appid": APPID, "secret": SECRET}, 40002),
        ({"grant_type": "client_credential", "secret": SECRET}, 41002),
        ({"grant_type": "client_credential", "appid": APPID}, 41004),
    ],
)
async def test_classic_token_errors(
    sim: SimHandle, http: aiohttp.ClientSession, params: dict[str, str], errcode: int
) -> None:
    async with http.get(f"{sim.base_url}/cgi-bin/token", params=params) as resp:
        assert_err(await resp.json(), errcode)
    assert sim.state.errors[errcode] == 1
    assert not sim.state.token_fetches


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"grant_type": "client_credential", "appid": APPID, "secret": "wrong"}, 40125),
        ({"grant_type": "client_credential", "appid": "wx_nobody", "secret": SECRET}, 40013),
        ({"grant_type": "x", "appid": APPID, "secret": SECRET}, 40002),
        (b"", 44002),
        (b"{not json", 47001),
    ],
)
async def test_stable_token_errors(
    sim: SimHandle, http: aiohttp.ClientSession, body: dict[str, str] | bytes, errcode: int
) -> None:
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with http.post(f"{sim.base_url}/cgi-bin/stable_token", **kwargs) as resp:
        assert_err(await resp.json(content_type=None), errcode)


async def test_classic_wrong_secret_can_still_answer_the_older_40001(
    http: aiohttp.ClientSession,
) -> None:
    config = SimConfig(apps=[SimApp(appid=APPID, secret=SECRET)], wrong_secret_errcode=40001)
    async with running_simulator(config) as sim:
        params = {"grant_type": "client_credential", "appid": APPID, "secret": "wrong"}
        async with http.get(f"{sim.base_url}/cgi-bin/token", params=params) as resp:
            assert_err(await resp.json(), 40001)


async def test_stable_token_minute_limit_answers_45011_until_the_next_minute(
    http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    clock.set(1_700_000_020.0)  # 20 s before a minute starts
    app = SimApp(appid=APPID, secret=SECRET, stable_minute_limit=3)
    async with running_simulator(SimConfig(apps=[app]), clock=clock) as sim:
        answers = [await stable_token(http, sim.base_url) for _ in range(4)]
        assert all("access_token" in a for a in answers[:3])
        assert_err(answers[3], 45011)
        clock.advance(20.0)  # the next clock minute
        assert "access_token" in await stable_token(http, sim.base_url)


async def test_new_classic_token_kills_old_after_overlap(
    sim: SimHandle, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    first = (await classic_token(http, sim.base_url))["access_token"]
    clock.advance(60)
    second = (await classic_token(http, sim.base_url))["access_token"]
    assert first != second
    clock.advance(299)  # both valid for 5 minutes
    assert await _use(http, sim, first) == 0
    assert await _use(http, sim, second) == 0
    clock.advance(2)
    assert await _use(http, sim, first) == 40001  # "not latest"
    assert await _use(http, sim, second) == 0


async def test_expired_token_is_42001(
    sim: SimHandle, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    tok = (await classic_token(http, sim.base_url))["access_token"]
    clock.advance(7199)
    assert await _use(http, sim, tok) == 0
    clock.advance(2)
    assert await _use(http, sim, tok) == 42001


async def test_token_ttl_is_configurable(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    async with running_simulator(SimConfig(token_ttl_s=60), clock=clock) as sim:
        answer = await classic_token(http, sim.base_url)
        assert answer["expires_in"] == 60
        clock.advance(61)
        assert await _use(http, sim, answer["access_token"]) == 42001


@pytest.mark.parametrize(
    ("token", "errcode"),
    [
        (None, 41001),
        ("", 41001),
        ("80_" + "A" * 100, 40001),  # well-formed but never issued
        ("bad token!", 40014),  # malformed
    ],
)
async def test_bad_tokens(
    sim: SimHandle, http: aiohttp.ClientSession, token: str | None, errcode: int
) -> None:
    assert await _use(http, sim, token) == errcode


async def test_stable_token_is_reused_then_renewed(
    sim: SimHandle, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    a = await stable_token(http, sim.base_url)
    assert a["expires_in"] == 7200
    clock.advance(1000)
    b = await stable_token(http, sim.base_url)
    assert b["access_token"] == a["access_token"]
    assert b["expires_in"] == 6200  # what is left, not a fresh 7200
    clock.advance(7200 - 1000 - 299)  # inside the last 5 minutes
    c = await stable_token(http, sim.base_url)
    assert c["access_token"] != a["access_token"]
    assert c["expires_in"] == 7200
    d = await stable_token(http, sim.base_url)
    assert d["access_token"] == c["access_token"]
    assert await _use(http, sim, a["access_token"]) == 0  # runs out on its own
    clock.advance(300)
    assert await _use(http, sim, a["access_token"]) == 42001
    assert await _use(http, sim, c["access_token"]) == 0
    assert sim.state.token_fetches_kind[(APPID, "stable")] == 4


async def test_stable_force_refresh_limits(
    sim: SimHandle, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    a = (await stable_token(http, sim.base_url))["access_token"]
    clock.advance(1)
    b = (await stable_token(http, sim.base_url, force=True))["access_token"]
    assert b != a
    assert await _use(http, sim, a) == 40001  # killed at once
    clock.advance(10)
    c = (await stable_token(http, sim.base_url, force=True))["access_token"]
    assert c == b  # < 30 s since the last force: no refresh
    clock.advance(30)
    d = (await stable_token(http, sim.base_url, force=True))["access_token"]
    assert d != b
    forced = 2
    while forced < 20:
        clock.advance(31)
        await stable_token(http, sim.base_url, force=True)
        forced += 1
    last = (await stable_token(http, sim.base_url))["access_token"]
    clock.advance(31)
    assert (await stable_token(http, sim.base_url, force=True))["access_token"] == last  # 21st
    assert await _use(http, sim, last) == 0


async def test_stable_and_classic_are_isolated(
    sim: SimHandle, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    stable = (await stable_token(http, sim.base_url))["access_token"]
    classic = (await classic_token(http, sim.base_url))["access_token"]
    clock.advance(400)
    await classic_token(http, sim.base_url)  # kills the previous classic token only
    clock.advance(31)
    await stable_token(http, sim.base_url, force=True)  # kills the stable token only
    clock.advance(300)  # the replaced classic token's overlap is over
    assert await _use(http, sim, classic) == 40001
    assert await _use(http, sim, stable) == 40001
    assert sim.state.token_fetches[APPID] == 4


async def test_revoke_tokens(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    classic = (await classic_token(http, sim.base_url))["access_token"]
    stable = (await stable_token(http, sim.base_url))["access_token"]
    async with http.post(f"{sim.base_url}/_sim/revoke-tokens?appid={APPID}") as resp:
        assert (await resp.json())["revoked"] == 2
    assert await _use(http, sim, classic) == 40001
    assert await _use(http, sim, stable) == 40001
    fresh = (await stable_token(http, sim.base_url))["access_token"]
    assert fresh != stable
    assert await _use(http, sim, fresh) == 0


async def test_token_daily_limit(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    app = SimApp(appid=APPID, secret=SECRET, token_daily_limit=2)
    async with running_simulator(SimConfig(apps=[app]), clock=clock) as sim:
        for _ in range(2):
            assert "access_token" in await classic_token(http, sim.base_url)
        assert_err(await classic_token(http, sim.base_url), 45009)
        clock.advance(86_400)
        assert "access_token" in await classic_token(http, sim.base_url)


async def test_token_repr_hides_secrets(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    tok = (await classic_token(http, sim.base_url))["access_token"]
    assert tok not in repr(sim.state.tokens.current(APPID, "classic"))
    assert SECRET not in repr(sim.config.apps[0])
