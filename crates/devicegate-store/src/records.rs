use devicegate_core::keys::Algorithm;
use devicegate_core::scope::Scopes;
use devicegate_core::{SecretHash, Timestamp};

/// The tenant every installation has; its endpoints keep the unprefixed paths.
pub const DEFAULT_TENANT: &str = "default";

/// An isolated tenant (PingOne's environment, Oracle IDCS's tenant): its own clients, users,
/// keys and issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    /// The name in paths (`/t/{id}/…`).
    pub id: String,
    /// PingOne's `{envID}`.
    pub uuid: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub tenant: String,
    pub id: String,
    pub name: String,
    /// `None` for a public client.
    pub secret_hash: Option<SecretHash>,
    /// Scopes the client may ask for; also its default when it asks for none.
    pub scopes: Scopes,
    /// `grant_type` values the client may use.
    pub grant_types: Vec<String>,
    pub device_code_ttl_secs: Option<u32>,
    pub poll_interval_secs: Option<u32>,
    pub created_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    pub tenant: String,
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"***")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub hash: SecretHash,
    pub tenant: String,
    /// Every rotation of one original token shares a family; reuse revokes the family.
    pub family_id: String,
    /// When the family's first token was issued; no token of the family outlives it by more
    /// than the configured maximum lifetime.
    pub family_started_at: Timestamp,
    pub client_id: String,
    pub subject: String,
    pub scopes: Scopes,
    pub auth_time: Timestamp,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Already exchanged for a newer token.
    pub used: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub alg: Algorithm,
    pub pkcs8: Vec<u8>,
    pub created_at: Timestamp,
}

/// A browser session of the verification pages. Its id is a secret stored as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub id_hash: SecretHash,
    pub tenant: String,
    pub user_id: Option<String>,
    pub signed_on_at: Option<Timestamp>,
    /// The verification flow this browser is walking, by its capability's hash.
    pub flow_hash: Option<SecretHash>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepCounts {
    pub grants: u64,
    pub flows: u64,
    pub refresh_tokens: u64,
    pub sessions: u64,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .field("pkcs8", &"***")
            .finish_non_exhaustive()
    }
}
