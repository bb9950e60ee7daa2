//! The HTTP surfaces of devicegate, over one core and one [`Store`].
//!
//! - OAuth endpoints: device authorization (RFC 8628 §3.1), token (§3.4 and RFC 6749 §6),
//!   discovery (RFC 8414, OIDC Discovery), JWKS, userinfo.
//! - The verification flows API (`/api/v1/flows`), a JSON front-end to the verification flow
//!   in [`verification`]; the HTML pages are a second front-end to the same module.
//!
//! This crate never speaks SQL: it sees storage only through the `Store` trait. Its [`now`]
//! is the wall clock every decision is made at: core and the store take the time as a
//! parameter.
//!
//! [`serve`] also sweeps expired records once a minute; expired grants and flows are kept an
//! hour (`SWEEP_GRACE`), so that late polls still hear `expired_token`.

pub mod audit;
mod cas;
mod client_auth;
mod conn;
mod decision;
mod device;
pub mod devices;
mod dialects;
mod discovery;
mod error;
mod extract;
pub mod factors;
mod flows_api;
pub mod i18n;
mod json;
pub mod keys;
pub mod limits;
mod metadata;
pub mod metrics;
pub(crate) mod pages;
pub mod passkeys;
mod passwords;
pub mod proximity;
mod revocation;
mod scoped;
pub mod tenant;
mod token;
pub mod upstream;
mod userinfo;
pub mod verification;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use devicegate_core::Timestamp;
use devicegate_core::keys::Algorithm;
use devicegate_store::Store;
use http::header::{self, HeaderValue};
use tower_http::set_header::SetResponseHeaderLayer;

pub use conn::ConnectionLimits;
pub use error::OAuthError;
pub use keys::KeySet;
pub use passwords::Passwords;

/// Server settings, resolved from config file, environment and flags by the binary.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// Where people enter codes; `{issuer}/device` unless a custom UI serves it elsewhere.
    pub verification_uri: Option<String>,
    /// The `aud` of access tokens (RFC 9068 §2.2): the resource servers they are for.
    /// Defaults to the issuer, whose userinfo endpoint accepts them.
    pub access_token_audience: Option<String>,
    pub device_code_ttl: Duration,
    /// Characters in new user codes, 8–12 (longer when very many codes are pending at once:
    /// see `devicegate_core::limits`).
    pub user_code_length: usize,
    pub poll_interval_secs: u32,
    pub access_token_ttl: Duration,
    /// Each refresh token's lifetime, renewed by every rotation…
    pub refresh_token_ttl: Duration,
    /// …but never past its family's start (the redemption) plus this.
    pub refresh_token_max_lifetime: Duration,
    pub flow_ttl: Duration,
    pub signing_alg: Algorithm,
    /// Signs access tokens when set (say ES256 beside RS256 ID tokens: one RSA signature per
    /// token set instead of two); `None` signs them with `signing_alg`.
    pub access_token_signing_alg: Option<Algorithm>,
    /// Origins allowed to call the flows API from a browser; empty means no CORS. They may
    /// also present passkey assertions.
    pub cors_allowed_origins: Vec<String>,
    /// The WebAuthn relying party id for passkeys; `None` is the issuer's host.
    pub webauthn_rp_id: Option<String>,
    /// How long audit events are kept.
    pub audit_retention: Duration,
    pub max_concurrent_hashes: usize,
    pub max_body_bytes: usize,
    /// Proxies whose `X-Forwarded-For` is believed; none by default.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a browser session of the verification pages lasts.
    pub session_ttl: Duration,
    /// Caps on pending codes and flows (see `limits`).
    pub limits: limits::LimitSettings,
    /// Look of the verification pages.
    pub branding: Branding,
    /// A directory whose templates replace the built-in ones of the same name.
    pub templates_dir: Option<std::path::PathBuf>,
    /// One language for every page and flows-API message, whatever the browser asks for.
    pub language: Option<String>,
    /// A directory of `<lang>.ftl` files whose messages replace or add to the built-in ones.
    pub locales_dir: Option<std::path::PathBuf>,
    /// A MaxMind-format (GeoIP2 / GeoLite2 City or Country) database: where devices and
    /// approvers are, in words, on the consent page and in the flows API.
    pub geoip_database: Option<std::path::PathBuf>,
    /// Timeouts and the per-address cap of client connections, and the shutdown drain.
    pub connections: ConnectionLimits,
}

