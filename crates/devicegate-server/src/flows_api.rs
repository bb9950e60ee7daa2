//! The verification flows API, `/api/v1/flows`: a JSON front-end to [`crate::verification`]
//! for first-party custom UIs. The flow id is the capability; bodies must be JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use devicegate_core::flow::FlowError;
use devicegate_proto::{ErrorCode, FlowAction};
use http::header::{self, HeaderValue};
use tower_http::cors::{AllowOrigin, CorsLayer};

use devicegate_core::{Secret, SecretHash};

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;

use crate::error::{Failure, OAuthError};
use crate::extract::ApiJson;
use crate::extract::ClientAddr;
use crate::tenant::Tenant;
use crate::upstream::{self, UpstreamError};
use crate::verification::{self, StepError};
use crate::{AppState, now};

pub fn router(state: &AppState) -> Router<AppState> {
    let settings = &state.settings;
    let routes = Router::new()
        .route("/api/v1/flows", post(create))
        .route("/api/v1/flows/{id}", post(act).get(read))
        .route("/api/v1/sessions/end", post(end_session))
        .merge(crate::devices::router())
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            speak_the_asked_language,
        ));
    // No CORS unless the operator lists origins: the API then serves exactly those.
    let origins: Vec<HeaderValue> = settings
        .cors_allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        routes
    } else {
        routes.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
                // `upstream.start` sets the browser's binding cookie.
                .allow_credentials(true),
        )
    }
}

/// Answers the request in the language its `Accept-Language` asks for (the operator's pin
/// first): the API's `error_description`s are for the person, shown by custom UIs.
async fn speak_the_asked_language(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let t = state.i18n.pick(req.headers().get(header::ACCEPT_LANGUAGE));
    let lang = HeaderValue::from_str(&t.lang).ok();
    let mut res = crate::i18n::speaking(t, next.run(req)).await;
    if let Some(lang) = lang {
        res.headers_mut().insert(header::CONTENT_LANGUAGE, lang);
    }
    res.headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-language"));
    res
}

impl From<StepError> for OAuthError {
    fn from(e: StepError) -> Self {
        let (mut retry_after, mut attempts_left) = (None, None);
        let (status, code) = match &e {
            StepError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            StepError::InvalidCredentials => {
                (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCredentials)
            }
            StepError::InvalidSession => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidSession),
            StepError::PasswordsOff | StepError::PasskeysOff => {
                (StatusCode::FORBIDDEN, ErrorCode::InvalidAction)
            }
            StepError::FarAway => (StatusCode::FORBIDDEN, ErrorCode::AccessDenied),
            StepError::CodeNotConfirmed => (StatusCode::BAD_REQUEST, ErrorCode::InvalidAction),
            StepError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::TemporarilyUnavailable,
            ),
            StepError::Unavailable => return Failure::Unavailable.into(),
            StepError::Internal => return Failure::Internal.into(),
            StepError::Limited {
                retry_after: after,
                sign_on_first,
            } => {
                retry_after = Some(after.as_secs().max(1));
                let code = match sign_on_first {
                    true => ErrorCode::SignOnRequired,
                    false => ErrorCode::SlowDown,
                };
                (StatusCode::TOO_MANY_REQUESTS, code)
            }
            StepError::Flow(f) => match f {
                FlowError::Expired => (StatusCode::GONE, ErrorCode::ExpiredFlow),
                FlowError::WrongStatus(_) | FlowError::Held => {
                    (StatusCode::CONFLICT, ErrorCode::InvalidAction)
                }
                FlowError::WrongCode {
                    attempts_left: left,
                } => {
                    attempts_left = Some(*left);
                    (StatusCode::BAD_REQUEST, ErrorCode::InvalidUserCode)
                }
                FlowError::CodeExpired => (StatusCode::BAD_REQUEST, ErrorCode::ExpiredUserCode),
                FlowError::CodeUsed | FlowError::CodeClaimed => {
                    (StatusCode::BAD_REQUEST, ErrorCode::UsedUserCode)
                }
            },
        };
        let mut err = OAuthError::new(
            status,
            code,
            describe(&e, crate::i18n::current().as_deref()),
        );
        err.localized = true;
        err.retry_after = retry_after;
        err.body.attempts_left = attempts_left;
        err
    }
}

/// A step's error in the request's language (the flows API's), English otherwise.
fn describe(e: &StepError, t: Option<&crate::i18n::Strings>) -> String {
    let Some(t) = t else {
        return e.to_string();
    };
    match e {
        StepError::NotFound => t.api_not_found.clone(),
        StepError::InvalidCredentials => t.bad_credentials.clone(),
        StepError::InvalidSession => t.api_invalid_session.clone(),
        StepError::PasswordsOff => t.passwords_off.clone(),
        StepError::PasskeysOff => t.passkeys_off.clone(),
        StepError::FarAway => t.proximity_refused.clone(),
        StepError::CodeNotConfirmed => t.confirm_code_missing.clone(),
        StepError::Busy => t.api_busy.clone(),
        StepError::Unavailable => t.unavailable.clone(),
        StepError::Internal => t.internal.clone(),
        StepError::Limited {
            sign_on_first: true,
            ..
        } => t.api_sign_on_first.clone(),
        StepError::Limited { retry_after, .. } => t.too_many(retry_after.as_secs().max(1)),
        StepError::Flow(f) => match f {
            FlowError::Expired => t.expired_flow.clone(),
            FlowError::WrongStatus(_) | FlowError::Held => t.api_not_now.clone(),
            FlowError::WrongCode { attempts_left } => {
                t.then(&t.wrong_code, &t.attempts_left(*attempts_left))
            }
            FlowError::CodeExpired => t.expired_code.clone(),
            FlowError::CodeUsed => t.used_code.clone(),
            FlowError::CodeClaimed => t.claimed_code.clone(),
        },
    }
}

