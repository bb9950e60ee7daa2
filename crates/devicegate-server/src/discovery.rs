//! The discovery handlers: RFC 8414 and OpenID Connect Discovery metadata, and the JWK Set,
//! served from the documents each tenant built once (`metadata.rs`).

use std::sync::Arc;

use crate::tenant::Tenant;
use axum::Extension;
use axum::http::header;
use axum::response::IntoResponse;

fn json(body: &str, content_type: &'static str) -> impl IntoResponse + use<> {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body.to_owned(),
    )
}

pub async fn openid_configuration(Extension(t): Extension<Arc<Tenant>>) -> impl IntoResponse {
    json(&t.discovery.openid, "application/json")
}

pub async fn oauth_metadata(Extension(t): Extension<Arc<Tenant>>) -> impl IntoResponse {
    json(&t.discovery.oauth, "application/json")
}

pub async fn jwks(Extension(t): Extension<Arc<Tenant>>) -> impl IntoResponse {
    json(&t.discovery.jwks, "application/jwk-set+json")
}

/// The authorization endpoint exists only because OpenID Connect Discovery requires one.
pub async fn authorize() -> crate::OAuthError {
    crate::OAuthError::bad(
        devicegate_proto::ErrorCode::UnsupportedResponseType,
        "this server issues tokens through the device authorization grant only",
    )
}
