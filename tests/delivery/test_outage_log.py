"""An unreachable WeChat is logged once per app per outage, and once when it answers again,
however many messages fail meanwhile (real pool, real simulator in an outage, SQLite)."""

from __future__ import annotations

import logging
import re

import pytest

from support.delivery import Rig, worker_settings
from wxgate.models import Status
from wxgate.settings import BreakerSettings, RetrySettings


async def test_outage_is_one_line_and_recovery_one_more(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wxgate.delivery")
    settings = worker_settings(
        retry=RetrySettings(max_attempts=40, base_s=0.01, cap_s=0.05),
        breaker=BreakerSettings(
            consecutive_failures=5, window=20, min_calls=10, open_s=0.2, half_open_probes=2
        ),
    )
    dispatcher = rig.dispatcher(settings=settings)
    await rig.sim.set_faults(app="wx_a", outage_s=1.0)
    await rig.pool(dispatcher, settings)
    ids = await rig.enqueue(100, "a", lambda i: f"o_user_{i}")
    b_ids = await rig.enqueue(5, "b", lambda i: f"o_user_b{i}")  # b is up all along
    done = await rig.wait_final(ids + b_ids, timeout_s=30)
    assert {m.status for m in done} == {Status.SENT}

    def lines(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    down = lines("WeChat unreachable for app")
    up = lines("WeChat answers again for app")
    assert len(down) == 1 and "app a:" in down[0] and "HTTP 503" in down[0]
    assert len(up) == 1 and up[0].startswith("WeChat answers again for app a after")
    failed = int(re.search(r"\((\d+) sends failed\)", up[0])[1])  # type: ignore[index]
    assert failed >= 10  # many failed sends, two lines
    assert dispatcher.outages.outages_logged == 1 and not dispatcher.outages.down("a")
