"""The Redis store: many wxgate processes on many machines share one Redis.

Every transition is one Lua script (scripts/) that checks the fencing token, changes the
message hash, moves it between indexes, acks its stream entry and updates the counters in one
step: a crash between two commands cannot lose, duplicate or half-move a message. RedisStore
is the store roles of store/base.py, one module each (queue.py, batches.py, shared.py,
outbox.py, each listing the keys it owns under the prefix), over one connection
(connection.py).

Durability is Redis's: run it with `appendonly yes` and `appendfsync always` (or `everysec`,
risking a second on a machine crash) for "accepted means durable".
"""

from __future__ import annotations

from wxgate.clock import Clock
from wxgate.store.redis.batches import RedisBatches
from wxgate.store.redis.outbox import RedisOutbox
from wxgate.store.redis.queue import CONSUMER_IDLE_MAX_S, RedisQueue
from wxgate.store.redis.shared import RedisSharedState

__all__ = ["CONSUMER_IDLE_MAX_S", "RedisStore"]


class RedisStore(RedisQueue, RedisBatches, RedisSharedState, RedisOutbox):
    """Store (store/base.py) on Redis >= 7.0, one node, Sentinel or Cluster: its four
    roles as mixins over one RedisConnection (RedisQueue builds on RedisBatches), each app's
    keys in a hash slot of their own. Mixins, not delegates: a call is one method lookup."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        retention_s: float,
        group: str = "wxgate",
        consumer: str | None = None,
        consumer_idle_max_s: float = CONSUMER_IDLE_MAX_S,
        key_prefix: str = "wxgate",
        max_connections: int = 64,
        socket_timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        min_replica_acks: int = 0,
        replica_ack_timeout_ms: int = 1000,
    ) -> None:
        super().__init__(
            url,
            clock,
            retention_s=retention_s,
            group=group,
            key_prefix=key_prefix,
            max_connections=max_connections,
            socket_timeout_s=socket_timeout_s,
            connect_timeout_s=connect_timeout_s,
            min_replica_acks=min_replica_acks,
            replica_ack_timeout_ms=replica_ack_timeout_ms,
        )
        self._init_batches()
        self._init_outbox()
        self._init_queue(consumer, consumer_idle_max_s)
        self._init_shared()

    async def close(self) -> None:
        if self._redis is None:
            return
        await self._drain_queue()
        await self._drain_shared()
        await self._close_connection()

    def __repr__(self) -> str:
        state = "open" if self._redis is not None else "closed"
        return (
            f"<RedisStore {state} prefix={self._p!r} consumer={self.consumer!r} "
            f"enqueue={self._enqueues!r} ack={self._acks!r}>"
        )
