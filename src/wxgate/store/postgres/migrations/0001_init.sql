-- wxgate PostgreSQL schema, version 1 (applied by store/postgres/migrate.py under an advisory
-- lock; never edit a released migration: add the next file instead).
--
-- `due_at` is the one column leasing looks at: not_before while a message waits, lease_until
-- while it is in flight (an expired lease is simply due again), NULL once it is final or its
-- batch is held. One partial index on (app, due_at) serves every lease query.

-- Messages are partitioned by finished_at: waiting and in-flight ones (finished_at NULL) live
-- in the default partition messages_active; finishing a message moves its row into the
-- partition of its day (messages_d<day>, day = floor(finished_at / 86400), UTC), created days
-- ahead by wx_ensure_partitions. Retention then drops a day's partition instead of deleting its
-- rows one by one (queue.py). Requeue sets finished_at NULL and moves a dead letter back.
CREATE SEQUENCE message_seq;
CREATE TABLE messages (
    seq bigint NOT NULL DEFAULT nextval('message_seq'),  -- insertion order: batch pages
    id text NOT NULL,
    app text NOT NULL,
    kind text NOT NULL,
    touser text NOT NULL,
    template_id text NOT NULL,
    data text NOT NULL,                -- msgspec JSON
    url text,
    miniprogram text,                  -- msgspec JSON
    page text,
    miniprogram_state text,
    lang text,
    idempotency_key text,
    batch_id text,
    callback_url text,
    priority text NOT NULL,
    created_at double precision NOT NULL,
    not_before double precision NOT NULL,
    expire_at double precision,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_errcode integer,
    last_errmsg text,
    wechat_msgid bigint,               -- unsigned 64-bit stored as signed (rows.to_i64)
    receipt text,
    sent_at double precision,
    finished_at double precision,
    updated_at double precision,
    lease_token bigint NOT NULL DEFAULT 0,
    lease_until double precision,
    due_at double precision,
    notes text,                        -- msgspec JSON list, or NULL
    shared integer                     -- 1: data is the row's own, the rest is its batch's
) PARTITION BY RANGE (finished_at);
-- Room for HOT updates: a waiting message changes 2-3 times before it finishes.
CREATE TABLE messages_active PARTITION OF messages DEFAULT WITH (fillfactor = 80);
-- Every partition: by id (unique while active, where every write checks it; ids are made by
-- the gateway, so a finished one's id is never offered again), msgid, batch, idempotency key.
CREATE UNIQUE INDEX messages_active_id ON messages_active (id);
CREATE INDEX messages_msgid ON messages (app, wechat_msgid) WHERE wechat_msgid IS NOT NULL;
CREATE INDEX messages_batch ON messages (batch_id, seq) WHERE batch_id IS NOT NULL;
CREATE INDEX messages_idempotency ON messages (app, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_dead ON messages (finished_at, id) WHERE status = 'dead';
-- Only active rows are due or pending.
CREATE INDEX messages_due ON messages_active (app, due_at) WHERE due_at IS NOT NULL;
CREATE INDEX messages_pending_by_created ON messages_active (created_at)
    WHERE status IN ('queued', 'scheduled', 'retrying');
CREATE INDEX messages_active_finished ON messages_active (finished_at)
    WHERE finished_at IS NOT NULL;
-- Idempotency keys, unique across every partition (a partitioned table's own unique index
-- would have to include finished_at). Dropped with their messages' partition.
CREATE TABLE idempotency (
    app text NOT NULL,
    key text NOT NULL,
    id text NOT NULL,
    PRIMARY KEY (app, key)
);

-- Day partitions from first_day to last_day (days since the epoch, UTC), made if missing.
-- A day whose rows already sit in the default partition (a clock that jumped ahead) is left
-- there: retention deletes those rows one by one instead.
CREATE FUNCTION wx_ensure_partitions(first_day integer, last_day integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d integer;
    made integer := 0;
    part text;
BEGIN
    FOR d IN first_day..last_day LOOP
        part := 'messages_d' || d;
        IF to_regclass(quote_ident(part)) IS NULL
           AND NOT EXISTS (SELECT 1 FROM messages_active
                           WHERE finished_at >= d * 86400.0 AND finished_at < (d + 1) * 86400.0)
        THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES FROM (%s) TO (%s)',
                           part, d * 86400, (d + 1) * 86400);
            EXECUTE format('CREATE INDEX %I ON %I (id)', part || '_id', part);
            made := made + 1;
        END IF;
    END LOOP;
    RETURN made;
END $$;

-- Counts by (app, status) so stats() never scans messages, kept by statement triggers. Each
-- backend adds to its own slot (pg_backend_pid() % 16): concurrent transactions rarely wait
-- on one counter row, and stats() sums at most 16 rows per (app, status).
CREATE TABLE counts (
    app text NOT NULL,
    status text NOT NULL,
    slot integer NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (app, status, slot)
);
-- What retention deleted, by (app, status): counts + pruned never shrink because of pruning.
CREATE TABLE pruned (
    app text NOT NULL,
    status text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (app, status)
);
-- Leases taken over after they expired (crash recoveries), by app.
CREATE TABLE lease_expirations (
    app text PRIMARY KEY,
    n bigint NOT NULL
);

CREATE FUNCTION wx_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counts (app, status, slot, n)
    SELECT app, status, pg_backend_pid() % 16, count(*) FROM new_rows
    GROUP BY app, status ORDER BY app, status
    ON CONFLICT (app, status, slot) DO UPDATE SET n = counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE FUNCTION wx_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counts (app, status, slot, n)
    SELECT app, status, pg_backend_pid() % 16, sum(d) FROM (
        SELECT app, status, -1 AS d FROM old_rows
        UNION ALL SELECT app, status, 1 FROM new_rows
    ) x GROUP BY app, status HAVING sum(d) <> 0 ORDER BY app, status
    ON CONFLICT (app, status, slot) DO UPDATE SET n = counts.n + excluded.n;
    RETURN NULL;
END $$;
CREATE FUNCTION wx_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO counts (app, status, slot, n)
    SELECT app, status, pg_backend_pid() % 16, -count(*) FROM old_rows
    GROUP BY app, status ORDER BY app, status
    ON CONFLICT (app, status, slot) DO UPDATE SET n = counts.n + excluded.n;
    INSERT INTO pruned (app, status, n)
    SELECT app, status, count(*) FROM old_rows GROUP BY app, status ORDER BY app, status
    ON CONFLICT (app, status) DO UPDATE SET n = pruned.n + excluded.n;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wx_count_insert();
CREATE TRIGGER messages_count_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION wx_count_update();
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION wx_count_delete();

-- Lease tokens only grow: one sequence for every process.
CREATE SEQUENCE lease_tokens;

CREATE TABLE batches (
    id text PRIMARY KEY,
    app text NOT NULL,
    template_id text NOT NULL,
    total integer NOT NULL,
    created_at double precision NOT NULL,
    status text NOT NULL,
    rate_per_s double precision
);
CREATE INDEX batches_created ON batches (created_at, id);
CREATE INDEX batches_not_running ON batches (status)
    WHERE status IN ('loading', 'paused', 'incomplete', 'cancelled');
-- What a batch's messages share (store/batch_shared.py), stored once, apart from the row
-- that changes once per streamed chunk.
CREATE TABLE batch_shared (
    batch_id text PRIMARY KEY,
    fields text NOT NULL
);

-- Receipts by event key (dedupe); applied = false while waiting for the ack naming its msgid.
CREATE TABLE receipts (
    app text NOT NULL,
    event_key text NOT NULL,
    wechat_msgid bigint NOT NULL,
    receipt text NOT NULL,
    received_at double precision NOT NULL,
    applied boolean NOT NULL,
    openid text,
    PRIMARY KEY (app, event_key)
);
CREATE INDEX receipts_waiting ON receipts (app, wechat_msgid) WHERE NOT applied;
CREATE INDEX receipts_received ON receipts (received_at);

CREATE TABLE nonces (
    app text NOT NULL,
    nonce text NOT NULL,
    digest text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (app, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);

CREATE TABLE tokens (
    app text PRIMARY KEY,
    access_token text NOT NULL,
    expires_at double precision NOT NULL,
    fetched_at double precision NOT NULL
);
CREATE TABLE locks (
    name text PRIMARY KEY,
    owner text NOT NULL,
    expires_at double precision NOT NULL
);
CREATE TABLE pauses (
    app text PRIMARY KEY,
    until double precision NOT NULL,
    reason text NOT NULL,
    errcode integer
);
CREATE TABLE quota (
    app text NOT NULL,
    day text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (app, day)
);
-- Reserving token buckets shared by every process (SharedState.take_rate).
CREATE TABLE rate_buckets (
    app text PRIMARY KEY,
    tokens double precision NOT NULL,
    at double precision NOT NULL
);

-- The status-webhook outbox: one row per event, written in the transaction of the status
-- change that caused it.
CREATE TABLE webhooks (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id text NOT NULL,
    app text NOT NULL,
    status text NOT NULL,
    url text NOT NULL,
    occurred_at double precision NOT NULL,
    errcode integer,
    errmsg text,
    wechat_msgid bigint,
    batch_id text,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    failed_at double precision,
    due_at double precision
);
CREATE INDEX webhooks_due ON webhooks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX webhooks_failed ON webhooks (failed_at) WHERE failed_at IS NOT NULL;
CREATE TABLE webhook_counts (
    slot integer PRIMARY KEY,
    delivered bigint NOT NULL
);

-- Wake-ups: a change that makes a message due sooner than before (a new or requeued message,
-- a retry, a resumed batch) notifies `wxgate_due_<schema>` at commit, so idle gateways lease
-- again at once instead of polling the table (queue.py, PostgresQueue.lease).
CREATE FUNCTION wx_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wxgate_due_' || current_schema(), '');
    RETURN NULL;
END $$;
CREATE TRIGGER messages_due_insert AFTER INSERT ON messages_active
    FOR EACH ROW WHEN (NEW.due_at IS NOT NULL) EXECUTE FUNCTION wx_notify_due();
CREATE TRIGGER messages_due_sooner AFTER UPDATE OF due_at ON messages_active
    FOR EACH ROW WHEN (NEW.due_at IS NOT NULL AND (OLD.due_at IS NULL OR NEW.due_at < OLD.due_at))
    EXECUTE FUNCTION wx_notify_due();