async fn view(
    state: &AppState,
    tenant: &Tenant,
    flow_id: &str,
    flow: devicegate_core::flow::Flow,
    ip: std::net::IpAddr,
) -> Result<Json<devicegate_proto::FlowView>, OAuthError> {
    let offered = verification::factors_offered(tenant, &flow).await?;
    let described = verification::describe(tenant, flow).await?;
    let mut view = described.view(flow_id);
    if let Some(g) = &described.grant {
        let lang = crate::i18n::current().map_or_else(|| "en".to_owned(), |t| t.lang.clone());
        view.device = Some(devicegate_proto::FlowDevice {
            ip: g.requester.ip.clone(),
            relation: crate::proximity::relate(g.requester.ip.as_deref(), ip)
                .as_str()
                .to_owned(),
            proximity: described.proximity.clone(),
            location: g.requester.ip.as_deref().and_then(|d| {
                let d = d.parse().ok()?;
                state.geoip.locate(d, &lang)
            }),
            approver_location: state.geoip.locate(ip, &lang),
        });
    }
    if !offered.is_empty() {
        view.second_factors = Some(offered);
    }
    Ok(Json(view))
}

async fn create(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, OAuthError> {
    if !body.is_object() {
        return Err(OAuthError::invalid_request(
            "the body must be a JSON object",
        ));
    }
    let (secret, flow) = verification::start(&state, &tenant, ip).await?;
    let id = secret.expose();
    let body = view(&state, &tenant, id, flow, ip).await?;
    let location = HeaderValue::from_str(&format!("{}/api/v1/flows/{id}", tenant.base))
        .map_err(|_| OAuthError::internal())?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], body).into_response())
}

