//! The `Store` trait on SQLite: reads on the calling task, writes through the writer, and
//! every committed grant write handed to the pending index before anything else happens.

use async_trait::async_trait;
use devicegate_core::flow::Flow;
use devicegate_core::grant::DeviceGrant;
use devicegate_core::secret::ORDERED_ID_LEN;
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::codec::*;
use super::queries::*;
use crate::TENANT_TABLES;
use crate::columns::*;
use crate::limits::{Admission, LimitTake};
use crate::records::{
    AuditEvent, AuditQuery, BrowserSession, ClientRecord, KeyRecord, PasskeyRecord, RefreshToken,
    SweepCounts, TenantRecord, TotpFactor, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord,
    WebauthnCeremony,
};
use crate::{GrantChanged, HeldPoll, PendingCodes, PollBy, Result, Store, StoreError};

impl SqliteStore {
    /// `change_user_in` on the writer thread: the pending index drops the denied grants
    /// (it holds only pending ones, so this keeps the rule that every grant write reaches
    /// it), and each denial is announced.
    async fn change_user(
        &self,
        change: UserChange,
        sql: &'static str,
        params: Vec<String>,
    ) -> Result<()> {
        let pending = self.inner.pending.clone();
        let denied = self
            .write_then(
                move |conn| change_user_in(conn, change, sql, rusqlite::params_from_iter(params)),
                move |denied: &Vec<DeviceGrant>| {
                    for g in denied {
                        pending.written(g, g.version, None);
                    }
                },
            )
            .await?;
        for g in &denied {
            self.announce(&g.id);
        }
        Ok(())
    }

