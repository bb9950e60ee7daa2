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
    /// Whether people may sign in with a local password; off, only upstream providers (and
    /// later passkeys) sign people in. On for new tenants.
    pub local_passwords: bool,
    /// Second factors for password sign-ins: `off`, `optional` (asked of those who enrolled
    /// one) or `required` (everyone; those without one enrol first). `off` for new tenants.
    pub second_factor: String,
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
    /// Where its device flows may start and what they may get (RFC 10027 mitigations).
    pub device_policy: DevicePolicy,
}

/// A client's defences against device-code phishing (RFC 10027, BCP 247).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    /// Networks (CIDR) device authorizations may come from; empty: anywhere.
    pub networks: Vec<String>,
    /// Whether device grants get refresh tokens (RFC 10027 §6.1.9).
    pub refresh_tokens: bool,
    /// The most a device grant may get; `None`: the client's scopes.
    pub scope_ceiling: Option<Scopes>,
    /// Access-token lifetime for device grants; `None`: the server's.
    pub access_ttl_secs: Option<u32>,
    /// `off`, `warn` (an approval from elsewhere is warned against) or `same_network` (it is
    /// refused).
    pub proximity: String,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        DevicePolicy {
            networks: Vec::new(),
            refresh_tokens: true,
            scope_ceiling: None,
            access_ttl_secs: None,
            proximity: "off".into(),
        }
    }
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
    /// Disabled by an operator: signs in nowhere, and nothing of theirs stands.
    pub disabled: bool,
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
    /// The upstream provider the person signed on through, if any (the tokens' `idp`).
    pub idp: Option<String>,
    /// How the person signed on (RFC 8176 values, space-separated: `pwd otp mfa`, `hwk`…).
    pub amr: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Already exchanged for a newer token.
    pub used: bool,
    /// The address and user agent of the device the family was issued to (from its device
    /// authorization request).
    pub requester_ip: Option<String>,
    pub requester_agent: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub alg: Algorithm,
    pub pkcs8: Vec<u8>,
    pub created_at: Timestamp,
    /// It is published from its creation and signs from this time on (a rotation publishes a
    /// key `key_publish_secs` before it signs, so relying parties' cached key sets hold it).
    pub signs_from: Timestamp,
}

/// A browser session of the verification pages. Its id is a secret stored as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub id_hash: SecretHash,
    pub tenant: String,
    pub user_id: Option<String>,
    pub signed_on_at: Option<Timestamp>,
    /// The upstream provider the person signed on through, if any.
    pub idp: Option<String>,
    /// How the person signed on (RFC 8176 values, space-separated).
    pub amr: Option<String>,
    /// The verification flow this browser is walking, by its capability's hash.
    pub flow_hash: Option<SecretHash>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An organisation's OpenID provider that the people of a tenant sign in through.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamRecord {
    pub tenant: String,
    /// The name operators and the flows API use (`[a-z0-9-]`, unique in its tenant).
    pub id: String,
    /// What the sign-in page says: "Continue with {name}".
    pub name: String,
    /// Found by OpenID Connect Discovery (`{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Sent to the provider's token endpoint, so it cannot be stored as a hash; never logged,
    /// printed or shown. `None`: a public client, PKCE alone.
    pub client_secret: Option<String>,
    /// How the secret is sent: `client_secret_basic` or `client_secret_post` (`none` without
    /// a secret).
    pub auth_method: String,
    /// The `scope` asked for, space-separated, `openid` first.
    pub scopes: String,
    /// When not empty, only people whose verified `email` is in one of these domains.
    pub allowed_domains: Vec<String>,
    /// Claims that must have these values (strings, or a string in an array).
    pub require_claims: Vec<(String, String)>,
    /// Link a first sign-in to the local account with the same verified email, instead of
    /// creating an account.
    pub link_by_email: bool,
    /// Sent as `max_age`; the provider's `auth_time` must be at most this old.
    pub max_age_secs: Option<u32>,
    /// Sends `prompt=login`: a fresh sign-in at the provider for every device.
    pub force_login: bool,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for UpstreamRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRecord")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A person's one-time-code authenticator (TOTP, RFC 6238: 6 digits, 30 s steps).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpFactor {
    pub tenant: String,
    pub user_id: String,
    /// The shared secret (20 random bytes). The authenticator must have it, so it cannot be
    /// stored as a hash; it is never logged and never shown again after enrolment.
    pub secret: Vec<u8>,
    /// Enrolment finished with a correct code; until then it signs nobody in.
    pub confirmed: bool,
    /// The last time step a code was accepted for: a code is accepted only for a later step,
    /// so none is accepted twice.
    pub last_step: i64,
    pub created_at: Timestamp,
}

