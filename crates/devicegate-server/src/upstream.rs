//! Sign-in through an organisation's OpenID provider (an *upstream*) during verification.
//!
//! The authorization code flow with PKCE (S256), `state` and `nonce`:
//! - [`start`]: for a flow waiting for a sign-on, stores a round trip ([`UpstreamState`]:
//!   the state's hash, the flow, the hash of a binding cookie for the browser, the nonce,
//!   the PKCE verifier) and answers the provider's authorization URL. The flow, and so the
//!   user code, stays here: the provider sees only the state.
//! - [`finish`]: at the callback, takes the round trip (once: a replayed state finds
//!   nothing), checks it is this tenant's, unexpired and this browser's, exchanges the code
//!   (with the verifier; the client secret by `client_secret_basic` or `client_secret_post`,
//!   never in a URL), validates the ID token (signature against the provider's JWKS, which is
//!   fetched again once on an unknown key; an allow-list of asymmetric algorithms, never
//!   `none` or HMAC; `iss`, `aud`, `azp`, `exp`, `iat` within a minute, `nonce`; `auth_time`
//!   against `max_age`), applies the upstream's restrictions (verified email domain,
//!   required claims), links or creates the account and signs the flow on. Consent follows
//!   as for any sign-on: an upstream sign-in never approves a device by itself.
//!
//! Any failure leaves the flow as it was, so the person can try again; the reason goes to
//! the log, never to the page. The provider's discovery document and JWKS are cached for an
//! hour per upstream ([`PROVIDER_CACHE_FOR`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devicegate_core::flow::Flow;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_core::{SecretHash, Timestamp};
use devicegate_store::{StoreError, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord};
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde_json::Value;

use crate::limits;
use crate::tenant::Tenant;
use crate::verification::{self, StepError};
use crate::{AppState, now};

/// How long a provider's discovery document and JWKS are used before they are fetched again.
pub const PROVIDER_CACHE_FOR: Duration = Duration::from_secs(3600);

/// How long a round trip may take, at most (less when the flow ends sooner).
const ROUND_TRIP_FOR: Duration = Duration::from_secs(600);

/// How far in the future an ID token's `iat` may be (clocks differ a little).
const IAT_SKEW_SECS: i64 = 60;

/// The ID token signature algorithms accepted: asymmetric only.
const ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Why an upstream sign-in did not happen. Pages and the flows API say so in their own
/// words; the detail is logged here, never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no such sign-in provider")]
    Unknown,
    /// The flow cannot sign on now (its status, or it ended).
    #[error(transparent)]
    Step(#[from] StepError),
    /// The `state` is unknown, used, expired, another tenant's or another browser's.
    #[error("this sign-in link is not valid any more; start again")]
    BadState,
    /// The provider said no (`error=access_denied`, …).
    #[error("the sign-in provider did not sign you in")]
    Refused,
    /// The provider could not be reached, or answered something unusable.
    #[error("the sign-in provider could not be reached")]
    Unreachable,
    /// The provider's answer did not prove who signed in (code refused, ID token invalid).
    #[error("the sign-in could not be verified")]
    Invalid,
    /// The person is not allowed in (domain, required claims).
    #[error("this account may not sign in here")]
    NotAllowed,
}

impl From<StoreError> for UpstreamError {
    fn from(e: StoreError) -> Self {
        UpstreamError::Step(e.into())
    }
}

/// Logs why, and answers `e`.
fn because(e: UpstreamError, why: impl std::fmt::Display) -> UpstreamError {
    tracing::warn!(error = %e, %why, "upstream sign-in failed");
    e
}

/// A provider's metadata (with its JWKS), when it was fetched, and whether that fetch was a
/// refetch for an unknown key.
type Discovered = (Instant, Arc<CoreProviderMetadata>, bool);

