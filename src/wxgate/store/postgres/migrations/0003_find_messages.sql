-- Finding messages (store/search.py): every message newest first, and one recipient's.
-- On the partitioned table, so every partition (and each one made later) has them.
CREATE INDEX messages_created ON messages (created_at, id);
CREATE INDEX messages_touser ON messages (touser, created_at, id);
