-- Passkeys (issue 14): each person's WebAuthn credentials, and the ceremonies under way
-- (registration or sign-in), each bound to the flow or browser session that started it and
-- taken once. Released migrations are never edited: add a new file.
CREATE TABLE passkeys (
    tenant          TEXT NOT NULL,
    id              TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    credential_id   BLOB NOT NULL,
    name            TEXT NOT NULL,
    credential      TEXT NOT NULL,
    sign_count      INTEGER NOT NULL,
    backup_eligible INTEGER NOT NULL,
    backup_state    INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    PRIMARY KEY (tenant, id),
    UNIQUE (tenant, credential_id)
) STRICT;
CREATE INDEX passkeys_user ON passkeys (tenant, user_id);

CREATE TABLE webauthn_ceremonies (
    tenant     TEXT NOT NULL,
    key_hash   BLOB NOT NULL,
    purpose    TEXT NOT NULL,
    user_id    TEXT,
    state      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key_hash)
) STRICT;
