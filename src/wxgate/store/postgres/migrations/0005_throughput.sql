-- The dashboard chart's history (SharedState.add_throughput): per-second counts, last hour.
CREATE TABLE throughput (
    second bigint PRIMARY KEY,
    accepted bigint NOT NULL,
    sent bigint NOT NULL,
    delivered bigint NOT NULL,
    failed bigint NOT NULL
);
