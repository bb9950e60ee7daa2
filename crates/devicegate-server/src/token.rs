//! `POST /oauth2/token`: the device-code grant (RFC 8628 §3.4–3.5) and refresh (RFC 6749 §6).

use axum::Json;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use devicegate_core::grant::{DeviceGrant, Paced, PollDecision};
use devicegate_core::jwt::{self, Issue, UserClaims};
use devicegate_core::scope::{self, Scopes};
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::{ErrorCode, GrantType, TokenResponse};
use devicegate_store::{ClientRecord, HeldPoll, RefreshToken, StoreError, UserRecord};
use http::HeaderMap;

use crate::client_auth::{authenticate_client, ensure_grant_allowed};
use crate::error::OAuthError;
use crate::extract::OAuthForm;
use crate::tenant::Tenant;
use crate::{AppState, now};

/// The `aud` of access tokens: configured for the default tenant, else the tenant's issuer.
pub(crate) fn access_token_audience<'a>(state: &'a AppState, tenant: &'a Tenant) -> &'a str {
    match &state.settings.access_token_audience {
        Some(aud) if tenant.is_default() => aud,
        _ => &tenant.issuer,
    }
}

/// Re-reads after a lost compare-and-swap before giving up. Each retry means another request
/// changed the grant; a handful is far beyond what honest clients cause.
const CAS_ATTEMPTS: usize = 16;

