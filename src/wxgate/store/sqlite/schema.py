"""The SQLite schema: tables, indexes and triggers, the connection pragmas, and bringing an
older file up to date.

`due_at` is the one column leasing looks at: not_before while a message waits, lease_until
while it is in flight (an expired lease is simply due again), NULL once it is final or its
batch is paused. One partial index on (app, due_at) then serves every lease query.
"""

from __future__ import annotations

import sqlite3

from wxgate.models import BatchStatus

SCHEMA_VERSION = 1
WAL_AUTOCHECKPOINT_PAGES = 20_000  # ~80 MB of log

PENDING_SQL = "('queued', 'scheduled', 'retrying')"
# The same set as an OR chain, for a partial index: SQLite evaluates an IN list of three or
# more in an index's WHERE by building a temporary b-tree on every insert and update of a row.
PENDING_OR = "(status = 'queued' OR status = 'scheduled' OR status = 'retrying')"
ACTIVE_SQL = "('queued', 'scheduled', 'retrying', 'sending')"
FINAL_SQL = "('sent', 'delivered', 'blocked', 'failed', 'dead', 'cancelled', 'expired')"


def sql_list(*values: str) -> str:
    """An SQL list literal: sql_list("a", "b") -> "('a', 'b')" (values are our own enums)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Batches whose messages lease() must look at twice: held (models.BATCH_HELD) or cancelled.
# The same text in the partial index and the query, or INDEXED BY cannot use the index.
BATCH_NOT_RUNNING_SQL = sql_list(
    BatchStatus.LOADING, BatchStatus.PAUSED, BatchStatus.INCOMPLETE, BatchStatus.CANCELLED
)
BATCH_BLOCKED_SQL = sql_list(BatchStatus.PAUSED, BatchStatus.CANCELLED)

DDL = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('schema_version', {SCHEMA_VERSION}), ('lease_token', 0);

CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    kind TEXT NOT NULL,
    touser TEXT NOT NULL,
    template_id TEXT NOT NULL,
    data BLOB NOT NULL,              -- msgspec JSON
    url TEXT,
    miniprogram BLOB,                -- msgspec JSON
    page TEXT,
    miniprogram_state TEXT,
    lang TEXT,
    idempotency_key TEXT,
    idem_digest TEXT,                -- the key's body fingerprint (Message.idempotency_digest)
    batch_id TEXT,
    callback_url TEXT,
    priority TEXT NOT NULL,
    created_at REAL NOT NULL,
    not_before REAL NOT NULL,
    expire_at REAL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_errcode INTEGER,
    last_errmsg TEXT,
    wechat_msgid INTEGER,            -- unsigned 64-bit stored as signed (see to_i64)
    receipt TEXT,
    sent_at REAL,
    finished_at REAL,
    updated_at REAL,
    lease_token INTEGER NOT NULL DEFAULT 0,
    lease_until REAL,
    due_at REAL,                     -- see the module docstring
    notes BLOB,                      -- msgspec JSON list of accept-time notes, or NULL
    -- 1: data is the row's own (what differs from its batch's), the rest is the batch's
    shared INTEGER,
    redrive_rounds INTEGER NOT NULL DEFAULT 0,  -- scheduled redrive rounds (store/base.py)
    -- W3C trace context (models.Message.trace), or NULL. No comma in a comment on the line
    -- before a last column: SQLite's DROP COLUMN (tests make older files with it) takes
    -- that comma for the separator and leaves the ")" inside the comment.
    trace TEXT
);
CREATE INDEX IF NOT EXISTS messages_due
    ON messages (app, due_at, batch_id) WHERE due_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (app, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_msgid
    ON messages (app, wechat_msgid) WHERE wechat_msgid IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_batch
    ON messages (batch_id, status) WHERE batch_id IS NOT NULL;
DROP INDEX IF EXISTS messages_pending_created;  -- its IN-list predicate: see PENDING_OR
CREATE INDEX IF NOT EXISTS messages_pending_by_created
    ON messages (created_at) WHERE {PENDING_OR};
CREATE INDEX IF NOT EXISTS messages_dead
    ON messages (finished_at, id) WHERE status = 'dead';
CREATE INDEX IF NOT EXISTS messages_finished
    ON messages (finished_at) WHERE finished_at IS NOT NULL;
-- Finding messages (store/search.py): every message newest first, and one recipient's.
CREATE INDEX IF NOT EXISTS messages_created ON messages (created_at, id);
CREATE INDEX IF NOT EXISTS messages_touser ON messages (touser, created_at, id);

-- Counts by (app, status) so stats() never scans messages. Inserts are counted by enqueue
-- itself (one upsert per group instead of one per row); changes and deletes by triggers.
CREATE TABLE IF NOT EXISTS counts (
    app TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (app, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS messages_count_update
AFTER UPDATE OF status ON messages WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE counts SET n = n - 1 WHERE app = OLD.app AND status = OLD.status;
    INSERT INTO counts VALUES (NEW.app, NEW.status, 1)
        ON CONFLICT (app, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS messages_count_delete
AFTER DELETE ON messages
BEGIN
    UPDATE counts SET n = n - 1 WHERE app = OLD.app AND status = OLD.status;
END;
-- What retention deleted, by (app, status): counts + pruned never shrink because of pruning.
CREATE TABLE IF NOT EXISTS pruned (
    app TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (app, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS messages_pruned
AFTER DELETE ON messages
BEGIN
    INSERT INTO pruned VALUES (OLD.app, OLD.status, 1)
        ON CONFLICT (app, status) DO UPDATE SET n = n + 1;
END;

CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    template_id TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    rate_per_s REAL
) WITHOUT ROWID;
-- What a batch's messages share (msgspec JSON SharedFields, batch_shared.py), stored once. A
-- table of its own: an UPDATE rewrites the whole row, and a batch's status and total change
-- once per streamed chunk while its shared data (up to server.max_data_bytes) never does.
CREATE TABLE IF NOT EXISTS batch_shared (
    batch_id TEXT PRIMARY KEY,
    fields BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_blocked
    ON batches (status) WHERE status IN {BATCH_BLOCKED_SQL};
CREATE INDEX IF NOT EXISTS batches_not_running
    ON batches (status) WHERE status IN {BATCH_NOT_RUNNING_SQL};

-- Leases taken over after they expired (crash recoveries), by app. Only lease() changes
-- lease_token, and a message it takes while still `sending` is one whose lease had expired.
CREATE TABLE IF NOT EXISTS lease_expirations (
    app TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS messages_lease_expired
AFTER UPDATE OF lease_token ON messages WHEN OLD.status = 'sending'
BEGIN
    INSERT INTO lease_expirations VALUES (NEW.app, 1)
        ON CONFLICT (app) DO UPDATE SET n = n + 1;
END;
CREATE INDEX IF NOT EXISTS batches_created ON batches (created_at, id);

-- Receipts by event key (dedupe); applied = 0 while waiting for the ack that names its msgid.
CREATE TABLE IF NOT EXISTS receipts (
    app TEXT NOT NULL,
    event_key TEXT NOT NULL,
    wechat_msgid INTEGER NOT NULL,
    receipt TEXT NOT NULL,
    received_at REAL NOT NULL,
    applied INTEGER NOT NULL,
    openid TEXT,                     -- FromUserName; NULL: not checked (files before it)
    PRIMARY KEY (app, event_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipts_waiting
    ON receipts (app, wechat_msgid) WHERE applied = 0;
CREATE INDEX IF NOT EXISTS receipts_received ON receipts (received_at);

-- WeChat callback nonces seen inside the timestamp window (remember_nonce), to refuse replays.
CREATE TABLE IF NOT EXISTS nonces (
    app TEXT NOT NULL,
    nonce TEXT NOT NULL,
    digest TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (app, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);

-- Sends awaiting a receipt without a msgid, per (app, openid:template): ReceiptLinks.
CREATE TABLE IF NOT EXISTS receipt_links (
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    blob BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (app, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS receipt_links_expiry ON receipt_links (expires_at);

-- Users' accepts (rejected = 0) and rejects of subscribe templates: Suppressions.
CREATE TABLE IF NOT EXISTS suppressions (
    app TEXT NOT NULL,
    openid TEXT NOT NULL,
    template_id TEXT NOT NULL,
    rejected INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (app, openid, template_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS tokens (
    app TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    expires_at REAL NOT NULL,
    fetched_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS pauses (
    app TEXT PRIMARY KEY,
    until REAL NOT NULL,
    reason TEXT NOT NULL,
    errcode INTEGER,
    by_whom TEXT                     -- AppPause.by: who paused it by hand; NULL: automatic
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS quota (
    app TEXT NOT NULL,
    day TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (app, day)
) WITHOUT ROWID;

-- The status-webhook outbox (outbox.py): one row per event, written in the
-- transaction of the status change that caused it.
CREATE TABLE IF NOT EXISTS webhooks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    app TEXT NOT NULL,
    status TEXT NOT NULL,
    url TEXT NOT NULL,
    occurred_at REAL NOT NULL,
    errcode INTEGER,
    errmsg TEXT,
    wechat_msgid INTEGER,
    batch_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    failed_at REAL,                  -- set when given up on
    due_at REAL,                     -- next try or the end of the lease; NULL once failed
    -- the message's trace context, passed on to the receiver
    trace TEXT
);
CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhooks_failed ON webhooks (failed_at) WHERE failed_at IS NOT NULL;
INSERT OR IGNORE INTO meta VALUES ('webhooks_delivered', 0);

-- The dashboard chart's history (throughput.py): per-second counts of the last hour.
CREATE TABLE IF NOT EXISTS throughput (
    second INTEGER PRIMARY KEY,
    accepted INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    delivered INTEGER NOT NULL,
    failed INTEGER NOT NULL
);
"""


