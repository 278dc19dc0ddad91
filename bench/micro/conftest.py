"""Fixtures for the micro benchmarks (pytest-benchmark; `bench/run.py --micro`, not `make test`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from wxgate.clock import SystemClock
from wxgate.models import Message, MessageKind, new_id
from wxgate.store.sqlite import SQLiteStore

DATA = {
    "thing1": {"value": "Your order shipped"},
    "time2": {"value": "2024-06-01 10:00"},
    "amount3": {"value": "99.50"},
}


def make_message(i: int, kind: MessageKind = MessageKind.TEMPLATE) -> Message:
    now = time.time()
    return Message(
        id=new_id(),
        app="bench",
        kind=kind,
        touser=f"o_bench_{i:07d}",
        template_id="tpl_bench_order",
        data=DATA,
        url="https://example.com/orders/1" if kind is MessageKind.TEMPLATE else None,
        page="pages/order/index" if kind is MessageKind.SUBSCRIBE else None,
        created_at=now,
        not_before=now,
    )


class Loop:
    """One event loop for a whole test, so store threads and futures stay bound to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture
def store(loop: Loop, tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "micro.db"), SystemClock())
    loop.run(s.open())
    yield s
    loop.run(s.close())


Runner = Callable[[Coroutine[Any, Any, Any]], Any]
