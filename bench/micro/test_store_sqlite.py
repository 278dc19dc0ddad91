"""SQLiteStore batches on a real file: enqueue, lease and ack as the hot paths use them.

Each round starts from the state it needs (pytest-benchmark's pedantic setup, not timed):
enqueue rounds get fresh messages, lease rounds a queue with enough due messages, ack rounds
a fresh lease. Figures are per call of the whole batch; `extra_info.per_message_us` divides.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conftest import Loop, make_message
from wxgate.models import Message, SendResult
from wxgate.store.sqlite import SQLiteStore

ROUNDS = 20
LEASE_N = 256


def _messages(n: int) -> list[Message]:
    return [make_message(i) for i in range(n)]


@pytest.mark.benchmark(group="sqlite-enqueue")
@pytest.mark.parametrize("n", [1, 1000])
def test_enqueue_one_call(benchmark: Any, loop: Loop, store: SQLiteStore, n: int) -> None:
    """One enqueue call of n messages (n=1: POST /v1/messages; n=1000: a batch)."""

    def setup() -> tuple[tuple[list[Message]], dict[str, Any]]:
        return (_messages(n),), {}

    def run(messages: list[Message]) -> None:
        loop.run(store.enqueue(messages))

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["per_message_us"] = benchmark.stats.stats.median / n * 1e6


@pytest.mark.benchmark(group="sqlite-enqueue")
def test_enqueue_64_concurrent_singles(benchmark: Any, loop: Loop, store: SQLiteStore) -> None:
    """64 concurrent one-message enqueues (64 connections of P1): group commit shares them."""

    def setup() -> tuple[tuple[list[Message]], dict[str, Any]]:
        return (_messages(64),), {}

    def run(messages: list[Message]) -> None:
        async def all_of() -> None:
            await asyncio.gather(*(store.enqueue((m,)) for m in messages))

        loop.run(all_of())

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["per_message_us"] = benchmark.stats.stats.median / 64 * 1e6


@pytest.mark.benchmark(group="sqlite-lease-ack")
def test_lease_256(benchmark: Any, loop: Loop, store: SQLiteStore) -> None:
    def setup() -> tuple[tuple[()], dict[str, Any]]:
        loop.run(store.enqueue(_messages(LEASE_N)))
        return (), {}

    def run() -> None:
        leased = loop.run(store.lease(LEASE_N, 60.0, time.time()))
        assert len(leased) == LEASE_N

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["per_message_us"] = benchmark.stats.stats.median / LEASE_N * 1e6


@pytest.mark.benchmark(group="sqlite-lease-ack")
def test_ack_256_concurrent(benchmark: Any, loop: Loop, store: SQLiteStore) -> None:
    """256 acks in flight at once, as 256 workers finish their sends (group commit)."""

    def setup() -> tuple[tuple[list[Message]], dict[str, Any]]:
        loop.run(store.enqueue(_messages(LEASE_N)))
        return (loop.run(store.lease(LEASE_N, 60.0, time.time())),), {}

    def run(leased: list[Message]) -> None:
        now = time.time()

        async def all_of() -> list[bool]:
            return await asyncio.gather(
                *(store.ack(m.id, m.lease_token, SendResult(1, now)) for m in leased)
            )

        assert all(loop.run(all_of()))

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["per_message_us"] = benchmark.stats.stats.median / LEASE_N * 1e6
