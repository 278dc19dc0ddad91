"""What a whole Store promises beyond its roles: it is one, it pings, and closed it refuses."""

from __future__ import annotations

import pytest

from support.store import (
    make_message,
)
from wxgate.clock import FakeClock
from wxgate.errors import StoreUnavailable
from wxgate.store.base import Store


class LifecycleContract:
    """Store's own methods (open, close, ping)."""

    async def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)
        await store.ping()

    async def test_closed_store_is_unavailable(self, store: Store, clock: FakeClock) -> None:
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.enqueue([make_message(clock)])
