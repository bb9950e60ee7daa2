-- devicegate schema for PostgreSQL, version 8. Released migrations are never edited.
-- Passkeys (issue 14): each person's WebAuthn credentials, and the ceremonies under way
-- (registration or sign-in), each bound to the flow or browser session that started it and
-- taken once.
CREATE TABLE passkeys (
    tenant          TEXT NOT NULL,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    credential_id   BYTEA NOT NULL,
    name            TEXT NOT NULL,
    credential      TEXT NOT NULL,
    sign_count      BIGINT NOT NULL,
    backup_eligible BOOLEAN NOT NULL,
    backup_state    BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, credential_id)
);
CREATE INDEX passkeys_user ON passkeys (tenant, user_id);

CREATE TABLE webauthn_ceremonies (
    tenant     TEXT NOT NULL,
    key_hash   BYTEA NOT NULL,
    purpose    TEXT NOT NULL,
    user_id    TEXT,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, key_hash)
);
