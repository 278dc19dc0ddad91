"""The store contract suite: one class per store role (store/base.py), each run against every
backend by tests/store/test_contract.py with the `backend` fixture (tests/store/conftest.py).

A new backend is done when it adds one entry to conftest.py's BACKENDS and passes every role's
suite unchanged. Tests speak only through the Store protocol, never a backend's internals; the
store is built on the `clock` fixture (tests move time with `clock.advance`) and its `close()`
must be idempotent (a test closes the store itself).
"""

from contract.batches import BatchContract
from contract.find import FindContract
from contract.idempotency import IdempotencyContract
from contract.lifecycle import LifecycleContract
from contract.links import LinksContract
from contract.outbox import OutboxContract
from contract.outcomes import OutcomesContract
from contract.queue import QueueContract
from contract.redrive import RedriveContract
from contract.shared import SharedContract
from contract.suppressions import SuppressionsContract
from contract.throughput import ThroughputContract
from support.store import (
    HOOK,
    LEASE_S,
    enqueue_one,
    lease_one,
    make_message,
    must_get,
    send_and_ack,
)

__all__ = [
    "HOOK",
    "LEASE_S",
    "BatchContract",
    "FindContract",
    "IdempotencyContract",
    "LifecycleContract",
    "LinksContract",
    "OutboxContract",
    "OutcomesContract",
    "QueueContract",
    "RedriveContract",
    "SharedContract",
    "SuppressionsContract",
    "ThroughputContract",
    "enqueue_one",
    "lease_one",
    "make_message",
    "must_get",
    "send_and_ack",
]
