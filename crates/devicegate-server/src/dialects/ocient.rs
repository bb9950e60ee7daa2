//! Ocient's HTTP Query API: a service that hands a CLI a code (`POST /v1/sso_device_grant`)
//! and later a session token (`POST /v1/sso_device_grant_verify`).
//!
//! The grant is an ordinary device grant of the tenant's `ocient` client (created on first
//! use), approved on the ordinary pages; `verify` waits for the person's decision without
//! polling the database, on the store's grant-change announcements.
//!
//! ## Redeeming with a user code
//! Ocient redeems with the user code alone, which is weaker than RFC 8628's secret device
//! code: the user code is shown on a screen. devicegate mitigates it three ways:
//! - the first answer carries `device_secret` (the grant's RFC 8628 device code, 256 bits);
//!   `verify` with it is accepted from anywhere;
//! - `verify` without it is accepted only from the address that asked for the code;
//! - a grant is redeemed once (compare-and-swap), so a second `verify` gets "already used".

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use devicegate_core::Secret;
use devicegate_core::grant::{DeviceGrant, PollDecision};
use devicegate_core::scope::Scopes;
use devicegate_core::user_code::UserCode;
use devicegate_proto::GrantType;
use devicegate_store::{ClientRecord, StoreError};
use serde_json::{Value, json};

use crate::AppState;
use crate::cas::{self, Cas, Contended};
use crate::decision::{self, Look};
use crate::device::{Asker, issue};
use crate::error::{Failure, OAuthError};
use crate::extract::ClientAddr;
use crate::limits::{self};
use crate::tenant::Tenant;
use crate::token::{self, Ctx, TokenShape};

/// The client Ocient grants belong to, in each tenant.
pub const CLIENT_ID: &str = "ocient";
const DEFAULT_DATABASE: &str = "system";
const DEFAULT_TIMEOUT_SECS: u64 = 30;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sso_device_grant", post(grant))
        .route("/v1/sso_device_grant_verify", post(verify))
}

/// Ocient's error: an HTTP status and a status object.
#[derive(Debug)]
struct OcientError {
    http: StatusCode,
    sql_state: &'static str,
    vendor_code: i64,
    reason: String,
    retry_after: Option<u64>,
}

impl OcientError {
    fn new(
        http: StatusCode,
        sql_state: &'static str,
        vendor_code: i64,
        reason: impl Into<String>,
    ) -> Self {
        OcientError {
            http,
            sql_state,
            vendor_code,
            reason: reason.into(),
            retry_after: None,
        }
    }
    fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "22023", -1006, reason)
    }
    fn timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "HYT00",
            -1001,
            "Timed out waiting for the user to complete the device grant",
        )
    }
    fn denied() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "28000",
            -1002,
            "The user denied the device grant",
        )
    }
    fn expired() -> Self {
        Self::new(
            StatusCode::GONE,
            "08004",
            -1003,
            "The user code has expired",
        )
    }
    fn unknown() -> Self {
        Self::new(StatusCode::NOT_FOUND, "42704", -1004, "Unknown user code")
    }
    fn used() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "08003",
            -1005,
            "The user code has already been used",
        )
    }
    fn limited(retry_after: Duration) -> Self {
        let secs = retry_after.as_secs().max(1);
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "53400",
            -1009,
            format!("Too many attempts; retry in {secs} s"),
        );
        e.retry_after = Some(secs);
        e
    }
    fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "08001",
            -1008,
            "The service is temporarily unavailable",
        )
    }
    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "XX000",
            -1010,
            "The server could not complete the request",
        )
    }
}

impl From<Failure> for OcientError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NotFound => OcientError::unknown(),
            Failure::Unavailable => OcientError::unavailable(),
            Failure::Internal => OcientError::internal(),
        }
    }
}

impl From<StoreError> for OcientError {
    fn from(e: StoreError) -> Self {
        Failure::from(e).into()
    }
}

impl From<Contended> for OcientError {
    fn from(_: Contended) -> Self {
        OcientError::unavailable()
    }
}

