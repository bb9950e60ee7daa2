-- Upstream sign-in (issue 13): a tenant's switch for local passwords, its OpenID providers,
-- the links of the providers' subjects to users, and the round trips to a provider under way.
-- Released migrations are never edited: add a new file.
ALTER TABLE tenants ADD COLUMN local_passwords INTEGER NOT NULL DEFAULT 1;

-- `allowed_domains` is space-separated (domains hold no whitespace); `require_claims` is a
-- JSON array of `[name, value]` pairs, in order.
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
    link_by_email   INTEGER NOT NULL,
    max_age_secs    INTEGER,
    force_login     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) STRICT;

CREATE TABLE upstream_links (
    tenant      TEXT NOT NULL,
    upstream_id TEXT NOT NULL,
    subject     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, upstream_id, subject)
) STRICT;
CREATE INDEX upstream_links_user_id ON upstream_links (user_id);

-- Taken (deleted) once, when the browser comes back; swept once expired.
CREATE TABLE upstream_states (
    hash          BLOB PRIMARY KEY,
    tenant        TEXT NOT NULL,
    upstream_id   TEXT NOT NULL,
    flow_hash     BLOB NOT NULL,
    binding_hash  BLOB NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to     TEXT,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX upstream_states_expires_at ON upstream_states (expires_at);
