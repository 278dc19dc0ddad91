"""The message queue on PostgreSQL (MessageQueue): enqueue, lease, reads of messages, stats,
dead letters, requeue and retention. Outcomes of a lease are in outcomes.py.

Leasing is one statement: per app with due work, its oldest due rows `FOR UPDATE SKIP
LOCKED` (so processes leasing at once never wait on, nor take, each other's rows), ranked
round-robin across apps, marked `sending` with a fresh token and lease expiry by the UPDATE
that also counts taken-over expired leases. Concurrent enqueues are one transaction (group
commit, store/coalesce.py), each group one multi-row INSERT of unnested column arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from wxgate.errors import StoreError, StoreUnavailable, ValidationError
from wxgate.models import BATCH_HELD, Batch, BatchStatus, EnqueueResult, Message, Status, StoreStats
from wxgate.store.coalesce import Coalescer
from wxgate.store.idempotency import duplicate
from wxgate.store.postgres import batches, find, migrate, outbox, shared
from wxgate.store.postgres.batches import ACTIVE_SQL, BATCH_STATUS, PostgresBatches
from wxgate.store.postgres.connection import maps_pg_errors
from wxgate.store.postgres.migrate import DAY_S
from wxgate.store.postgres.rows import (
    COLUMNS,
    INSERT_MESSAGES,
    M_COLUMNS,
    STATUSES,
    columns_of,
    message_row,
    row_message,
    to_i64,
)
from wxgate.store.postgres.wakeups import Wakeups
from wxgate.store.search import MessageQuery

Conn = asyncpg.Connection
EnqueueCall = tuple[Sequence[Message], Batch | None, float]

_COALESCE_MAX_CALLS = 256
_COALESCE_MAX_MESSAGES = 256  # a call larger than this is a transaction of its own
# Enqueue groups in flight at once: while one waits for its commit's WAL flush the next one
# is written, and PostgreSQL flushes them together (measured: bench/results/notes.md).
_COALESCE_IN_FLIGHT = 2
_PRUNE_EVERY_S = 60.0
_PRUNE_LIMIT = 5000
_PRUNE_LOCK = 0x77786761  # "wxga": one process prunes a schema at a time (xact-scoped)


# ---------------------------------------------------------------- enqueue

_CLAIM_KEYS = (
    "INSERT INTO idempotency (app, key, id, digest) SELECT * FROM unnest($1::text[], "
    "$2::text[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING RETURNING id"
)
_FIND_KEYS = (
    "SELECT m.app, m.idempotency_key, m.id, m.status, i.digest FROM messages m "
    "JOIN unnest($1::text[], $2::text[]) k(app, key) "
    "ON m.app = k.app AND m.idempotency_key = k.key "
    "LEFT JOIN idempotency i ON i.app = m.app AND i.key = m.idempotency_key"
)


async def _enqueue_many(conn: Conn, calls: Sequence[EnqueueCall]) -> list[list[EnqueueResult]]:
    """Several callers' enqueues in one transaction: one INSERT for every new message.

    Calls are judged in order: a key seen earlier (in the table, or earlier in the group)
    makes the later message a duplicate of the first.
    """
    keyed = [(m.app, m.idempotency_key) for ms, _, _ in calls for m in ms if m.idempotency_key]
    prior: dict[tuple[str, str], tuple[EnqueueResult, str | None]] = {}  # with its digest
    if keyed:
        found = await conn.fetch(_FIND_KEYS, [a for a, _ in keyed], [k for _, k in keyed])
        for app, key, msg_id, status, digest in found:
            prior[(app, key)] = (EnqueueResult(msg_id, STATUSES[status], False), digest)
    held: dict[str, bool] = {}
    out: list[list[EnqueueResult]] = []
    rows: list[tuple[Any, ...]] = []
    new_keys: dict[tuple[str, str], str] = {}
    new_digests: list[str | None] = []  # in new_keys' order
    for messages, batch, now in calls:
        if batch is not None:
            held[batch.id] = batch.status in BATCH_HELD
            await batches.insert(conn, batch)
        results: list[EnqueueResult] = []
        for m in messages:
            key = m.idempotency_key
            if key is not None:
                seen = prior.get((m.app, key))
                if seen is not None:
                    results.append(duplicate(seen[0], seen[1], m.idempotency_digest))
                    continue
            status = Status.SCHEDULED if m.not_before > now else Status.QUEUED
            parked = m.batch_id is not None and await _held(conn, m.batch_id, held)
            rows.append(message_row(m, status.value, now, parked))
            result = EnqueueResult(m.id, status, True)
            if key is not None:
                prior[(m.app, key)] = (result, m.idempotency_digest)
                new_keys[(m.app, key)] = m.id
                new_digests.append(m.idempotency_digest)
            results.append(result)
        out.append(results)
    if new_keys:
        # The key table is what makes a key unique across every partition; a key another
        # transaction claimed since our lookup is skipped here and answered with its id.
        claimed = await conn.fetch(
            _CLAIM_KEYS,
            [a for a, _ in new_keys],
            [k for _, k in new_keys],
            list(new_keys.values()),
            new_digests,
        )
        if len(claimed) < len(new_keys):
            won = {r[0] for r in claimed}
            digests = dict(zip(new_keys.values(), new_digests, strict=True))
            await _lost_races(conn, out, won, new_keys, digests)
            rows = [r for r in rows if r[11] is None or r[0] in won]
    if rows:
        await conn.execute(INSERT_MESSAGES, *columns_of(rows))
    return out


def _one_statement(calls: Sequence[EnqueueCall]) -> bool:
    """Whether _enqueue_many is a single INSERT for these calls (no key to look up or claim,
    no batch row to write or read): then it runs without BEGIN/COMMIT, one round trip
    instead of three, and is just as atomic (one statement is its own transaction)."""
    return all(
        batch is None and all(m.idempotency_key is None and m.batch_id is None for m in ms)
        for ms, batch, _ in calls
    )


async def _lost_races(
    conn: Conn,
    out: list[list[EnqueueResult]],
    inserted: set[str],
    new_keys: dict[tuple[str, str], str],
    digests: dict[str, str | None],
) -> None:
    """Messages whose key another transaction committed first: answer with that one's id
    (a conflict when its body fingerprint, `digests` by message id, differs)."""
    lost = {mid: k for k, mid in new_keys.items() if mid not in inserted}
    found = await conn.fetch(
        _FIND_KEYS, [a for a, _ in lost.values()], [k for _, k in lost.values()]
    )
    winners = {(a, k): (EnqueueResult(i, STATUSES[s], False), d) for a, k, i, s, d in found}
    for results in out:
        for j, r in enumerate(results):
            if r.created and r.id in lost:
                winner = winners.get(lost[r.id])
                if winner is None:
                    raise StoreError("enqueue: an idempotency key was taken and released")
                results[j] = duplicate(winner[0], winner[1], digests.get(r.id))


async def _held(conn: Conn, batch_id: str, cache: dict[str, bool]) -> bool:
    """Whether a message joining this batch must wait (a `loading` or paused batch)."""
    found = cache.get(batch_id)
    if found is None:
        status = await conn.fetchval(BATCH_STATUS, batch_id)
        found = cache[batch_id] = status is not None and status in BATCH_HELD
    return found


# ---------------------------------------------------------------- lease

_ACTIVE_APPS = f"SELECT app FROM counts WHERE status IN {ACTIVE_SQL} GROUP BY app HAVING sum(n) > 0"
_BLOCKED = (
    "SELECT id, status FROM batches WHERE status IN ('loading', 'paused', 'incomplete', "
    "'cancelled')"
)
_LEASE = f"""
WITH ranked AS (
    SELECT c.id, c.was, row_number() OVER (PARTITION BY a.ord ORDER BY c.due_at) AS rn, a.ord
    FROM unnest($1::text[]) WITH ORDINALITY AS a(app, ord)
    CROSS JOIN LATERAL (
        SELECT m.id, m.status AS was, m.due_at FROM messages m
        WHERE m.app = a.app AND m.due_at <= $2
          AND (m.batch_id IS NULL OR m.batch_id <> ALL($3::text[]))
        ORDER BY m.due_at LIMIT $4 FOR UPDATE SKIP LOCKED
    ) c
), picked AS (
    SELECT id, was FROM ranked ORDER BY rn, ord LIMIT $4
), taken AS (
    UPDATE messages m SET status = 'sending', lease_token = $5, lease_until = $6, due_at = $6,
        updated_at = $2
    FROM picked WHERE m.id = picked.id
    RETURNING {M_COLUMNS}, picked.was
), expired AS (
    INSERT INTO lease_expirations AS e (app, n)
    SELECT app, count(*) FROM taken WHERE was = 'sending' GROUP BY app ORDER BY app
    ON CONFLICT (app) DO UPDATE SET n = e.n + excluded.n
)
SELECT * FROM taken
"""
_BLOCKED_DUE = (
    "SELECT id, batch_id FROM messages WHERE due_at <= $1 AND batch_id = ANY($2::text[]) "
    "FOR UPDATE SKIP LOCKED"
)
_PARK = "UPDATE messages SET due_at = NULL WHERE id = ANY($1::text[])"
_CANCEL_ROWS = (
    "UPDATE messages SET status = 'cancelled', due_at = NULL, lease_until = NULL, "
    "finished_at = $1, updated_at = $1 WHERE id = ANY($2::text[])"
)


async def _lease(
    conn: Conn, n: int, lease_s: float, now: float, exclude_apps: frozenset[str]
) -> tuple[list[Message], float | None]:
    """(the leased messages, and when none: the earliest due_at of any app, None if none)."""
    active = [r[0] for r in await conn.fetch(_ACTIVE_APPS)]
    apps = [a for a in active if a not in exclude_apps]
    if not apps:
        return [], await _next_due(conn, active)
    blocked: dict[str, str] = {r[0]: r[1] for r in await conn.fetch(_BLOCKED)}
    if blocked:
        await _set_aside(conn, blocked, now)
    token = int(await conn.fetchval("SELECT nextval('lease_tokens')"))
    start = token % len(apps)  # rotate who goes first, so leftovers are shared over time
    apps = apps[start:] + apps[:start]
    until = now + lease_s
    rows = await conn.fetch(_LEASE, apps, now, list(blocked), n, token, until)
    if not rows:
        return [], await _next_due(conn, active)
    return [row_message(r) for r in rows], None


_NEXT_DUE = (
    "SELECT min(d) FROM unnest($1::text[]) AS a(app), LATERAL (SELECT due_at AS d "
    "FROM messages_active WHERE app = a.app AND due_at IS NOT NULL ORDER BY due_at LIMIT 1) x"
)


async def _next_due(conn: Conn, apps: list[str]) -> float | None:
    if not apps:
        return None
    found = await conn.fetchval(_NEXT_DUE, apps)
    return None if found is None else float(found)


async def _set_aside(conn: Conn, blocked: dict[str, str], now: float) -> None:
    """Due messages of held or cancelled batches (a lease that expired since the batch was
    paused or cancelled): parked until resume, or cancelled with their event."""
    rows = await conn.fetch(_BLOCKED_DUE, now, list(blocked))
    park = [i for i, b in rows if blocked[b] in BATCH_HELD]
    cancel = [i for i, b in rows if blocked[b] == BatchStatus.CANCELLED]
    if park:
        await conn.execute(_PARK, park)
    if cancel:
        await conn.execute(_CANCEL_ROWS, now, cancel)
        await outbox.emit(conn, cancel, now)


# ---------------------------------------------------------------- stats, dead letters

_STATS_COUNTS = "SELECT app, status, sum(n) FROM counts GROUP BY app, status HAVING sum(n) <> 0"
_OLDEST = "SELECT min(created_at) FROM messages WHERE status IN ('queued', 'scheduled', 'retrying')"


async def _stats(conn: Conn) -> StoreStats:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(_STATS_COUNTS)
        oldest = await conn.fetchval(_OLDEST)
        pruned_rows = await conn.fetch("SELECT app, status, n FROM pruned WHERE n <> 0")
        expired_rows = await conn.fetch("SELECT app, n FROM lease_expirations")
    by_status = {s.value: 0 for s in Status}
    by_app: dict[str, dict[str, int]] = {}
    for app, status, n in rows:
        by_status[status] = by_status.get(status, 0) + int(n)
        by_app.setdefault(app, {})[status] = int(n)
    pruned: dict[str, dict[str, int]] = {}
    for app, status, n in pruned_rows:
        pruned.setdefault(app, {})[status] = int(n)
    return StoreStats(
        by_status=by_status,
        by_app=by_app,
        oldest_pending_at=oldest,
        pruned_by_app=pruned,
        lease_expirations={app: int(n) for app, n in expired_rows},
    )


def _decode_cursor(cursor: str) -> tuple[float, str]:
    at, sep, msg_id = cursor.partition("~")
    try:
        if not sep or not msg_id:
            raise ValueError(cursor)
        return float(at), msg_id
    except ValueError:
        raise ValidationError("cursor", "not a cursor this store returned") from None


_REQUEUE = (
    "UPDATE messages SET status = 'queued', attempts = 0, not_before = $1, due_at = $1, "
    "finished_at = NULL, lease_until = NULL, updated_at = $1 WHERE status = 'dead'"
)

# Scheduled redrive: a bounded step over the dead-letter index, oldest death first.
_REDRIVE = (
    "UPDATE messages SET status = 'queued', attempts = 0, not_before = $1, due_at = $1, "
    "finished_at = NULL, lease_until = NULL, updated_at = $1, "
    "redrive_rounds = redrive_rounds + 1 WHERE id = ANY(ARRAY("
    "SELECT id FROM messages WHERE status = 'dead' AND finished_at <= $2 AND app = $3 "
    "AND last_errcode = ANY($4::int[]) AND redrive_rounds < $5 "
    "ORDER BY finished_at LIMIT $6)) AND status = 'dead'"
)


class PostgresQueue(PostgresBatches):
    """MessageQueue's intake, leasing and reads (outcomes: PostgresOutcomes)."""

    def _init_queue(self) -> None:
        self._wakeups = Wakeups(self._schema)
        self._enqueues: Coalescer[EnqueueCall, list[EnqueueResult] | StoreError] = Coalescer(
            self._run_enqueues, _COALESCE_MAX_CALLS, _COALESCE_IN_FLIGHT
        )
        self._next_prune = 0.0

    async def _drain_queue(self) -> None:
        await self._enqueues.wait_idle()
        await self._wakeups.stop()

    @maps_pg_errors
    async def enqueue(
        self, messages: Sequence[Message], batch: Batch | None = None
    ) -> list[EnqueueResult]:
        call: EnqueueCall = (messages, batch, self._clock.now())
        if self._pool is None:
            raise StoreUnavailable("postgresql store is closed")
        self._wakeups.changed()
        if len(messages) > _COALESCE_MAX_MESSAGES:
            [result] = await self._tx(_enqueue_many, [call])
        else:
            got = await self._enqueues.submit(call)
            if isinstance(got, StoreError):
                raise got
            result = got
        if batch is not None and batch.shared is not None:
            self._shared.put(batch.id, batch.shared)  # its first leases need no read
        self._wakeups.changed()
        return result

    async def _run_enqueues(
        self, calls: list[EnqueueCall]
    ) -> list[list[EnqueueResult] | StoreError]:
        """One transaction for the group; if it fails for a reason of one call (a duplicate
        id), each call again alone, so a bad call never fails its neighbours."""
        run = self._read if _one_statement(calls) else self._tx
        try:
            return list(await run(_enqueue_many, calls))
        except StoreUnavailable:
            raise
        except StoreError as exc:
            if len(calls) == 1:
                return [exc]
        results: list[list[EnqueueResult] | StoreError] = []
        for call in calls:
            try:
                [one] = await self._tx(_enqueue_many, [call])
            except StoreUnavailable:
                raise
            except StoreError as exc:
                results.append(exc)
            else:
                results.append(one)
        return results

    @maps_pg_errors
    async def lease(
        self, n: int, lease_s: float, now: float, exclude_apps: frozenset[str] = frozenset()
    ) -> list[Message]:
        if n <= 0:
            return []
        if self._pool is None:
            raise StoreUnavailable("postgresql store is closed")
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY_S
            await self.prune(now)
        if self._wakeups.idle(now, exclude_apps):
            return []  # nothing due before idle_until, and no change since: no query
        await self._wakeups.listen(self._connect)
        self._wakeups.leasing()
        leased, next_due = await self._tx(_lease, n, lease_s, now, exclude_apps)
        if not leased:
            self._wakeups.went_idle(next_due, exclude_apps)
        return await self._shared.filled(leased)

    async def prune(self, now: float | None = None) -> int:
        """Delete finished messages older than retention_s (and every role's stale rows);
        how many messages went. One process at a time (an advisory lock); the others skip."""
        at = self._clock.now() if now is None else now
        total, more = 0, True
        while more:
            n, more = await self._tx(_prune, at - self._retention_s, at)
            total += n
        await self._read(migrate.ensure_partitions, self._schema, at)
        return total

    @maps_pg_errors
    async def get(self, msg_id: str) -> Message | None:
        row = await self._p.fetchrow(f"SELECT {COLUMNS} FROM messages WHERE id = $1", msg_id)
        return await self._shared.filled_one(None if row is None else row_message(row))

    @maps_pg_errors
    async def find_by_wechat_msgid(self, app: str, wechat_msgid: int) -> Message | None:
        row = await self._p.fetchrow(
            f"SELECT {COLUMNS} FROM messages WHERE app = $1 AND wechat_msgid = $2 LIMIT 1",
            app,
            to_i64(wechat_msgid),
        )
        return await self._shared.filled_one(None if row is None else row_message(row))

    @maps_pg_errors
    async def stats(self) -> StoreStats:
        return await self._read(_stats)

    @maps_pg_errors
    async def dead_letters(
        self,
        app: str | None = None,
        errcode: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> tuple[list[Message], str | None]:
        """Newest death first; the cursor is the (finished_at, id) of the last row returned."""
        sql = f"SELECT {COLUMNS} FROM messages WHERE status = 'dead'"
        params: list[object] = []
        if app is not None:
            params.append(app)
            sql += f" AND app = ${len(params)}"
        if errcode is not None:
            params.append(errcode)
            sql += f" AND last_errcode = ${len(params)}"
        if cursor is not None:
            params.extend(_decode_cursor(cursor))
            sql += f" AND (finished_at, id) < (${len(params) - 1}, ${len(params)})"
        limit = max(1, limit)
        params.append(limit + 1)
        sql += f" ORDER BY finished_at DESC, id DESC LIMIT ${len(params)}"
        rows = await self._p.fetch(sql, *params)
        page = await self._shared.filled([row_message(r) for r in rows[:limit]])
        if len(rows) <= limit:
            return page, None
        last = page[-1]
        return page, f"{last.finished_at!r}~{last.id}"

    @maps_pg_errors
    async def redrive(
        self,
        app: str,
        errcodes: Sequence[int],
        died_before: float,
        max_rounds: int,
        limit: int,
    ) -> int:
        if not errcodes or limit <= 0:
            return 0
        now = self._clock.now()
        args = (now, died_before, app, list(errcodes), max_rounds, limit)
        done = await self._p.execute(_REDRIVE, *args)
        moved = int(done.rsplit(" ", 1)[-1])
        if moved:
            self._wakeups.changed()
        return moved

    @maps_pg_errors
    async def find_messages(
        self, query: MessageQuery, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Message], str | None]:
        page, next_cursor = await self._read(find.find_messages, query, cursor, limit)
        return await self._shared.filled(page), next_cursor

    @maps_pg_errors
    async def requeue(
        self,
        ids: Sequence[str] | None = None,
        app: str | None = None,
        errcode: int | None = None,
    ) -> int:
        """dead -> queued. The last error stays: it tells an operator why the message died."""
        now = self._clock.now()
        sql = _REQUEUE
        params: list[object] = [now]
        if ids is not None:
            if not ids:
                return 0
            params.append(list(ids))
            sql += " AND id = ANY($2::text[])"
        else:
            if app is not None:
                params.append(app)
                sql += f" AND app = ${len(params)}"
            if errcode is not None:
                params.append(errcode)
                sql += f" AND last_errcode = ${len(params)}"
        done = await self._p.execute(sql, *params)
        self._wakeups.changed()
        return int(done.rsplit(" ", 1)[-1])