/// Product name, logo and colour of the verification pages.
#[derive(Debug, Clone)]
pub struct Branding {
    pub product_name: String,
    /// The logo's bytes and media type, served from `/device/assets/logo`.
    pub logo: Option<(Vec<u8>, String)>,
    /// The accent colour, `#rrggbb`.
    pub accent_color: String,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            product_name: "devicegate".into(),
            logo: None,
            accent_color: "#2155cd".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            issuer: "http://localhost:8080".into(),
            verification_uri: None,
            access_token_audience: None,
            device_code_ttl: Duration::from_secs(600),
            user_code_length: devicegate_core::user_code::LENGTH,
            poll_interval_secs: 5,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_ttl: Duration::from_secs(30 * 86_400),
            refresh_token_max_lifetime: Duration::from_secs(90 * 86_400),
            flow_ttl: Duration::from_secs(900),
            signing_alg: Algorithm::Rs256,
            access_token_signing_alg: None,
            cors_allowed_origins: Vec::new(),
            webauthn_rp_id: None,
            audit_retention: Duration::from_secs(90 * 86_400),
            max_concurrent_hashes: 2,
            max_body_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            session_ttl: Duration::from_secs(8 * 3600),
            limits: limits::LimitSettings::default(),
            branding: Branding::default(),
            templates_dir: None,
            language: None,
            locales_dir: None,
            geoip_database: None,
            connections: ConnectionLimits::default(),
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub settings: Settings,
    /// The store, for what belongs to no tenant; each tenant's records through its
    /// [`tenant::Tenant::store`].
    pub(crate) store: scoped::Shared,
    pub passwords: Passwords,
    pub passkeys: passkeys::Passkeys,
    pub audit: audit::Audit,
    pub limits: limits::Limits,
    pub metrics: Arc<metrics::Metrics>,
    providers: upstream::Providers,
    clients: client_auth::ClientCache,
    tenants: tenant::Tenants,
    pages: pages::Pages,
    pub i18n: i18n::Catalog,
    pub geoip: proximity::GeoIp,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Loads (or on first start creates) the default tenant and its signing keys.
    pub async fn new(settings: Settings, store: Arc<dyn Store>) -> Result<AppState, StartError> {
        tenant::ensure_default(store.as_ref()).await?;
        let audit = audit::Audit::start(store.clone());
        let store = scoped::Shared::new(store);
        let passwords = Passwords::new(settings.max_concurrent_hashes);
        let limits = limits::Limits::default();
        let pages = pages::Pages::new(&settings)?;
        let passkeys = passkeys::Passkeys::new(&settings);
        let i18n = i18n::Catalog::new(
            settings.language.as_deref(),
            settings.locales_dir.as_deref(),
        )?;
        let geoip = proximity::GeoIp::open(settings.geoip_database.as_deref())?;
        let state = AppState(Arc::new(Inner {
            settings,
            store,
            passwords,
            passkeys,
            audit,
            limits,
            metrics: Arc::new(metrics::Metrics::new()),
            providers: upstream::Providers::default(),
            clients: client_auth::ClientCache::default(),
            tenants: tenant::Tenants::default(),
            pages,
            i18n,
            geoip,
        }));
        let default = state
            .store
            .get_tenant(devicegate_store::DEFAULT_TENANT)
            .await?;
        tenant::load(&state, default).await?;
        Ok(state)
    }

