//! The `Store` trait on PostgreSQL: every compare-and-swap one conditional `UPDATE`, every
//! grant change announced with `NOTIFY` in its transaction, and the [`SharedCache`] told
//! what this instance changed or proved pending.

use std::time::Duration;

use async_trait::async_trait;
use devicegate_core::flow::Flow;
use devicegate_core::grant::DeviceGrant;
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use tokio::sync::broadcast;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::codec::*;
use super::listen::{ALL_GRANTS, CHANNEL, grant_payload};
use super::migrate::KEY_LOCK;
use crate::columns::*;
use crate::limits::{Admission, LimitTake};
use crate::records::{
    AuditEvent, AuditQuery, BrowserSession, ClientRecord, KeyRecord, PasskeyRecord, RefreshToken,
    SweepCounts, TenantRecord, TotpFactor, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord,
    WebauthnCeremony,
};
use crate::{
    GrantChanged, HeldPoll, PendingCodes, PollBy, Result, Store, StoreError, TENANT_TABLES,
};

/// What a user's change ends besides what any change ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserChange {
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

impl PostgresStore {
    /// Runs `sql`, which changes or deletes one user and returns its id and tenant
    /// (`NotFound` if none),
    /// and in the same transaction ends everything that user signed in to or had under way:
    /// refresh tokens and sessions go, approved grants not redeemed yet are denied (with a new
    /// version, so that a redemption read before loses its compare-and-swap, and a `NOTIFY`
    /// each, as for any grant change), and open flows fail; a deleted user's upstream links
    /// and second factors go too (a new password keeps them).
    async fn change_user(
        &self,
        change: UserChange,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let row = tx.query_opt(sql, params).await.map_err(pg)?;
        let row = row.ok_or(StoreError::NotFound)?;
        let (id, tenant): (String, String) = (row.get(0), row.get(1));
        if change == UserChange::Deleted {
            tx.execute("DELETE FROM upstream_links WHERE user_id = $1", &[&id])
                .await
                .map_err(pg)?;
            delete_factors_in(&tx, &tenant, &id).await?;
        }
        if let UserChange::Revoked {
            issued_before,
            until,
        } = change
        {
            revoke_id_in(
                &tx,
                &tenant,
                &format!("sub:{id}"),
                until,
                Some(issued_before),
            )
            .await?;
        }
        tx.execute("DELETE FROM refresh_tokens WHERE subject = $1", &[&id])
            .await
            .map_err(pg)?;
        tx.execute("DELETE FROM browser_sessions WHERE user_id = $1", &[&id])
            .await
            .map_err(pg)?;
        let denied = tx
            .query(
                &format!(
                    "UPDATE device_grants SET status = 'denied', subject = NULL, auth_time = NULL, \
                     idp = NULL, amr = NULL, version = version + 1 WHERE status = 'approved' AND subject = $1 \
                     RETURNING {GRANT_COLUMNS}"
                ),
                &[&id],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(grant_from_row)
            .collect::<Result<Vec<_>>>()?;
        for g in &denied {
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &grant_payload(g)])
                .await
                .map_err(pg)?;
        }
        tx.execute(
            "UPDATE flows SET status = 'FAILED', version = version + 1 \
             WHERE user_id = $1 AND status NOT IN ('COMPLETED', 'FAILED')",
            &[&id],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        // At once here; the `NOTIFY`s do it on every instance.
        for g in &denied {
            self.inner.pending.invalidate(&g.device_code_hash);
        }
        Ok(())
    }
}

