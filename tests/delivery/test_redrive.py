"""The scheduled redrive loop (delivery/redrive.py) on a real SQLite store and a fake clock:
two processes share the store, only the lock holder runs a round, each round is logged and
counted, and rounds stop where the policy says."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from support.store import make_dead, must_get
from wxgate.clock import FakeClock
from wxgate.delivery.redrive import Redriver
from wxgate.metrics import Metrics
from wxgate.models import Status
from wxgate.settings import AppSettings, RedrivePolicy
from wxgate.store.sqlite import SQLiteStore

APP = AppSettings(
    name="app_a",
    appid="wx_a",
    secret="s",
    redrive=[RedrivePolicy(errcodes=[-1, 45009], every_s=60, rounds=2)],
)
PLAIN = AppSettings(name="app_b", appid="wx_b", secret="s")  # no policy: never re-driven


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "wx.db"), clock, retention_s=86400 * 7)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _redriver(store: SQLiteStore, clock: FakeClock, metrics: Metrics, woken: list[int]) -> Redriver:
    apps = {"app_a": APP, "app_b": PLAIN}
    return Redriver(
        store, store, apps, clock, metrics=metrics, wake=lambda: woken.append(1), check_s=60
    )


async def test_only_the_lock_holder_redrives_and_each_round_is_logged_and_counted(
    store: SQLiteStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wxgate.redrive")
    metrics = Metrics()
    woken: list[int] = []
    first = _redriver(store, clock, metrics, woken)
    second = _redriver(store, clock, metrics, woken)
    busy = await make_dead(store, clock, "app_a", -1, 2)
    permanent = await make_dead(store, clock, "app_a", 40003, 1)
    other = await make_dead(store, clock, "app_b", -1, 1)

    assert await first.tick() == 0  # dead for less than every_s
    clock.advance(60)
    assert await second.tick() == 0  # due now, but the first one holds the lock (2 x check_s)
    assert await first.tick() == 2
    assert woken == [1]
    for msg_id in busy:
        m = await must_get(store, msg_id)
        assert (m.status, m.redrive_rounds) == (Status.QUEUED, 1)
    for msg_id in permanent + other:
        assert (await must_get(store, msg_id)).status is Status.DEAD
    lines = [r.getMessage() for r in caplog.records if r.name == "wxgate.redrive"]
    assert lines == [
        "redrive: app app_a: 2 dead letters back in the queue "
        "(errcodes -1, 45009, dead for 60 s or more, at most 2 rounds)"
    ]
    text = generate_latest(metrics.registry).decode()
    assert 'wxgate_redrive_messages_total{app="app_a"} 2.0' in text

    await first.close()  # releases the lock: the other process takes over at once
    clock.advance(1)
    assert await second.tick() == 0  # nothing is due again yet, but it holds the lock now
    assert not await first._locks.acquire_lock("redrive", first.owner, 60)
    await second.close()


async def test_a_process_whose_lock_ran_out_is_replaced(
    store: SQLiteStore, clock: FakeClock
) -> None:
    metrics = Metrics()
    first = _redriver(store, clock, metrics, [])
    second = _redriver(store, clock, metrics, [])
    await make_dead(store, clock, "app_a", 45009, 1)
    assert await first.tick() == 0
    clock.advance(121)  # the first process died without releasing: its lock (120 s) ran out
    assert await second.tick() == 1
    assert await first.tick() == 0  # and it is the second's now
