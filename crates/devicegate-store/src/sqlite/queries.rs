//! Statements more than one `Store` method runs (grant and refresh-token writes, a user's
//! change and what it ends), and the query helpers.

use devicegate_core::Timestamp;
use devicegate_core::grant::DeviceGrant;
use rusqlite::{Connection, OptionalExtension, params};

use super::codec::*;
use crate::columns::{
    AUDIT_COLUMNS, GRANT_COLUMNS, KEY_COLUMNS, REFRESH_COLUMNS, UPSTREAM_LINK_COLUMNS,
    USER_COLUMNS, grant_status_columns,
};
use crate::pending::OwnerIndex;
use crate::records::{KeyRecord, RefreshToken, UpstreamLink, UserRecord};
use crate::{Result, StoreError};

pub(super) fn get_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    conn.prepare_cached(sql)
        .map_err(internal)?
        .query_row(params, map)
        .optional()
        .map_err(internal)?
        .ok_or(StoreError::NotFound)
}

pub(super) fn get_all<T>(
    conn: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    get_all_with(conn, sql, [], map)
}

/// All rows of a query with one parameter (a tenant).
pub(super) fn get_all_for<T>(
    conn: &Connection,
    sql: &str,
    param: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    get_all_with(conn, sql, [param], map)
}

/// All rows of a query with `params`.
pub(super) fn get_all_with<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(internal)?;
    let rows = stmt.query_map(params, map).map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(internal)
}

/// The conditional update of a grant; returns the new stored version. `g.version` is the
/// version the caller read, which may include polls held in memory: the compare is then
/// against those, and the update against the stored version they build on.
pub(super) fn update_grant_in(
    conn: &Connection,
    pending: &OwnerIndex,
    g: &DeviceGrant,
) -> Result<i64> {
    let expected = pending.expected_version(g)?;
    let (status, subject, auth_time, idp, amr) = grant_status_columns(&g.status);
    let n = conn
        .prepare_cached(
            "UPDATE device_grants SET status = ?1, subject = ?2, auth_time = ?3, interval_secs = ?4, \
             last_poll_at = ?5, flow_id = ?6, flow_expires_at = ?7, idp = ?10, amr = ?11, version = version + 1 \
             WHERE id = ?8 AND version = ?9",
        )
        .map_err(internal)?
        .execute(params![
            status,
            subject,
            auth_time,
            g.interval_secs,
            g.last_poll_at.map(Timestamp::as_millis),
            g.flow_id,
            g.flow_expires_at.map(Timestamp::as_millis),
            g.id,
            expected,
            idp,
            amr
        ])
        .map_err(internal)?;
    match n {
        1 => Ok(expected + 1),
        _ => Err(missing_or_conflict(conn, "device_grants", "id", &g.id)),
    }
}

/// Inserts a grant; returns its rowid.
pub(super) fn insert_grant_in(conn: &Connection, g: &DeviceGrant) -> Result<i64> {
    let (status, subject, auth_time, idp, amr) = grant_status_columns(&g.status);
    conn.prepare_cached(&format!(
        "INSERT INTO device_grants ({GRANT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))
    .map_err(internal)?
    .execute(params![
        g.id,
        g.device_code_hash.as_bytes(),
        g.user_code.canonical(),
        g.client_id,
        g.scopes.to_string(),
        status,
        subject,
        auth_time,
        g.created_at.as_millis(),
        g.expires_at.as_millis(),
        g.interval_secs,
        g.last_poll_at.map(Timestamp::as_millis),
        g.flow_id,
        g.flow_expires_at.map(Timestamp::as_millis),
        g.requester.ip,
        g.requester.user_agent,
        g.version,
        g.tenant,
        g.context,
        idp,
        amr
    ])
    .map_err(constraint)?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn insert_user_in(conn: &Connection, u: &UserRecord) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))
    .map_err(internal)?
    .execute(params![
        u.id,
        u.username,
        u.password_hash,
        u.name,
        u.email,
        u.created_at.as_millis(),
        u.tenant,
        u.disabled
    ])
    .map_err(constraint)?;
    Ok(())
}

pub(super) fn insert_upstream_link_in(conn: &Connection, l: &UpstreamLink) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO upstream_links ({UPSTREAM_LINK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))
    .map_err(internal)?
    .execute(params![
        l.tenant,
        l.upstream_id,
        l.subject,
        l.user_id,
        l.created_at.as_millis()
    ])
    .map_err(constraint)?;
    Ok(())
}

/// What a user's change ends besides what any change ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UserChange {
    /// A new password: the user keeps their upstream links.
    Password,
    /// The user is gone, and so are their upstream links and second factors.
    Deleted,
    /// An operator took everything back (and maybe disabled the person): their access
    /// tokens issued before `issued_before` are revoked too, until `until`.
    Revoked {
        issued_before: Timestamp,
        until: Timestamp,
    },
}

