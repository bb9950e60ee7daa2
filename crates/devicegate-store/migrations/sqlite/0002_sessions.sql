-- Browser sessions of the verification pages.
CREATE TABLE browser_sessions (
    id_hash      BLOB PRIMARY KEY,
    tenant       TEXT NOT NULL,
    user_id      TEXT,
    signed_on_at INTEGER,
    flow_hash    BLOB,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);
CREATE INDEX device_grants_status_expires_at ON device_grants (status, expires_at);
