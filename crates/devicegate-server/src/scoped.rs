//! The store as handlers see it: through one tenant.
//!
//! [`Shared`] holds the raw [`Store`] in a private field, so nothing outside this module can
//! reach it. It offers what belongs to no tenant (reachability, the shared limits, tenant
//! records, upkeep) and hands out a [`TenantStore`] per tenant. The tenant middleware puts the
//! request's tenant, and with it its `TenantStore`, in the request; every record a handler
//! loads comes through it.
//!
//! A `TenantStore` treats another tenant's record as absent: a lookup by a key that is unique
//! across tenants (a grant id, a code, a flow's capability, a session, a refresh token, a
//! user's subject) answers `NotFound` when the record found belongs to another tenant, exactly
//! as if there were none. Writes refuse a record of another tenant (`Internal`: no handler
//! should try), so a record can only change through the tenant it was read from.
//!
//! **Invariant:** handlers never name a tenant when they read or write; the handle does.

use std::sync::Arc;
use std::time::Duration;

use devicegate_core::flow::Flow;
use devicegate_core::grant::DeviceGrant;
use devicegate_core::secret::{Secret, SecretKind};
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_store::{
    Admission, AuditEvent, BrowserSession, ClientRecord, GrantChanged, HeldPoll, KeyRecord,
    LimitTake, PasskeyRecord, PendingCodes, PollBy, RefreshToken, Result, Store, StoreError,
    SweepCounts, TenantRecord, TotpFactor, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord,
    WebauthnCeremony,
};

/// What a new session holds: the person and when they signed on, the flow it walks.
#[derive(Debug, Default)]
pub struct Held {
    pub user_id: Option<String>,
    pub signed_on_at: Option<Timestamp>,
    /// The upstream provider the person signed on through, if any.
    pub idp: Option<String>,
    /// How the person signed on (RFC 8176 values).
    pub amr: Option<String>,
    pub flow_hash: Option<SecretHash>,
}

/// A disabled person reads as absent.
fn enabled(user: Result<UserRecord>) -> Result<UserRecord> {
    match user {
        Ok(u) if u.disabled => Err(StoreError::NotFound),
        other => other,
    }
}

/// The store, for what belongs to no tenant; [`Shared::tenant`] for the rest.
#[derive(Debug, Clone)]
pub struct Shared(Arc<dyn Store>);

impl Shared {
    pub fn new(store: Arc<dyn Store>) -> Shared {
        Shared(store)
    }

    /// The handle through which everything of `tenant` is read and written.
    pub fn tenant(&self, tenant: &str) -> TenantStore {
        TenantStore {
            store: self.0.clone(),
            tenant: tenant.to_owned(),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        self.0.ping().await
    }

    pub async fn get_tenant(&self, id: &str) -> Result<TenantRecord> {
        self.0.get_tenant(id).await
    }

    pub async fn get_tenant_by_uuid(&self, uuid: &str) -> Result<TenantRecord> {
        self.0.get_tenant_by_uuid(uuid).await
    }

    /// Every tenant's pending codes: the guessing budget is one for the whole server.
    pub async fn count_pending_grants(&self, now: Timestamp) -> Result<PendingCodes> {
        self.0.count_pending_grants(now).await
    }

    pub async fn take_limits(&self, takes: &[LimitTake], now: Timestamp) -> Result<Admission> {
        self.0.take_limits(takes, now).await
    }

    pub async fn give_back_limits(&self, takes: &[LimitTake]) -> Result<()> {
        self.0.give_back_limits(takes).await
    }

    pub async fn sweep(&self, now: Timestamp, grace_before: Timestamp) -> Result<SweepCounts> {
        self.0.sweep(now, grace_before).await
    }

    /// Deletes audit events older than `before`.
    pub async fn sweep_audit(&self, before: Timestamp) -> Result<u64> {
        self.0.sweep_audit(before).await
    }
}

/// The store seen through one tenant (module docs).
#[derive(Debug, Clone)]
pub struct TenantStore {
    store: Arc<dyn Store>,
    tenant: String,
}

/// A record that belongs to a tenant.
trait Owned {
    fn tenant(&self) -> &str;
}

macro_rules! owned {
    ($($t:ty),*) => {$(
        impl Owned for $t {
            fn tenant(&self) -> &str {
                &self.tenant
            }
        }
    )*};
}
owned!(
    UserRecord,
    DeviceGrant,
    Flow,
    RefreshToken,
    BrowserSession,
    UpstreamState
);

impl TenantStore {
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    /// Another tenant's record is no record here.
    fn here<T: Owned>(&self, found: Result<T>) -> Result<T> {
        match found {
            Ok(r) if r.tenant() == self.tenant => Ok(r),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) => Err(e),
        }
    }