/// Runs `sql`, which changes or deletes one user and returns its id and tenant (`NotFound`
/// if none),
/// then ends everything that user signed in to or had under way: refresh tokens and sessions
/// go, approved grants not redeemed yet are denied (with a new version, so that a redemption
/// read before loses its compare-and-swap), and open flows fail; a deleted user's upstream
/// links and second factors go too (a new password keeps them). Returns the denied grants,
/// as stored.
pub(super) fn change_user_in(
    conn: &Connection,
    change: UserChange,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DeviceGrant>> {
    let (id, tenant): (String, String) = conn
        .query_row(sql, params, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(internal)?
        .ok_or(StoreError::NotFound)?;
    if change == UserChange::Deleted {
        conn.execute("DELETE FROM upstream_links WHERE user_id = ?1", [&id])
            .map_err(internal)?;
        delete_factors_in(conn, &tenant, &id)?;
    }
    if let UserChange::Revoked {
        issued_before,
        until,
    } = change
    {
        revoke_id_in(
            conn,
            &tenant,
            &format!("sub:{id}"),
            until,
            Some(issued_before),
        )?;
    }
    conn.execute("DELETE FROM refresh_tokens WHERE subject = ?1", [&id])
        .map_err(internal)?;
    conn.execute("DELETE FROM browser_sessions WHERE user_id = ?1", [&id])
        .map_err(internal)?;
    let denied = conn
        .prepare_cached(&format!(
            "UPDATE device_grants SET status = 'denied', subject = NULL, auth_time = NULL, \
             idp = NULL, amr = NULL, version = version + 1 WHERE status = 'approved' AND subject = ?1 \
             RETURNING {GRANT_COLUMNS}"
        ))
        .map_err(internal)?
        .query_map([&id], grant_from_row)
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(internal)?;
    conn.execute(
        "UPDATE flows SET status = 'FAILED', version = version + 1 \
         WHERE user_id = ?1 AND status NOT IN ('COMPLETED', 'FAILED')",
        [&id],
    )
    .map_err(internal)?;
    Ok(denied)
}

/// Deletes a person's authenticator and recovery codes.
pub(super) fn delete_factors_in(conn: &Connection, tenant: &str, user_id: &str) -> Result<()> {
    for table in ["totp_factors", "recovery_codes", "passkeys"] {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE tenant = ?1 AND user_id = ?2"
        ))
        .map_err(internal)?
        .execute([tenant, user_id])
        .map_err(internal)?;
    }
    Ok(())
}

/// Records `id` revoked until `until` (for tokens issued before `issued_before`, if given),
/// keeping the later `until` and `issued_before` of two.
pub(super) fn revoke_id_in(
    conn: &Connection,
    tenant: &str,
    id: &str,
    until: Timestamp,
    issued_before: Option<Timestamp>,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO revocations (tenant, id, until, issued_before) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (tenant, id) DO UPDATE SET until = max(until, excluded.until), \
         issued_before = max(issued_before, excluded.issued_before)",
    )
    .map_err(internal)?
    .execute(rusqlite::params![
        tenant,
        id,
        until.as_millis(),
        issued_before.map(|t| t.as_millis())
    ])
    .map_err(internal)?;
    Ok(())
}

/// Appends audit events (in the caller's transaction).
pub(super) fn insert_audit_in(conn: &Connection, events: &[crate::AuditEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut insert = conn
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))
        .map_err(internal)?;
    for e in events {
        insert
            .execute(params![
                e.at.as_millis(),
                e.tenant,
                e.event,
                e.actor,
                e.client_id,
                e.ip,
                e.user_agent,
                e.grant_id,
                e.family_id,
                e.detail
            ])
            .map_err(internal)?;
    }
    Ok(())
}

/// After an update that matched no row: was the row gone, or changed?
pub(super) fn missing_or_conflict(
    conn: &Connection,
    table: &str,
    key: &str,
    id: impl rusqlite::ToSql,
) -> StoreError {
    let sql = format!("SELECT 1 FROM {table} WHERE {key} = ?1");
    match conn.query_row(&sql, [id], |_| Ok(())).optional() {
        Ok(Some(())) => StoreError::Conflict,
        Ok(None) => StoreError::NotFound,
        Err(e) => internal(e),
    }
}

pub(super) fn insert_refresh_in(conn: &Connection, t: &RefreshToken) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))
    .map_err(internal)?
    .execute(params![
        t.hash.as_bytes(),
        t.family_id,
        t.client_id,
        t.subject,
        t.scopes.to_string(),
        t.auth_time.as_millis(),
        t.created_at.as_millis(),
        t.expires_at.as_millis(),
        t.used,
        t.tenant,
        t.family_started_at.as_millis(),
        t.idp,
        t.amr,
        t.requester_ip,
        t.requester_agent
    ])
    .map_err(constraint)?;
    Ok(())
}

pub(super) fn insert_key_in(conn: &Connection, k: &KeyRecord) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            k.id,
            k.alg.as_str(),
            k.pkcs8,
            k.created_at.as_millis(),
            k.tenant,
            k.signs_from.as_millis()
        ],
    )
    .map_err(constraint)?;
    Ok(())
}

/// Every signing key of `tenant`, oldest first.
pub(super) fn keys_in(conn: &Connection, tenant: &str) -> Result<Vec<KeyRecord>> {
    get_all_for(
        conn,
        &format!(
            "SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant = ?1 ORDER BY created_at, id"
        ),
        tenant,
        key_from_row,
    )
}
