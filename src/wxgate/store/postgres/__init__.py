"""The PostgreSQL store: many wxgate processes on many machines share one PostgreSQL, the
durable, replicated engine for deployments that outgrow one machine.

Every transition is one transaction that checks the fencing token, changes the message row,
and writes its webhook event; statement triggers keep the counts stats() reads (counts by app
and status, in per-backend slots so concurrent writers rarely share a row). PostgresStore is
the store roles of store/base.py, one module each (queue.py, outcomes.py, batches.py,
shared.py, outbox.py) over one pool (connection.py); the schema is versioned SQL in
migrations/, applied at open (migrate.py).

Durability is PostgreSQL's: a 202 is answered after COMMIT, so with `synchronous_commit = on`
(the default) an accepted message is on disk, and with `synchronous_standby_names` set it is on
a standby too before the answer.
"""

from __future__ import annotations

from wxgate.clock import Clock
from wxgate.store.postgres.outbox import PostgresOutbox
from wxgate.store.postgres.outcomes import PostgresOutcomes
from wxgate.store.postgres.shared import PostgresSharedState

__all__ = ["PostgresStore"]


class PostgresStore(PostgresOutcomes, PostgresSharedState, PostgresOutbox):
    """Store (store/base.py) on PostgreSQL >= 13: its roles as mixins over one pool.

    `schema` keeps every table in one PostgreSQL schema (the tests give each store its own).
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        retention_s: float,
        pool_size: int = 10,
        schema: str = "public",
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(
            url,
            clock,
            retention_s=retention_s,
            pool_size=pool_size,
            schema=schema,
            connect_timeout_s=connect_timeout_s,
            command_timeout_s=command_timeout_s,
        )
        self._init_batches()
        self._init_queue()
        self._init_outcomes()
        self._init_shared()

    async def close(self) -> None:
        """Finish coalesced writes, then close the pool. Safe to call twice."""
        if self._pool is None:
            return
        await self._drain_queue()
        await self._drain_outcomes()
        await self._drain_shared()
        await self._close_pool()

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return (
            f"<PostgresStore {state} schema={self._schema!r} pool_size={self._pool_size} "
            f"enqueue={self._enqueues!r} ack={self._acks!r}>"
        )
