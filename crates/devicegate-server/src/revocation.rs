//! Taking tokens back and asking about them: `POST /oauth2/revoke` (RFC 7009) and
//! `POST /oauth2/introspect` (RFC 7662).
//!
//! A refresh token is revoked with its whole family (every rotation of it); the family's
//! access tokens carry its id as `sid`, so they are refused from then on too, until they
//! expire. An access token alone is revoked by its `jti`. Revocations live in the store, so
//! every instance refuses a revoked token at once. Introspection answers `active: true`
//! only for a live token of this tenant: signed here, not expired, not revoked, of a person
//! who still exists.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use devicegate_core::Timestamp;
use devicegate_core::jwt;
use devicegate_core::secret::{Secret, SecretKind};
use devicegate_store::{ClientRecord, StoreError, UserRecord};
use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::client_auth::authenticate_client;
use crate::error::OAuthError;
use crate::extract::OAuthForm;
use crate::tenant::Tenant;
use crate::token::access_tokens_end;
use crate::{AppState, now};

/// What a presented token is, once read.
enum Read {
    Refresh(Box<devicegate_store::RefreshToken>),
    /// A signed, unexpired access token's claims.
    Access(Map<String, Value>),
    /// Not a token of this tenant (unknown, malformed, another issuer's).
    Unknown,
}

async fn read(tenant: &Tenant, token: &str) -> Result<Read, OAuthError> {
    if token.starts_with(SecretKind::RefreshToken.prefix()) {
        return match tenant
            .store
            .get_refresh_token(&Secret::from_presented(token).hash())
            .await
        {
            Ok(t) => Ok(Read::Refresh(Box::new(t))),
            Err(StoreError::NotFound) => Ok(Read::Unknown),
            Err(e) => Err(e.into()),
        };
    }
    // An expired access token reads as unknown: there is nothing left to revoke, and it is
    // not active.
    let claims = jwt::verify(
        tenant.keys.all(),
        token,
        jwt::TYP_ACCESS_TOKEN,
        &tenant.issuer,
        now(),
    );
    Ok(match claims {
        Ok(c) => Read::Access(c),
        Err(_) => Read::Unknown,
    })
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// `POST /oauth2/revoke` with `token` (and an optional `token_type_hint`, which is not
/// needed: the token says what it is). RFC 7009 §2.2: 200 whether or not there was anything
/// to revoke; a token of another client is left alone.
pub async fn revoke(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<Value>, OAuthError> {
    let client = authenticate_client(&state, &tenant, &headers, &form).await?;
    let token = form.require("token")?;
    let now = now();
    match read(&tenant, token).await? {
        Read::Refresh(t) if t.client_id == client.id => {
            let event = crate::audit::Event::new(&tenant, "revoked")
                .actor(&client.id)
                .client(&client.id)
                .family(&t.family_id)
                .detail("refresh token (RFC 7009)")
                .done();
            let n = tenant
                .store
                .revoke_refresh_family(
                    &t.family_id,
                    access_tokens_end(&state, now),
                    std::slice::from_ref(&event),
                )
                .await?;
            crate::audit::log(&event);
            tracing::info!(family_id = %t.family_id, client = %client.id, revoked = n, "revoked a refresh token family");
        }
        Read::Access(c) if str_claim(&c, "client_id") == Some(client.id.as_str()) => {
            let exp = c.get("exp").and_then(Value::as_i64).unwrap_or(0);
            if let Some(jti) = str_claim(&c, "jti")
                && exp > now.as_secs()
            {
                tenant
                    .store
                    .revoke_id(&format!("jti:{jti}"), Timestamp::from_millis(exp * 1000))
                    .await?;
                tracing::info!(client = %client.id, "revoked an access token");
                let mut e = crate::audit::Event::new(&tenant, "revoked")
                    .actor(&client.id)
                    .client(&client.id)
                    .detail("access token (RFC 7009)");
                if let Some(sid) = str_claim(&c, "sid") {
                    e = e.family(sid);
                }
                e.record(&state);
            }
        }
        _ => {}
    }
    Ok(Json(json!({})))
}

/// The person of an access token whose claims still stand at `now`: not expired, not
/// revoked (by its `jti` or its family's `sid`), its person still here; `None` otherwise.
pub(crate) async fn access_token_person(
    tenant: &Tenant,
    claims: &Map<String, Value>,
    now: Timestamp,
) -> Result<Option<UserRecord>, OAuthError> {
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= now.as_secs() {
        return Ok(None);
    }
    let Some(sub) = str_claim(claims, "sub") else {
        return Ok(None);
    };
    let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(0);
    if tenant
        .store
        .access_token_revoked(
            str_claim(claims, "jti"),
            str_claim(claims, "sid"),
            sub,
            Timestamp::from_millis(iat * 1000),
            now,
        )
        .await?
    {
        return Ok(None);
    }
    match tenant.store.get_user(sub).await {
        Ok(u) => Ok(Some(u)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `POST /oauth2/introspect` with `token`: for resource servers, which authenticate as
/// confidential clients of the tenant (RFC 7662 §2.1). `{"active": false}` for anything that
/// does not stand, whatever the reason.
pub async fn introspect(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<Value>, OAuthError> {
    let client = authenticate_client(&state, &tenant, &headers, &form).await?;
    confidential(&client)?;
    let token = form.require("token")?;
    let now = now();
    let inactive = || Ok(Json(json!({"active": false})));
    match read(&tenant, token).await? {
        Read::Access(claims) => {
            if access_token_person(&tenant, &claims, now).await?.is_none() {
                return inactive();
            }
            let mut out = claims;
            out.insert("active".into(), json!(true));
            out.insert("token_type".into(), json!("Bearer"));
            Ok(Json(Value::Object(out)))
        }
        Read::Refresh(t) => {
            let live = !t.used && now < t.expires_at;
            let person = match tenant.store.get_user(&t.subject).await {
                Ok(_) => true,
                Err(StoreError::NotFound) => false,
                Err(e) => return Err(e.into()),
            };
            if !(live && person) {
                return inactive();
            }
            Ok(Json(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": t.client_id,
                "sub": t.subject,
                "scope": t.scopes.to_string(),
                "iss": tenant.issuer,
                "iat": t.created_at.as_secs(),
                "exp": t.expires_at.as_secs(),
                "auth_time": t.auth_time.as_secs(),
                "sid": t.family_id,
            })))
        }
        Read::Unknown => inactive(),
    }
}

/// Introspection is for resource servers, which hold a secret; a public client (a device)
/// may not ask about tokens.
fn confidential(client: &ClientRecord) -> Result<(), OAuthError> {
    if client.secret_hash.is_some() {
        Ok(())
    } else {
        Err(OAuthError::bad(
            devicegate_proto::ErrorCode::UnauthorizedClient,
            "introspection is for confidential clients (resource servers)",
        ))
    }
}