def connect(
    path: str,
    synchronous: str,
    busy_timeout_s: float,
    *,
    read_only: bool = False,
    cache_kib: int = 2048,
) -> sqlite3.Connection:
    """A connection with our pragmas; autocommit mode, transactions are explicit.

    busy_timeout_s bounds how long a call waits for another process's write lock before it
    fails with StoreUnavailable.
    """
    conn = sqlite3.connect(
        path,
        isolation_level=None,
        check_same_thread=not read_only,
        cached_statements=256,
        timeout=busy_timeout_s,
    )
    if read_only:
        conn.execute("PRAGMA query_only = 1")
    else:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise sqlite3.OperationalError(f"could not switch {path} to WAL (got {mode})")
        # The Checkpointer thread keeps the log short; this is only the safety net if it stops.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {64 << 20}")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Page cache per connection (KiB): the writer's keeps the hot index pages; RSS budget
    # (docs/architecture.md §12.1, P6) is why it is not bigger.
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for statement in _split(DDL):
        conn.execute(statement)
    _add_missing_columns(conn)
    for statement in _ON_ADDED_COLUMNS:
        conn.execute(statement)
    conn.execute("COMMIT")


# Columns added after a file may have been created: (table, column, type).
_ADDED_COLUMNS = (
    ("messages", "notes", "BLOB"),
    ("messages", "shared", "INTEGER"),
    ("receipts", "openid", "TEXT"),
    ("messages", "redrive_rounds", "INTEGER NOT NULL DEFAULT 0"),
    ("messages", "idem_digest", "TEXT"),
    ("pauses", "by_whom", "TEXT"),
    ("messages", "trace", "TEXT"),
    ("webhooks", "trace", "TEXT"),
)


# Indexes on added columns: created once the columns are there (an older file gets them
# from _add_missing_columns first).
_ON_ADDED_COLUMNS = (
    # Scheduled redrive (redrive.py): an app's dead letters of one errcode with rounds left,
    # without walking every other dead letter (a backlog of permanent errors).
    "CREATE INDEX IF NOT EXISTS messages_redrive ON messages "
    "(app, last_errcode, redrive_rounds, finished_at) WHERE status = 'dead'",
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a file made by an older wxgate up to date (CREATE IF NOT EXISTS keeps old tables)."""
    for table, column, kind in _ADDED_COLUMNS:
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _split(script: str) -> list[str]:
    """Statements of DDL (executescript would COMMIT on its own; triggers contain ';')."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
