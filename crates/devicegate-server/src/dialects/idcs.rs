//! Oracle Identity Cloud Service: `POST /oauth2/v1/device` and `POST /oauth2/v1/token`.
//!
//! IDCS takes `response_type=device_code` on the device endpoint and answers the RFC 8628
//! members with the user code undecorated (`SDFGHJKL`). Its errors are OAuth's: 400 for a bad
//! request, 401 for an unknown or unauthenticated client. Polling is the native token
//! endpoint under IDCS's path.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::AppState;
use crate::device::authorize_form;
use crate::error::OAuthError;
use crate::extract::ClientAddr;
use crate::extract::OAuthForm;
use crate::tenant::Tenant;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth2/v1/device", post(device))
        .route("/oauth2/v1/token", post(crate::token::token))
}

async fn device(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ip: ClientAddr,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<Value>, OAuthError> {
    match form.get("response_type") {
        Some("device_code") => {}
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "response_type must be device_code",
            ));
        }
        None => {
            return Err(OAuthError::invalid_request(
                "parameter `response_type` is missing",
            ));
        }
    }
    let issued = authorize_form(&state, &tenant, ip, &headers, &form).await?;
    let uri = tenant.verification_uri(&state);
    let code = issued.grant.user_code.canonical().to_owned();
    Ok(Json(json!({
        "expires_in": issued.ttl.as_secs(),
        "device_code": issued.device_code.expose(),
        "user_code": code,
        "verification_uri": uri,
        "verification_uri_complete": format!("{uri}?user_code={code}"),
        "interval": issued.grant.interval_secs,
    })))
}
