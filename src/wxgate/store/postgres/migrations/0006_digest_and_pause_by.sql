-- wxgate PostgreSQL schema, version 2. An idempotency key keeps the fingerprint of the body
-- that made its message (Message.idempotency_digest), so a reuse of the key with another body
-- is answered as a conflict (store/idempotency.py). NULL for keys taken before this version:
-- those are never a conflict, nothing can be compared.
ALTER TABLE idempotency ADD COLUMN digest text;

-- AppPause.by: who paused an app by hand (POST /v1/apps/{app}/pause); NULL for the
-- dispatcher's own pauses, which never replace a hand-made one still in force.
ALTER TABLE pauses ADD COLUMN by_whom text;