/// Discovered providers, by tenant, upstream id and issuer (an upstream whose issuer an
/// operator changed is discovered again).
#[derive(Debug, Default)]
pub struct Providers {
    cache: Mutex<HashMap<(String, String, String), Discovered>>,
    /// Each tenant's upstreams, as the pages list them (`listed`).
    lists: Mutex<HashMap<String, Listed>>,
}

/// A tenant's upstreams and when they were read.
type Listed = (Instant, Arc<Vec<UpstreamRecord>>);

/// How long the pages use a tenant's list of upstreams before reading it again: a flood of
/// page views costs the store at most one read per tenant this often.
const LIST_FOR: Duration = Duration::from_secs(5);

/// The tenant's upstreams, as the pages offer them (read at most every [`LIST_FOR`]).
pub async fn listed(
    state: &AppState,
    tenant: &Tenant,
) -> Result<Arc<Vec<UpstreamRecord>>, StoreError> {
    {
        let lists = state
            .providers
            .lists
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((at, l)) = lists.get(&tenant.id)
            && at.elapsed() < LIST_FOR
        {
            return Ok(l.clone());
        }
    }
    let l = Arc::new(tenant.store.list_upstreams().await?);
    let mut lists = state
        .providers
        .lists
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    lists.insert(tenant.id.clone(), (Instant::now(), l.clone()));
    Ok(l)
}

/// Whether a sign-on made earlier (a browser's or a kept session) may still sign a new flow
/// on: a password sign-on while the tenant allows passwords; an upstream's while the upstream
/// exists, does not ask for a fresh sign-in every time (`force_login`) and, with `max_age`, is
/// recent enough.
pub async fn still_good(
    tenant: &Tenant,
    idp: Option<&str>,
    signed_on_at: Timestamp,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let Some(id) = idp else {
        return Ok(tenant.local_passwords);
    };
    let up = match tenant.store.get_upstream(id).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => return Ok(false),
        Err(e) => return Err(e),
    };
    let fresh = up
        .max_age_secs
        .is_none_or(|max| signed_on_at.until(now) <= Duration::from_secs(u64::from(max)));
    Ok(!up.force_login && fresh)
}

impl Providers {
    /// The fresh entry for `key`, with when it was fetched.
    fn entry(&self, key: &(String, String, String)) -> Option<Discovered> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(key)
            .filter(|(at, _, _)| at.elapsed() < PROVIDER_CACHE_FOR)
            .cloned()
    }

    fn remember(
        &self,
        key: (String, String, String),
        m: Arc<CoreProviderMetadata>,
        refetched: bool,
    ) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(key, (Instant::now(), m, refetched));
    }
}

/// The HTTP client for providers, one for the process: no redirects followed, short
/// timeouts.
fn http() -> Result<openidconnect::reqwest::Client, UpstreamError> {
    static CLIENT: std::sync::OnceLock<openidconnect::reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = openidconnect::reqwest::Client::builder()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| because(UpstreamError::Unreachable, e))?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// A provider's keys are fetched again on an unknown key at most this often.
const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// The provider's metadata, by OpenID Connect Discovery, cached; `refresh` fetches it (and
/// its JWKS) again.
async fn provider(
    state: &AppState,
    up: &UpstreamRecord,
    refresh: bool,
) -> Result<Arc<CoreProviderMetadata>, UpstreamError> {
    let key = (up.tenant.clone(), up.id.clone(), up.issuer.clone());
    if let Some((at, m, refetched)) = state.providers.entry(&key) {
        // A token signed with a key we do not know refetches, but a refetch is not repeated
        // within a minute: such tokens cannot make us hammer the provider.
        if !refresh || (refetched && at.elapsed() < REFETCH_AFTER) {
            return Ok(m);
        }
    }
    let issuer = IssuerUrl::new(up.issuer.clone())
        .map_err(|e| because(UpstreamError::Unreachable, format!("issuer: {e}")))?;
    let m = CoreProviderMetadata::discover_async(issuer, &http()?)
        .await
        .map_err(|e| because(UpstreamError::Unreachable, format!("discovery: {e}")))?;
    let endpoints = [
        Some(m.authorization_endpoint().as_str()),
        m.token_endpoint().map(|u| u.as_str()),
        Some(m.jwks_uri().as_str()),
    ];
    if let Some(bad) = endpoints
        .into_iter()
        .flatten()
        .find(|u| !endpoint_ok(&up.issuer, u))
    {
        return Err(because(
            UpstreamError::Unreachable,
            format!("discovery names an endpoint that is not https: {bad}"),
        ));
    }
    let m = Arc::new(m);
    state.providers.remember(key, m.clone(), refresh);
    Ok(m)
}