pub async fn token(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<TokenResponse>, OAuthError> {
    let grant_type = GrantType::parse(form.require("grant_type")?).ok_or_else(|| {
        OAuthError::bad(
            ErrorCode::UnsupportedGrantType,
            "this grant type is not supported",
        )
    })?;
    let client = authenticate_client(&state, &tenant, &headers, &form).await?;
    ensure_grant_allowed(&client, grant_type)?;
    match grant_type {
        GrantType::DeviceCode => device_code(&state, &tenant, &client, &form).await,
        GrantType::RefreshToken => refresh(&state, &tenant, &client, &form).await,
    }
    .map(Json)
}

/// RFC 8628 §3.4: exchange a device code; §3.5 decides the error while it is not approved.
pub(crate) async fn device_code(
    state: &AppState,
    tenant: &Tenant,
    client: &ClientRecord,
    form: &OAuthForm,
) -> Result<TokenResponse, OAuthError> {
    let presented = form.require("device_code")?;
    let hash = Secret::from_presented(presented).hash();
    // Nearly every poll: a pending grant whose poll state the store holds in memory.
    match state.store.poll_held(&hash, &tenant.id, &client.id, now()) {
        Some(HeldPoll::Paced(Paced::Pending)) => return Err(pending()),
        Some(HeldPoll::Paced(Paced::SlowDown { interval_secs })) => {
            return Err(slow_down(state, interval_secs));
        }
        Some(HeldPoll::Expired) => return Err(expired(state)),
        None => {}
    }
    for _ in 0..CAS_ATTEMPTS {
        let grant = match find_grant(state, presented, &hash).await {
            // Another tenant's code is no code here.
            Ok(g) if g.tenant == tenant.id => g,
            Ok(_) => return Err(OAuthError::invalid_grant("unknown device code")),
            Err(StoreError::NotFound) => {
                return Err(OAuthError::invalid_grant("unknown device code"));
            }
            Err(e) => return Err(e.into()),
        };
        let now = now();
        let written = match grant.on_poll(&client.id, now) {
            PollDecision::InvalidGrant => {
                return Err(OAuthError::invalid_grant(
                    "unknown or already used device code",
                ));
            }
            PollDecision::ExpiredToken => return Err(expired(state)),
            PollDecision::AccessDenied => {
                return Err(OAuthError::bad(
                    ErrorCode::AccessDenied,
                    "the request was denied",
                ));
            }
            PollDecision::Pending { next } => state
                .store
                .record_poll(&next)
                .await
                .map(|()| Err(pending())),
            PollDecision::SlowDown {
                next,
                interval_secs,
            } => (state.store.record_poll(&next).await)
                .map(|()| Err(slow_down(state, interval_secs))),
            PollDecision::Issue {
                next,
                subject,
                auth_time,
            } => {
                let out = redeem(
                    Ctx {
                        state,
                        tenant,
                        client,
                    },
                    &grant,
                    next,
                    &subject,
                    auth_time,
                    now,
                )
                .await;
                match out {
                    Err(Redeem::Lost) => Err(StoreError::Conflict),
                    Err(Redeem::Failed(e)) => return Err(e),
                    Ok(tokens) => Ok(Ok(tokens)),
                }
            }
        };
        match written {
            Ok(answer) => return answer,
            Err(StoreError::Conflict) => continue,
            Err(StoreError::NotFound) => {
                return Err(OAuthError::invalid_grant("unknown device code"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(OAuthError::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TemporarilyUnavailable,
        "too many concurrent requests for this device code",
    ))
}

fn pending() -> OAuthError {
    OAuthError::bad(
        ErrorCode::AuthorizationPending,
        "the request has not been approved yet",
    )
}

fn slow_down(state: &AppState, interval_secs: u32) -> OAuthError {
    state.metrics.slow_down();
    OAuthError::bad(ErrorCode::SlowDown, "polling too fast; slow down").with_interval(interval_secs)
}

fn expired(state: &AppState) -> OAuthError {
    state.metrics.expired_token();
    OAuthError::bad(ErrorCode::ExpiredToken, "the device code has expired")
}

/// The grant a presented device code names: by the grant id it carries (its selector), the
/// stored hash then compared in constant time; a code without one (issued by an earlier
/// version) by its hash.
async fn find_grant(
    state: &AppState,
    presented: &str,
    hash: &SecretHash,
) -> Result<DeviceGrant, StoreError> {
    match Secret::device_code_selector(presented) {
        Some(id) => match state.store.get_grant(id).await {
            Ok(g) if g.device_code_hash.matches(hash) => Ok(g),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) => Err(e),
        },
        None => state.store.get_grant_by_device_code(hash).await,
    }
}

/// Who a token request is for: the server, the tenant, the authenticated client.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    state: &'a AppState,
    tenant: &'a Tenant,
    client: &'a ClientRecord,
}

enum Redeem {
    /// Another poll redeemed the code first.
    Lost,
    Failed(OAuthError),
}

/// Marks the grant redeemed (compare-and-swap, with its refresh token in the same
/// transaction), and only then signs: a poll that loses the race costs no signature.
async fn redeem(
    cx: Ctx<'_>,
    grant: &DeviceGrant,
    next: DeviceGrant,
    subject: &str,
    auth_time: Timestamp,
    now: Timestamp,
) -> Result<TokenResponse, Redeem> {
    let Ctx {
        state,
        tenant,
        client,
    } = cx;
    let user = match state.store.get_user(subject).await {
        Ok(u) if u.tenant == tenant.id => u,
        Ok(_) => {
            return Err(Redeem::Failed(OAuthError::invalid_grant(
                "the approving user no longer exists",
            )));
        }
        Err(StoreError::NotFound) => {
            return Err(Redeem::Failed(OAuthError::invalid_grant(
                "the approving user no longer exists",
            )));
        }
        Err(e) => return Err(Redeem::Failed(e.into())),
    };
    let refresh = wants_refresh(client, &grant.scopes).then(|| {
        new_refresh_token(
            state,
            client,
            subject,
            &grant.scopes,
            auth_time,
            Family {
                id: random_id(),
                started_at: now,
            },
            now,
        )
    });
    match state
        .store
        .redeem_grant(&next, refresh.as_ref().map(|(_, r)| r))
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(Redeem::Lost),
        Err(StoreError::NotFound) => {
            return Err(Redeem::Failed(OAuthError::invalid_grant(
                "unknown device code",
            )));
        }
        Err(e) => return Err(Redeem::Failed(e.into())),
    }
    issue_tokens(
        Ctx {
            state,
            tenant,
            client,
        },
        &user,
        &grant.scopes,
        auth_time,
        now,
        refresh.map(|(s, _)| s),
    )
    .await
    .map_err(Redeem::Failed)
}

/// Refresh tokens go to clients granted `offline_access` that may use the refresh grant.
fn wants_refresh(client: &ClientRecord, scopes: &Scopes) -> bool {
    scopes.contains(scope::OFFLINE_ACCESS)
        && client
            .grant_types
            .iter()
            .any(|g| g == GrantType::RefreshToken.as_str())
}

/// The rotations of one refresh token: its id, and when its first token was issued.
struct Family {
    id: String,
    started_at: Timestamp,
}

/// When every token of a family started at `started_at` has expired, however often rotated.
fn family_ends(state: &AppState, started_at: Timestamp) -> Timestamp {
    started_at.plus(state.settings.refresh_token_max_lifetime)
}

/// A new token of `family`: it lives `refresh_token_ttl`, but not past the family's end.
fn new_refresh_token(
    state: &AppState,
    client: &ClientRecord,
    subject: &str,
    scopes: &Scopes,
    auth_time: Timestamp,
    family: Family,
    now: Timestamp,
) -> (Secret, RefreshToken) {
    let secret = Secret::generate(SecretKind::RefreshToken);
    let record = RefreshToken {
        hash: secret.hash(),
        tenant: client.tenant.clone(),
        family_id: family.id,
        family_started_at: family.started_at,
        client_id: client.id.clone(),
        subject: subject.to_owned(),
        scopes: scopes.clone(),
        auth_time,
        created_at: now,
        expires_at: now
            .plus(state.settings.refresh_token_ttl)
            .min(family_ends(state, family.started_at)),
        used: false,
    };
    (secret, record)
}

async fn issue_tokens(
    cx: Ctx<'_>,
    user: &UserRecord,
    scopes: &Scopes,
    auth_time: Timestamp,
    now: Timestamp,
    refresh: Option<Secret>,
) -> Result<TokenResponse, OAuthError> {
    let Ctx {
        state,
        tenant,
        client,
    } = cx;
    let access_ttl_secs = state.settings.access_token_ttl.as_secs();
    let issue = Issue {
        issuer: &tenant.issuer,
        audience: access_token_audience(state, tenant),
        client_id: &client.id,
        subject: &user.id,
        scopes,
        now,
        access_ttl_secs,
        auth_time,
    };
    let id_claims = scopes
        .contains(scope::OPENID)
        .then(|| jwt::id_token_claims(&issue, &user_claims(user)));
    let (access_token, id_token) = tenant
        .keys
        .sign_token_set(jwt::access_token_claims(&issue), id_claims)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "signing failed");
            OAuthError::internal()
        })?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: access_ttl_secs,
        refresh_token: refresh.map(|s| s.expose().to_owned()),
        id_token,
        scope: scopes.to_string(),
    })
}