/// From the shared redemption path: its failures as Ocient says them; a grant that cannot be
/// redeemed (its person is gone) is an unknown code.
impl From<OAuthError> for OcientError {
    fn from(e: OAuthError) -> Self {
        match e.failure() {
            Some(f) => f.into(),
            None => OcientError::unknown(),
        }
    }
}

impl IntoResponse for OcientError {
    fn into_response(self) -> Response {
        let body = json!({"status": {"reason": self.reason, "sql_state": self.sql_state, "vendor_code": self.vendor_code}});
        let mut res = (
            self.http,
            [(http::header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        res
    }
}

fn ok_status(reason: &str) -> Value {
    json!({"reason": reason, "sql_state": "00000", "vendor_code": 0})
}

/// An optional JSON object body, without repeated keys.
fn body(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, OcientError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match crate::json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OcientError::bad_request(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(OcientError::bad_request(format!(
            "The request body must be a JSON object: {e}"
        ))),
    }
}

fn database(m: &serde_json::Map<String, Value>) -> Result<String, OcientError> {
    match m.get("database") {
        None | Some(Value::Null) => Ok(DEFAULT_DATABASE.into()),
        Some(Value::String(d))
            if !d.is_empty() && d.len() <= 128 && !d.chars().any(char::is_control) =>
        {
            Ok(d.clone())
        }
        Some(_) => Err(OcientError::bad_request(
            "database must be a non-empty string",
        )),
    }
}

/// The tenant's Ocient client, created on first use.
async fn client(tenant: &Tenant) -> Result<ClientRecord, OcientError> {
    match tenant.store.get_client(CLIENT_ID).await {
        Ok(c) => return Ok(c),
        Err(StoreError::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let record = ClientRecord {
        tenant: tenant.id.clone(),
        id: CLIENT_ID.into(),
        name: "Ocient".into(),
        secret_hash: None,
        scopes: Scopes::parse("openid profile").unwrap_or_default(),
        grant_types: vec![GrantType::DeviceCode.as_str().into()],
        device_code_ttl_secs: None,
        poll_interval_secs: None,
        created_at: crate::now(),
        device_policy: Default::default(),
    };
    match tenant.store.create_client(&record).await {
        Ok(()) | Err(StoreError::AlreadyExists) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(tenant.store.get_client(CLIENT_ID).await?)
}

/// `POST /v1/sso_device_grant`.
async fn grant(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ip: ClientAddr,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>, OcientError> {
    let database = database(&body(&bytes)?)?;
    let client = client(&tenant).await?;
    let who = Asker::new(ip, &headers);
    let issued = issue(
        &state,
        &tenant,
        &client,
        client.scopes.clone(),
        who,
        Some(database),
    )
    .await
    .map_err(|e| match e.retry_after {
        Some(secs) => OcientError::limited(std::time::Duration::from_secs(secs)),
        None => e.into(),
    })?;
    let uri = tenant.verification_uri(&state);
    let code = issued.grant.user_code.canonical().to_owned();
    Ok(Json(json!({
        "verification_uri_complete": format!("{uri}?code={code}"),
        "verification_uri": uri,
        "user_code": code,
        "device_secret": issued.device_code.expose(),
        "expires_in": issued.ttl.as_secs(),
        "status": ok_status("Device authorization initiated"),
    })))
}

fn timeout(m: &serde_json::Map<String, Value>) -> Result<Duration, OcientError> {
    let secs = match m.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| OcientError::bad_request("timeout must be 1 to 600 seconds"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| OcientError::bad_request("timeout must be 1 to 600 seconds"))?,
        Some(_) => return Err(OcientError::bad_request("timeout must be 1 to 600 seconds")),
    };
    if !(1..=600).contains(&secs) {
        return Err(OcientError::bad_request("timeout must be 1 to 600 seconds"));
    }
    Ok(Duration::from_secs(secs))
}

/// `POST /v1/sso_device_grant_verify`: waits until the person decides or `timeout` passes.
async fn verify(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    bytes: Bytes,
) -> Result<Json<Value>, OcientError> {
    let m = body(&bytes)?;
    let Some(Value::String(input)) = m.get("user_code") else {
        return Err(OcientError::bad_request("user_code is required"));
    };
    let wait = timeout(&m)?;
    let secret = match m.get("device_secret") {
        Some(Value::String(secret)) => Some(Secret::from_presented(secret.as_str())),
        Some(_) => return Err(OcientError::bad_request("device_secret must be a string")),
        None => None,
    };
    // A code typed here is a guess like one typed on the pages: paid for first, against the
    // same per-address limit and guessing budget, and given back only when it is right.
    let code = UserCode::parse(input);
    let paid = limits::pay_for_code(&state, ip, None, code.as_ref(), crate::now())
        .await?
        .map_err(|r| OcientError::limited(r.retry_after))?;
    let code = code.ok_or_else(OcientError::unknown)?;
    let grant = load(&tenant, &code).await?;
    // A live code presented without its secret from another address is answered exactly like
    // an unknown one: whether a code exists is not for strangers to learn.
    let allowed = match &secret {
        Some(secret) => grant.device_code_hash.matches(&secret.hash()),
        None => grant.requester.ip.as_deref() == Some(ip.to_string().as_str()),
    };
    if !allowed {
        return Err(OcientError::unknown());
    }
    paid.refund(&state).await;
    let asked_database = database(&m)?;
    let granted_database = grant
        .context
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE.into());
    if m.contains_key("database") && asked_database != granted_database {
        return Err(OcientError::bad_request(
            "database differs from the one the code was requested for",
        ));
    }
    let client = state.clients.get(&tenant, CLIENT_ID).await?;
    let cx = Ctx {
        state: &state,
        tenant: &tenant,
        client: &client,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let (t, code) = (&*tenant, &code);
    let redeemed = decision::wait(t, deadline, || {
        // The poll bookkeeping of RFC 8628 is not recorded: this is a wait, not a poll.
        cas::retry(move || async move {
            let grant = load(t, code).await?;
            let now = crate::now();
            match grant.on_poll(CLIENT_ID, now) {
                PollDecision::Issue {
                    next,
                    subject,
                    auth_time,
                } => Ok(
                    match token::redeem(cx, &grant, next, &subject, auth_time, now, &SESSION)
                        .await?
                    {
                        Some(r) => Cas::Done(Look::Decided(r)),
                        None => Cas::Lost,
                    },
                ),
                PollDecision::AccessDenied => Err(OcientError::denied()),
                PollDecision::ExpiredToken => Err(OcientError::expired()),
                PollDecision::InvalidGrant => Err(OcientError::used()),
                PollDecision::Pending { .. } | PollDecision::SlowDown { .. } => {
                    Ok(Cas::Done(Look::Pending { grant_id: grant.id }))
                }
            }
        })
    })
    .await?
    .ok_or_else(OcientError::timeout)?;
    Ok(Json(json!({
        "access_token": redeemed.tokens.access_token,
        "username": redeemed.user.username,
        "database": granted_database,
        "status": ok_status("Authentication successful"),
    })))
}

/// Ocient's session token: the grant's access token, carrying the database it was asked for
/// (from the grant) and the person's username. No ID token or refresh token: Ocient's answer
/// has no place for them.
const SESSION: TokenShape = TokenShape {
    id_and_refresh: false,
    access_claims: |user, context, claims| {
        claims["database"] = json!(context.unwrap_or(DEFAULT_DATABASE));
        claims["preferred_username"] = json!(user.username);
    },
};

async fn load(tenant: &Tenant, code: &UserCode) -> Result<DeviceGrant, OcientError> {
    match tenant.store.get_grant_by_user_code(code).await {
        Ok(g) if g.client_id == CLIENT_ID => Ok(g),
        Ok(_) | Err(StoreError::NotFound) => Err(OcientError::unknown()),
        Err(e) => Err(e.into()),
    }
}
