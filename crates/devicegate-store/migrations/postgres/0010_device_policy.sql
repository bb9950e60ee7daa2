-- devicegate schema for PostgreSQL, version 10. Released migrations are never edited.
-- Device-code phishing defences (issue 16, RFC 10027): per client, where its device flows may
-- start (`device_networks`, space-separated CIDRs; empty: anywhere), whether its device grants
-- get refresh tokens, a scope ceiling and an access-token lifetime for them, and how an
-- approval from elsewhere than the device is treated (`proximity`: off, warn, same_network).
ALTER TABLE clients ADD COLUMN device_networks TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN device_refresh_tokens BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE clients ADD COLUMN device_scopes TEXT;
ALTER TABLE clients ADD COLUMN device_access_ttl_secs BIGINT;
ALTER TABLE clients ADD COLUMN proximity TEXT NOT NULL DEFAULT 'off';

-- A flow whose code came in a link: its approval asks to confirm the code on the device.
ALTER TABLE flows ADD COLUMN from_link BOOLEAN NOT NULL DEFAULT FALSE;