/// Whether a discovered endpoint may receive the client secret, the code and the verifier:
/// https, or plain http only on the loopback host of a plain-http (local) issuer.
fn endpoint_ok(issuer: &str, endpoint: &str) -> bool {
    let Ok(u) = openidconnect::url::Url::parse(endpoint) else {
        return false;
    };
    let local = |u: &openidconnect::url::Url| {
        matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    };
    match u.scheme() {
        "https" => true,
        "http" => {
            local(&u)
                && openidconnect::url::Url::parse(issuer)
                    .is_ok_and(|i| i.scheme() == "http" && local(&i))
        }
        _ => false,
    }
}

/// The origin (`scheme://host[:port]`) of a provider's URL.
pub fn origin(url: &str) -> Option<String> {
    let u = openidconnect::url::Url::parse(url).ok()?;
    let origin = u.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Every start and every callback that reaches the store is paid for (`limits::Row::Upstream`).
async fn pay(state: &AppState, ip: IpAddr) -> Result<(), UpstreamError> {
    // Spent for good: the row is written or taken whatever the outcome.
    let _spent = limits::pay_for_row(state, limits::Row::Upstream, ip, now())
        .await?
        .map_err(StepError::from)?;
    Ok(())
}

/// Where the provider sends the browser back: the tenant's callback.
pub fn redirect_uri(tenant: &Tenant) -> String {
    format!("{}/device/callback", tenant.issuer)
}

/// A round trip started: where to send the browser, and the binding cookie's value to set.
#[derive(Debug)]
pub struct Started {
    pub authorization_url: String,
    pub binding: Secret,
}

/// Starts a sign-in at `upstream_id` for the flow behind `flow_key` (module docs).
pub async fn start(
    state: &AppState,
    tenant: &Tenant,
    upstream_id: &str,
    flow_key: &SecretHash,
    return_to: Option<String>,
    ip: IpAddr,
) -> Result<Started, UpstreamError> {
    pay(state, ip).await?;
    let up = match tenant.store.get_upstream(upstream_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => return Err(UpstreamError::Unknown),
        Err(e) => return Err(e.into()),
    };
    let now = now();
    let flow = verification::load(tenant, flow_key, now).await?;
    flow.ensure_can_sign_on(now).map_err(StepError::from)?;
    let metadata = provider(state, &up, false).await?;
    let op = client(&up, &metadata, tenant)?;
    let secret = Secret::generate(SecretKind::UpstreamState);
    let binding = Secret::generate(SecretKind::UpstreamBinding);
    let nonce = random_id();
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = op
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let s = secret.expose().to_owned();
                move || CsrfToken::new(s)
            },
            {
                let n = nonce.clone();
                move || Nonce::new(n)
            },
        )
        .set_pkce_challenge(challenge);
    for scope in up.scopes.split_whitespace().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.to_owned()));
    }
    if let Some(secs) = up.max_age_secs {
        request = request.set_max_age(Duration::from_secs(u64::from(secs)));
    }
    if up.force_login {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, _, _) = request.url();
    let expires_at = now.plus(ROUND_TRIP_FOR).min(flow.expires_at);
    tenant
        .store
        .put_upstream_state(&UpstreamState {
            hash: secret.hash(),
            tenant: tenant.id.clone(),
            upstream_id: up.id.clone(),
            flow_hash: *flow_key,
            binding_hash: binding.hash(),
            nonce,
            pkce_verifier: verifier.secret().clone(),
            return_to,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok(Started {
        authorization_url: url.to_string(),
        binding,
    })
}

type Client = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn client(
    up: &UpstreamRecord,
    metadata: &CoreProviderMetadata,
    tenant: &Tenant,
) -> Result<Client, UpstreamError> {
    let redirect = RedirectUrl::new(redirect_uri(tenant))
        .map_err(|e| because(UpstreamError::Unreachable, format!("redirect URI: {e}")))?;
    let client: Client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(up.client_id.clone()),
        up.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(redirect)
    .set_auth_type(match up.auth_method.as_str() {
        "client_secret_post" => AuthType::RequestBody,
        _ => AuthType::BasicAuth,
    });
    Ok(client)
}

/// What the provider sent back to the callback.
#[derive(Default)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("state", &self.state.as_ref().map(|_| "***"))
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("error", &self.error)
            .finish()
    }
}

