"""GET /metrics during and after a run, parsed as Prometheus text: the counters agree with
what the simulator saw and with the requests the test made."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from support.e2e import APP_A, APP_B, running_rig, wait_status
from support.wait import wait_until

NORMAL = 400  # per app
INVALID = 10  # o_invalid: dead at once (40003)
BUSY = 5  # o_busy: -1 twice, then sent


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)]; fails on anything that is not valid exposition text."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def total(parsed: dict[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
    return sum(
        v for labels, v in parsed.get(name, []) if all(labels.get(k) == m for k, m in match.items())
    )


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The metrics must add up on both stores; the Redis DB starts empty for this test."""
    if request.param == "postgres":
        yield {"url": request.getfixturevalue("postgres_db")}
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as r:
            r.flushdb()
        yield {"url": url}
    else:
        yield {}


async def test_metrics_agree_with_the_simulator_and_the_requests_made(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    async with running_rig(tmp_path, (APP_A, APP_B), latency_ms=2.0, store=store) as rig:
        sending = [
            asyncio.create_task(
                rig.api.send_many(NORMAL, lambda i, a=app: f"o_{a}{i}", concurrency=16, app=app)
            )
            for app in (APP_A.name, APP_B.name)
        ]
        await wait_until(lambda: rig.sim.state.delivered >= 100, 10, "100 deliveries")
        during = samples(await rig.api.metrics_text())
        await asyncio.gather(*sending)
        await rig.api.send_many(INVALID, lambda i: f"o_invalid{i}", concurrency=4, app="a")
        await rig.api.send_many(BUSY, lambda i: f"o_busy{i}", concurrency=4, app="b")
        await wait_status(rig.api, "delivered", 2 * NORMAL + BUSY, timeout_s=30)
        await wait_status(rig.api, "dead", INVALID, timeout_s=10)
        after = samples(await rig.api.metrics_text())

    posts = 2 * NORMAL + INVALID + BUSY
    sent = total(after, "wxgate_messages_sent_total")
    assert sent == rig.sim.state.delivered == 2 * NORMAL + BUSY
    for app, spec, extra in ((APP_A.name, APP_A, 0), (APP_B.name, APP_B, BUSY)):
        rows = await rig.sim.deliveries(app=spec.appid)
        assert total(after, "wxgate_messages_sent_total", app=app) == len(rows) == NORMAL + extra
    assert 0 < total(during, "wxgate_messages_sent_total") <= sent

    accepted_202 = total(
        after, "wxgate_http_requests_total", method="POST", route="/v1/messages", status="202"
    )
    assert accepted_202 == posts
    assert total(after, "wxgate_http_requests_total", route="/v1/messages", status="400") == 0
    # WeChat's receipts came in over the callback route, one per delivery.
    receipts = total(
        after, "wxgate_http_requests_total", method="POST", route="/wechat/callback/{app}"
    )
    assert receipts == rig.sim.state.receipts_sent

    assert total(after, "wxgate_dead_letters_total", app="a") == INVALID
    assert (
        total(after, "wxgate_send_failures_total", errcode="40003", disposition="drop") == INVALID
    )
    assert total(after, "wxgate_send_failures_total", errcode="-1", disposition="retry") == 2 * BUSY
    assert total(after, "wxgate_retries_scheduled_total", app="b") == 2 * BUSY
    assert total(after, "wxgate_queue_messages", status="dead") == INVALID
    assert total(after, "wxgate_breaker_state", app="a", state="closed") == 1