/// Records `id` revoked until `until` (for tokens issued before `issued_before`, if given),
/// keeping the later `until` and `issued_before` of two.
async fn revoke_id_in(
    db: &impl deadpool_postgres::GenericClient,
    tenant: &str,
    id: &str,
    until: Timestamp,
    issued_before: Option<Timestamp>,
) -> Result<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO revocations (tenant, id, until, issued_before) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, id) DO UPDATE SET \
             until = GREATEST(revocations.until, EXCLUDED.until), \
             issued_before = GREATEST(revocations.issued_before, EXCLUDED.issued_before)",
        )
        .await
        .map_err(pg)?;
    db.execute(
        &stmt,
        &[
            &tenant,
            &id,
            &until.as_millis(),
            &issued_before.map(|t| t.as_millis()),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Appends audit events (in the caller's transaction, if it has one).
async fn insert_audit_in(
    db: &impl deadpool_postgres::GenericClient,
    events: &[AuditEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({AUDIT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .await
        .map_err(pg)?;
    for e in events {
        db.execute(
            &stmt,
            &[
                &e.at.as_millis(),
                &e.tenant,
                &e.event,
                &e.actor,
                &e.client_id,
                &e.ip,
                &e.user_agent,
                &e.grant_id,
                &e.family_id,
                &e.detail,
            ],
        )
        .await
        .map_err(pg)?;
    }
    Ok(())
}

/// Deletes a person's authenticator, recovery codes and passkeys.
async fn delete_factors_in(
    db: &impl deadpool_postgres::GenericClient,
    tenant: &str,
    user_id: &str,
) -> Result<()> {
    for table in ["totp_factors", "recovery_codes", "passkeys"] {
        let stmt = db
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE tenant = $1 AND user_id = $2"
            ))
            .await
            .map_err(pg)?;
        db.execute(&stmt, &[&tenant, &user_id]).await.map_err(pg)?;
    }
    Ok(())
}

/// After an update that matched no row: was the row gone, or changed?
async fn missing_or_conflict(
    db: &impl deadpool_postgres::GenericClient,
    table: &str,
    key: &str,
    id: &(dyn ToSql + Sync),
) -> StoreError {
    let sql = format!("SELECT 1 FROM {table} WHERE {key} = $1");
    match db.query_opt(sql.as_str(), &[id]).await {
        Ok(Some(_)) => StoreError::Conflict,
        Ok(None) => StoreError::NotFound,
        Err(e) => pg(e),
    }
}

async fn insert_user_in(db: &impl deadpool_postgres::GenericClient, u: &UserRecord) -> Result<()> {
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .await
        .map_err(pg)?;
    db.execute(
        &stmt,
        &[
            &u.id,
            &u.username,
            &u.password_hash,
            &u.name,
            &u.email,
            &u.created_at.as_millis(),
            &u.tenant,
            &u.disabled,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn insert_upstream_link_in(
    db: &impl deadpool_postgres::GenericClient,
    l: &UpstreamLink,
) -> Result<()> {
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO upstream_links ({UPSTREAM_LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .await
        .map_err(pg)?;
    db.execute(
        &stmt,
        &[
            &l.tenant,
            &l.upstream_id,
            &l.subject,
            &l.user_id,
            &l.created_at.as_millis(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

async fn insert_key_in(db: &impl deadpool_postgres::GenericClient, k: &KeyRecord) -> Result<()> {
    let stmt = db
        .prepare_cached(&format!(
            "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .await
        .map_err(pg)?;
    db.execute(
        &stmt,
        &[
            &k.id,
            &k.alg.as_str(),
            &k.pkcs8,
            &k.created_at.as_millis(),
            &k.tenant,
            &k.signs_from.as_millis(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// The conditional update of a grant, and its announcement, inside `tx`.
async fn update_grant_in(tx: &deadpool_postgres::Transaction<'_>, g: &DeviceGrant) -> Result<()> {
    let (status, subject, auth_time, idp, amr) = grant_status_columns(&g.status);
    let stmt = tx
        .prepare_cached(
            "UPDATE device_grants SET status = $1, subject = $2, auth_time = $3, interval_secs = $4, \
             last_poll_at = $5, flow_id = $6, flow_expires_at = $7, idp = $10, amr = $11, version = version + 1 \
             WHERE id = $8 AND version = $9",
        )
        .await
        .map_err(pg)?;
    let n = tx
        .execute(
            &stmt,
            &[
                &status,
                &subject,
                &auth_time,
                &i64::from(g.interval_secs),
                &g.last_poll_at.map(Timestamp::as_millis),
                &g.flow_id,
                &g.flow_expires_at.map(Timestamp::as_millis),
                &g.id,
                &g.version,
                &idp,
                &amr,
            ],
        )
        .await
        .map_err(pg)?;
    if n != 1 {
        return Err(missing_or_conflict(tx, "device_grants", "id", &g.id).await);
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &grant_payload(g)])
        .await
        .map_err(pg)?;
    Ok(())
}

async fn insert_refresh_in(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &RefreshToken,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .await
        .map_err(pg)?;
    tx.execute(
        &stmt,
        &[
            &t.hash.as_bytes().as_slice(),
            &t.family_id,
            &t.client_id,
            &t.subject,
            &t.scopes.to_string(),
            &t.auth_time.as_millis(),
            &t.created_at.as_millis(),
            &t.expires_at.as_millis(),
            &t.used,
            &t.tenant,
            &t.family_started_at.as_millis(),
            &t.idp,
            &t.amr,
            &t.requester_ip,
            &t.requester_agent,
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        self.exec("SELECT 1", &[]).await.map(|_| ())
    }

    fn subscribe(&self) -> broadcast::Receiver<GrantChanged> {
        self.inner.grants.subscribe()
    }

    fn poll_held(&self, by: PollBy<'_>, now: Timestamp) -> Option<HeldPoll> {
        self.inner.pending.poll(by, now)
    }

    async fn create_tenant(&self, t: &TenantRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO tenants ({TENANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
            &[
                &t.id,
                &t.uuid,
                &t.created_at.as_millis(),
                &t.local_passwords,
                &t.second_factor,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_tenant(&self, id: &str) -> Result<TenantRecord> {
        self.one(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"),
            &[&id],
            tenant_from_row,
        )
        .await
    }

    async fn get_tenant_by_uuid(&self, uuid: &str) -> Result<TenantRecord> {
        let uuid = uuid.to_ascii_lowercase();
        self.one(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE uuid = $1"),
            &[&uuid],
            tenant_from_row,
        )
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        self.all(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id"),
            tenant_from_row,
        )
        .await
    }

    async fn delete_tenant(&self, id: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if tx
            .execute("DELETE FROM tenants WHERE id = $1", &[&id])
            .await
            .map_err(pg)?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        for table in TENANT_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1"), &[&id])
                .await
                .map_err(pg)?;
        }
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &ALL_GRANTS])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn set_local_passwords(&self, tenant: &str, on: bool) -> Result<()> {
        match self
            .exec(
                "UPDATE tenants SET local_passwords = $1 WHERE id = $2",
                &[&on, &tenant],
            )
            .await?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn set_second_factor(&self, tenant: &str, policy: &str) -> Result<()> {
        match self
            .exec(
                "UPDATE tenants SET second_factor = $1 WHERE id = $2",
                &[&policy, &tenant],
            )
            .await?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    /// One statement: inserted, or replacing an unconfirmed enrolment; a confirmed one is
    /// left alone (no row changed) and answered `AlreadyExists`.
    async fn put_totp(&self, t: &TotpFactor) -> Result<()> {
        let n = self
            .exec(
                &format!(
                    "INSERT INTO totp_factors ({TOTP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (tenant, user_id) DO UPDATE SET secret = EXCLUDED.secret, \
                     confirmed = EXCLUDED.confirmed, last_step = EXCLUDED.last_step, \
                     created_at = EXCLUDED.created_at WHERE NOT totp_factors.confirmed"
                ),
                &[
                    &t.tenant,
                    &t.user_id,
                    &t.secret,
                    &t.confirmed,
                    &t.last_step,
                    &t.created_at.as_millis(),
                ],
            )
            .await?;
        match n {
            0 => Err(StoreError::AlreadyExists),
            _ => Ok(()),
        }
    }

    async fn get_totp(&self, tenant: &str, user_id: &str) -> Result<TotpFactor> {
        self.one(
            &format!("SELECT {TOTP_COLUMNS} FROM totp_factors WHERE tenant = $1 AND user_id = $2"),
            &[&tenant, &user_id],
            totp_from_row,
        )
        .await
    }

    /// One conditional `UPDATE` (row-locked: of concurrent ones for a step, one matches);
    /// a read only after it changed nothing, to tell a refused step from a person without
    /// an authenticator.
    async fn use_totp_step(
        &self,
        tenant: &str,
        user_id: &str,
        step: i64,
        confirming: bool,
    ) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE totp_factors SET last_step = $3, confirmed = (confirmed OR $4) \
                 WHERE tenant = $1 AND user_id = $2 AND last_step < $3 AND (confirmed OR $4)",
                &[&tenant, &user_id, &step, &confirming],
            )
            .await?;
        if n == 1 {
            return Ok(true);
        }
        match self
            .opt(
                "SELECT 1 FROM totp_factors WHERE tenant = $1 AND user_id = $2",
                &[&tenant, &user_id],
            )
            .await?
        {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound),
        }
    }

    async fn put_recovery_codes(
        &self,
        tenant: &str,
        user_id: &str,
        hashes: &[SecretHash],
        now: Timestamp,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(
            "DELETE FROM recovery_codes WHERE tenant = $1 AND user_id = $2",
            &[&tenant, &user_id],
        )
        .await
        .map_err(pg)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO recovery_codes (tenant, user_id, hash, used_at, created_at) \
                 VALUES ($1, $2, $3, NULL, $4)",
            )
            .await
            .map_err(pg)?;
        for h in hashes {
            tx.execute(
                &insert,
                &[
                    &tenant,
                    &user_id,
                    &h.as_bytes().as_slice(),
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn use_recovery_code(
        &self,
        tenant: &str,
        user_id: &str,
        hash: &SecretHash,
        now: Timestamp,
    ) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE recovery_codes SET used_at = $4 \
                 WHERE tenant = $1 AND user_id = $2 AND hash = $3 AND used_at IS NULL",
                &[
                    &tenant,
                    &user_id,
                    &hash.as_bytes().as_slice(),
                    &now.as_millis(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn count_recovery_codes(&self, tenant: &str, user_id: &str) -> Result<u32> {
        let n: i64 = self
            .one(
                "SELECT COUNT(*) FROM recovery_codes \
                 WHERE tenant = $1 AND user_id = $2 AND used_at IS NULL",
                &[&tenant, &user_id],
                |r| get(r, 0),
            )
            .await?;
        u32::try_from(n).map_err(|_| bad("recovery code count"))
    }

    async fn delete_factors(&self, tenant: &str, user_id: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        delete_factors_in(&tx, tenant, user_id).await?;
        tx.commit().await.map_err(pg)
    }

    async fn create_passkey(&self, p: &PasskeyRecord) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO passkeys ({PASSKEY_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &p.tenant,
                &p.id,
                &p.user_id,
                &p.credential_id,
                &p.name,
                &p.credential,
                &i64::from(p.sign_count),
                &p.backup_eligible,
                &p.backup_state,
                &p.created_at.as_millis(),
                &p.last_used_at.map(|t| t.as_millis()),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn list_passkeys(&self, tenant: &str, user_id: &str) -> Result<Vec<PasskeyRecord>> {
        self.all_with(
            &format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE tenant = $1 AND user_id = $2 \
                 ORDER BY created_at, id"
            ),
            &[&tenant, &user_id],
            passkey_from_row,
        )
        .await
    }

    async fn get_passkey(&self, tenant: &str, credential_id: &[u8]) -> Result<PasskeyRecord> {
        self.one(
            &format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE tenant = $1 AND credential_id = $2"
            ),
            &[&tenant, &credential_id],
            passkey_from_row,
        )
        .await
    }

    /// One conditional `UPDATE` (row-locked: of concurrent ones for a counter, one matches);
    /// a read only after it changed nothing, to tell a refused counter from a passkey that is
    /// gone.
    async fn use_passkey(
        &self,
        tenant: &str,
        credential_id: &[u8],
        sign_count: u32,
        backup_state: bool,
        credential: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let n = self
            .exec(
                "UPDATE passkeys SET sign_count = $3, backup_state = $4, credential = $5, \
                 last_used_at = $6 WHERE tenant = $1 AND credential_id = $2 \
                 AND (sign_count < $3 OR ($3 = 0 AND sign_count = 0))",
                &[
                    &tenant,
                    &credential_id,
                    &i64::from(sign_count),
                    &backup_state,
                    &credential,
                    &now.as_millis(),
                ],
            )
            .await?;
        if n == 1 {
            return Ok(true);
        }
        match self
            .opt(
                "SELECT 1 FROM passkeys WHERE tenant = $1 AND credential_id = $2",
                &[&tenant, &credential_id],
            )
            .await?
        {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound),
        }
    }

    async fn rename_passkey(
        &self,
        tenant: &str,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> Result<()> {
        self.exec_one(
            "UPDATE passkeys SET name = $4 WHERE tenant = $1 AND user_id = $2 AND id = $3",
            &[&tenant, &user_id, &id, &name],
        )
        .await
    }

    async fn delete_passkey(&self, tenant: &str, user_id: &str, id: &str) -> Result<()> {
        self.exec_one(
            "DELETE FROM passkeys WHERE tenant = $1 AND user_id = $2 AND id = $3",
            &[&tenant, &user_id, &id],
        )
        .await
    }

    async fn put_ceremony(&self, c: &WebauthnCeremony) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO webauthn_ceremonies ({CEREMONY_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, key_hash) DO UPDATE \
                 SET purpose = EXCLUDED.purpose, user_id = EXCLUDED.user_id, \
                 state = EXCLUDED.state, expires_at = EXCLUDED.expires_at"
            ),
            &[
                &c.tenant,
                &c.key_hash.as_bytes().as_slice(),
                &c.purpose,
                &c.user_id,
                &c.state,
                &c.expires_at.as_millis(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// One `DELETE … RETURNING`: of concurrent takes, one gets the row.
    async fn take_ceremony(
        &self,
        tenant: &str,
        key_hash: &SecretHash,
        now: Timestamp,
    ) -> Result<WebauthnCeremony> {
        let taken = self
            .one(
                &format!(
                    "DELETE FROM webauthn_ceremonies WHERE tenant = $1 AND key_hash = $2 \
                     RETURNING {CEREMONY_COLUMNS}"
                ),
                &[&tenant, &key_hash.as_bytes().as_slice()],
                ceremony_from_row,
            )
            .await?;
        if taken.expires_at <= now {
            return Err(StoreError::NotFound);
        }
        Ok(taken)
    }

    async fn create_upstream(&self, u: &UpstreamRecord) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO upstreams ({UPSTREAM_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &u.tenant,
                &u.id,
                &u.name,
                &u.issuer,
                &u.client_id,
                &u.client_secret,
                &u.auth_method,
                &u.scopes,
                &domains_column(&u.allowed_domains),
                &claims_column(&u.require_claims),
                &u.link_by_email,
                &u.max_age_secs.map(i64::from),
                &u.force_login,
                &u.created_at.as_millis(),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_upstream(&self, tenant: &str, id: &str) -> Result<UpstreamRecord> {
        self.one(
            &format!("SELECT {UPSTREAM_COLUMNS} FROM upstreams WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
            upstream_from_row,
        )
        .await
    }

    async fn list_upstreams(&self, tenant: &str) -> Result<Vec<UpstreamRecord>> {
        self.all_for(
            &format!("SELECT {UPSTREAM_COLUMNS} FROM upstreams WHERE tenant = $1 ORDER BY id"),
            tenant,
            upstream_from_row,
        )
        .await
    }

    async fn update_upstream(&self, u: &UpstreamRecord) -> Result<()> {
        let n = self
            .exec(
                "UPDATE upstreams SET name = $3, issuer = $4, client_id = $5, client_secret = $6, \
                 auth_method = $7, scopes = $8, allowed_domains = $9, require_claims = $10, \
                 link_by_email = $11, max_age_secs = $12, force_login = $13 \
                 WHERE tenant = $1 AND id = $2",
                &[
                    &u.tenant,
                    &u.id,
                    &u.name,
                    &u.issuer,
                    &u.client_id,
                    &u.client_secret,
                    &u.auth_method,
                    &u.scopes,
                    &domains_column(&u.allowed_domains),
                    &claims_column(&u.require_claims),
                    &u.link_by_email,
                    &u.max_age_secs.map(i64::from),
                    &u.force_login,
                ],
            )
            .await?;
        match n {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn delete_upstream(&self, tenant: &str, id: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if tx
            .execute(
                "DELETE FROM upstreams WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        for table in ["upstream_links", "upstream_states"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE tenant = $1 AND upstream_id = $2"),
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?;
        }
        tx.commit().await.map_err(pg)
    }

    async fn get_upstream_link(
        &self,
        tenant: &str,
        upstream_id: &str,
        subject: &str,
    ) -> Result<UpstreamLink> {
        self.one(
            &format!(
                "SELECT {UPSTREAM_LINK_COLUMNS} FROM upstream_links \
                 WHERE tenant = $1 AND upstream_id = $2 AND subject = $3"
            ),
            &[&tenant, &upstream_id, &subject],
            upstream_link_from_row,
        )
        .await
    }

    async fn create_upstream_link(&self, l: &UpstreamLink) -> Result<()> {
        insert_upstream_link_in(&self.client().await?, l).await
    }

    /// One transaction: a failing insert drops it, uncommitted, with the other.
    async fn create_linked_user(&self, u: &UserRecord, l: &UpstreamLink) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        insert_user_in(&tx, u).await?;
        insert_upstream_link_in(&tx, l).await?;
        tx.commit().await.map_err(pg)
    }

    async fn put_upstream_state(&self, st: &UpstreamState) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO upstream_states ({UPSTREAM_STATE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &[
                &st.hash.as_bytes().as_slice(),
                &st.tenant,
                &st.upstream_id,
                &st.flow_hash.as_bytes().as_slice(),
                &st.binding_hash.as_bytes().as_slice(),
                &st.nonce,
                &st.pkce_verifier,
                &st.return_to,
                &st.created_at.as_millis(),
                &st.expires_at.as_millis(),
            ],
        )
        .await
        .map(|_| ())
    }

    /// One `DELETE … RETURNING`: concurrent takes wait on the row's lock, and those that
    /// follow the winner find it gone.
    async fn take_upstream_state(&self, h: &SecretHash, b: &SecretHash) -> Result<UpstreamState> {
        self.one(
            &format!(
                "DELETE FROM upstream_states WHERE hash = $1 AND binding_hash = $2 \
                 RETURNING {UPSTREAM_STATE_COLUMNS}"
            ),
            &[&h.as_bytes().as_slice(), &b.as_bytes().as_slice()],
            upstream_state_from_row,
        )
        .await
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &c.id,
                &c.name,
                &c.secret_hash.as_ref().map(|h| h.as_bytes().to_vec()),
                &c.scopes.to_string(),
                &c.grant_types.join(" "),
                &c.device_code_ttl_secs.map(i64::from),
                &c.poll_interval_secs.map(i64::from),
                &c.created_at.as_millis(),
                &c.tenant,
                &domains_column(&c.device_policy.networks),
                &c.device_policy.refresh_tokens,
                &c.device_policy
                    .scope_ceiling
                    .as_ref()
                    .map(|s| s.to_string()),
                &c.device_policy.access_ttl_secs.map(i64::from),
                &c.device_policy.proximity,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn update_client(&self, c: &ClientRecord) -> Result<()> {
        self.exec_one(
            "UPDATE clients SET name = $3, scopes = $4, grant_types = $5, \
             device_code_ttl_secs = $6, poll_interval_secs = $7, device_networks = $8, \
             device_refresh_tokens = $9, device_scopes = $10, device_access_ttl_secs = $11, \
             proximity = $12 WHERE tenant = $1 AND id = $2",
            &[
                &c.tenant,
                &c.id,
                &c.name,
                &c.scopes.to_string(),
                &c.grant_types.join(" "),
                &c.device_code_ttl_secs.map(i64::from),
                &c.poll_interval_secs.map(i64::from),
                &domains_column(&c.device_policy.networks),
                &c.device_policy.refresh_tokens,
                &c.device_policy
                    .scope_ceiling
                    .as_ref()
                    .map(|s| s.to_string()),
                &c.device_policy.access_ttl_secs.map(i64::from),
                &c.device_policy.proximity,
            ],
        )
        .await
    }

    async fn get_client(&self, tenant: &str, id: &str) -> Result<ClientRecord> {
        self.one(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
            client_from_row,
        )
        .await
    }

    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>> {
        self.all_for(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 ORDER BY id"),
            tenant,
            client_from_row,
        )
        .await
    }

    async fn delete_client(&self, tenant: &str, id: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if tx
            .execute(
                "DELETE FROM clients WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "DELETE FROM device_grants WHERE tenant = $1 AND client_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM refresh_tokens WHERE tenant = $1 AND client_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &ALL_GRANTS])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn create_user(&self, u: &UserRecord) -> Result<()> {
        insert_user_in(&self.client().await?, u).await
    }

    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
            &[&id],
            user_from_row,
        )
        .await
    }

    async fn get_user_by_username(&self, tenant: &str, username: &str) -> Result<UserRecord> {
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND username = $2"),
            &[&tenant, &username],
            user_from_row,
        )
        .await
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        self.all_for(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 ORDER BY username"),
            tenant,
            user_from_row,
        )
        .await
    }

    async fn revoke_user(
        &self,
        tenant: &str,
        username: &str,
        disable: bool,
        issued_before: Timestamp,
        until: Timestamp,
    ) -> Result<()> {
        self.change_user(
            UserChange::Revoked {
                issued_before,
                until,
            },
            "UPDATE users SET disabled = (disabled OR $3) WHERE tenant = $1 AND username = $2 \
             RETURNING id, tenant",
            &[&tenant, &username, &disable],
        )
        .await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let client = self.client().await?;
        insert_audit_in(&client, events).await
    }

    async fn list_audit(&self, tenant: &str, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.all_with(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM (SELECT id, {AUDIT_COLUMNS} FROM audit_events \
                 WHERE tenant = $1 AND at >= $2 AND ($3::TEXT IS NULL OR actor = $3) \
                 AND ($4::TEXT IS NULL OR client_id = $4) AND ($5::TEXT IS NULL OR event = $5) \
                 ORDER BY at DESC, id DESC LIMIT $6) AS newest ORDER BY at, id"
            ),
            &[
                &tenant,
                &q.since.map_or(i64::MIN, |t| t.as_millis()),
                &q.actor,
                &q.client_id,
                &q.event,
                &i64::from(q.limit),
            ],
            audit_from_row,
        )
        .await
    }

    async fn sweep_audit(&self, before: Timestamp) -> Result<u64> {
        self.exec(
            "DELETE FROM audit_events WHERE at < $1",
            &[&before.as_millis()],
        )
        .await
    }

    async fn enable_user(&self, tenant: &str, username: &str) -> Result<()> {
        self.exec_one(
            "UPDATE users SET disabled = FALSE WHERE tenant = $1 AND username = $2",
            &[&tenant, &username],
        )
        .await
    }

    async fn delete_user(&self, tenant: &str, username: &str) -> Result<()> {
        self.change_user(
            UserChange::Deleted,
            "DELETE FROM users WHERE tenant = $1 AND username = $2 RETURNING id, tenant",
            &[&tenant, &username],
        )
        .await
    }

    async fn set_password(&self, tenant: &str, username: &str, password_hash: &str) -> Result<()> {
        self.change_user(
            UserChange::Password,
            "UPDATE users SET password_hash = $1 WHERE tenant = $2 AND username = $3 \
             RETURNING id, tenant",
            &[&password_hash, &tenant, &username],
        )
        .await
    }

    /// The grant, and its audit events, in one statement (a data-modifying `WITH`) for the
    /// usual one event: one round trip, as before the audit trail; in a transaction for more.
    async fn create_grant(&self, g: &DeviceGrant, audit: &[AuditEvent]) -> Result<()> {
        let (status, subject, auth_time, idp, amr) = grant_status_columns(&g.status);
        let epoch = self.inner.pending.epoch(&g.device_code_hash);
        let scopes = g.scopes.to_string();
        let code = g.user_code.canonical();
        let hash = g.device_code_hash.as_bytes().as_slice();
        let (created, expires, interval) = (
            g.created_at.as_millis(),
            g.expires_at.as_millis(),
            i64::from(g.interval_secs),
        );
        let (last_poll, flow_expires) = (
            g.last_poll_at.map(Timestamp::as_millis),
            g.flow_expires_at.map(Timestamp::as_millis),
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &g.id,
            &hash,
            &code,
            &g.client_id,
            &scopes,
            &status,
            &subject,
            &auth_time,
            &created,
            &expires,
            &interval,
            &last_poll,
            &g.flow_id,
            &flow_expires,
            &g.requester.ip,
            &g.requester.user_agent,
            &g.version,
            &g.tenant,
            &g.context,
            &idp,
            &amr,
        ];
        let insert = format!(
            "INSERT INTO device_grants ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
        );
        match audit {
            [] => {
                self.exec(&insert, &params).await?;
            }
            [e] => {
                let at = e.at.as_millis();
                params.extend_from_slice(&[
                    &at,
                    &e.tenant,
                    &e.event,
                    &e.actor,
                    &e.client_id,
                    &e.ip,
                    &e.user_agent,
                    &e.grant_id,
                    &e.family_id,
                    &e.detail,
                ]);
                self.exec(
                    &format!(
                        "WITH granted AS ({insert}) INSERT INTO audit_events ({AUDIT_COLUMNS}) \
                         VALUES ($22, $23, $24, $25, $26, $27, $28, $29, $30, $31)"
                    ),
                    &params,
                )
                .await?;
            }
            more => {
                let mut client = self.client().await?;
                let tx = client.transaction().await.map_err(pg)?;
                let stmt = tx.prepare_cached(&insert).await.map_err(pg)?;
                tx.execute(&stmt, &params).await.map_err(pg)?;
                insert_audit_in(&tx, more).await?;
                tx.commit().await.map_err(pg)?;
            }
        }
        self.inner.pending.admit(g, g.version, epoch, false);
        Ok(())
    }

    async fn get_grant(&self, id: &str) -> Result<DeviceGrant> {
        self.one(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE id = $1"),
            &[&id],
            grant_from_row,
        )
        .await
        .map(|mut g| {
            self.inner.pending.overlay(&mut g);
            g
        })
    }

    async fn get_grant_by_device_code(&self, h: &SecretHash) -> Result<DeviceGrant> {
        self.one(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE device_code_hash = $1"),
            &[&h.as_bytes().as_slice()],
            grant_from_row,
        )
        .await
        .map(|mut g| {
            self.inner.pending.overlay(&mut g);
            g
        })
    }

    async fn get_grant_by_user_code(&self, code: &UserCode) -> Result<DeviceGrant> {
        self.one(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE user_code = $1"),
            &[&code.canonical()],
            grant_from_row,
        )
        .await
        .map(|mut g| {
            self.inner.pending.overlay(&mut g);
            g
        })
    }

    /// One conditional `UPDATE` in autocommit (one round trip), on the relaxed pool, with no
    /// `NOTIFY`: a poll decides nothing anyone waits for.
    async fn record_poll(&self, g: &DeviceGrant) -> Result<()> {
        let epoch = self.inner.pending.epoch(&g.device_code_hash);
        let client = self
            .inner
            .polls
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let stmt = client
            .prepare_cached(
                "UPDATE device_grants SET interval_secs = $1, last_poll_at = $2, version = version + 1 \
                 WHERE id = $3 AND version = $4",
            )
            .await
            .map_err(pg)?;
        let n = client
            .execute(
                &stmt,
                &[
                    &i64::from(g.interval_secs),
                    &g.last_poll_at.map(Timestamp::as_millis),
                    &g.id,
                    &g.version,
                ],
            )
            .await
            .map_err(pg)?;
        if n == 1 {
            // Pending at this version: later polls are answered from memory.
            self.inner.pending.admit(g, g.version + 1, epoch, true);
            return Ok(());
        }
        Err(missing_or_conflict(&client, "device_grants", "id", &g.id).await)
    }

    async fn update_grant(&self, g: &DeviceGrant) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_grant_in(&tx, g).await?;
        tx.commit().await.map_err(pg)?;
        // At once here; the `NOTIFY` does it on every instance (this one too, should this
        // future be dropped now).
        self.inner.pending.invalidate(&g.device_code_hash);
        Ok(())
    }

    async fn redeem_grant(
        &self,
        g: &DeviceGrant,
        refresh: Option<&RefreshToken>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_grant_in(&tx, g).await?;
        if let Some(t) = refresh {
            insert_refresh_in(&tx, t).await?;
        }
        insert_audit_in(&tx, audit).await?;
        tx.commit().await.map_err(pg)?;
        self.inner.pending.invalidate(&g.device_code_hash);
        Ok(())
    }

    async fn create_flow(&self, f: &Flow) -> Result<()> {
        self.exec(
            &format!("INSERT INTO flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"),
            &[
                &f.id,
                &f.secret_hash.as_bytes().as_slice(),
                &f.status.as_str(),
                &f.grant_id,
                &f.user_id,
                &f.signed_on_at.map(Timestamp::as_millis),
                &i64::from(f.failed_attempts),
                &flow_result_column(f.result),
                &f.created_at.as_millis(),
                &f.expires_at.as_millis(),
                &f.version,
                &f.tenant,
                &f.idp,
                &f.amr,
                &f.from_link,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_flow(&self, h: &SecretHash) -> Result<Flow> {
        self.one(
            &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE secret_hash = $1"),
            &[&h.as_bytes().as_slice()],
            flow_from_row,
        )
        .await
    }

    async fn update_flow(
        &self,
        f: &Flow,
        grant: Option<&DeviceGrant>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let stmt = tx
            .prepare_cached(
                "UPDATE flows SET status = $1, grant_id = $2, user_id = $3, signed_on_at = $4, \
                 failed_attempts = $5, result = $6, secret_hash = $9, idp = $10, amr = $11, \
                 from_link = $12, version = version + 1 \
                 WHERE id = $7 AND version = $8",
            )
            .await
            .map_err(pg)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &f.status.as_str(),
                    &f.grant_id,
                    &f.user_id,
                    &f.signed_on_at.map(Timestamp::as_millis),
                    &i64::from(f.failed_attempts),
                    &flow_result_column(f.result),
                    &f.id,
                    &f.version,
                    &f.secret_hash.as_bytes().as_slice(),
                    &f.idp,
                    &f.amr,
                    &f.from_link,
                ],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            return Err(missing_or_conflict(&tx, "flows", "id", &f.id).await);
        }
        if let Some(g) = grant {
            update_grant_in(&tx, g).await?;
        }
        insert_audit_in(&tx, audit).await?;
        tx.commit().await.map_err(pg)?;
        if let Some(g) = grant {
            self.inner.pending.invalidate(&g.device_code_hash);
        }
        Ok(())
    }

    async fn get_refresh_token(&self, h: &SecretHash) -> Result<RefreshToken> {
        self.one(
            &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE hash = $1"),
            &[&h.as_bytes().as_slice()],
            refresh_from_row,
        )
        .await
    }

    async fn rotate_refresh_token(&self, old: &SecretHash, new: &RefreshToken) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let old = old.as_bytes().as_slice();
        let n = tx
            .execute(
                "UPDATE refresh_tokens SET used = TRUE WHERE hash = $1 AND NOT used",
                &[&old],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            return Err(missing_or_conflict(&tx, "refresh_tokens", "hash", &old).await);
        }
        insert_refresh_in(&tx, new).await?;
        tx.commit().await.map_err(pg)
    }

    /// One transaction: tokens gone and the family recorded revoked together.
    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        family_id: &str,
        until: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let n = tx
            .execute(
                "DELETE FROM refresh_tokens WHERE tenant = $1 AND family_id = $2",
                &[&tenant, &family_id],
            )
            .await
            .map_err(pg)?;
        revoke_id_in(&tx, tenant, &format!("sid:{family_id}"), until, None).await?;
        insert_audit_in(&tx, audit).await?;
        tx.commit().await.map_err(pg)?;
        Ok(n)
    }

    async fn list_families(
        &self,
        tenant: &str,
        subject: Option<&str>,
        client_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<RefreshToken>> {
        self.all_with(
            &format!(
                "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE tenant = $1 \
                 AND ($2::TEXT IS NULL OR subject = $2) AND ($3::TEXT IS NULL OR client_id = $3) \
                 AND NOT used AND expires_at > $4 ORDER BY family_started_at DESC, family_id"
            ),
            &[&tenant, &subject, &client_id, &now.as_millis()],
            refresh_from_row,
        )
        .await
    }

    async fn revoke_id(&self, tenant: &str, id: &str, until: Timestamp) -> Result<()> {
        let client = self.client().await?;
        revoke_id_in(&client, tenant, id, until, None).await
    }

    async fn any_revoked(
        &self,
        tenant: &str,
        ids: &[String],
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let row = self
            .opt(
                "SELECT 1 FROM revocations WHERE tenant = $1 AND id = ANY($2) AND until > $3 \
                 AND (issued_before IS NULL OR $4 < issued_before)",
                &[&tenant, &ids, &now.as_millis(), &issued_at.as_millis()],
            )
            .await?;
        Ok(row.is_some())
    }

    async fn count_pending_grants(&self, now: Timestamp) -> Result<PendingCodes> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT length(user_code)::BIGINT, COUNT(*), MAX(expires_at - created_at) \
                 FROM device_grants WHERE status = 'pending' AND expires_at > $1 GROUP BY 1",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&stmt, &[&now.as_millis()]).await.map_err(pg)?;
        let mut counts = PendingCodes::default();
        for row in rows {
            counts.add(get::<i64>(&row, 0)? as usize, get::<i64>(&row, 1)? as u64);
            counts.longest_lifetime_ms = counts.longest_lifetime_ms.max(get::<i64>(&row, 2)?);
        }
        Ok(counts)
    }

    /// One conditional upsert draws every bucket (rows locked in key order, so concurrent
    /// calls cannot deadlock); when some did not fit, what was drawn is given back.
    async fn take_limits(&self, takes: &[LimitTake], now: Timestamp) -> Result<Admission> {
        let now_ms = now.as_millis();
        let mut refused = Vec::new();
        let mut retry_after = Duration::ZERO;
        for (i, t) in takes.iter().enumerate() {
            if let Err(wait) = t.apply(None, now_ms) {
                refused.push(i);
                retry_after = retry_after.max(wait);
            }
        }
        if !refused.is_empty() {
            return Ok(Admission::Refused {
                refused,
                retry_after,
            });
        }
        let mut order: Vec<usize> = (0..takes.len()).collect();
        order.sort_by(|a, b| takes[*a].key.cmp(&takes[*b].key));
        let keys: Vec<&str> = order.iter().map(|&i| takes[i].key.as_str()).collect();
        let costs: Vec<i64> = order.iter().map(|&i| takes[i].cost_ms).collect();
        // A recorded-only take travels as a negative capacity: never refused, but clamped to
        // the brim like every backend's (`LimitTake::apply`).
        let caps: Vec<i64> = order
            .iter()
            .map(|&i| {
                let t = &takes[i];
                if t.enforce {
                    t.capacity_ms
                } else {
                    -t.capacity_ms
                }
            })
            .collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO rate_limits AS r (key, tat, capacity) \
                 SELECT k, $4 + LEAST(c, abs(cap)), cap \
                   FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) \
                   WITH ORDINALITY AS t(k, c, cap, n) ORDER BY n \
                 ON CONFLICT (key) DO UPDATE \
                   SET tat = LEAST(GREATEST(r.tat, $4) + (EXCLUDED.tat - $4), \
                                   $4 + abs(EXCLUDED.capacity)), \
                       capacity = EXCLUDED.capacity \
                   WHERE EXCLUDED.capacity < 0 \
                      OR GREATEST(r.tat, $4) + (EXCLUDED.tat - $4) - $4 <= EXCLUDED.capacity \
                 RETURNING key",
            )
            .await
            .map_err(pg)?;
        let mut attempt = 0;
        let rows = loop {
            match client.query(&stmt, &[&keys, &costs, &caps, &now_ms]).await {
                // Rows are locked in key order, so this should not happen; if PostgreSQL
                // still picks this statement as a deadlock's victim, nothing was drawn.
                Err(e) if attempt < 3 && e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
                    attempt += 1;
                }
                other => break other.map_err(pg)?,
            }
        };
        let taken: std::collections::HashSet<String> = rows
            .iter()
            .map(|r| get::<String>(r, 0))
            .collect::<Result<_>>()?;
        if taken.len() == takes.len() {
            return Ok(Admission::Admitted);
        }
        let drawn: Vec<LimitTake> = takes
            .iter()
            .filter(|t| taken.contains(&t.key))
            .cloned()
            .collect();
        drop(client);
        self.give_back_limits(&drawn).await?;
        let missing: Vec<&str> = takes
            .iter()
            .filter(|t| !taken.contains(&t.key))
            .map(|t| t.key.as_str())
            .collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT key, tat FROM rate_limits WHERE key = ANY($1::TEXT[])",
                &[&missing],
            )
            .await
            .map_err(pg)?;
        for row in rows {
            let key = get::<String>(&row, 0)?;
            let tat = get::<i64>(&row, 1)?;
            if let Some((i, t)) = takes.iter().enumerate().find(|(_, t)| t.key == key) {
                refused.push(i);
                if let Err(wait) = t.apply(Some(tat), now_ms) {
                    retry_after = retry_after.max(wait);
                }
            }
        }
        if refused.is_empty() {
            // Refused, and then drained before we looked: refuse this once, briefly.
            refused = (0..takes.len())
                .filter(|i| !taken.contains(&takes[*i].key))
                .collect();
        }
        refused.sort_unstable();
        Ok(Admission::Refused {
            refused,
            retry_after: retry_after.max(Duration::from_millis(1)),
        })
    }

    /// One autocommitted row at a time: a statement that locks one row cannot deadlock
    /// against the multi-row takes.
    async fn give_back_limits(&self, takes: &[LimitTake]) -> Result<()> {
        let mut sorted: Vec<&LimitTake> = takes.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        for t in sorted {
            self.exec(
                "UPDATE rate_limits SET tat = tat - $2 WHERE key = $1",
                &[&t.key, &t.cost_ms],
            )
            .await?;
        }
        Ok(())
    }

    async fn create_session(&self, s: &BrowserSession) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO browser_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &s.id_hash.as_bytes().as_slice(),
                &s.user_id,
                &s.signed_on_at.map(Timestamp::as_millis),
                &s.flow_hash.map(|h| h.as_bytes().to_vec()),
                &s.created_at.as_millis(),
                &s.expires_at.as_millis(),
                &s.tenant,
                &s.idp,
                &s.amr,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_session(&self, h: &SecretHash) -> Result<BrowserSession> {
        self.one(
            &format!("SELECT {SESSION_COLUMNS} FROM browser_sessions WHERE id_hash = $1"),
            &[&h.as_bytes().as_slice()],
            session_from_row,
        )
        .await
    }

    async fn update_session(&self, s: &BrowserSession) -> Result<()> {
        let n = self
            .exec(
                "UPDATE browser_sessions SET user_id = $1, signed_on_at = $2, flow_hash = $3, expires_at = $4, \
                 idp = $6, amr = $7 WHERE id_hash = $5",
                &[
                    &s.user_id,
                    &s.signed_on_at.map(Timestamp::as_millis),
                    &s.flow_hash.map(|h| h.as_bytes().to_vec()),
                    &s.expires_at.as_millis(),
                    &s.id_hash.as_bytes().as_slice(),
                    &s.idp,
                    &s.amr,
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn end_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        keep: Option<&SecretHash>,
    ) -> Result<u64> {
        let keep = keep.map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        self.exec(
            "DELETE FROM browser_sessions WHERE tenant = $1 AND user_id = $2 AND id_hash <> $3",
            &[&tenant, &user_id, &keep],
        )
        .await
    }

    async fn delete_session(&self, h: &SecretHash) -> Result<()> {
        match self
            .exec(
                "DELETE FROM browser_sessions WHERE id_hash = $1",
                &[&h.as_bytes().as_slice()],
            )
            .await?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        self.all_for(
            &format!(
                "SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant = $1 ORDER BY created_at, id"
            ),
            tenant,
            key_from_row,
        )
        .await
    }

    async fn insert_key(&self, k: &KeyRecord) -> Result<()> {
        insert_key_in(&self.client().await?, k).await
    }

    async fn ensure_key(&self, k: &KeyRecord) -> Result<Vec<KeyRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Serialise instances creating keys; the lock ends with the transaction.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEY_LOCK])
            .await
            .map_err(pg)?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM signing_keys WHERE tenant = $1 AND alg = $2 LIMIT 1",
                &[&k.tenant, &k.alg.as_str()],
            )
            .await
            .map_err(pg)?;
        if exists.is_none() {
            insert_key_in(&tx, k).await?;
        }
        let rows = tx
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant = $1 ORDER BY created_at, id"),
                &[&k.tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn sweep(&self, now: Timestamp, grace_before: Timestamp) -> Result<SweepCounts> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let grace = grace_before.as_millis();
        let now = now.as_millis();
        let grants = tx
            .execute("DELETE FROM device_grants WHERE expires_at < $1", &[&grace])
            .await
            .map_err(pg)?;
        let flows = tx
            .execute("DELETE FROM flows WHERE expires_at < $1", &[&grace])
            .await
            .map_err(pg)?;
        let refresh_tokens = tx
            .execute("DELETE FROM refresh_tokens WHERE expires_at < $1", &[&now])
            .await
            .map_err(pg)?;
        let sessions = tx
            .execute(
                "DELETE FROM browser_sessions WHERE expires_at < $1",
                &[&now],
            )
            .await
            .map_err(pg)?;
        let upstream_states = tx
            .execute("DELETE FROM upstream_states WHERE expires_at < $1", &[&now])
            .await
            .map_err(pg)?;
        let revocations = tx
            .execute("DELETE FROM revocations WHERE until < $1", &[&now])
            .await
            .map_err(pg)?;
        let webauthn_ceremonies = tx
            .execute(
                "DELETE FROM webauthn_ceremonies WHERE expires_at < $1",
                &[&now],
            )
            .await
            .map_err(pg)?;
        // Buckets that filled up again hold nothing a new one would not.
        tx.execute("DELETE FROM rate_limits WHERE tat < $1", &[&now])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(SweepCounts {
            grants,
            flows,
            refresh_tokens,
            sessions,
            upstream_states,
            webauthn_ceremonies,
            revocations,
        })
    }
}
