//! `GET|POST /oauth2/userinfo` (OpenID Connect Core §5.3) with a Bearer access token.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::{Extension, Json};
use devicegate_core::jwt;
use devicegate_core::scope::{self, Scopes};
use devicegate_proto::ErrorCode;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use serde_json::{Map, Value, json};

use crate::error::OAuthError;
use crate::extract::single_header;
use crate::now;
use crate::tenant::Tenant;
use crate::token::user_claims;

/// RFC 6750 §3: the challenge says what went wrong.
fn bearer_error(status: StatusCode, code: Option<ErrorCode>, description: &str) -> OAuthError {
    let mut e = OAuthError::new(status, code.unwrap_or(ErrorCode::InvalidToken), description);
    e.www_authenticate = Some(match code {
        None => r#"Bearer realm="devicegate""#.to_owned(),
        Some(c) => format!(r#"Bearer realm="devicegate", error="{}""#, c.as_str()),
    });
    e
}

pub async fn userinfo(
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
) -> Result<Json<Value>, OAuthError> {
    let authorization = single_header(&headers, &AUTHORIZATION).map_err(|_| {
        bearer_error(
            StatusCode::BAD_REQUEST,
            Some(ErrorCode::InvalidRequest),
            "the Authorization header is repeated",
        )
    })?;
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or_else(|| {
            bearer_error(
                StatusCode::UNAUTHORIZED,
                None,
                "a Bearer access token is required",
            )
        })?;
    let invalid = || {
        bearer_error(
            StatusCode::UNAUTHORIZED,
            Some(ErrorCode::InvalidToken),
            "the access token is invalid or expired",
        )
    };
    let claims = jwt::verify(
        tenant.keys.all(),
        token,
        jwt::TYP_ACCESS_TOKEN,
        &tenant.issuer,
        now(),
    )
    .map_err(|_| invalid())?;
    // Revoked (the token, or its device's family), or its person gone: refused.
    let Some(user) = crate::revocation::access_token_person(&tenant, &claims, now()).await? else {
        return Err(invalid());
    };
    let scopes = claims
        .get("scope")
        .and_then(Value::as_str)
        .and_then(Scopes::parse)
        .unwrap_or_default();
    if !scopes.contains(scope::OPENID) {
        return Err(bearer_error(
            StatusCode::FORBIDDEN,
            Some(ErrorCode::InsufficientScope),
            "userinfo needs the openid scope",
        ));
    }
    let mut out = Map::new();
    out.insert("sub".into(), json!(user.id));
    user_claims(&user).add_scoped(&scopes, &mut out);
    Ok(Json(Value::Object(out)))
}
