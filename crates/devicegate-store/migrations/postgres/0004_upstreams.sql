-- devicegate schema for PostgreSQL, version 4. Released migrations are never edited.
-- Upstream sign-in (issue 13): a tenant's switch for local passwords, its OpenID providers,
-- the links of the providers' subjects to users, and the round trips to a provider under way.
ALTER TABLE tenants ADD COLUMN local_passwords BOOLEAN NOT NULL DEFAULT TRUE;

-- `allowed_domains` is space-separated (domains hold no whitespace); `require_claims` is a
-- JSON array of `[name, value]` pairs, in order (TEXT, read and written as SQLite's is).
CREATE TABLE upstreams (
    tenant          TEXT NOT NULL,
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   TEXT,
    auth_method     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    allowed_domains TEXT NOT NULL,
    require_claims  TEXT NOT NULL,
    link_by_email   BOOLEAN NOT NULL,
    max_age_secs    BIGINT,
    force_login     BOOLEAN NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE upstream_links (
    tenant      TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    subject     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, upstream_id, subject)
);
CREATE INDEX upstream_links_user_id ON upstream_links (user_id);

-- Taken (deleted) once, when the browser comes back; swept once expired.
CREATE TABLE upstream_states (
    hash          BYTEA PRIMARY KEY,
    tenant        TEXT NOT NULL,
    upstream_id   TEXT NOT NULL,
    flow_hash     BYTEA NOT NULL,
    binding_hash  BYTEA NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX upstream_states_expires_at ON upstream_states (expires_at);