    /// Refuses to write a record of another tenant.
    fn own(&self, tenant: &str) -> Result<()> {
        if tenant == self.tenant {
            Ok(())
        } else {
            Err(StoreError::Internal(format!(
                "a record of tenant {tenant} written through tenant {}",
                self.tenant
            )))
        }
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GrantChanged> {
        self.store.subscribe()
    }

    pub async fn get_client(&self, id: &str) -> Result<ClientRecord> {
        self.store.get_client(&self.tenant, id).await
    }

    pub async fn create_client(&self, client: &ClientRecord) -> Result<()> {
        self.own(&client.tenant)?;
        self.store.create_client(client).await
    }

    /// The person, unless an operator disabled them: a disabled person is absent on every
    /// surface (no sign-in, no session, no refresh, no redemption, no introspection), as
    /// another tenant's is.
    pub async fn get_user(&self, id: &str) -> Result<UserRecord> {
        enabled(self.here(self.store.get_user(id).await))
    }

    pub async fn get_user_by_username(&self, username: &str) -> Result<UserRecord> {
        enabled(
            self.store
                .get_user_by_username(&self.tenant, username)
                .await,
        )
    }

    /// Stores a new grant with its audit events, in one transaction.
    pub async fn create_grant(&self, grant: &DeviceGrant, audit: &[AuditEvent]) -> Result<()> {
        self.own(&grant.tenant)?;
        self.own_events(audit)?;
        self.store.create_grant(grant, audit).await
    }

    pub async fn get_grant(&self, id: &str) -> Result<DeviceGrant> {
        self.here(self.store.get_grant(id).await)
    }

    pub async fn get_grant_by_device_code(&self, hash: &SecretHash) -> Result<DeviceGrant> {
        self.here(self.store.get_grant_by_device_code(hash).await)
    }

    pub async fn get_grant_by_user_code(&self, code: &UserCode) -> Result<DeviceGrant> {
        self.here(self.store.get_grant_by_user_code(code).await)
    }

    pub fn poll_held(
        &self,
        hash: &SecretHash,
        client_id: &str,
        now: Timestamp,
    ) -> Option<HeldPoll> {
        self.store
            .poll_held(PollBy::new(hash, &self.tenant, client_id), now)
    }

    pub async fn record_poll(&self, grant: &DeviceGrant) -> Result<()> {
        self.own(&grant.tenant)?;
        self.store.record_poll(grant).await
    }

    pub async fn redeem_grant(
        &self,
        grant: &DeviceGrant,
        refresh: Option<&RefreshToken>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        self.own(&grant.tenant)?;
        if let Some(r) = refresh {
            self.own(&r.tenant)?;
        }
        self.own_events(audit)?;
        self.store.redeem_grant(grant, refresh, audit).await
    }

    pub async fn create_flow(&self, flow: &Flow) -> Result<()> {
        self.own(&flow.tenant)?;
        self.store.create_flow(flow).await
    }

    pub async fn get_flow(&self, hash: &SecretHash) -> Result<Flow> {
        self.here(self.store.get_flow(hash).await)
    }

    pub async fn update_flow(
        &self,
        flow: &Flow,
        grant: Option<&DeviceGrant>,
        audit: &[AuditEvent],
    ) -> Result<()> {
        self.own(&flow.tenant)?;
        if let Some(g) = grant {
            self.own(&g.tenant)?;
        }
        self.own_events(audit)?;
        self.store.update_flow(flow, grant, audit).await
    }

    pub async fn get_refresh_token(&self, hash: &SecretHash) -> Result<RefreshToken> {
        self.here(self.store.get_refresh_token(hash).await)
    }

    pub async fn rotate_refresh_token(&self, old: &RefreshToken, new: &RefreshToken) -> Result<()> {
        self.own(&old.tenant)?;
        self.own(&new.tenant)?;
        self.store.rotate_refresh_token(&old.hash, new).await
    }

    /// Deletes every refresh token of family `family_id` here and records the family
    /// revoked until `until` (its access tokens are refused till then); returns how many
    /// tokens went.
    pub async fn revoke_refresh_family(
        &self,
        family_id: &str,
        until: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<u64> {
        self.own_events(audit)?;
        self.store
            .revoke_refresh_family(&self.tenant, family_id, until, audit)
            .await
    }

    /// Audit events written with this tenant's change are this tenant's.
    fn own_events(&self, audit: &[AuditEvent]) -> Result<()> {
        for e in audit {
            self.own(&e.tenant)?;
        }
        Ok(())
    }

    /// The person's live refresh families (their devices), newest first.
    pub async fn list_families(&self, subject: &str, now: Timestamp) -> Result<Vec<RefreshToken>> {
        self.store
            .list_families(&self.tenant, Some(subject), None, now)
            .await
    }

    /// Records one access token (`jti:…`) or family (`sid:…`) revoked until `until`.
    pub async fn revoke_id(&self, id: &str, until: Timestamp) -> Result<()> {
        self.store.revoke_id(&self.tenant, id, until).await
    }

    /// Whether an access token issued at `issued_at` with this `jti`, `sid` and `sub` has
    /// been revoked (the token, its device's family, or everything of its person issued
    /// before an operator's `user revoke`).
    pub async fn access_token_revoked(
        &self,
        jti: Option<&str>,
        sid: Option<&str>,
        sub: &str,
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool> {
        let mut ids = vec![format!("sub:{sub}")];
        if let Some(j) = jti {
            ids.push(format!("jti:{j}"));
        }
        if let Some(s) = sid {
            ids.push(format!("sid:{s}"));
        }
        self.store
            .any_revoked(&self.tenant, &ids, issued_at, now)
            .await
    }

    pub async fn create_session(&self, session: &BrowserSession) -> Result<()> {
        self.own(&session.tenant)?;
        self.store.create_session(session).await
    }

    /// Stores a new session of `kind` (a page's, a kept API session, a known-browser mark)
    /// holding `held`, for `lifetime` from `now`; returns its secret, the only copy, and the
    /// record.
    pub async fn start_session(
        &self,
        kind: SecretKind,
        held: Held,
        lifetime: Duration,
        now: Timestamp,
    ) -> Result<(Secret, BrowserSession)> {
        let secret = Secret::generate(kind);
        let record = BrowserSession {
            idp: held.idp,
            amr: held.amr,
            id_hash: secret.hash(),
            tenant: self.tenant.clone(),
            user_id: held.user_id,
            signed_on_at: held.signed_on_at,
            flow_hash: held.flow_hash,
            created_at: now,
            expires_at: now.plus(lifetime),
        };
        self.store.create_session(&record).await?;
        Ok((secret, record))
    }

    pub async fn get_session(&self, id_hash: &SecretHash) -> Result<BrowserSession> {
        self.here(self.store.get_session(id_hash).await)
    }

    pub async fn update_session(&self, session: &BrowserSession) -> Result<()> {
        self.own(&session.tenant)?;
        self.store.update_session(session).await
    }

    /// Ends the person's session records here, except `keep`.
    pub async fn end_sessions(&self, user_id: &str, keep: Option<&SecretHash>) -> Result<u64> {
        self.store.end_sessions(&self.tenant, user_id, keep).await
    }

    pub async fn delete_session(&self, session: &BrowserSession) -> Result<()> {
        self.own(&session.tenant)?;
        self.store.delete_session(&session.id_hash).await
    }

    pub async fn get_upstream(&self, id: &str) -> Result<UpstreamRecord> {
        self.store.get_upstream(&self.tenant, id).await
    }

    pub async fn list_upstreams(&self) -> Result<Vec<UpstreamRecord>> {
        self.store.list_upstreams(&self.tenant).await
    }

    pub async fn get_upstream_link(
        &self,
        upstream_id: &str,
        subject: &str,
    ) -> Result<UpstreamLink> {
        self.store
            .get_upstream_link(&self.tenant, upstream_id, subject)
            .await
    }

    pub async fn create_upstream_link(&self, link: &UpstreamLink) -> Result<()> {
        self.own(&link.tenant)?;
        self.store.create_upstream_link(link).await
    }

    pub async fn create_linked_user(&self, user: &UserRecord, link: &UpstreamLink) -> Result<()> {
        self.own(&user.tenant)?;
        self.own(&link.tenant)?;
        self.store.create_linked_user(user, link).await
    }

    /// The local account with this email (compared without case), if exactly one has it.
    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserRecord>> {
        let mut found = self
            .store
            .list_users(&self.tenant)
            .await?
            .into_iter()
            .filter(|u| {
                u.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            });
        Ok(match (found.next(), found.next()) {
            (Some(u), None) => Some(u),
            _ => None,
        })
    }

    pub async fn put_upstream_state(&self, state: &UpstreamState) -> Result<()> {
        self.own(&state.tenant)?;
        self.store.put_upstream_state(state).await
    }

    /// Takes the round trip (once); another tenant's is absent here, and stays taken.
    pub async fn take_upstream_state(
        &self,
        hash: &SecretHash,
        binding_hash: &SecretHash,
    ) -> Result<UpstreamState> {
        self.here(self.store.take_upstream_state(hash, binding_hash).await)
    }

    pub async fn get_totp(&self, user_id: &str) -> Result<TotpFactor> {
        self.store.get_totp(&self.tenant, user_id).await
    }

    pub async fn put_totp(&self, totp: &TotpFactor) -> Result<()> {
        self.own(&totp.tenant)?;
        self.store.put_totp(totp).await
    }

    pub async fn use_totp_step(&self, user_id: &str, step: i64, confirming: bool) -> Result<bool> {
        self.store
            .use_totp_step(&self.tenant, user_id, step, confirming)
            .await
    }

    pub async fn put_recovery_codes(
        &self,
        user_id: &str,
        hashes: &[SecretHash],
        now: Timestamp,
    ) -> Result<()> {
        self.store
            .put_recovery_codes(&self.tenant, user_id, hashes, now)
            .await
    }

    pub async fn use_recovery_code(
        &self,
        user_id: &str,
        hash: &SecretHash,
        now: Timestamp,
    ) -> Result<bool> {
        self.store
            .use_recovery_code(&self.tenant, user_id, hash, now)
            .await
    }

    pub async fn list_passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>> {
        self.store.list_passkeys(&self.tenant, user_id).await
    }

    pub async fn create_passkey(&self, passkey: &PasskeyRecord) -> Result<()> {
        self.own(&passkey.tenant)?;
        self.store.create_passkey(passkey).await
    }

    pub async fn get_passkey(&self, credential_id: &[u8]) -> Result<PasskeyRecord> {
        self.store.get_passkey(&self.tenant, credential_id).await
    }

    pub async fn use_passkey(
        &self,
        credential_id: &[u8],
        sign_count: u32,
        backup_state: bool,
        credential: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.store
            .use_passkey(
                &self.tenant,
                credential_id,
                sign_count,
                backup_state,
                credential,
                now,
            )
            .await
    }

    pub async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> Result<()> {
        self.store
            .rename_passkey(&self.tenant, user_id, id, name)
            .await
    }

    pub async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<()> {
        self.store.delete_passkey(&self.tenant, user_id, id).await
    }

    pub async fn delete_factors(&self, user_id: &str) -> Result<()> {
        self.store.delete_factors(&self.tenant, user_id).await
    }

    pub async fn count_recovery_codes(&self, user_id: &str) -> Result<u32> {
        self.store.count_recovery_codes(&self.tenant, user_id).await
    }

    pub async fn put_ceremony(&self, ceremony: &WebauthnCeremony) -> Result<()> {
        self.own(&ceremony.tenant)?;
        self.store.put_ceremony(ceremony).await
    }

    pub async fn take_ceremony(
        &self,
        key_hash: &SecretHash,
        now: Timestamp,
    ) -> Result<WebauthnCeremony> {
        self.store.take_ceremony(&self.tenant, key_hash, now).await
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        self.store.list_keys(&self.tenant).await
    }

    pub async fn ensure_key(&self, candidate: &KeyRecord) -> Result<Vec<KeyRecord>> {
        self.own(&candidate.tenant)?;
        self.store.ensure_key(candidate).await
    }
}
