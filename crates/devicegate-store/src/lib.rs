//! Storage for devicegate: one [`Store`] trait, its records and errors, a conformance suite
//! every backend runs (built for tests and with the `conformance` feature, never into a
//! release binary), and the SQLite and PostgreSQL backends.
//!
//! Every state change that races is a compare-and-swap on the record's `version`: a backend
//! applies an update only if the stored version is the one the caller read, and answers
//! [`StoreError::Conflict`] otherwise. That is what makes a device code redeemable once, however
//! many polls arrive at once. Secrets arrive here only as [`SecretHash`]es.
//!
//! This crate knows nothing about HTTP.

mod columns;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod limits;
mod pending;
pub mod postgres;
mod records;
pub mod sqlite;

use async_trait::async_trait;
use devicegate_core::flow::Flow;
use devicegate_core::grant::{DeviceGrant, Paced};
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};

pub use limits::{Admission, LimitTake};
pub use postgres::PostgresStore;
pub use records::{
    AuditEvent, AuditQuery, BrowserSession, ClientRecord, DEFAULT_TENANT, DevicePolicy, KeyRecord,
    PasskeyRecord, RefreshToken, SweepCounts, TenantRecord, TotpFactor, UpstreamLink,
    UpstreamRecord, UpstreamState, UserRecord, WebauthnCeremony,
};
pub use sqlite::SqliteStore;

/// Pending user codes counted by length: `by_length[i]` holds codes of `LENGTH + i`
/// characters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingCodes {
    pub by_length:
        [u64; devicegate_core::user_code::MAX_LENGTH - devicegate_core::user_code::LENGTH + 1],
    /// The longest lifetime any of them was given, in milliseconds: the guessing budget's
    /// window must cover it.
    pub longest_lifetime_ms: i64,
}

impl PendingCodes {
    /// Every pending code.
    pub fn total(&self) -> u64 {
        self.by_length.iter().sum()
    }

    /// Codes of `len` characters (none for lengths no code has).
    pub fn of_length(&self, len: usize) -> u64 {
        len.checked_sub(devicegate_core::user_code::LENGTH)
            .and_then(|i| self.by_length.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Adds a count read as `(length, count)` rows.
    pub fn add(&mut self, len: usize, n: u64) {
        if let Some(slot) = len
            .checked_sub(devicegate_core::user_code::LENGTH)
            .and_then(|i| self.by_length.get_mut(i))
        {
            *slot += n;
        }
    }
}

/// Sentinel errors every backend returns for the same situations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// The record changed since it was read; re-read and decide again.
    #[error("the record changed concurrently")]
    Conflict,
    /// The database cannot be reached or is busy beyond its timeout.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage failure: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Tables whose rows belong to a tenant (deleted with it).
pub const TENANT_TABLES: [&str; 16] = [
    "clients",
    "users",
    "device_grants",
    "flows",
    "refresh_tokens",
    "signing_keys",
    "browser_sessions",
    "upstreams",
    "upstream_links",
    "upstream_states",
    "totp_factors",
    "recovery_codes",
    "passkeys",
    "webauthn_ceremonies",
    "revocations",
    "audit_events",
];

/// A grant changed state (bound, approved, denied, polled, redeemed). Announced to every
/// subscriber of every instance sharing the store, so that whatever waits on a grant's
/// outcome learns of it at once instead of polling the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantChanged {
    pub grant_id: String,
}

/// Who polls which grant: the device code's hash, and the tenant and client presenting it.
#[derive(Debug, Clone, Copy)]
pub struct PollBy<'a> {
    pub hash: &'a SecretHash,
    pub tenant: &'a str,
    pub client_id: &'a str,
}

impl<'a> PollBy<'a> {
    pub fn new(hash: &'a SecretHash, tenant: &'a str, client_id: &'a str) -> Self {
        PollBy {
            hash,
            tenant,
            client_id,
        }
    }
}

/// A poll answered from the poll state a backend holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldPoll {
    /// The grant is pending: `authorization_pending` or `slow_down`, recorded.
    Paced(Paced),
    /// The grant expired while pending.
    Expired,
}

