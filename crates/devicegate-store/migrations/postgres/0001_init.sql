-- devicegate schema for PostgreSQL, version 1. Released migrations are never edited.
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    uuid       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE clients (
    tenant               TEXT NOT NULL,
    id                   TEXT NOT NULL,
    name                 TEXT NOT NULL,
    secret_hash          BYTEA,
    scopes               TEXT NOT NULL,
    grant_types          TEXT NOT NULL,
    device_code_ttl_secs BIGINT,
    poll_interval_secs   BIGINT,
    created_at           BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    name          TEXT,
    email         TEXT,
    created_at    BIGINT NOT NULL,
    UNIQUE (tenant, username)
);

CREATE TABLE device_grants (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    device_code_hash BYTEA NOT NULL UNIQUE,
    user_code        TEXT NOT NULL UNIQUE,
    client_id        TEXT NOT NULL,
    scopes           TEXT NOT NULL,
    status           TEXT NOT NULL,
    subject          TEXT,
    auth_time        BIGINT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    interval_secs    BIGINT NOT NULL,
    last_poll_at     BIGINT,
    flow_id          TEXT,
    flow_expires_at  BIGINT,
    requester_ip     TEXT,
    requester_agent  TEXT,
    context          TEXT,
    version          BIGINT NOT NULL
);
CREATE INDEX device_grants_expires_at ON device_grants (expires_at);
CREATE INDEX device_grants_client_id ON device_grants (tenant, client_id);
CREATE INDEX device_grants_status_expires_at ON device_grants (status, expires_at);

CREATE TABLE flows (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    secret_hash     BYTEA NOT NULL UNIQUE,
    status          TEXT NOT NULL,
    grant_id        TEXT,
    user_id         TEXT,
    signed_on_at    BIGINT,
    failed_attempts BIGINT NOT NULL,
    result          TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL
);
CREATE INDEX flows_expires_at ON flows (expires_at);

CREATE TABLE refresh_tokens (
    hash       BYTEA PRIMARY KEY,
    tenant     TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    auth_time  BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_subject ON refresh_tokens (subject);
CREATE INDEX refresh_tokens_client_id ON refresh_tokens (tenant, client_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    alg        TEXT NOT NULL,
    pkcs8      BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE browser_sessions (
    id_hash      BYTEA PRIMARY KEY,
    tenant       TEXT NOT NULL,
    user_id      TEXT,
    signed_on_at BIGINT,
    flow_hash    BYTEA,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);