/// A finished sign-in: the flow, signed on as `user`, and where the custom UI wants the
/// browser (for round trips the flows API started).
#[derive(Debug)]
pub struct Finished {
    pub flow: Flow,
    pub user: UserRecord,
    pub return_to: Option<String>,
}

/// Completes a round trip at the callback (module docs). `binding` is the browser's binding
/// cookie.
pub async fn finish(
    state: &AppState,
    tenant: &Tenant,
    back: Callback,
    binding: Option<&str>,
    ip: IpAddr,
) -> Result<Finished, UpstreamError> {
    // Without a state and a binding cookie of the right kinds there is nothing to take.
    let Some(presented) = back
        .state
        .filter(|s| s.starts_with(SecretKind::UpstreamState.prefix()))
    else {
        return Err(because(UpstreamError::BadState, "no state"));
    };
    let Some(binding) = binding.filter(|b| b.starts_with(SecretKind::UpstreamBinding.prefix()))
    else {
        return Err(because(UpstreamError::BadState, "no binding cookie"));
    };
    pay(state, ip).await?;
    // Taken only together with this browser's binding: another browser (or a forged cookie)
    // finds nothing and leaves the round trip to its own browser.
    let trip = match tenant
        .store
        .take_upstream_state(
            &Secret::from_presented(&presented).hash(),
            &Secret::from_presented(binding).hash(),
        )
        .await
    {
        Ok(t) => t,
        Err(StoreError::NotFound) => {
            return Err(because(
                UpstreamError::BadState,
                "unknown, used or another browser's state",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let now = now();
    if trip.expires_at <= now {
        return Err(because(UpstreamError::BadState, "expired state"));
    }
    if let Some(error) = back.error {
        return Err(because(
            UpstreamError::Refused,
            format!("provider error {error:?}"),
        ));
    }
    let Some(code) = back.code else {
        return Err(because(UpstreamError::Invalid, "no code"));
    };
    let up = match tenant.store.get_upstream(&trip.upstream_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => return Err(UpstreamError::Unknown),
        Err(e) => return Err(e.into()),
    };
    let metadata = provider(state, &up, false).await?;
    let op = client(&up, &metadata, tenant)?;
    let http = http()?;
    let tokens = op
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| because(UpstreamError::Unreachable, format!("token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(trip.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => {
                because(UpstreamError::Invalid, format!("code refused: {r:?}"))
            }
            other => because(
                UpstreamError::Unreachable,
                format!("token request: {other}"),
            ),
        })?;
    let _ = tokens.access_token();
    let Some(id_token) = tokens.id_token() else {
        return Err(because(UpstreamError::Invalid, "no ID token"));
    };
    let nonce = Nonce::new(trip.nonce.clone());
    let claims = match verify(&op, id_token, &nonce, &up, now) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            // The provider rotated its keys: fetch them again, once.
            let metadata = provider(state, &up, true).await?;
            verify(&client(&up, &metadata, tenant)?, id_token, &nonce, &up, now)
        }
        other => other,
    }
    .map_err(|e| because(UpstreamError::Invalid, format!("ID token: {e}")))?;
    let raw = payload(&id_token.to_string())
        .ok_or_else(|| because(UpstreamError::Invalid, "ID token payload"))?;
    // OIDC Core §3.1.3.7 step 5: an `azp`, when present, names this client.
    if let Some(azp) = raw.get("azp")
        && azp.as_str() != Some(up.client_id.as_str())
    {
        return Err(because(UpstreamError::Invalid, "ID token azp"));
    }
    allowed(&up, &claims, &raw)?;
    let auth_time = claims
        .auth_time()
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .filter(|t| *t <= now)
        .unwrap_or(now);
    let user = account(tenant, &up, &claims, now).await?;
    let signed_in = crate::audit::Event::new(tenant, "sign_in")
        .actor(&user.id)
        .ip(ip)
        .detail(format!("method=upstream idp={}", up.id))
        .done();
    let flow = verification::resume_session(
        tenant,
        &trip.flow_hash,
        verification::SignOn {
            user_id: &user.id,
            auth_time,
            idp: Some(&up.id),
            amr: None,
        },
        std::slice::from_ref(&signed_in),
    )
    .await?;
    Ok(Finished {
        flow,
        user,
        return_to: trip.return_to,
    })
}

fn verify(
    client: &Client,
    id_token: &openidconnect::core::CoreIdToken,
    nonce: &Nonce,
    up: &UpstreamRecord,
    now: Timestamp,
) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
    let now_secs = now.as_secs();
    let max_age = up.max_age_secs.map(i64::from);
    let verifier = client
        .id_token_verifier()
        .set_allowed_algs(ALGORITHMS)
        .set_issue_time_verifier_fn(move |iat| {
            if iat.timestamp() > now_secs + IAT_SKEW_SECS {
                Err("issued in the future".to_owned())
            } else {
                Ok(())
            }
        })
        .set_auth_time_verifier_fn(move |auth_time| match (max_age, auth_time) {
            (None, _) => Ok(()),
            (Some(_), None) => Err("no auth_time, but max_age was asked".to_owned()),
            (Some(max), Some(at)) if now_secs - at.timestamp() > max + IAT_SKEW_SECS => {
                Err("signed in longer ago than max_age".to_owned())
            }
            (Some(_), Some(_)) => Ok(()),
        });
    id_token.claims(&verifier, nonce).cloned()
}

