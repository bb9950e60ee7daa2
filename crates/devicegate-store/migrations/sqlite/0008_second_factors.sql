-- One-time codes (issue 14): a tenant's second-factor policy, each person's authenticator
-- (TOTP) and recovery codes, and how a person signed on (`amr`) kept beside `idp` with the
-- flow they walk, the grant they approve, the refresh tokens it issues and their browser
-- session (NULL for everything from before this version).
-- Released migrations are never edited: add a new file.
ALTER TABLE tenants ADD COLUMN second_factor TEXT NOT NULL DEFAULT 'off';

-- `secret` is the shared secret itself (the authenticator needs it; it cannot be a hash).
-- `last_step` is the last time step a code was accepted for: only later ones are.
CREATE TABLE totp_factors (
    tenant     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    secret     BLOB NOT NULL,
    confirmed  INTEGER NOT NULL,
    last_step  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, user_id)
) STRICT;

-- Each code stored as its hash, used once (`used_at` set).
CREATE TABLE recovery_codes (
    tenant     TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    hash       BLOB PRIMARY KEY,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX recovery_codes_user ON recovery_codes (tenant, user_id);

ALTER TABLE flows ADD COLUMN amr TEXT;
ALTER TABLE device_grants ADD COLUMN amr TEXT;
ALTER TABLE refresh_tokens ADD COLUMN amr TEXT;
ALTER TABLE browser_sessions ADD COLUMN amr TEXT;
