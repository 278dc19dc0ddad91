"""The chart-history ring on SQLite (SharedState.add_throughput / throughput): one small
table keyed by epoch second, at most an hour of rows, pruned by the write that adds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wxgate.metrics.throughput import KEEP_S
from wxgate.store.sqlite.rows import Conn

# The table is in schema.py's DDL.
_ADD = (
    "INSERT INTO throughput VALUES (?, ?, ?, ?, ?) ON CONFLICT (second) DO UPDATE SET "
    "accepted = accepted + excluded.accepted, sent = sent + excluded.sent, "
    "delivered = delivered + excluded.delivered, failed = failed + excluded.failed"
)
_READ = "SELECT second, accepted, sent, delivered, failed FROM throughput WHERE second >= ? "
_READ += "ORDER BY second"


def add(conn: Conn, buckets: Mapping[int, Sequence[int]]) -> None:
    if not buckets:
        return
    conn.executemany(_ADD, [(s, *c[:4]) for s, c in buckets.items()])
    conn.execute("DELETE FROM throughput WHERE second < ?", (max(buckets) - KEEP_S,))


def read(conn: Conn, since: int) -> list[tuple[int, int, int, int, int]]:
    return [(r[0], r[1], r[2], r[3], r[4]) for r in conn.execute(_READ, (since,))]