/// The ID token's claims as JSON, read after the token was verified.
fn payload(jwt: &str) -> Option<serde_json::Map<String, Value>> {
    use base64::Engine;
    let part = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The verified email, lowercased, if the provider vouches for it.
fn verified_email(claims: &CoreIdTokenClaims) -> Option<String> {
    let email = claims.email()?;
    (claims.email_verified() == Some(true)).then(|| email.as_str().to_ascii_lowercase())
}

/// The upstream's restrictions: a verified email in an allowed domain, required claims.
fn allowed(
    up: &UpstreamRecord,
    claims: &CoreIdTokenClaims,
    raw: &serde_json::Map<String, Value>,
) -> Result<(), UpstreamError> {
    if !up.allowed_domains.is_empty() {
        let domain =
            verified_email(claims).and_then(|e| e.rsplit_once('@').map(|(_, d)| d.to_owned()));
        let ok = domain.is_some_and(|d| {
            up.allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&d))
        });
        if !ok {
            return Err(because(UpstreamError::NotAllowed, "email domain"));
        }
    }
    for (name, want) in &up.require_claims {
        let ok = match raw.get(name) {
            Some(Value::String(s)) => s == want,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want.as_str())),
            Some(Value::Bool(b)) => b.to_string() == *want,
            Some(Value::Number(n)) => n.to_string() == *want,
            _ => false,
        };
        if !ok {
            return Err(because(UpstreamError::NotAllowed, format!("claim {name}")));
        }
    }
    Ok(())
}

