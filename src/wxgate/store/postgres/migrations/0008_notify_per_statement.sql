-- Wake-ups for new messages once per INSERT statement instead of once per row: the row
-- trigger ran a PL/pgSQL call and a pg_notify for every row, so a batch's INSERT of 1,000
-- recipients made 1,000 of them (pg_stat_statements, bench/results/notes.md). On the
-- partitioned table, whose transition table holds the rows of every partition. Listeners
-- see one notification per transaction either way (PostgreSQL folds duplicates).
DROP TRIGGER messages_due_insert ON messages_active;
CREATE FUNCTION wx_notify_due_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows WHERE due_at IS NOT NULL) THEN
        PERFORM pg_notify('wxgate_due_' || current_schema(), '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_due_inserted AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION wx_notify_due_inserted();