pub fn user_claims(user: &UserRecord) -> UserClaims {
    UserClaims {
        subject: user.id.clone(),
        username: user.username.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
    }
}

/// RFC 6749 §6, with rotation: every use returns a new refresh token; presenting one that was
/// already rotated revokes its whole family (OAuth 2.0 Security BCP §4.14.2). Rotation renews
/// a token's lifetime, never its family's: the family ends `refresh_token_max_lifetime` after
/// its first token (BCP §4.14.2: refresh tokens may expire regardless of use).
async fn refresh(
    state: &AppState,
    tenant: &Tenant,
    client: &ClientRecord,
    form: &OAuthForm,
) -> Result<TokenResponse, OAuthError> {
    let presented = Secret::from_presented(form.require("refresh_token")?).hash();
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let token = match state.store.get_refresh_token(&presented).await {
        Ok(t) if t.tenant == tenant.id => t,
        Ok(_) => return Err(invalid()),
        Err(StoreError::NotFound) => return Err(invalid()),
        Err(e) => return Err(e.into()),
    };
    let now = now();
    // The family's end is checked too, so that a lowered maximum applies to tokens already
    // issued.
    if token.client_id != client.id
        || now >= token.expires_at
        || now >= family_ends(state, token.family_started_at)
    {
        return Err(invalid());
    }
    if token.used {
        revoke_family(state, &token.family_id, "reuse of a rotated refresh token").await?;
        return Err(invalid());
    }
    // The access token may narrow the scope; the new refresh token keeps the original
    // (RFC 6749 §6: a new refresh token's scope is identical to the old one's).
    let scopes = match form.get("scope") {
        None => token.scopes.clone(),
        Some(raw) => {
            let asked = Scopes::parse(raw).ok_or_else(|| {
                OAuthError::bad(ErrorCode::InvalidScope, "the scope parameter is malformed")
            })?;
            if asked.is_empty() {
                token.scopes.clone()
            } else if !asked.is_subset(&token.scopes) {
                return Err(OAuthError::bad(
                    ErrorCode::InvalidScope,
                    "a refresh may narrow the granted scope, never widen it",
                ));
            } else {
                asked
            }
        }
    };
    let user = match state.store.get_user(&token.subject).await {
        Ok(u) if u.tenant == tenant.id => u,
        Ok(_) => return Err(invalid()),
        Err(StoreError::NotFound) => {
            revoke_family(state, &token.family_id, "the user no longer exists").await?;
            return Err(invalid());
        }
        Err(e) => return Err(e.into()),
    };
    let (secret, next) = new_refresh_token(
        state,
        client,
        &token.subject,
        &token.scopes,
        token.auth_time,
        Family {
            id: token.family_id.clone(),
            started_at: token.family_started_at,
        },
        now,
    );
    match state.store.rotate_refresh_token(&presented, &next).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(invalid()),
        // Someone rotated it between our read and our write: the same token twice.
        Err(StoreError::Conflict) => {
            revoke_family(
                state,
                &token.family_id,
                "concurrent reuse of a refresh token",
            )
            .await?;
            return Err(invalid());
        }
        Err(e) => return Err(e.into()),
    }
    issue_tokens(
        Ctx {
            state,
            tenant,
            client,
        },
        &user,
        &scopes,
        token.auth_time,
        now,
        Some(secret),
    )
    .await
}

async fn revoke_family(state: &AppState, family_id: &str, why: &str) -> Result<(), OAuthError> {
    let n = state.store.revoke_refresh_family(family_id).await?;
    tracing::warn!(
        family_id,
        revoked = n,
        why,
        "revoked a refresh token family"
    );
    Ok(())
}