/// The account linked to the provider's subject: found, linked by verified email when the
/// operator asked for it, or created.
async fn account(
    tenant: &Tenant,
    up: &UpstreamRecord,
    claims: &CoreIdTokenClaims,
    now: Timestamp,
) -> Result<UserRecord, UpstreamError> {
    let subject = claims.subject().as_str().to_owned();
    for _ in 0..3 {
        if let Some(user) = linked(tenant, up, &subject).await? {
            return Ok(user);
        }
        let link = |user_id: &str| UpstreamLink {
            tenant: tenant.id.clone(),
            upstream_id: up.id.clone(),
            subject: subject.clone(),
            user_id: user_id.to_owned(),
            created_at: now,
        };
        // Only a local account (one with a password, so not made by any upstream) may be
        // linked by email; the store links a user to at most one subject of each upstream, so
        // a second subject with the same email (a recycled address) gets an account of its own.
        if up.link_by_email
            && let Some(email) = verified_email(claims)
            && let Some(local) = tenant.store.find_user_by_email(&email).await?
            && !local.password_hash.is_empty()
        {
            match tenant.store.create_upstream_link(&link(&local.id)).await {
                Ok(()) => continue,
                Err(StoreError::AlreadyExists) => {
                    if let Some(user) = linked(tenant, up, &subject).await? {
                        return Ok(user);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
        let email = verified_email(claims);
        // The account's name comes from what the provider vouches for (a verified email) or
        // its subject, never from `preferred_username`, which people choose themselves.
        let handle = email.clone().unwrap_or_else(|| subject.clone());
        for username in [
            format!("{}:{handle}", up.id),
            format!("{}:{subject}", up.id),
        ] {
            let user = UserRecord {
                id: random_id(),
                tenant: tenant.id.clone(),
                username: username.chars().take(200).collect(),
                password_hash: String::new(),
                name: name.clone(),
                email: email.clone(),
                created_at: now,
                disabled: false,
            };
            match tenant
                .store
                .create_linked_user(&user, &link(&user.id))
                .await
            {
                Ok(()) => {
                    tracing::info!(upstream = %up.id, user = %user.id, "created an account at first upstream sign-in");
                    return Ok(user);
                }
                Err(StoreError::AlreadyExists) => {
                    // Linked meanwhile by a concurrent first sign-in, or the username taken.
                    if let Some(user) = linked(tenant, up, &subject).await? {
                        return Ok(user);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(because(
        UpstreamError::Invalid,
        "could not link the account",
    ))
}

async fn linked(
    tenant: &Tenant,
    up: &UpstreamRecord,
    subject: &str,
) -> Result<Option<UserRecord>, UpstreamError> {
    let link = match tenant.store.get_upstream_link(&up.id, subject).await {
        Ok(l) => l,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match tenant.store.get_user(&link.user_id).await {
        Ok(u) => Ok(Some(u)),
        // Linked, but not to be had: an operator disabled the person (deleting one deletes
        // their links). No new account is made for them either.
        Err(StoreError::NotFound) => Err(because(
            UpstreamError::NotAllowed,
            "the linked account is disabled",
        )),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_ok;

    #[test]
    fn discovered_endpoints_must_be_https_unless_the_provider_is_local() {
        let corp = "https://login.corp.example";
        assert!(endpoint_ok(corp, "https://keys.corp-cdn.example/jwks"));
        assert!(!endpoint_ok(corp, "http://login.corp.example/token"));
        assert!(!endpoint_ok(corp, "ftp://login.corp.example/token"));
        assert!(!endpoint_ok(corp, "not a url"));
        let local = "http://127.0.0.1:9000";
        assert!(endpoint_ok(local, "http://127.0.0.1:9000/token"));
        assert!(endpoint_ok(local, "http://localhost:9000/token"));
        assert!(!endpoint_ok(local, "http://evil.example/token"));
        assert!(
            !endpoint_ok(corp, "http://127.0.0.1/token"),
            "an https provider stays https"
        );
    }
}
