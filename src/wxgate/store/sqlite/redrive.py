"""Scheduled redrive on SQLite (MessageQueue.redrive): up to `limit` of the candidates
(schema.py's messages_redrive index: the app's dead letters of the listed errcodes with
rounds left, so other dead letters are never walked), oldest death first. Runs on the
writer thread like every write."""

from __future__ import annotations

from collections.abc import Sequence

from wxgate.store.sqlite.rows import Conn, json_param

_REDRIVE = (
    "UPDATE messages SET status = 'queued', attempts = 0, not_before = ?1, due_at = ?1, "
    "finished_at = NULL, lease_until = NULL, updated_at = ?1, "
    "redrive_rounds = redrive_rounds + 1 WHERE rowid IN ("
    "SELECT rowid FROM messages INDEXED BY messages_redrive WHERE status = 'dead' "
    "AND finished_at <= ?2 AND app = ?3 "
    "AND last_errcode IN (SELECT value FROM json_each(?4)) AND redrive_rounds < ?5 "
    "ORDER BY finished_at LIMIT ?6)"
)


def redrive(
    conn: Conn,
    app: str,
    errcodes: Sequence[int],
    died_before: float,
    max_rounds: int,
    limit: int,
    now: float,
) -> int:
    params = (now, died_before, app, json_param(list(errcodes)), max_rounds, limit)
    return conn.execute(_REDRIVE, params).rowcount
