-- Scheduled redrive (store/base.py MessageQueue.redrive): rounds a dead letter has had.
ALTER TABLE messages ADD COLUMN redrive_rounds integer NOT NULL DEFAULT 0;
