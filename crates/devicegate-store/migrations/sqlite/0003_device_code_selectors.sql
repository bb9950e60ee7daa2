-- Device codes name their grant (`dgd_<grant id>.<secret>`), so a grant is found by its
-- primary key and the code's hash compared after. The unique index over every device-code
-- hash goes (it cost a write to a random page per device authorization); codes without a
-- selector, issued before this version (their grants' ids are not 28 characters), are still
-- found by hash through a partial index. SQLite cannot drop a column's UNIQUE constraint, so
-- the table is rebuilt.
CREATE TABLE device_grants_new (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    device_code_hash BLOB NOT NULL,
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
INSERT INTO device_grants_new (id, tenant, device_code_hash, user_code, client_id, scopes,
    status, subject, auth_time, created_at, expires_at, interval_secs, last_poll_at, flow_id,
    flow_expires_at, requester_ip, requester_agent, context, version)
SELECT id, tenant, device_code_hash, user_code, client_id, scopes, status, subject, auth_time,
    created_at, expires_at, interval_secs, last_poll_at, flow_id, flow_expires_at, requester_ip,
    requester_agent, context, version
FROM device_grants;
DROP TABLE device_grants;
ALTER TABLE device_grants_new RENAME TO device_grants;
CREATE INDEX device_grants_expires_at ON device_grants (expires_at);
CREATE INDEX device_grants_client_id ON device_grants (tenant, client_id);
CREATE INDEX device_grants_status_expires_at ON device_grants (status, expires_at);
CREATE INDEX device_grants_code_without_selector ON device_grants (device_code_hash)
    WHERE length(id) <> 28;
