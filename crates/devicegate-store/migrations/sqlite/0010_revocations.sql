-- Revocation (issue 15): access tokens (`jti:…`) and refresh families (`sid:…`, the access
-- tokens' `sid`) revoked before they expire, kept until the last token they name has expired,
-- then swept. Released migrations are never edited: add a new file.
CREATE TABLE revocations (
    tenant TEXT NOT NULL,
    id     TEXT NOT NULL,
    until  INTEGER NOT NULL,
    -- For a person (`sub:…`): only tokens issued before this are revoked; NULL: all.
    issued_before INTEGER,
    PRIMARY KEY (tenant, id)
) STRICT;

-- The address and user agent of the device a refresh token family was issued to (from its
-- device authorization request), for the person's list of devices.
ALTER TABLE refresh_tokens ADD COLUMN requester_ip TEXT;
ALTER TABLE refresh_tokens ADD COLUMN requester_agent TEXT;

-- A person an operator disabled: cannot sign in, and nothing of theirs stands.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Key rotation: a key is published at once and signs from `signs_from` on (NULL: from
-- `created_at`, as every key made before this version).
ALTER TABLE signing_keys ADD COLUMN signs_from INTEGER;

-- The audit trail: one row per security event (never a secret), kept audit_retention_days.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    tenant     TEXT NOT NULL,
    event      TEXT NOT NULL,
    actor      TEXT,
    client_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    grant_id   TEXT,
    family_id  TEXT,
    detail     TEXT
) STRICT;
CREATE INDEX audit_events_at ON audit_events (tenant, at);
