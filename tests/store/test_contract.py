"""Every store role's contract, run against every backend (the `backend` fixture's params)."""

from __future__ import annotations

from contract import (
    BatchContract,
    FindContract,
    IdempotencyContract,
    LifecycleContract,
    LinksContract,
    OutboxContract,
    OutcomesContract,
    QueueContract,
    RedriveContract,
    SharedContract,
    SuppressionsContract,
    ThroughputContract,
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


class TestLinks(LinksContract):
    pass


class TestSuppressions(SuppressionsContract):
    pass


class TestFind(FindContract):
    pass


class TestRedrive(RedriveContract):
    pass


class TestThroughput(ThroughputContract):
    pass


class TestIdempotency(IdempotencyContract):
    pass
