//! `POST /oauth2/token`: the device-code grant (RFC 8628 §3.4–3.5) and refresh (RFC 6749 §6).

use axum::Json;
use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use devicegate_core::grant::{DeviceGrant, Paced, PollDecision};
use devicegate_core::jwt::{self, Issue, UserClaims};
use devicegate_core::scope::{self, Scopes};
use devicegate_core::secret::{Secret, SecretKind};
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::{ErrorCode, GrantType, TokenResponse};
use devicegate_store::{ClientRecord, HeldPoll, RefreshToken, StoreError, UserRecord};
use http::HeaderMap;

use crate::cas::{self, Cas, Contended};
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
    match tenant.store.poll_held(&hash, &client.id, now()) {
        Some(HeldPoll::Paced(Paced::Pending)) => return Err(pending()),
        Some(HeldPoll::Paced(Paced::SlowDown { interval_secs })) => {
            return Err(slow_down(state, interval_secs));
        }
        Some(HeldPoll::Expired) => return Err(expired(state)),
        None => {}
    }
    let cx = Ctx {
        state,
        tenant,
        client,
    };
    cas::retry(|| async move {
        let grant = match find_grant(tenant, presented, &hash).await {
            Ok(g) => g,
            Err(StoreError::NotFound) => {
                return Err(OAuthError::invalid_grant("unknown device code"));
            }
            Err(e) => return Err(e.into()),
        };
        let now = now();
        let written = match grant.on_poll(&client.id, now) {
            PollDecision::InvalidGrant => {
                replayed(state, tenant, client, &grant, now).await?;
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
            PollDecision::Pending { next } => {
                tenant.store.record_poll(&next).await.map(|()| pending())
            }
            PollDecision::SlowDown {
                next,
                interval_secs,
            } => (tenant.store.record_poll(&next).await).map(|()| slow_down(state, interval_secs)),
            PollDecision::Issue {
                next,
                subject,
                auth_time,
            } => {
                let redeemed = redeem(cx, &grant, next, &subject, auth_time, now, &NATIVE).await?;
                return Ok(match redeemed {
                    Some(r) => Cas::Done(r.tokens),
                    None => Cas::Lost,
                });
            }
        };
        match written {
            Ok(answer) => Err(answer),
            Err(StoreError::Conflict) => Ok(Cas::Lost),
            Err(StoreError::NotFound) => Err(OAuthError::invalid_grant("unknown device code")),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// How long after its redemption a device code presented again is taken for the same
/// device's overlapping poll (a retried request, a poll that lost the race), not a replay.
const REPLAY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A device code presented again by its client after it was redeemed: someone else holds a
/// copy, so everything issued from it is revoked (its refresh family and, through `sid`, its
/// access tokens), as oidc-provider does. Its own device signs in again.
async fn replayed(
    state: &AppState,
    tenant: &Tenant,
    client: &ClientRecord,
    grant: &DeviceGrant,
    now: Timestamp,
) -> Result<(), OAuthError> {
    let redeemed_at = match (&grant.status, grant.last_poll_at) {
        (devicegate_core::grant::GrantStatus::Redeemed, Some(at)) => at,
        _ => return Ok(()),
    };
    if grant.client_id != client.id || now < redeemed_at.plus(REPLAY_GRACE) {
        return Ok(());
    }
    let event = crate::audit::Event::new(tenant, "revoked")
        .actor(&client.id)
        .client(&client.id)
        .grant(&grant.id)
        .family(&grant.id)
        .detail("a redeemed device code was presented again")
        .done();
    let n = tenant
        .store
        .revoke_refresh_family(
            &grant.id,
            access_tokens_end(state, now),
            std::slice::from_ref(&event),
        )
        .await?;
    crate::audit::log(&event);
    tracing::warn!(
        grant = %grant.id,
        client = %client.id,
        revoked = n,
        "a redeemed device code was presented again: its tokens are revoked"
    );
    Ok(())
}

impl From<Contended> for OAuthError {
    fn from(_: Contended) -> Self {
        OAuthError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TemporarilyUnavailable,
            "too many concurrent requests for this device code",
        )
    }
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
    tenant: &Tenant,
    presented: &str,
    hash: &SecretHash,
) -> Result<DeviceGrant, StoreError> {
    match Secret::device_code_selector(presented) {
        Some(id) => match tenant.store.get_grant(id).await {
            Ok(g) if g.device_code_hash.matches(hash) => Ok(g),
            Ok(_) => Err(StoreError::NotFound),
            Err(e) => Err(e),
        },
        None => tenant.store.get_grant_by_device_code(hash).await,
    }
}

/// Who a token request is for: the server, the tenant, the authenticated client.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub state: &'a AppState,
    pub tenant: &'a Tenant,
    pub client: &'a ClientRecord,
}

/// What a surface's tokens carry beyond the access token RFC 9068 describes.
pub(crate) struct TokenShape {
    /// An ID token when the grant has `openid`, and a refresh token when it has
    /// `offline_access` (the token endpoint); a dialect whose answer has no place for them
    /// neither signs nor stores them.
    pub id_and_refresh: bool,
    /// Claims a dialect adds to the access token, given the person and the grant's `context`
    /// (what the dialect asked for with the code; `None` on refresh).
    pub access_claims: fn(&UserRecord, Option<&str>, &mut serde_json::Value),
}

/// The token endpoint's shape.
pub(crate) const NATIVE: TokenShape = TokenShape {
    id_and_refresh: true,
    access_claims: |_, _, _| {},
};

/// A redeemed grant's tokens and the person they are for.
pub(crate) struct Redeemed {
    pub tokens: TokenResponse,
    pub user: UserRecord,
}

/// The one redemption path, for the token endpoint and every dialect: marks the grant
/// redeemed (compare-and-swap, with its refresh token in the same transaction), and only then
/// signs, so a poll that loses the race costs no signature. `Ok(None)`: another request
/// redeemed or changed the grant first (read again: `cas`).
pub(crate) async fn redeem(
    cx: Ctx<'_>,
    grant: &DeviceGrant,
    next: DeviceGrant,
    subject: &str,
    auth_time: Timestamp,
    now: Timestamp,
    shape: &TokenShape,
) -> Result<Option<Redeemed>, OAuthError> {
    let Ctx {
        state,
        tenant,
        client,
    } = cx;
    let user = match tenant.store.get_user(subject).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => {
            return Err(OAuthError::invalid_grant(
                "the approving user no longer exists",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let refresh = (shape.id_and_refresh
        && client.device_policy.refresh_tokens
        && wants_refresh(client, &grant.scopes))
    .then(|| {
        new_refresh_token(
            state,
            client,
            Grantee {
                subject,
                scopes: &grant.scopes,
                auth_time,
                idp: grant.idp(),
                amr: grant.amr(),
                device: (
                    grant.requester.ip.as_deref(),
                    grant.requester.user_agent.as_deref(),
                ),
            },
            // A device's sign-in is one family, named by its grant: the access tokens' `sid`,
            // the device list's id, what a replayed device code revokes.
            Family {
                id: grant.id.clone(),
                started_at: now,
            },
            now,
        )
    });
    let event = crate::audit::Event::new(tenant, "redeemed")
        .actor(&client.id)
        .client(&client.id)
        .grant(&grant.id)
        .family(&grant.id)
        .detail(format!("for {}", user.id))
        .done();
    match tenant
        .store
        .redeem_grant(
            &next,
            refresh.as_ref().map(|(_, r)| r),
            std::slice::from_ref(&event),
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Ok(None),
        Err(StoreError::NotFound) => return Err(OAuthError::invalid_grant("unknown device code")),
        Err(e) => return Err(e.into()),
    }
    crate::audit::log(&event);
    let tokens = issue_tokens(
        Ctx {
            state,
            tenant,
            client,
        },
        &user,
        &grant.scopes,
        Signed {
            sid: &grant.id,
            context: grant.context.as_deref(),
            auth_time,
            idp: grant.idp(),
            amr: grant.amr(),
            now,
            shape,
        },
        refresh.map(|(s, _)| s),
    )
    .await?;
    Ok(Some(Redeemed { tokens, user }))
}

/// When the sign-on and the issue were, and the tokens' shape.
struct Signed<'a> {
    /// The device's sign-in (its grant id, its refresh family): the access token's `sid`, by
    /// which revoking the family refuses its access tokens too.
    sid: &'a str,
    context: Option<&'a str>,
    auth_time: Timestamp,
    /// The upstream provider the person signed on through: the tokens' `idp` claim.
    idp: Option<&'a str>,
    /// How the person signed on: the ID token's `amr`.
    amr: Option<&'a str>,
    now: Timestamp,
    shape: &'a TokenShape,
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

/// When every access token issued up to `now` has expired: how long a revocation must be
/// kept.
pub(crate) fn access_tokens_end(state: &AppState, now: Timestamp) -> Timestamp {
    now.plus(state.settings.access_token_ttl)
}

/// When every token of a family started at `started_at` has expired, however often rotated.
fn family_ends(state: &AppState, started_at: Timestamp) -> Timestamp {
    started_at.plus(state.settings.refresh_token_max_lifetime)
}

/// Whom a refresh token is for: the person, what they granted, how they signed on.
struct Grantee<'a> {
    subject: &'a str,
    scopes: &'a Scopes,
    auth_time: Timestamp,
    idp: Option<&'a str>,
    amr: Option<&'a str>,
    /// The device the family was issued to (its address and user agent).
    device: (Option<&'a str>, Option<&'a str>),
}

/// A new token of `family`: it lives `refresh_token_ttl`, but not past the family's end.
fn new_refresh_token(
    state: &AppState,
    client: &ClientRecord,
    grantee: Grantee<'_>,
    family: Family,
    now: Timestamp,
) -> (Secret, RefreshToken) {
    let Grantee {
        subject,
        scopes,
        auth_time,
        idp,
        amr,
        device,
    } = grantee;
    let secret = Secret::generate(SecretKind::RefreshToken);
    let record = RefreshToken {
        idp: idp.map(str::to_owned),
        amr: amr.map(str::to_owned),
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
        requester_ip: device.0.map(str::to_owned),
        requester_agent: device.1.map(str::to_owned),
    };
    (secret, record)
}

async fn issue_tokens(
    cx: Ctx<'_>,
    user: &UserRecord,
    scopes: &Scopes,
    signed: Signed<'_>,
    refresh: Option<Secret>,
) -> Result<TokenResponse, OAuthError> {
    let Ctx {
        state,
        tenant,
        client,
    } = cx;
    let Signed {
        sid,
        context,
        auth_time,
        idp,
        amr,
        now,
        shape,
    } = signed;
    // A client may give its devices shorter-lived access tokens (never longer: revocations
    // are kept for the server's lifetime).
    let access_ttl_secs = client
        .device_policy
        .access_ttl_secs
        .map(u64::from)
        .unwrap_or(u64::MAX)
        .min(state.settings.access_token_ttl.as_secs());
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
    let mut id_claims = (shape.id_and_refresh && scopes.contains(scope::OPENID))
        .then(|| jwt::id_token_claims(&issue, &user_claims(user)));
    let mut access_claims = jwt::access_token_claims(&issue);
    access_claims["sid"] = serde_json::json!(sid);
    (shape.access_claims)(user, context, &mut access_claims);
    // How the person signed on (RFC 8176), in the ID token.
    if let (Some(amr), Some(c)) = (amr, id_claims.as_mut()) {
        c["amr"] = serde_json::json!(amr.split_whitespace().collect::<Vec<_>>());
    }
    // Which organisation's provider signed the person on (devicegate stays the issuer).
    if let Some(idp) = idp {
        access_claims["idp"] = serde_json::json!(idp);
        if let Some(c) = id_claims.as_mut() {
            c["idp"] = serde_json::json!(idp);
        }
    }
    let (access_token, id_token) = tenant
        .keys
        .sign_token_set(access_claims, id_claims)
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
    let token = match tenant.store.get_refresh_token(&presented).await {
        Ok(t) => t,
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
        revoke_family(
            state,
            tenant,
            &token,
            Revoked::Reuse,
            "reuse of a rotated refresh token",
        )
        .await?;
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
    let user = match tenant.store.get_user(&token.subject).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => {
            revoke_family(
                state,
                tenant,
                &token,
                Revoked::Other,
                "the user no longer exists",
            )
            .await?;
            return Err(invalid());
        }
        Err(e) => return Err(e.into()),
    };
    let (secret, next) = new_refresh_token(
        state,
        client,
        Grantee {
            subject: &token.subject,
            scopes: &token.scopes,
            auth_time: token.auth_time,
            idp: token.idp.as_deref(),
            amr: token.amr.as_deref(),
            device: (
                token.requester_ip.as_deref(),
                token.requester_agent.as_deref(),
            ),
        },
        Family {
            id: token.family_id.clone(),
            started_at: token.family_started_at,
        },
        now,
    );
    match tenant.store.rotate_refresh_token(&token, &next).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(invalid()),
        // Someone rotated it between our read and our write: the same token twice.
        Err(StoreError::Conflict) => {
            revoke_family(
                state,
                tenant,
                &token,
                Revoked::Reuse,
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
        Signed {
            sid: &token.family_id,
            context: None,
            auth_time: token.auth_time,
            idp: token.idp.as_deref(),
            amr: token.amr.as_deref(),
            now,
            shape: &NATIVE,
        },
        Some(secret),
    )
    .await
}

/// Why a family is revoked, as the audit trail tells it.
#[derive(Debug, Clone, Copy)]
enum Revoked {
    /// A refresh token was used twice: someone else holds a copy.
    Reuse,
    Other,
}

async fn revoke_family(
    state: &AppState,
    tenant: &Tenant,
    token: &RefreshToken,
    kind: Revoked,
    why: &str,
) -> Result<(), OAuthError> {
    let kind = match kind {
        Revoked::Reuse => "refresh_reuse",
        Revoked::Other => "revoked",
    };
    let event = crate::audit::Event::new(tenant, kind)
        .actor(&token.client_id)
        .client(&token.client_id)
        .family(&token.family_id)
        .detail(why)
        .done();
    let n = tenant
        .store
        .revoke_refresh_family(
            &token.family_id,
            access_tokens_end(state, now()),
            std::slice::from_ref(&event),
        )
        .await?;
    crate::audit::log(&event);
    tracing::warn!(
        family_id = token.family_id,
        revoked = n,
        why,
        "revoked a refresh token family"
    );
    Ok(())
}
