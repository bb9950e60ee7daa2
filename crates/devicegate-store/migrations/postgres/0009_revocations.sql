-- devicegate schema for PostgreSQL, version 9. Released migrations are never edited.
-- Revocation (issue 15): access tokens (`jti:…`) and refresh families (`sid:…`, the access
-- tokens' `sid`) revoked before they expire, kept until the last token they name has expired,
-- then swept.
CREATE TABLE revocations (
    tenant TEXT NOT NULL,
    id     TEXT NOT NULL,
    until  BIGINT NOT NULL,
    -- For a person (`sub:…`): only tokens issued before this are revoked; NULL: all.
    issued_before BIGINT,
    PRIMARY KEY (tenant, id)
);

-- The address and user agent of the device a refresh token family was issued to (from its
-- device authorization request), for the person's list of devices.
ALTER TABLE refresh_tokens ADD COLUMN requester_ip TEXT;
ALTER TABLE refresh_tokens ADD COLUMN requester_agent TEXT;

-- A person an operator disabled: cannot sign in, and nothing of theirs stands.
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;

-- Key rotation: a key is published at once and signs from `signs_from` on (NULL: from
-- `created_at`, as every key made before this version).
ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT;

-- The audit trail: one row per security event (never a secret), kept audit_retention_days.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    tenant     TEXT NOT NULL,
    event      TEXT NOT NULL,
    actor      TEXT,
    client_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    grant_id   TEXT,
    family_id  TEXT,
    detail     TEXT
);
CREATE INDEX audit_events_at ON audit_events (tenant, at);
