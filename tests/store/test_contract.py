"""Every store role's contract, run against every backend (the `backend` fixture's params)."""

from __future__ import annotations

from contract import (
    BatchContract,
    IdempotencyContract,
    LifecycleContract,
    OutboxContract,
    OutcomesContract,
    QueueContract,
    SharedContract,
)


class TestQueue(QueueContract):
    pass


class TestOutcomes(OutcomesContract):
    pass


class TestBatches(BatchContract):
    pass


class TestShared(SharedContract):
    pass


class TestOutbox(OutboxContract):
    pass


class TestLifecycle(LifecycleContract):
    pass


class TestIdempotency(IdempotencyContract):
    pass
