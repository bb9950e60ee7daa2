-- devicegate schema for PostgreSQL, version 3. Released migrations are never edited.
-- Shared limits: one leaky bucket per key (see src/limits.rs), drawn by every instance.
-- UNLOGGED: a take commits without a WAL flush; a database crash empties the buckets,
-- which forgives at most one window of counted failures.
CREATE UNLOGGED TABLE rate_limits (
    key      TEXT PRIMARY KEY,
    tat      BIGINT NOT NULL,
    capacity BIGINT NOT NULL
);