_DAY_PARTITIONS = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_d[0-9]+$'"
)
# Stragglers: finished rows in the default partition (their day had no partition yet).
_PRUNE_ACTIVE = (
    "WITH old AS (SELECT id FROM messages_active WHERE finished_at < $1 LIMIT $2), "
    "gone AS (DELETE FROM messages_active m USING old WHERE m.id = old.id "
    "RETURNING m.app, m.idempotency_key) "
    "DELETE FROM idempotency i USING gone WHERE i.app = gone.app AND i.key = gone.idempotency_key"
)


async def _drop_day(conn: Conn, part: str) -> int:
    """Retire one day partition: detached first (the lock on messages before any other, so
    no deadlock with a writer), its rows taken off the counts and added to `pruned`, their
    idempotency keys released, then dropped. How many messages went."""
    await conn.execute(f'ALTER TABLE messages DETACH PARTITION "{part}"')
    rows = await conn.fetch(f'SELECT app, status, count(*) FROM "{part}" GROUP BY app, status')
    if rows:
        apps, statuses, ns = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
        await conn.execute(
            "INSERT INTO counts (app, status, slot, n) "
            "SELECT a, s, 0, -n FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(a, s, n) "
            "ORDER BY a, s ON CONFLICT (app, status, slot) DO UPDATE SET n = counts.n + excluded.n",
            apps,
            statuses,
            ns,
        )
        await conn.execute(
            "INSERT INTO pruned (app, status, n) "
            "SELECT a, s, n FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(a, s, n) "
            "ORDER BY a, s ON CONFLICT (app, status) DO UPDATE SET n = pruned.n + excluded.n",
            apps,
            statuses,
            ns,
        )
        await conn.execute(
            f'DELETE FROM idempotency i USING "{part}" m WHERE m.idempotency_key IS NOT NULL '
            "AND i.app = m.app AND i.key = m.idempotency_key"
        )
    await conn.execute(f'DROP TABLE "{part}"')
    return sum(int(r[2]) for r in rows)


