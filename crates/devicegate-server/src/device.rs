//! `POST /oauth2/device_authorization` (RFC 8628 §3.1–3.2).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use devicegate_core::grant::{DeviceGrant, GrantStatus, Requester};
use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_core::user_code::UserCode;
use devicegate_proto::{DeviceAuthorizationResponse, ErrorCode, GrantType};
use devicegate_store::{ClientRecord, StoreError};
use http::HeaderMap;
use http::header::USER_AGENT;

use crate::client_auth::{authenticate_client, ensure_grant_allowed};
use crate::error::OAuthError;
use crate::extract::OAuthForm;
use crate::{AppState, now};

/// A user-code collision is one in 2^34 per pending code; a handful of retries is plenty.
const USER_CODE_ATTEMPTS: usize = 8;

pub async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<DeviceAuthorizationResponse>, OAuthError> {
    let client = authenticate_client(&state, &headers, &form).await?;
    ensure_grant_allowed(&client, GrantType::DeviceCode)?;
    let scopes = requested_scopes(&client, form.get("scope"))?;
    let requester = Requester {
        ip: Some(peer.ip().to_string()),
        user_agent: headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
    };
    let ttl = client
        .device_code_ttl_secs
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(state.settings.device_code_ttl);
    let interval_secs = client
        .poll_interval_secs
        .unwrap_or(state.settings.poll_interval_secs);
    let now = now();
    for _ in 0..USER_CODE_ATTEMPTS {
        let device_code = Secret::generate(SecretKind::DeviceCode);
        let user_code = UserCode::generate();
        let grant = DeviceGrant {
            id: random_id(),
            device_code_hash: device_code.hash(),
            user_code: user_code.clone(),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            status: GrantStatus::Pending,
            created_at: now,
            expires_at: now.plus(ttl),
            interval_secs,
            last_poll_at: None,
            flow_id: None,
            flow_expires_at: None,
            requester: requester.clone(),
            version: 0,
        };
        match state.store.create_grant(&grant).await {
            Ok(()) => {
                crate::metrics::code_issued();
                let verification_uri = state
                    .settings
                    .verification_uri
                    .clone()
                    .unwrap_or_else(|| format!("{}/device", state.settings.issuer));
                return Ok(Json(DeviceAuthorizationResponse {
                    device_code: device_code.expose().to_owned(),
                    verification_uri_complete: Some(format!(
                        "{verification_uri}?user_code={}",
                        user_code.display()
                    )),
                    verification_uri,
                    user_code: user_code.display(),
                    expires_in: ttl.as_secs(),
                    interval: Some(u64::from(interval_secs)),
                }));
            }
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    tracing::error!("could not find a free user code");
    Err(OAuthError::internal())
}

/// RFC 6749 §3.3: no `scope` means the client's default scopes; every scope asked for must
/// be allowed for the client.
pub fn requested_scopes(client: &ClientRecord, scope: Option<&str>) -> Result<Scopes, OAuthError> {
    let Some(raw) = scope else {
        return Ok(client.scopes.clone());
    };
    let asked = Scopes::parse(raw).ok_or_else(|| {
        OAuthError::bad(ErrorCode::InvalidScope, "the scope parameter is malformed")
    })?;
    // Only spaces: as good as no scope parameter.
    if asked.is_empty() {
        return Ok(client.scopes.clone());
    }
    let refused: Vec<&str> = asked.not_in(&client.scopes).collect();
    if !refused.is_empty() {
        return Err(OAuthError::bad(
            ErrorCode::InvalidScope,
            format!("scope not allowed for this client: {}", refused.join(" ")),
        ));
    }
    Ok(asked)
}