    /// The default tenant (loaded at start).
    pub async fn default_tenant(&self) -> Result<Arc<tenant::Tenant>, OAuthError> {
        self.tenant(devicegate_store::DEFAULT_TENANT).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Store(#[from] devicegate_store::StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] devicegate_core::keys::KeyError),
    #[error("templates: {0}")]
    Templates(String),
    #[error("languages: {0}")]
    Languages(String),
    #[error("GeoIP database: {0}")]
    GeoIp(String),
}

/// The wall clock, read only here.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_millis(d.as_millis() as i64)
}

/// The routes every tenant has, under its own prefix.
fn tenant_routes(state: &AppState) -> Router<AppState> {
    let settings = &state.settings;
    let no_store = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    let pragma =
        SetResponseHeaderLayer::overriding(header::PRAGMA, HeaderValue::from_static("no-cache"));
    let oauth = Router::new()
        .route("/oauth2/device_authorization", post(device::authorize))
        .route("/oauth2/token", post(token::token))
        .route("/oauth2/revoke", post(revocation::revoke))
        .route("/oauth2/introspect", post(revocation::introspect))
        .route(
            "/oauth2/userinfo",
            get(userinfo::userinfo).post(userinfo::userinfo),
        )
        .merge(dialects::idcs::router())
        .merge(dialects::ocient::router())
        .method_not_allowed_fallback(error::method_not_allowed)
        .merge(flows_api::router(state))
        .layer(pragma)
        .layer(no_store);
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::oauth_metadata),
        )
        .route("/oauth2/jwks", get(discovery::jwks))
        .route(
            "/oauth2/authorize",
            get(discovery::authorize).post(discovery::authorize),
        )
        // Set per part, before merging: the flows API sets its own under its CORS layer.
        .method_not_allowed_fallback(error::method_not_allowed)
        .merge(oauth)
        .merge(pages::router(settings))
}

/// Every route devicegate serves: the default tenant's at the root, every tenant's under
/// `/t/{tenant}`, and the PingOne dialect's under `/{envID}`.
pub fn router(state: AppState) -> Router {
    use axum::middleware::from_fn_with_state;
    let scoped = tenant_routes(&state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::endpoint))
        .merge(
            scoped
                .clone()
                .layer(from_fn_with_state(state.clone(), tenant::default_tenant)),
        )
        .nest(
            "/t/{tenant}",
            scoped.layer(from_fn_with_state(state.clone(), tenant::from_path)),
        )
        .merge(
            dialects::pingone::router().layer(from_fn_with_state(state.clone(), tenant::from_path)),
        )
        .fallback(error::not_found)
        // Outside the routes, so that every route (and the fallback) is counted and timed.
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panic_response,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// `/readyz`: 200 while the store answers, 503 JSON otherwise (for load balancers).
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<&'static str, OAuthError> {
    state.store.ping().await?;
    Ok("ready")
}

/// The span of a request. Paths can carry flow ids, which are secrets: they are redacted.
fn request_span(req: &http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!("request", method = %req.method(), path = %redact_path(req.uri().path()))
}

/// Replaces every path segment that is a flow id with its prefix.
pub fn redact_path(path: &str) -> String {
    let prefix = devicegate_core::secret::SecretKind::FlowId.prefix();
    path.split('/')
        .map(|seg| {
            if seg.starts_with(prefix) {
                "dgf_***"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains in-flight requests for
/// at most `connections.shutdown_drain` (see [`ConnectionLimits`] for the other limits).
/// Also sweeps expired records once a minute.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = tokio::spawn(sweep_forever(
        state.store.clone(),
        state.settings.audit_retention,
    ));
    let limits = state.settings.connections.clone();
    let proxies = state.settings.trusted_proxies.clone();
    let metrics = state.metrics.clone();
    let out = conn::serve(listener, router(state), limits, proxies, metrics, shutdown).await;
    sweeper.abort();
    out
}

/// How long expired grants and flows are kept, so that late polls still hear
/// `expired_token` rather than `invalid_grant`.
const SWEEP_GRACE: Duration = Duration::from_secs(3600);

async fn sweep_forever(store: scoped::Shared, audit_retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = now();
        let grace_before = Timestamp::from_millis(now.as_millis() - SWEEP_GRACE.as_millis() as i64);
        match store.sweep(now, grace_before).await {
            Ok(c) => tracing::debug!(
                grants = c.grants,
                flows = c.flows,
                refresh_tokens = c.refresh_tokens,
                upstream_states = c.upstream_states,
                "swept"
            ),
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        let before = Timestamp::from_millis(now.as_millis() - audit_retention.as_millis() as i64);
        if let Err(e) = store.sweep_audit(before).await {
            tracing::warn!(error = %e, "audit sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn flow_ids_never_reach_the_log() {
        assert_eq!(
            super::redact_path("/api/v1/flows/dgf_abc123"),
            "/api/v1/flows/dgf_***"
        );
        assert_eq!(super::redact_path("/oauth2/token"), "/oauth2/token");
    }
}