async def _prune(conn: Conn, cutoff: float, now: float) -> tuple[int, bool]:
    """One slice of retention: (messages deleted, whether to come back for more). One day
    partition per transaction, so its lock on `messages` lasts one short transaction; other
    processes skip while one holds the pruning lock."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _PRUNE_LOCK):
        return 0, False
    for (part,) in await conn.fetch(_DAY_PARTITIONS):
        if (int(part.removeprefix("messages_d")) + 1) * DAY_S <= cutoff:
            return await _drop_day(conn, part), True
    done = await conn.execute(_PRUNE_ACTIVE, cutoff, _PRUNE_LIMIT)
    deleted = int(done.rsplit(" ", 1)[-1])
    if deleted >= _PRUNE_LIMIT:
        return deleted, True
    await conn.execute("DELETE FROM receipts WHERE received_at < $1", cutoff)
    await outbox.prune(conn, cutoff)
    await shared.prune(conn, now)
    await batches.prune(conn, cutoff)
    # Fold every (app, status)'s slots into slot 0 and drop the zeros: counts stays small.
    await conn.execute(
        "WITH gone AS (DELETE FROM counts RETURNING app, status, n) "
        "INSERT INTO counts (app, status, slot, n) SELECT app, status, 0, sum(n) FROM gone "
        "GROUP BY app, status HAVING sum(n) <> 0 ORDER BY app, status "
        "ON CONFLICT (app, status, slot) DO UPDATE SET n = counts.n + excluded.n"
    )
    return 0, False
