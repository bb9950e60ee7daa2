//! A person's devices: every device they approved that still holds access (a live refresh
//! token family), and signing one out (its family revoked, its access tokens refused through
//! their `sid`). The account page (`/account/devices`) and the API
//! (`/api/v1/account/devices`, with a kept session) are its front-ends.
//!
//! A device approved without `offline_access` holds only an access token, for at most the
//! access-token lifetime; it is not listed.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Json, Router};
use devicegate_core::Timestamp;
use devicegate_proto::{DeviceView, ErrorCode, FlowClient};
use devicegate_store::{RefreshToken, StoreError, UserRecord};
use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::error::OAuthError;
use crate::extract::single_header;
use crate::tenant::Tenant;
use crate::token::access_tokens_end;
use crate::verification::{self, StepError};
use crate::{AppState, now};

/// One device, as the page and the API show it.
#[derive(Debug, Clone)]
pub struct Device {
    pub token: RefreshToken,
    pub client_name: String,
}

impl Device {
    /// When it last refreshed (never: `None`).
    pub fn last_refreshed_at(&self) -> Option<Timestamp> {
        (self.token.created_at != self.token.family_started_at).then_some(self.token.created_at)
    }

    pub fn view(&self) -> DeviceView {
        let t = &self.token;
        DeviceView {
            id: t.family_id.clone(),
            client: FlowClient {
                id: t.client_id.clone(),
                name: self.client_name.clone(),
            },
            scopes: t.scopes.to_vec(),
            approved_at: t.family_started_at.to_rfc3339(),
            last_refreshed_at: self.last_refreshed_at().map(|at| at.to_rfc3339()),
            expires_at: t.expires_at.to_rfc3339(),
            ip: t.requester_ip.clone(),
            user_agent: t.requester_agent.clone(),
        }
    }
}

/// The person's devices, newest first.
pub async fn list(tenant: &Tenant, user_id: &str) -> Result<Vec<Device>, StepError> {
    let families = tenant.store.list_families(user_id, now()).await?;
    let mut out = Vec::with_capacity(families.len());
    for token in families {
        let client_name = match tenant.store.get_client(&token.client_id).await {
            Ok(c) => c.name,
            Err(StoreError::NotFound) => token.client_id.clone(),
            Err(e) => return Err(e.into()),
        };
        out.push(Device { token, client_name });
    }
    Ok(out)
}

/// Signs the person's device `id` out: `false` when they have no such device.
pub async fn sign_out(
    state: &AppState,
    tenant: &Tenant,
    user_id: &str,
    id: &str,
) -> Result<bool, StepError> {
    // Theirs: one of their live families (no client names needed for that).
    let theirs = tenant
        .store
        .list_families(user_id, now())
        .await?
        .iter()
        .any(|t| t.family_id == id);
    if !theirs {
        return Ok(false);
    }
    let event = crate::audit::Event::new(tenant, "revoked")
        .actor(user_id)
        .family(id)
        .detail("signed out from the device list")
        .done();
    let n = tenant
        .store
        .revoke_refresh_family(
            id,
            access_tokens_end(state, now()),
            std::slice::from_ref(&event),
        )
        .await?;
    crate::audit::log(&event);
    tracing::info!(family_id = %id, user = %user_id, revoked = n, "a person signed a device out");
    Ok(true)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/account/devices", get(api_list))
        .route("/api/v1/account/devices/{id}", delete(api_sign_out))
}

/// The person of the kept session in `Authorization: Bearer dga_…`.
async fn api_person(tenant: &Tenant, headers: &HeaderMap) -> Result<UserRecord, OAuthError> {
    let header = single_header(headers, &AUTHORIZATION)
        .map_err(|_| OAuthError::invalid_request("the Authorization header is repeated"))?;
    let presented = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    match verification::kept_person(tenant, presented).await {
        Ok(u) => Ok(u),
        Err(StepError::InvalidSession) => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSession,
            "a kept session (Authorization: Bearer dga_…) is required",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `GET /api/v1/account/devices`.
async fn api_list(
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
) -> Result<Json<Vec<DeviceView>>, OAuthError> {
    let person = api_person(&tenant, &headers).await?;
    let devices = list(&tenant, &person.id).await?;
    Ok(Json(devices.iter().map(Device::view).collect()))
}

/// `DELETE /api/v1/account/devices/{id}`: 204, or 404 for a device that is not this
/// person's (or no longer holds access).
async fn api_sign_out(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, OAuthError> {
    let person = api_person(&tenant, &headers).await?;
    if sign_out(&state, &tenant, &person.id, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(OAuthError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such device",
        ))
    }
}
