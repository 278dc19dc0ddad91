-- Scheduled redrive (store/base.py MessageQueue.redrive): rounds a dead letter has had.
ALTER TABLE messages ADD COLUMN redrive_rounds integer NOT NULL DEFAULT 0;
-- Its candidates without walking every other dead letter (a backlog of permanent errors).
CREATE INDEX messages_redrive ON messages (app, last_errcode, redrive_rounds, finished_at)
    WHERE status = 'dead';