/// Everything devicegate persists. Methods are typed per record; updates to grants, flows and
/// refresh tokens are compare-and-swap on what the caller read.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Succeeds when the store can be reached (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    /// Announcements of grant changes, from this instance and, where the backend shares
    /// them, from every other.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GrantChanged>;

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<()>;
    async fn get_tenant(&self, id: &str) -> Result<TenantRecord>;
    async fn get_tenant_by_uuid(&self, uuid: &str) -> Result<TenantRecord>;
    async fn list_tenants(&self) -> Result<Vec<TenantRecord>>;
    /// Deletes the tenant and everything it holds.
    async fn delete_tenant(&self, id: &str) -> Result<()>;
    /// Switches the tenant's local passwords on or off.
    async fn set_local_passwords(&self, tenant: &str, on: bool) -> Result<()>;

    /// Sets the tenant's second-factor policy (`off`, `optional`, `required`).
    async fn set_second_factor(&self, tenant: &str, policy: &str) -> Result<()>;

    /// Stores an enrolment under way, replacing an unconfirmed one; `AlreadyExists` when the
    /// person has a confirmed authenticator (remove it first).
    async fn put_totp(&self, totp: &TotpFactor) -> Result<()>;
    async fn get_totp(&self, tenant: &str, user_id: &str) -> Result<TotpFactor>;
    /// Accepts a code for time step `step`: records it and answers `true` only if the
    /// authenticator is confirmed (or `confirming`, which confirms it) and `step` is later
    /// than every step accepted before, atomically across instances; `false` otherwise (a
    /// replay). `NotFound` when the person has none.
    async fn use_totp_step(
        &self,
        tenant: &str,
        user_id: &str,
        step: i64,
        confirming: bool,
    ) -> Result<bool>;
    /// Replaces the person's recovery codes (stored as hashes).
    async fn put_recovery_codes(
        &self,
        tenant: &str,
        user_id: &str,
        hashes: &[SecretHash],
        now: Timestamp,
    ) -> Result<()>;
    /// Uses up a recovery code: `true` once for each code, `false` for an unknown or used one.
    async fn use_recovery_code(
        &self,
        tenant: &str,
        user_id: &str,
        hash: &SecretHash,
        now: Timestamp,
    ) -> Result<bool>;
    /// Recovery codes the person has not used yet.
    async fn count_recovery_codes(&self, tenant: &str, user_id: &str) -> Result<u32>;
    /// Removes the person's second factors and passkeys (authenticator, recovery codes,
    /// every passkey).
    async fn delete_factors(&self, tenant: &str, user_id: &str) -> Result<()>;

    /// `AlreadyExists` when the tenant has a passkey of that credential id.
    async fn create_passkey(&self, passkey: &PasskeyRecord) -> Result<()>;
    /// The person's passkeys, oldest first.
    async fn list_passkeys(&self, tenant: &str, user_id: &str) -> Result<Vec<PasskeyRecord>>;
    async fn get_passkey(&self, tenant: &str, credential_id: &[u8]) -> Result<PasskeyRecord>;
    /// Records a sign-in with the passkey: `true` only if `sign_count` is higher than the one
    /// stored (or both are 0, an authenticator that keeps no counter), atomically across
    /// instances, so one assertion counter is accepted once; `false` otherwise. `NotFound`
    /// when there is no such passkey.
    async fn use_passkey(
        &self,
        tenant: &str,
        credential_id: &[u8],
        sign_count: u32,
        backup_state: bool,
        credential: &str,
        now: Timestamp,
    ) -> Result<bool>;
    /// `NotFound` unless the person has a passkey of that id.
    async fn rename_passkey(&self, tenant: &str, user_id: &str, id: &str, name: &str)
    -> Result<()>;
    /// `NotFound` unless the person has a passkey of that id.
    async fn delete_passkey(&self, tenant: &str, user_id: &str, id: &str) -> Result<()>;

    /// Stores a ceremony, replacing one under the same key (a page asking again).
    async fn put_ceremony(&self, ceremony: &WebauthnCeremony) -> Result<()>;
    /// Takes the ceremony under `key_hash` in `tenant`: one `DELETE … RETURNING`, so of
    /// concurrent takes one gets it. `NotFound` for none (or another tenant's); an expired one
    /// is taken and answered `NotFound`.
    async fn take_ceremony(
        &self,
        tenant: &str,
        key_hash: &SecretHash,
        now: Timestamp,
    ) -> Result<WebauthnCeremony>;

    /// `AlreadyExists` when the tenant has an upstream of that id.
    async fn create_upstream(&self, upstream: &UpstreamRecord) -> Result<()>;
    async fn get_upstream(&self, tenant: &str, id: &str) -> Result<UpstreamRecord>;
    /// By id.
    async fn list_upstreams(&self, tenant: &str) -> Result<Vec<UpstreamRecord>>;
    /// Replaces every field of the tenant's upstream of `upstream.id` but `tenant`, `id` and
    /// `created_at`; its links and round trips under way stay. `NotFound` when there is none.
    async fn update_upstream(&self, upstream: &UpstreamRecord) -> Result<()>;
    /// Deletes the upstream with its links and round trips under way (the linked users stay).
    async fn delete_upstream(&self, tenant: &str, id: &str) -> Result<()>;
    /// The link of the provider's `subject` at `upstream_id`.
    async fn get_upstream_link(
        &self,
        tenant: &str,
        upstream_id: &str,
        subject: &str,
    ) -> Result<UpstreamLink>;
    /// Links an existing user; `AlreadyExists` when the provider's subject is linked already.
    async fn create_upstream_link(&self, link: &UpstreamLink) -> Result<()>;
    /// Creates `user` and links it, in one transaction; `AlreadyExists` (and nothing written)
    /// when the username is taken or the subject is linked already.
    async fn create_linked_user(&self, user: &UserRecord, link: &UpstreamLink) -> Result<()>;
    async fn put_upstream_state(&self, state: &UpstreamState) -> Result<()>;
    /// Deletes and returns the round trip whose `state` hashes to `hash` and whose browser's
    /// binding cookie hashes to `binding_hash`, so that it is taken once, and only by its own
    /// browser: of concurrent takes one gets it, the others `NotFound`; with another binding
    /// it is `NotFound` and stays. Expired ones are returned too; the caller checks
    /// `expires_at`.
    async fn take_upstream_state(
        &self,
        hash: &SecretHash,
        binding_hash: &SecretHash,
    ) -> Result<UpstreamState>;

    async fn create_client(&self, client: &ClientRecord) -> Result<()>;
    async fn get_client(&self, tenant: &str, id: &str) -> Result<ClientRecord>;
    /// Replaces the client's name, scopes, grant types and lifetimes (not its secret, nor
    /// when it was made); `NotFound` for no such client.
    async fn update_client(&self, client: &ClientRecord) -> Result<()>;
    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>>;
    /// Deletes the client with its grants and refresh tokens.
    async fn delete_client(&self, tenant: &str, id: &str) -> Result<()>;

    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    /// By subject; subjects are unique across tenants (callers check the tenant).
    async fn get_user(&self, id: &str) -> Result<UserRecord>;
    async fn get_user_by_username(&self, tenant: &str, username: &str) -> Result<UserRecord>;
    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>>;
    /// Deletes the user with their refresh tokens, sessions and upstream links; in the same
    /// transaction, their approved grants not yet redeemed are denied (a new version each,
    /// announced) and their open flows fail.
    async fn delete_user(&self, tenant: &str, username: &str) -> Result<()>;
    /// Sets the password and revokes the user's refresh tokens and sessions, denies their
    /// unredeemed approvals and fails their open flows, like `delete_user`.
    async fn set_password(&self, tenant: &str, username: &str, password_hash: &str) -> Result<()>;

    /// `AlreadyExists` when the device code or user code is taken.
    /// Stores a new grant, with its `audit` events in the same transaction.
    async fn create_grant(&self, grant: &DeviceGrant, audit: &[AuditEvent]) -> Result<()>;
    async fn get_grant(&self, id: &str) -> Result<DeviceGrant>;
    /// By the hash of a device code without a selector (issued before device codes named
    /// their grant: new codes are found with `get_grant(id)`). SQLite indexes only those
    /// grants (ids other than 28-character `ordered_id`s); PostgreSQL indexes every hash.
    async fn get_grant_by_device_code(&self, hash: &SecretHash) -> Result<DeviceGrant>;
    async fn get_grant_by_user_code(&self, code: &UserCode) -> Result<DeviceGrant>;
    /// Stores `grant` if the stored version is still `grant.version`; bumps the version.
    async fn update_grant(&self, grant: &DeviceGrant) -> Result<()>;
    /// Answers a poll of a pending grant from memory, recording it, for backends that hold
    /// pending grants' poll state there (see `pending.rs`). `None` when the grant is not held
    /// (not pending, unknown, or `client_id`'s of `tenant` it is not): the caller reads the
    /// grant and decides as usual. Never touches the database.
    fn poll_held(&self, _by: PollBy<'_>, _now: Timestamp) -> Option<HeldPoll> {
        None
    }
    /// Like `update_grant`, for a poll's bookkeeping only (last poll time, a `slow_down`'s
    /// longer interval). Not announced (nothing was decided), and a backend may make it less
    /// durable than a decision: losing the last poll time in a crash only spares one
    /// `slow_down`.
    async fn record_poll(&self, grant: &DeviceGrant) -> Result<()> {
        self.update_grant(grant).await
    }
    /// Like `update_grant` (to the redeemed state), storing the refresh token in the same
    /// transaction so that a redemption never loses its token.
    async fn redeem_grant(
        &self,
        grant: &DeviceGrant,
        refresh: Option<&RefreshToken>,
        audit: &[AuditEvent],
    ) -> Result<()>;

    async fn create_flow(&self, flow: &Flow) -> Result<()>;
    async fn get_flow(&self, hash: &SecretHash) -> Result<Flow>;
    /// Stores `flow` (and `grant`, when given) if both stored versions are still the ones
    /// read, in one transaction. The flow is found by its `id`: its capability's hash may
    /// change (a browser adopting the flow gives it a new one).
    async fn update_flow(
        &self,
        flow: &Flow,
        grant: Option<&DeviceGrant>,
        audit: &[AuditEvent],
    ) -> Result<()>;

    async fn get_refresh_token(&self, hash: &SecretHash) -> Result<RefreshToken>;
    /// Marks `old` used if it was not, and stores `new`, in one transaction; `Conflict` if
    /// `old` was already used.
    async fn rotate_refresh_token(&self, old: &SecretHash, new: &RefreshToken) -> Result<()>;
    /// Deletes every refresh token of a family in `tenant` and, in the same transaction,
    /// records the family (`sid:{family_id}`, the access tokens' `sid`) revoked until `until`
    /// (the expiry of the last access token issued from it); returns how many tokens went.
    async fn revoke_refresh_family(
        &self,
        tenant: &str,
        family_id: &str,
        until: Timestamp,
        audit: &[AuditEvent],
    ) -> Result<u64>;
    /// Records `id` (`jti:…` for one access token, `sid:…` for a family) revoked in `tenant`
    /// until `until` (a later `until` of the same id wins).
    async fn revoke_id(&self, tenant: &str, id: &str, until: Timestamp) -> Result<()>;
    /// Devices holding access: the live token (unused, unexpired) of each refresh family in
    /// `tenant`, of `subject` and of `client_id` when given, newest family first.
    async fn list_families(
        &self,
        tenant: &str,
        subject: Option<&str>,
        client_id: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<RefreshToken>>;
    /// Whether any of `ids` is revoked in `tenant` at `now` for a token issued at `issued_at`.
    async fn any_revoked(
        &self,
        tenant: &str,
        ids: &[String],
        issued_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool>;
    /// Takes back everything of the person `username`, as a new password does (refresh
    /// tokens and sessions end, approved grants not redeemed yet are denied, open flows
    /// fail), and records them (`sub:{id}`) revoked for access tokens issued before
    /// `issued_before`, until `until`; with `disable`, also disables them. One transaction.
    /// `NotFound` for no such person.
    async fn revoke_user(
        &self,
        tenant: &str,
        username: &str,
        disable: bool,
        issued_before: Timestamp,
        until: Timestamp,
    ) -> Result<()>;
    /// Appends events to the audit trail.
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()>;
    /// The tenant's audit events matching `query`, oldest first (at most `limit`, the newest
    /// of those).
    async fn list_audit(&self, tenant: &str, query: &AuditQuery) -> Result<Vec<AuditEvent>>;
    /// Deletes audit events older than `before`; returns how many.
    async fn sweep_audit(&self, before: Timestamp) -> Result<u64>;
    /// Enables a person an operator disabled (`NotFound` for no such person).
    async fn enable_user(&self, tenant: &str, username: &str) -> Result<()>;

    /// Pending grants that have not expired at `now`, by user-code length.
    async fn count_pending_grants(&self, now: Timestamp) -> Result<PendingCodes>;

    /// Draws every take from its bucket, or none, atomically for every instance sharing the
    /// store (see `limits`).
    async fn take_limits(&self, takes: &[LimitTake], now: Timestamp) -> Result<Admission>;
    /// Returns what `take_limits` drew (the attempt it paid for turned out right).
    async fn give_back_limits(&self, takes: &[LimitTake]) -> Result<()>;

    async fn create_session(&self, session: &BrowserSession) -> Result<()>;
    async fn get_session(&self, id_hash: &SecretHash) -> Result<BrowserSession>;
    /// Replaces the stored session with the same id (`NotFound` if it is gone).
    async fn update_session(&self, session: &BrowserSession) -> Result<()>;
    async fn delete_session(&self, id_hash: &SecretHash) -> Result<()>;
    /// Ends every session record of the person in the tenant (browser and kept sessions,
    /// known-browser marks, enrolment links) except `keep`; returns how many went.
    async fn end_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        keep: Option<&SecretHash>,
    ) -> Result<u64>;

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>>;
    async fn insert_key(&self, key: &KeyRecord) -> Result<()>;
    /// Stores `candidate` unless its tenant has a key of its algorithm, atomically across
    /// instances, and returns every key of the tenant: instances starting together agree.
    async fn ensure_key(&self, candidate: &KeyRecord) -> Result<Vec<KeyRecord>>;

    /// Deletes grants and flows that expired before `grace_before`, and expired refresh
    /// tokens, browser sessions and upstream round trips (before `now`).
    async fn sweep(&self, now: Timestamp, grace_before: Timestamp) -> Result<SweepCounts>;
}
