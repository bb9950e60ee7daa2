-- devicegate schema, version 1. Released migrations are never edited: add a new file.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    uuid       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE clients (
    tenant               TEXT NOT NULL,
    id                   TEXT NOT NULL,
    name                 TEXT NOT NULL,
    secret_hash          BLOB,
    scopes               TEXT NOT NULL,
    grant_types          TEXT NOT NULL,
    device_code_ttl_secs INTEGER,
    poll_interval_secs   INTEGER,
    created_at           INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    name          TEXT,
    email         TEXT,
    created_at    INTEGER NOT NULL,
    UNIQUE (tenant, username)
) STRICT;

CREATE TABLE device_grants (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    device_code_hash BLOB NOT NULL UNIQUE,
    user_code        TEXT NOT NULL UNIQUE,
    client_id        TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    status           TEXT NOT NULL,
    subject          TEXT,
    auth_time        INTEGER,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    interval_secs    INTEGER NOT NULL,
    last_poll_at     INTEGER,
    flow_id          TEXT,
    flow_expires_at  INTEGER,
    requester_ip     TEXT,
    requester_agent  TEXT,
    context          TEXT,
    version          INTEGER NOT NULL
) STRICT;
CREATE INDEX device_grants_expires_at ON device_grants (expires_at);
CREATE INDEX device_grants_client_id ON device_grants (tenant, client_id);

CREATE TABLE flows (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    secret_hash     BLOB NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    grant_id        TEXT,
    user_id         TEXT,
    signed_on_at    INTEGER,
    failed_attempts INTEGER NOT NULL,
    result          TEXT,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL
) STRICT;
CREATE INDEX flows_expires_at ON flows (expires_at);

CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY,
    tenant     TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    auth_time  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    alg        TEXT NOT NULL,
    pkcs8      BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