    /// One statement on the writer with text parameters, which must change a row
    /// (`NotFound` otherwise).
    async fn write_one(&self, sql: &'static str, args: Vec<String>) -> Result<()> {
        self.write(move |conn| {
            match conn
                .prepare_cached(sql)
                .map_err(internal)?
                .execute(rusqlite::params_from_iter(args))
                .map_err(internal)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Announces a committed change; nobody listening is fine.
    fn announce(&self, grant_id: &str) {
        let _ = self.inner.grants.send(GrantChanged {
            grant_id: grant_id.to_owned(),
        });
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GrantChanged> {
        self.inner.grants.subscribe()
    }

    async fn ensure_key(&self, candidate: &KeyRecord) -> Result<Vec<KeyRecord>> {
        let k = candidate.clone();
        self.write(move |conn| {
            let exists = conn
                .query_row(
                    "SELECT 1 FROM signing_keys WHERE tenant = ?1 AND alg = ?2 LIMIT 1",
                    [k.tenant.as_str(), k.alg.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(internal)?;
            if exists.is_none() {
                insert_key_in(conn, &k)?;
            }
            keys_in(conn, &k.tenant)
        })
        .await
    }

    async fn create_tenant(&self, t: &TenantRecord) -> Result<()> {
        let t = t.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO tenants ({TENANT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![
                    t.id,
                    t.uuid,
                    t.created_at.as_millis(),
                    t.local_passwords,
                    t.second_factor
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_tenant(&self, id: &str) -> Result<TenantRecord> {
        self.one(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1"),
            [id],
            tenant_from_row,
        )
        .await
    }

    async fn get_tenant_by_uuid(&self, uuid: &str) -> Result<TenantRecord> {
        let uuid = uuid.to_ascii_lowercase();
        self.one(
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE uuid = ?1"),
            [uuid],
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
        let (id, gone, inner) = (id.to_owned(), id.to_owned(), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                if conn
                    .execute("DELETE FROM tenants WHERE id = ?1", [&id])
                    .map_err(internal)?
                    == 0
                {
                    return Err(StoreError::NotFound);
                }
                for table in TENANT_TABLES {
                    conn.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [&id])
                        .map_err(internal)?;
                }
                Ok(())
            },
            move |()| inner.forget_owner(&gone, None),
        )
        .await
    }

    async fn set_local_passwords(&self, tenant: &str, on: bool) -> Result<()> {
        let tenant = tenant.to_owned();
        self.write(move |conn| {
            match conn
                .execute(
                    "UPDATE tenants SET local_passwords = ?1 WHERE id = ?2",
                    params![on, tenant],
                )
                .map_err(internal)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn set_second_factor(&self, tenant: &str, policy: &str) -> Result<()> {
        let (tenant, policy) = (tenant.to_owned(), policy.to_owned());
        self.write(move |conn| {
            match conn
                .execute(
                    "UPDATE tenants SET second_factor = ?1 WHERE id = ?2",
                    params![policy, tenant],
                )
                .map_err(internal)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    /// One statement: inserted, or replacing an unconfirmed enrolment; a confirmed one is
    /// left alone (no row changed) and answered `AlreadyExists`.
    async fn put_totp(&self, t: &TotpFactor) -> Result<()> {
        let t = t.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(&format!(
                    "INSERT INTO totp_factors ({TOTP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (tenant, user_id) DO UPDATE SET secret = excluded.secret, \
                     confirmed = excluded.confirmed, last_step = excluded.last_step, \
                     created_at = excluded.created_at WHERE totp_factors.confirmed = 0"
                ))
                .map_err(internal)?
                .execute(params![
                    t.tenant,
                    t.user_id,
                    t.secret,
                    t.confirmed,
                    t.last_step,
                    t.created_at.as_millis()
                ])
                .map_err(constraint)?;
            match n {
                0 => Err(StoreError::AlreadyExists),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn get_totp(&self, tenant: &str, user_id: &str) -> Result<TotpFactor> {
        self.one(
            &format!("SELECT {TOTP_COLUMNS} FROM totp_factors WHERE tenant = ?1 AND user_id = ?2"),
            [tenant, user_id],
            totp_from_row,
        )
        .await
    }

    /// One conditional update on the writer thread; a read only after it changed nothing,
    /// to tell a refused step from a person without an authenticator.
    async fn use_totp_step(
        &self,
        tenant: &str,
        user_id: &str,
        step: i64,
        confirming: bool,
    ) -> Result<bool> {
        let (tenant, user_id) = (tenant.to_owned(), user_id.to_owned());
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE totp_factors SET last_step = ?3, confirmed = (confirmed OR ?4) \
                     WHERE tenant = ?1 AND user_id = ?2 AND last_step < ?3 \
                     AND (confirmed OR ?4)",
                )
                .map_err(internal)?
                .execute(params![tenant, user_id, step, confirming])
                .map_err(internal)?;
            if n == 1 {
                return Ok(true);
            }
            get_one(
                conn,
                "SELECT 1 FROM totp_factors WHERE tenant = ?1 AND user_id = ?2",
                [&tenant, &user_id],
                |_| Ok(false),
            )
        })
        .await
    }

    async fn put_recovery_codes(
        &self,
        tenant: &str,
        user_id: &str,
        hashes: &[SecretHash],
        now: Timestamp,
    ) -> Result<()> {
        let (tenant, user_id, hashes) = (tenant.to_owned(), user_id.to_owned(), hashes.to_vec());
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM recovery_codes WHERE tenant = ?1 AND user_id = ?2")
                .map_err(internal)?
                .execute([&tenant, &user_id])
                .map_err(internal)?;
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO recovery_codes (tenant, user_id, hash, used_at, created_at) \
                     VALUES (?1, ?2, ?3, NULL, ?4)",
                )
                .map_err(internal)?;
            for h in &hashes {
                insert
                    .execute(params![tenant, user_id, h.as_bytes(), now.as_millis()])
                    .map_err(constraint)?;
            }
            Ok(())
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        tenant: &str,
        user_id: &str,
        hash: &SecretHash,
        now: Timestamp,
    ) -> Result<bool> {
        let (tenant, user_id, hash) = (tenant.to_owned(), user_id.to_owned(), *hash);
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE recovery_codes SET used_at = ?4 \
                     WHERE tenant = ?1 AND user_id = ?2 AND hash = ?3 AND used_at IS NULL",
                )
                .map_err(internal)?
                .execute(params![tenant, user_id, hash.as_bytes(), now.as_millis()])
                .map_err(internal)?;
            Ok(n == 1)
        })
        .await
    }

    async fn count_recovery_codes(&self, tenant: &str, user_id: &str) -> Result<u32> {
        self.one(
            "SELECT COUNT(*) FROM recovery_codes \
             WHERE tenant = ?1 AND user_id = ?2 AND used_at IS NULL",
            [tenant, user_id],
            |r| r.get(0),
        )
        .await
    }

    async fn delete_factors(&self, tenant: &str, user_id: &str) -> Result<()> {
        let (tenant, user_id) = (tenant.to_owned(), user_id.to_owned());
        self.write(move |conn| delete_factors_in(conn, &tenant, &user_id))
            .await
    }

    async fn create_passkey(&self, p: &PasskeyRecord) -> Result<()> {
        let p = p.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO passkeys ({PASSKEY_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))
            .map_err(internal)?
            .execute(params![
                p.tenant,
                p.id,
                p.user_id,
                p.credential_id,
                p.name,
                p.credential,
                p.sign_count,
                p.backup_eligible,
                p.backup_state,
                p.created_at.as_millis(),
                p.last_used_at.map(|t| t.as_millis())
            ])
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn list_passkeys(&self, tenant: &str, user_id: &str) -> Result<Vec<PasskeyRecord>> {
        self.all_with(
            &format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE tenant = ?1 AND user_id = ?2 \
                 ORDER BY created_at, id"
            ),
            [tenant, user_id],
            passkey_from_row,
        )
        .await
    }

    async fn get_passkey(&self, tenant: &str, credential_id: &[u8]) -> Result<PasskeyRecord> {
        self.one(
            &format!(
                "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE tenant = ?1 AND credential_id = ?2"
            ),
            (tenant.to_owned(), credential_id.to_vec()),
            passkey_from_row,
        )
        .await
    }

    /// One conditional update on the writer thread; a read only after it changed nothing,
    /// to tell a refused counter from a passkey that is gone.
    async fn use_passkey(
        &self,
        tenant: &str,
        credential_id: &[u8],
        sign_count: u32,
        backup_state: bool,
        credential: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let (tenant, cred, credential) = (
            tenant.to_owned(),
            credential_id.to_vec(),
            credential.to_owned(),
        );
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE passkeys SET sign_count = ?3, backup_state = ?4, credential = ?5, \
                     last_used_at = ?6 WHERE tenant = ?1 AND credential_id = ?2 \
                     AND (sign_count < ?3 OR (?3 = 0 AND sign_count = 0))",
                )
                .map_err(internal)?
                .execute(params![
                    tenant,
                    cred,
                    sign_count,
                    backup_state,
                    credential,
                    now.as_millis()
                ])
                .map_err(internal)?;
            if n == 1 {
                return Ok(true);
            }
            get_one(
                conn,
                "SELECT 1 FROM passkeys WHERE tenant = ?1 AND credential_id = ?2",
                params![tenant, cred],
                |_| Ok(false),
            )
        })
        .await
    }

    async fn rename_passkey(
        &self,
        tenant: &str,
        user_id: &str,
        id: &str,
        name: &str,
    ) -> Result<()> {
        self.write_one(
            "UPDATE passkeys SET name = ?4 WHERE tenant = ?1 AND user_id = ?2 AND id = ?3",
            [tenant, user_id, id, name].map(str::to_owned).to_vec(),
        )
        .await
    }

    async fn delete_passkey(&self, tenant: &str, user_id: &str, id: &str) -> Result<()> {
        self.write_one(
            "DELETE FROM passkeys WHERE tenant = ?1 AND user_id = ?2 AND id = ?3",
            [tenant, user_id, id].map(str::to_owned).to_vec(),
        )
        .await
    }

    async fn put_ceremony(&self, c: &WebauthnCeremony) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT OR REPLACE INTO webauthn_ceremonies ({CEREMONY_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))
            .map_err(internal)?
            .execute(params![
                c.tenant,
                c.key_hash.as_bytes(),
                c.purpose,
                c.user_id,
                c.state,
                c.expires_at.as_millis()
            ])
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    /// A `DELETE … RETURNING` on the writer thread: one take at a time, so one finds it.
    async fn take_ceremony(
        &self,
        tenant: &str,
        key_hash: &SecretHash,
        now: Timestamp,
    ) -> Result<WebauthnCeremony> {
        let (tenant, key) = (tenant.to_owned(), *key_hash);
        let taken = self
            .write(move |conn| {
                get_one(
                    conn,
                    &format!(
                        "DELETE FROM webauthn_ceremonies WHERE tenant = ?1 AND key_hash = ?2 \
                         RETURNING {CEREMONY_COLUMNS}"
                    ),
                    params![tenant, key.as_bytes()],
                    ceremony_from_row,
                )
            })
            .await?;
        if taken.expires_at <= now {
            return Err(StoreError::NotFound);
        }
        Ok(taken)
    }

    async fn create_upstream(&self, u: &UpstreamRecord) -> Result<()> {
        let u = u.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO upstreams ({UPSTREAM_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    u.tenant,
                    u.id,
                    u.name,
                    u.issuer,
                    u.client_id,
                    u.client_secret,
                    u.auth_method,
                    u.scopes,
                    domains_column(&u.allowed_domains),
                    claims_column(&u.require_claims),
                    u.link_by_email,
                    u.max_age_secs,
                    u.force_login,
                    u.created_at.as_millis()
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_upstream(&self, tenant: &str, id: &str) -> Result<UpstreamRecord> {
        self.one(
            &format!("SELECT {UPSTREAM_COLUMNS} FROM upstreams WHERE tenant = ?1 AND id = ?2"),
            [tenant, id],
            upstream_from_row,
        )
        .await
    }

    async fn list_upstreams(&self, tenant: &str) -> Result<Vec<UpstreamRecord>> {
        self.all_for(
            &format!("SELECT {UPSTREAM_COLUMNS} FROM upstreams WHERE tenant = ?1 ORDER BY id"),
            tenant,
            upstream_from_row,
        )
        .await
    }

    async fn update_upstream(&self, u: &UpstreamRecord) -> Result<()> {
        let u = u.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE upstreams SET name = ?3, issuer = ?4, client_id = ?5, \
                     client_secret = ?6, auth_method = ?7, scopes = ?8, allowed_domains = ?9, \
                     require_claims = ?10, link_by_email = ?11, max_age_secs = ?12, \
                     force_login = ?13 WHERE tenant = ?1 AND id = ?2",
                    params![
                        u.tenant,
                        u.id,
                        u.name,
                        u.issuer,
                        u.client_id,
                        u.client_secret,
                        u.auth_method,
                        u.scopes,
                        domains_column(&u.allowed_domains),
                        claims_column(&u.require_claims),
                        u.link_by_email,
                        u.max_age_secs,
                        u.force_login
                    ],
                )
                .map_err(internal)?;
            match n {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn delete_upstream(&self, tenant: &str, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM upstreams WHERE tenant = ?1 AND id = ?2",
                    [&tenant, &id],
                )
                .map_err(internal)?;
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            for table in ["upstream_links", "upstream_states"] {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE tenant = ?1 AND upstream_id = ?2"),
                    [&tenant, &id],
                )
                .map_err(internal)?;
            }
            Ok(())
        })
        .await
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
                 WHERE tenant = ?1 AND upstream_id = ?2 AND subject = ?3"
            ),
            [tenant, upstream_id, subject],
            upstream_link_from_row,
        )
        .await
    }

    async fn create_upstream_link(&self, l: &UpstreamLink) -> Result<()> {
        let l = l.clone();
        self.write(move |conn| insert_upstream_link_in(conn, &l))
            .await
    }

    /// Both inserts in one job: a failing job is rolled back to its savepoint, whole.
    async fn create_linked_user(&self, u: &UserRecord, l: &UpstreamLink) -> Result<()> {
        let (u, l) = (u.clone(), l.clone());
        self.write(move |conn| {
            insert_user_in(conn, &u)?;
            insert_upstream_link_in(conn, &l)
        })
        .await
    }

    async fn put_upstream_state(&self, st: &UpstreamState) -> Result<()> {
        let st = st.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO upstream_states ({UPSTREAM_STATE_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))
            .map_err(internal)?
            .execute(params![
                st.hash.as_bytes(),
                st.tenant,
                st.upstream_id,
                st.flow_hash.as_bytes(),
                st.binding_hash.as_bytes(),
                st.nonce,
                st.pkce_verifier,
                st.return_to,
                st.created_at.as_millis(),
                st.expires_at.as_millis()
            ])
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    /// A `DELETE … RETURNING` on the writer thread: one take at a time, so one finds it.
    async fn take_upstream_state(
        &self,
        hash: &SecretHash,
        binding_hash: &SecretHash,
    ) -> Result<UpstreamState> {
        let (h, b) = (*hash, *binding_hash);
        self.write(move |conn| {
            get_one(
                conn,
                &format!(
                    "DELETE FROM upstream_states WHERE hash = ?1 AND binding_hash = ?2 \
                     RETURNING {UPSTREAM_STATE_COLUMNS}"
                ),
                [h.as_bytes(), b.as_bytes()],
                upstream_state_from_row,
            )
        })
        .await
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    c.id,
                    c.name,
                    c.secret_hash.as_ref().map(|h| h.as_bytes().to_vec()),
                    c.scopes.to_string(),
                    c.grant_types.join(" "),
                    c.device_code_ttl_secs,
                    c.poll_interval_secs,
                    c.created_at.as_millis(),
                    c.tenant,
                    domains_column(&c.device_policy.networks),
                    c.device_policy.refresh_tokens,
                    c.device_policy
                        .scope_ceiling
                        .as_ref()
                        .map(|s| s.to_string()),
                    c.device_policy.access_ttl_secs,
                    c.device_policy.proximity
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn update_client(&self, c: &ClientRecord) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE clients SET name = ?3, scopes = ?4, grant_types = ?5, \
                     device_code_ttl_secs = ?6, poll_interval_secs = ?7, device_networks = ?8, \
                     device_refresh_tokens = ?9, device_scopes = ?10, \
                     device_access_ttl_secs = ?11, proximity = ?12 \
                     WHERE tenant = ?1 AND id = ?2",
                )
                .map_err(internal)?
                .execute(params![
                    c.tenant,
                    c.id,
                    c.name,
                    c.scopes.to_string(),
                    c.grant_types.join(" "),
                    c.device_code_ttl_secs,
                    c.poll_interval_secs,
                    domains_column(&c.device_policy.networks),
                    c.device_policy.refresh_tokens,
                    c.device_policy
                        .scope_ceiling
                        .as_ref()
                        .map(|s| s.to_string()),
                    c.device_policy.access_ttl_secs,
                    c.device_policy.proximity
                ])
                .map_err(internal)?;
            match n {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn get_client(&self, tenant: &str, id: &str) -> Result<ClientRecord> {
        self.one(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = ?1 AND id = ?2"),
            [tenant, id],
            client_from_row,
        )
        .await
    }

    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>> {
        self.all_for(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = ?1 ORDER BY id"),
            tenant,
            client_from_row,
        )
        .await
    }

    async fn delete_client(&self, tenant: &str, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let (gone, inner) = ((tenant.clone(), id.clone()), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                let n = conn
                    .execute(
                        "DELETE FROM clients WHERE tenant = ?1 AND id = ?2",
                        [&tenant, &id],
                    )
                    .map_err(internal)?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                conn.execute(
                    "DELETE FROM device_grants WHERE tenant = ?1 AND client_id = ?2",
                    [&tenant, &id],
                )
                .map_err(internal)?;
                conn.execute(
                    "DELETE FROM refresh_tokens WHERE tenant = ?1 AND client_id = ?2",
                    [&tenant, &id],
                )
                .map_err(internal)?;
                Ok(())
            },
            move |()| inner.forget_owner(&gone.0, Some(&gone.1)),
        )
        .await
    }

    async fn create_user(&self, u: &UserRecord) -> Result<()> {
        let u = u.clone();
        self.write(move |conn| insert_user_in(conn, &u)).await
    }

    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [id],
            user_from_row,
        )
        .await
    }

    async fn get_user_by_username(&self, tenant: &str, username: &str) -> Result<UserRecord> {
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 AND username = ?2"),
            [tenant, username],
            user_from_row,
        )
        .await
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        self.all_for(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 ORDER BY username"),
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
        let sql = if disable {
            "UPDATE users SET disabled = 1 WHERE tenant = ?1 AND username = ?2 RETURNING id, tenant"
        } else {
            "UPDATE users SET disabled = disabled WHERE tenant = ?1 AND username = ?2 \
             RETURNING id, tenant"
        };
        self.change_user(
            UserChange::Revoked {
                issued_before,
                until,
            },
            sql,
            vec![tenant.to_owned(), username.to_owned()],
        )
        .await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let events = events.to_vec();
        self.write(move |conn| insert_audit_in(conn, &events)).await
    }

    async fn list_audit(&self, tenant: &str, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        self.all_with(
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM (SELECT id, {AUDIT_COLUMNS} FROM audit_events \
                 WHERE tenant = ?1 AND at >= ?2 AND (?3 IS NULL OR actor = ?3) \
                 AND (?4 IS NULL OR client_id = ?4) AND (?5 IS NULL OR event = ?5) \
                 ORDER BY at DESC, id DESC LIMIT ?6) ORDER BY at, id"
            ),
            (
                tenant,
                q.since.map_or(i64::MIN, |t| t.as_millis()),
                q.actor.as_deref(),
                q.client_id.as_deref(),
                q.event.as_deref(),
                q.limit,
            ),
            audit_from_row,
        )
        .await
    }

    async fn sweep_audit(&self, before: Timestamp) -> Result<u64> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM audit_events WHERE at < ?1",
                [before.as_millis()],
            )
            .map(|n| n as u64)
            .map_err(internal)
        })
        .await
    }

    async fn enable_user(&self, tenant: &str, username: &str) -> Result<()> {
        self.write_one(
            "UPDATE users SET disabled = 0 WHERE tenant = ?1 AND username = ?2",
            vec![tenant.to_owned(), username.to_owned()],
        )
        .await
    }

    async fn delete_user(&self, tenant: &str, username: &str) -> Result<()> {
        self.change_user(
            UserChange::Deleted,
            "DELETE FROM users WHERE tenant = ?1 AND username = ?2 RETURNING id, tenant",
            vec![tenant.to_owned(), username.to_owned()],
        )
        .await
    }

    async fn set_password(&self, tenant: &str, username: &str, password_hash: &str) -> Result<()> {
        self.change_user(
            UserChange::Password,
            "UPDATE users SET password_hash = ?1 WHERE tenant = ?2 AND username = ?3 \
             RETURNING id, tenant",
            vec![
                password_hash.to_owned(),
                tenant.to_owned(),
                username.to_owned(),
            ],
        )
        .await
    }

    async fn create_grant(&self, g: &DeviceGrant, audit: &[AuditEvent]) -> Result<()> {
        let (g, inner, held) = (g.clone(), self.inner.pending.clone(), g.clone());
        let audit = audit.to_vec();
        self.write_then(
            move |conn| {
                let row = insert_grant_in(conn, &g)?;
                insert_audit_in(conn, &audit)?;
                Ok(row)
            },
            move |row| inner.written(&held, held.version, Some(*row)),
        )
        .await
        .map(|_row| ())
    }

    async fn get_grant(&self, id: &str) -> Result<DeviceGrant> {
        self.grant(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE id = ?1"),
            [id],
        )
        .await
    }

    async fn get_grant_by_device_code(&self, hash: &SecretHash) -> Result<DeviceGrant> {
        self.grant(
            // Only codes without a selector are found by hash (see migration 0003).
            &format!(
                "SELECT {GRANT_COLUMNS} FROM device_grants \
                 WHERE device_code_hash = ?1 AND length(id) <> {ORDERED_ID_LEN}"
            ),
            [hash.as_bytes()],
        )
        .await
    }

    async fn get_grant_by_user_code(&self, code: &UserCode) -> Result<DeviceGrant> {
        self.grant(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE user_code = ?1"),
            [code.canonical()],
        )
        .await
    }

    fn poll_held(&self, by: PollBy<'_>, now: Timestamp) -> Option<HeldPoll> {
        self.inner.pending.poll(by, now)
    }

    /// Held in memory (see `pending.rs`): compare-and-swap against the held polls; no write
    /// of its own, no announcement.
    async fn record_poll(&self, g: &DeviceGrant) -> Result<()> {
        if self.inner.pending.record(g)? {
            return Ok(());
        }
        // Not held (every pending grant is, unless it was just decided or another process
        // wrote it): the caller's version must still be the stored one, checked and adopted on
        // the writer thread, where no decision's index update can fall in between.
        let (g, pending) = (g.clone(), self.inner.pending.clone());
        self.write(move |conn| {
            let (stored, row): (i64, i64) = get_one(
                conn,
                "SELECT version, rowid FROM device_grants WHERE id = ?1",
                [&g.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if stored != g.version {
                return Err(StoreError::Conflict);
            }
            pending.adopt(&g, stored, row)
        })
        .await
    }

    async fn update_grant(&self, g: &DeviceGrant) -> Result<()> {
        let (grant, inner) = (g.clone(), self.inner.pending.clone());
        let (held, after) = (g.clone(), self.inner.pending.clone());
        self.write_then(
            move |conn| update_grant_in(conn, &inner, &grant),
            move |stored| after.written(&held, *stored, None),
        )
        .await?;
        self.announce(&g.id);
        Ok(())
    }

    async fn redeem_grant(
        &self,
        g: &DeviceGrant,
        refresh: Option<&RefreshToken>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        let (grant, refresh, inner) = (g.clone(), refresh.cloned(), self.inner.pending.clone());
        let (held, after) = (g.clone(), self.inner.pending.clone());
        let audit = audit.to_vec();
        self.write_then(
            move |conn| {
                let stored = update_grant_in(conn, &inner, &grant)?;
                if let Some(t) = &refresh {
                    insert_refresh_in(conn, t)?;
                }
                insert_audit_in(conn, &audit)?;
                Ok(stored)
            },
            move |stored| after.written(&held, *stored, None),
        )
        .await?;
        self.announce(&g.id);
        Ok(())
    }

    async fn create_flow(&self, f: &Flow) -> Result<()> {
        let f = f.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO flows ({FLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))
            .map_err(internal)?
            .execute(params![
                f.id,
                f.secret_hash.as_bytes(),
                f.status.as_str(),
                f.grant_id,
                f.user_id,
                f.signed_on_at.map(Timestamp::as_millis),
                f.failed_attempts,
                flow_result_column(f.result),
                f.created_at.as_millis(),
                f.expires_at.as_millis(),
                f.version,
                f.tenant,
                f.idp,
                f.amr,
                f.from_link
            ])
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_flow(&self, hash: &SecretHash) -> Result<Flow> {
        self.one(
            &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE secret_hash = ?1"),
            [hash.as_bytes()],
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
        let audit = audit.to_vec();
        let grant_id = grant.map(|g| g.id.clone());
        let (f, grant, inner) = (f.clone(), grant.cloned(), self.inner.pending.clone());
        let (held, after) = (grant.clone(), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                let n = conn
                .prepare_cached(
                    "UPDATE flows SET status = ?1, grant_id = ?2, user_id = ?3, signed_on_at = ?4, \
                     failed_attempts = ?5, result = ?6, secret_hash = ?9, idp = ?10, amr = ?11, \
                     from_link = ?12, version = version + 1 \
                     WHERE id = ?7 AND version = ?8",
                )
                .map_err(internal)?
                .execute(params![
                    f.status.as_str(),
                    f.grant_id,
                    f.user_id,
                    f.signed_on_at.map(Timestamp::as_millis),
                    f.failed_attempts,
                    flow_result_column(f.result),
                    f.id,
                    f.version,
                    f.secret_hash.as_bytes(),
                    f.idp,
                    f.amr,
                    f.from_link
                ])
                .map_err(internal)?;
                if n != 1 {
                    return Err(missing_or_conflict(conn, "flows", "id", &f.id));
                }
                let stored = match &grant {
                    Some(g) => update_grant_in(conn, &inner, g).map(Some),
                    None => Ok(None),
                }?;
                insert_audit_in(conn, &audit)?;
                Ok(stored)
            },
            move |stored| {
                if let (Some(g), Some(stored)) = (&held, stored) {
                    after.written(g, *stored, None);
                }
            },
        )
        .await?;
        if let Some(id) = grant_id {
            self.announce(&id);
        }
        Ok(())
    }

    async fn get_refresh_token(&self, hash: &SecretHash) -> Result<RefreshToken> {
        self.one(
            &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE hash = ?1"),
            [hash.as_bytes()],
            refresh_from_row,
        )
        .await
    }

    async fn rotate_refresh_token(&self, old: &SecretHash, new: &RefreshToken) -> Result<()> {
        let (old, new) = (*old, new.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE refresh_tokens SET used = 1 WHERE hash = ?1 AND used = 0",
                    [old.as_bytes()],
                )
                .map_err(internal)?;
            if n != 1 {
                return Err(missing_or_conflict(
                    conn,
                    "refresh_tokens",
                    "hash",
                    old.as_bytes(),
                ));
            }
            insert_refresh_in(conn, &new)?;
            Ok(())
        })
        .await
    }

    /// One writer transaction (the writer's group commit): tokens gone and the family
    /// recorded revoked together.
    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        family_id: &str,
        until: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<u64> {
        let (tenant, family_id, audit) = (tenant.to_owned(), family_id.to_owned(), audit.to_vec());
        self.write(move |conn| {
            insert_audit_in(conn, &audit)?;
            let n = conn
                .prepare_cached("DELETE FROM refresh_tokens WHERE tenant = ?1 AND family_id = ?2")
                .map_err(internal)?
                .execute([&tenant, &family_id])
                .map_err(internal)?;
            revoke_id_in(conn, &tenant, &format!("sid:{family_id}"), until, None)?;
            Ok(n as u64)
        })
        .await
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
                "SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE tenant = ?1 \
                 AND (?2 IS NULL OR subject = ?2) AND (?3 IS NULL OR client_id = ?3) \
                 AND used = 0 AND expires_at > ?4 ORDER BY family_started_at DESC, family_id"
            ),
            (tenant, subject, client_id, now.as_millis()),
            refresh_from_row,
        )
        .await
    }

    async fn revoke_id(&self, tenant: &str, id: &str, until: Timestamp) -> Result<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |conn| revoke_id_in(conn, &tenant, &id, until, None))
            .await
    }

    async fn any_revoked(
        &self,
        tenant: &str,
        ids: &[String],
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let (tenant, ids) = (tenant.to_owned(), ids.to_vec());
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT 1 FROM revocations WHERE tenant = ?1 AND id = ?2 AND until > ?3 \
                     AND (issued_before IS NULL OR ?4 < issued_before)",
                )
                .map_err(internal)?;
            for id in &ids {
                if stmt
                    .exists(params![tenant, id, now.as_millis(), issued_at.as_millis()])
                    .map_err(internal)?
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    async fn count_pending_grants(&self, now: Timestamp) -> Result<PendingCodes> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT length(user_code), COUNT(*), MAX(expires_at - created_at) \
                     FROM device_grants WHERE status = 'pending' AND expires_at > ?1 GROUP BY 1",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map([now.as_millis()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(internal)?;
            let mut counts = PendingCodes::default();
            for row in rows {
                let (len, n, longest) = row.map_err(internal)?;
                counts.add(len as usize, n as u64);
                counts.longest_lifetime_ms = counts.longest_lifetime_ms.max(longest);
            }
            Ok(counts)
        })
        .await
    }

    async fn take_limits(&self, takes: &[LimitTake], now: Timestamp) -> Result<Admission> {
        Ok(self.inner.limits.take(takes, now))
    }

    async fn give_back_limits(&self, takes: &[LimitTake]) -> Result<()> {
        self.inner.limits.give_back(takes);
        Ok(())
    }

    async fn create_session(&self, s: &BrowserSession) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO browser_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))
            .map_err(internal)?
            .execute(params![
                s.id_hash.as_bytes(),
                s.user_id,
                s.signed_on_at.map(Timestamp::as_millis),
                s.flow_hash.map(|h| h.as_bytes().to_vec()),
                s.created_at.as_millis(),
                s.expires_at.as_millis(),
                s.tenant,
                s.idp,
                s.amr
            ])
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, id_hash: &SecretHash) -> Result<BrowserSession> {
        self.one(
            &format!("SELECT {SESSION_COLUMNS} FROM browser_sessions WHERE id_hash = ?1"),
            [id_hash.as_bytes()],
            session_from_row,
        )
        .await
    }

    async fn update_session(&self, s: &BrowserSession) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE browser_sessions SET user_id = ?1, signed_on_at = ?2, flow_hash = ?3, \
                     expires_at = ?4, idp = ?6, amr = ?7 WHERE id_hash = ?5",
                )
                .map_err(internal)?
                .execute(params![
                    s.user_id,
                    s.signed_on_at.map(Timestamp::as_millis),
                    s.flow_hash.map(|h| h.as_bytes().to_vec()),
                    s.expires_at.as_millis(),
                    s.id_hash.as_bytes(),
                    s.idp,
                    s.amr
                ])
                .map_err(internal)?;
            if n == 1 {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            }
        })
        .await
    }

    async fn end_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        keep: Option<&SecretHash>,
    ) -> Result<u64> {
        let (tenant, user_id) = (tenant.to_owned(), user_id.to_owned());
        let keep = keep.map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM browser_sessions WHERE tenant = ?1 AND user_id = ?2 AND id_hash != ?3",
            )
            .map_err(internal)?
            .execute(params![tenant, user_id, keep])
            .map(|n| n as u64)
            .map_err(internal)
        })
        .await
    }

    async fn delete_session(&self, id_hash: &SecretHash) -> Result<()> {
        let h = *id_hash;
        self.write(move |conn| {
            match conn
                .execute(
                    "DELETE FROM browser_sessions WHERE id_hash = ?1",
                    [h.as_bytes()],
                )
                .map_err(internal)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        let tenant = tenant.to_owned();
        self.read(move |conn| keys_in(conn, &tenant)).await
    }

    async fn insert_key(&self, k: &KeyRecord) -> Result<()> {
        let k = k.clone();
        self.write(move |conn| insert_key_in(conn, &k)).await
    }

    async fn sweep(&self, now: Timestamp, grace_before: Timestamp) -> Result<SweepCounts> {
        self.inner.limits.sweep(now);
        let inner = self.inner.pending.clone();
        self.write_then(
            move |conn| {
                let grants = conn
                    .execute(
                        "DELETE FROM device_grants WHERE expires_at < ?1",
                        [grace_before.as_millis()],
                    )
                    .map_err(internal)?;
                let flows = conn
                    .execute(
                        "DELETE FROM flows WHERE expires_at < ?1",
                        [grace_before.as_millis()],
                    )
                    .map_err(internal)?;
                let refresh_tokens = conn
                    .execute(
                        "DELETE FROM refresh_tokens WHERE expires_at < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                let sessions = conn
                    .execute(
                        "DELETE FROM browser_sessions WHERE expires_at < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                let upstream_states = conn
                    .execute(
                        "DELETE FROM upstream_states WHERE expires_at < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                let ceremonies = conn
                    .execute(
                        "DELETE FROM webauthn_ceremonies WHERE expires_at < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                let revocations = conn
                    .execute(
                        "DELETE FROM revocations WHERE until < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                Ok(SweepCounts {
                    revocations: revocations as u64,
                    webauthn_ceremonies: ceremonies as u64,
                    grants: grants as u64,
                    flows: flows as u64,
                    refresh_tokens: refresh_tokens as u64,
                    sessions: sessions as u64,
                    upstream_states: upstream_states as u64,
                })
            },
            move |_| inner.forget_expired(grace_before),
        )
        .await
    }
}