impl std::fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpFactor")
            .field("user_id", &self.user_id)
            .field("confirmed", &self.confirmed)
            .field("secret", &"***")
            .finish_non_exhaustive()
    }
}

/// One security event of the audit trail. Never a secret: ids, names, addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub tenant: String,
    /// `code_issued`, `wrong_code`, `sign_in`, `sign_in_failed`, `approved`, `denied`,
    /// `redeemed`, `refresh_reuse`, `revoked`, `key_rotated`, `admin`.
    pub event: String,
    /// Who acted: a user id, `admin`, or a client id.
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub grant_id: Option<String>,
    pub family_id: Option<String>,
    /// What else there is to say, in words (`method=passkey`, `client update tv`, …).
    pub detail: Option<String>,
}

/// Which audit events to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<Timestamp>,
    pub actor: Option<String>,
    pub client_id: Option<String>,
    pub event: Option<String>,
    pub limit: u32,
}

/// A person's passkey (a WebAuthn credential), for signing in without a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub tenant: String,
    /// Our id for it, as the account page names it (random, not secret).
    pub id: String,
    pub user_id: String,
    /// The authenticator's credential id; unique in a tenant.
    pub credential_id: Vec<u8>,
    /// The person's name for it ("work laptop").
    pub name: String,
    /// The credential as the WebAuthn library keeps it (public key, algorithm, counter,
    /// flags), as JSON. A public key: nothing here signs anyone in.
    pub credential: String,
    /// The signature counter last accepted: a later sign-in must show a higher one (unless
    /// the authenticator keeps none: 0 throughout).
    pub sign_count: u32,
    /// The authenticator may sync the key to other devices (a synced passkey, `swk`), or may
    /// not (bound to its hardware, `hwk`).
    pub backup_eligible: bool,
    /// It has been synced.
    pub backup_state: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A WebAuthn ceremony under way (a passkey being registered, or a sign-in), bound to what
/// started it: a flow or a browser session, by a hash derived from that one's key. Taken
/// (and so deleted) once, so an assertion cannot be replayed against its challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct WebauthnCeremony {
    pub tenant: String,
    pub key_hash: SecretHash,
    /// `register` or `sign_in`.
    pub purpose: String,
    /// Whose passkey is being registered (none for a sign-in: the passkey says who).
    pub user_id: Option<String>,
    /// The library's state (its challenge), as JSON.
    pub state: String,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for WebauthnCeremony {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebauthnCeremony")
            .field("purpose", &self.purpose)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// A person's account at an upstream provider (its `sub`), linked to a devicegate user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamLink {
    pub tenant: String,
    pub upstream_id: String,
    /// The provider's `sub`.
    pub subject: String,
    pub user_id: String,
    pub created_at: Timestamp,
}

/// One round trip to an upstream provider under way: created when a browser is sent to the
/// provider, taken (and so deleted) once when it comes back. The `state` parameter is a
/// secret stored as its hash; the browser that started the trip holds a binding cookie,
/// also stored as a hash.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamState {
    pub hash: SecretHash,
    pub tenant: String,
    pub upstream_id: String,
    /// The verification flow the sign-in is for, by its capability's hash.
    pub flow_hash: SecretHash,
    /// The hash of the binding cookie of the browser that started the trip.
    pub binding_hash: SecretHash,
    /// Sent as `nonce`; the ID token must carry it.
    pub nonce: String,
    /// The PKCE code verifier (RFC 7636), sent with the code. Lives at most as long as the
    /// flow and is deleted when the trip comes back.
    pub pkce_verifier: String,
    /// Where the flows API's custom UI wants the browser sent afterwards (allow-listed).
    pub return_to: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamState")
            .field("tenant", &self.tenant)
            .field("upstream_id", &self.upstream_id)
            .field("pkce_verifier", &"***")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepCounts {
    pub grants: u64,
    pub flows: u64,
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub upstream_states: u64,
    pub webauthn_ceremonies: u64,
    pub revocations: u64,
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