async fn read(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Json<devicegate_proto::FlowView>, OAuthError> {
    let id = params.get("id").cloned().unwrap_or_default();
    let flow = verification::load(&tenant, &key(&id), now()).await?;
    view(&state, &tenant, &id, flow, ip).await
}

/// `{"session": "dga_…"}`: ends a session a `sign_on` kept. 204 whether or not it existed.
async fn end_session(
    Extension(tenant): Extension<Arc<Tenant>>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<StatusCode, OAuthError> {
    let Some(session) = body.get("session").and_then(|s| s.as_str()) else {
        return Err(OAuthError::invalid_request(
            "the body must be {\"session\": \"dga_…\"}",
        ));
    };
    verification::end_kept(&tenant, session).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The store key of a presented flow id.
fn key(flow_id: &str) -> SecretHash {
    Secret::from_presented(flow_id).hash()
}

async fn act(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    Path(params): Path<HashMap<String, String>>,
    ApiJson(action): ApiJson<FlowAction>,
) -> Result<Response, OAuthError> {
    let id = params.get("id").cloned().unwrap_or_default();
    let key = key(&id);
    let flow = match action {
        FlowAction::UpstreamStart {
            upstream,
            return_to,
        } => {
            return upstream_start(&state, &tenant, (&id, &key), &upstream, return_to, ip).await;
        }
        FlowAction::VerifyUserCode { user_code } => {
            verification::verify_user_code(&state, &tenant, &key, &user_code, ip, false).await?
        }
        FlowAction::SignOn { username, password } => {
            let flow = verification::sign_on(&state, &tenant, &key, &username, &password, ip, None)
                .await?;
            return Ok(Json(kept(&state, &tenant, &id, flow, ip).await?).into_response());
        }
        FlowAction::TotpEnroll {} => {
            let (flow, enrolment) = verification::totp_enroll(&tenant, &key).await?;
            let Json(mut body) = view(&state, &tenant, &id, flow, ip).await?;
            body.totp_enrolment = Some(enrolment);
            return Ok(Json(body).into_response());
        }
        FlowAction::TotpVerify { code } => {
            let (flow, recovery) =
                verification::totp_verify(&state, &tenant, &key, &code, ip).await?;
            let mut res = kept(&state, &tenant, &id, flow, ip).await?;
            if let Some(codes) = recovery {
                res.recovery_codes = Some(codes);
            }
            return Ok(Json(res).into_response());
        }
        FlowAction::RecoveryCodeVerify { code } => {
            let flow = verification::recovery_verify(&state, &tenant, &key, &code, ip).await?;
            return Ok(Json(kept(&state, &tenant, &id, flow, ip).await?).into_response());
        }
        FlowAction::WebauthnOptions {} => {
            let options = crate::passkeys::sign_in_options(&state, &tenant, &key).await?;
            let flow = verification::load(&tenant, &key, now()).await?;
            let Json(mut body) = view(&state, &tenant, &id, flow, ip).await?;
            body.webauthn_options =
                Some(serde_json::to_value(options).map_err(|_| OAuthError::internal())?);
            return Ok(Json(body).into_response());
        }
        FlowAction::WebauthnVerify { credential } => {
            let credential = serde_json::from_value(credential).map_err(|_| {
                OAuthError::invalid_request(
                    "credential must be a PublicKeyCredential as JSON (binary fields in base64url)",
                )
            })?;
            let flow =
                crate::passkeys::sign_in_finish(&state, &tenant, &key, &credential, ip).await?;
            return Ok(Json(kept(&state, &tenant, &id, flow, ip).await?).into_response());
        }
        FlowAction::SessionResume { session } => {
            verification::resume_kept(&tenant, &key, &session).await?
        }
        FlowAction::Consent { accept } => {
            verification::consent(&state, &tenant, &key, accept, ip, true).await?
        }
    };
    Ok(view(&state, &tenant, &id, flow, ip).await?.into_response())
}

/// The flow after a completed sign-on, with the session kept for later flows
/// (`session.resume`); none while a second factor is still owed.
async fn kept(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
    flow: devicegate_core::flow::Flow,
    ip: std::net::IpAddr,
) -> Result<devicegate_proto::FlowView, OAuthError> {
    let owed = flow.status == devicegate_proto::FlowStatus::SecondFactorRequired;
    let session = match owed {
        true => None,
        false => Some(verification::keep_sign_on(state, tenant, &flow).await?),
    };
    let Json(mut body) = view(state, tenant, id, flow, ip).await?;
    body.session = session.map(|s| s.expose().to_owned());
    Ok(body)
}

/// `upstream.start`: the provider's authorization URL, and the binding cookie for the
/// browser (a custom UI calls this with credentials, so that the browser it then sends to
/// the provider holds the cookie). `return_to` must be under an origin the operator allowed
/// (`cors_allowed_origins`).
async fn upstream_start(
    state: &AppState,
    tenant: &Tenant,
    (id, key): (&str, &SecretHash),
    upstream_id: &str,
    return_to: Option<String>,
    ip: std::net::IpAddr,
) -> Result<Response, OAuthError> {
    let return_to = match return_to {
        None => None,
        Some(to) => Some(
            allowed_return(&state.settings.cors_allowed_origins, &to).ok_or_else(|| {
                OAuthError::invalid_request("return_to must be a URL under an allowed origin")
            })?,
        ),
    };
    let started = upstream::start(state, tenant, upstream_id, key, return_to, ip)
        .await
        .map_err(|e| match e {
            UpstreamError::Step(s) => OAuthError::from(s),
            UpstreamError::Unknown => OAuthError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such upstream provider",
            ),
            other => OAuthError::new(
                StatusCode::BAD_GATEWAY,
                ErrorCode::TemporarilyUnavailable,
                other.to_string(),
            ),
        })?;
    let flow = verification::load(tenant, key, now()).await?;
    let Json(mut body) = view(state, tenant, id, flow, ip).await?;
    body.authorization_url = Some(started.authorization_url);
    let mut res = Json(body).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        crate::pages::upstream_binding_cookie(state, tenant, started.binding.expose()),
    );
    Ok(res)
}

/// `to`, as a URL whose origin is one of `origins`, normalised (so it is a valid header
/// value for the redirect); `None` otherwise.
fn allowed_return(origins: &[String], to: &str) -> Option<String> {
    let url = openidconnect::url::Url::parse(to).ok()?;
    let origin = url.origin().ascii_serialization();
    let allowed = origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&origin));
    (allowed && url.username().is_empty() && url.password().is_none()).then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::allowed_return;

    #[test]
    fn return_to_stays_under_an_allowed_origin_and_is_a_valid_header() {
        let origins = [
            "http://ui.example".to_owned(),
            "https://app.example/".to_owned(),
        ];
        let ok = |to: &str| allowed_return(&origins, to);
        assert_eq!(
            ok("http://ui.example/done").as_deref(),
            Some("http://ui.example/done")
        );
        assert_eq!(
            ok("https://app.example").as_deref(),
            Some("https://app.example/")
        );
        for bad in [
            "http://ui.example.evil.com/",
            "http://ui.example@evil.com/",
            "http://user:pw@ui.example/",
            "https://ui.example/",
            "http://evil.com/#http://ui.example",
            "javascript:alert(1)",
            "//ui.example/",
            "/done",
        ] {
            assert_eq!(ok(bad), None, "{bad}");
        }
        // Control characters cannot reach the Location header.
        let cleaned = ok("http://ui.example/a\r\nSet-Cookie: x=y").unwrap();
        assert!(http::HeaderValue::from_str(&cleaned).is_ok(), "{cleaned}");
    }
}
