"""Finding messages (MessageQueue.find_messages): the query, its cursor, and the bounded page
every backend builds the same way.

Newest first by (created_at, id). Each backend walks ONE index newest first from the cursor:
the recipient's index when `touser` is given (the question an operator asks most: "what
happened to this user's message?"), else the index of every message by creation time. The
other filters (app, status, batch, since) are checked on the rows walked. A page looks at no
more than SCAN_BUDGET rows: when a rare filter leaves it short, it still ends with a cursor
where the walk stopped, so a page costs the same whatever is stored, and a caller pages on
until the cursor is None. One index per filter would make every page full, but each index
costs every accepted message a write; two indexes is the trade (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from wxgate.errors import ValidationError
from wxgate.models import Status

SCAN_BUDGET = 2000  # rows one page may look at
MAX_LIMIT = 500


class MessageQuery(msgspec.Struct, frozen=True, kw_only=True):
    """What find_messages filters by (None: any); since <= created_at < until."""

    app: str | None = None
    touser: str | None = None
    status: Status | None = None
    batch_id: str | None = None
    since: float | None = None
    until: float | None = None


# A walked row: what the filters look at.
Candidate = tuple[float, str, str, str, str | None]  # created_at, id, app, status, batch_id


def encode_cursor(created_at: float, msg_id: str) -> str:
    return f"{created_at!r}~{msg_id}"


def decode_cursor(cursor: str) -> tuple[float, str]:
    at, sep, msg_id = cursor.partition("~")
    try:
        if not sep or not msg_id:
            raise ValueError(cursor)
        return float(at), msg_id
    except ValueError:
        raise ValidationError("cursor", "not a cursor this store returned") from None


def start(query: MessageQuery, cursor: str | None) -> tuple[float, str] | None:
    """Where the walk starts (exclusive): the cursor, or `until` (rows created before it);
    None = from the newest. The id "" sorts before every id, so (until, "") excludes all rows
    created at `until`."""
    if cursor is not None:
        at, msg_id = decode_cursor(cursor)
        if query.until is not None and (query.until, "") < (at, msg_id):
            return query.until, ""
        return at, msg_id
    if query.until is not None:
        return query.until, ""
    return None


def matches(query: MessageQuery, row: Candidate) -> bool:
    _, _, app, status, batch_id = row
    if query.app is not None and app != query.app:
        return False
    if query.status is not None and status != query.status.value:
        return False
    return query.batch_id is None or batch_id == query.batch_id


class Pager:
    """One page built from rows walked newest first: `take` each row until it says stop.

    Stops at limit + 1 matches (the extra one says another page exists), at a row older than
    `since` (nothing further can match), or after `budget` rows (the cursor then points at the
    last row looked at, so the next page goes on from there)."""

    def __init__(self, query: MessageQuery, limit: int, budget: int | None = None) -> None:
        self.query = query
        self.limit = max(1, limit)
        self.budget = SCAN_BUDGET if budget is None else budget  # read now: tests lower it
        self.ids: list[str] = []
        self.cursor: str | None = None
        self._last: Candidate | None = None  # the last row looked at
        self._walked = 0

    def take(self, row: Candidate) -> bool:
        """Look at one more row; False once the page is complete (look at no more)."""
        if self.query.since is not None and row[0] < self.query.since:
            return False
        if matches(self.query, row):
            if len(self.ids) == self.limit and self._last is not None:
                # Another page exists: it starts right after the last row looked at.
                self.cursor = encode_cursor(self._last[0], self._last[1])
                return False
            self.ids.append(row[1])
        self._last = row
        self._walked += 1
        if self._walked >= self.budget:
            self.cursor = encode_cursor(row[0], row[1])
            return False
        return True


def page_of(
    query: MessageQuery, rows: Iterable[Candidate], limit: int, budget: int | None = None
) -> tuple[list[str], str | None]:
    """The ids of one page (newest first) and the next cursor (see Pager)."""
    pager = Pager(query, limit, budget)
    for row in rows:
        if not pager.take(row):
            break
    return pager.ids, pager.cursor
