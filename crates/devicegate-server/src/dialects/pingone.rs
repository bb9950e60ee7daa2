//! PingOne: environments (`{envID}`, a tenant's UUID) with `/as/device_authorization`,
//! `/as/token`, `/device[/{appIdentifier}]` to start a verification flow, and the flows API
//! `POST /{envID}/flows/{flowID}` whose action is chosen by a vendor media type.
//!
//! Statuses map from the core flow: USER_CODE_REQUIRED → `DAG_USER_CODE_REQUIRED`,
//! SIGN_ON_REQUIRED → `USERNAME_PASSWORD_REQUIRED`, CONSENT_REQUIRED →
//! `DAG_CONSENT_REQUIRED`, COMPLETED → `COMPLETED`; a denial or too many wrong codes →
//! `FAILED` (PingOne fails a flow whose consent is refused).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use devicegate_core::flow::{Flow, FlowError};
use devicegate_core::user_code::UserCode;
use devicegate_core::{Secret, SecretHash};
use devicegate_proto::{FlowResult, FlowStatus};
use serde_json::{Value, json};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
use crate::extract::ClientAddr;
use crate::tenant::{Tenant, new_uuid};
use crate::verification::{self, StepError};
use devicegate_store::StoreError;

pub const USER_CODE_VERIFY: &str =
    "application/vnd.pingidentity.deviceAuthGrant.userCode.verify+json";
pub const USERNAME_PASSWORD_CHECK: &str =
    "application/vnd.pingidentity.usernamePassword.check+json";
pub const CONSENT: &str = "application/vnd.pingidentity.deviceAuthGrant.consent+json";

pub fn router() -> Router<AppState> {
    // As on the native endpoints: no answer of these, tokens least of all, is cached
    // (RFC 6749 §5.1).
    let oauth = Router::new()
        .route("/{env}/as/device_authorization", post(device_authorization))
        .route("/{env}/as/token", post(crate::token::token))
        .layer(SetResponseHeaderLayer::overriding(
            header::PRAGMA,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .merge(oauth)
        .route("/{env}/device", get(start))
        .route("/{env}/device/{app}", get(start_for_app))
        .route("/{env}/signon", get(sign_on_page))
        .route("/{env}/signon/", get(sign_on_page))
        .route("/{env}/flows/{flow}", post(act).get(read))
}

/// The native endpoint, with PingOne's verification address (`{base}/{envID}/device`).
async fn device_authorization(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ip: ClientAddr,
    headers: HeaderMap,
    form: crate::extract::OAuthForm,
) -> Result<Response, crate::OAuthError> {
    let issued = crate::device::authorize_form(&state, &tenant, ip, &headers, &form).await?;
    let uri = format!("{}/{}/device", state.settings.issuer, tenant.uuid);
    Ok(Json(issued.response(&uri)).into_response())
}

/// PingOne's error shape.
fn error(status: StatusCode, code: &str, message: &str, detail: Option<(&str, &str)>) -> Response {
    let mut body = json!({"id": new_uuid(), "code": code, "message": message});
    if let Some((detail_code, target)) = detail {
        body["details"] = json!([{"code": detail_code, "target": target, "message": message}]);
    }
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn step_error(e: StepError) -> Response {
    let msg = e.to_string();
    match e {
        StepError::NotFound => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The flow was not found",
            None,
        ),
        StepError::Flow(FlowError::Expired) => error(
            StatusCode::BAD_REQUEST,
            "REQUEST_FAILED",
            "The flow has expired",
            None,
        ),
        StepError::Flow(FlowError::Held) => error(
            StatusCode::BAD_REQUEST,
            "REQUEST_FAILED",
            "The flow is already in use elsewhere",
            None,
        ),
        StepError::Flow(FlowError::WrongStatus(_)) => error(
            StatusCode::BAD_REQUEST,
            "REQUEST_FAILED",
            "This action is not allowed in the flow's status",
            None,
        ),
        StepError::Flow(FlowError::WrongCode { .. }) => error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            &msg,
            Some(("INVALID_VALUE", "userCode")),
        ),
        StepError::Flow(FlowError::CodeExpired) => error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            &msg,
            Some(("EXPIRED", "userCode")),
        ),
        StepError::Flow(FlowError::CodeUsed | FlowError::CodeClaimed) => error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            &msg,
            Some(("INVALID_VALUE", "userCode")),
        ),
        StepError::PasswordsOff | StepError::PasskeysOff => {
            error(StatusCode::BAD_REQUEST, "REQUEST_FAILED", &msg, None)
        }
        StepError::FarAway => error(StatusCode::FORBIDDEN, "REQUEST_FAILED", &msg, None),
        StepError::CodeNotConfirmed => error(StatusCode::BAD_REQUEST, "REQUEST_FAILED", &msg, None),
        // PingOne's flows have no kept sessions; the variant comes from the flows API only.
        StepError::InvalidCredentials | StepError::InvalidSession => error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "The provided username or password is not valid",
            Some(("INVALID_CREDENTIALS", "password")),
        ),
        StepError::Limited { retry_after, .. } => {
            let mut res = error(StatusCode::TOO_MANY_REQUESTS, "REQUEST_LIMITED", &msg, None);
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            res
        }
        StepError::Busy | StepError::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "The service is temporarily unavailable",
            None,
        ),
        StepError::Internal => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            "The server could not complete the request",
            None,
        ),
    }
}

fn status(flow: &Flow) -> &'static str {
    match (flow.status, flow.result) {
        (FlowStatus::UserCodeRequired, _) => "DAG_USER_CODE_REQUIRED",
        (FlowStatus::SignOnRequired, _) => "USERNAME_PASSWORD_REQUIRED",
        (FlowStatus::SecondFactorRequired, _) => "OTP_REQUIRED",
        (FlowStatus::ConsentRequired, _) => "DAG_CONSENT_REQUIRED",
        (FlowStatus::Completed, Some(FlowResult::Approved)) => "COMPLETED",
        (FlowStatus::Completed, _) | (FlowStatus::Failed, _) => "FAILED",
    }
}

/// The flow resource as PingOne shapes it.
async fn resource(state: &AppState, tenant: &Tenant, flow_id: &str, flow: Flow) -> Response {
    let d = match verification::describe(tenant, flow).await {
        Ok(d) => d,
        Err(e) => return step_error(e),
    };
    let self_href = format!("{}/{}/flows/{flow_id}", state.settings.issuer, tenant.uuid);
    let mut body = json!({
        "id": flow_id,
        "environment": {"id": tenant.uuid},
        "status": status(&d.flow),
        "expiresAt": d.flow.expires_at.to_rfc3339(),
        "_links": {"self": {"href": self_href}},
    });
    if let Some(g) = &d.grant {
        body["application"] = json!({"id": g.client_id, "name": d.client_name.clone().unwrap_or_else(|| g.client_id.clone())});
        body["scopes"] = json!(g.scopes.to_vec());
        body["userCode"] = json!(g.user_code.display());
    }
    if let Some(u) = &d.username {
        body["user"] = json!({"username": u});
    }
    if d.flow.status == FlowStatus::Failed || d.flow.result == Some(FlowResult::Denied) {
        body["error"] = json!({"code": if d.flow.status == FlowStatus::Failed { "TOO_MANY_ATTEMPTS" } else { "CONSENT_REFUSED" }});
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

/// `GET /{envID}/device[/{appIdentifier}]`: starts a flow and sends the browser to the
/// sign-on screen with the flow id (and the user code, when the link carried one).
async fn start(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    RawQuery(query): RawQuery,
) -> Response {
    start_flow(&state, &tenant, ip, query).await
}

async fn start_for_app(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    Path((_env, app)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    // The application identifier names one of the environment's applications.
    match tenant.store.get_client(&app).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The application was not found",
                None,
            );
        }
        Err(e) => return step_error(e.into()),
    }
    start_flow(&state, &tenant, ip, query).await
}

async fn start_flow(
    state: &AppState,
    tenant: &Tenant,
    ip: std::net::IpAddr,
    query: Option<String>,
) -> Response {
    let (secret, _) = match verification::start(state, tenant, ip).await {
        Ok(x) => x,
        Err(e) => return step_error(e),
    };
    let code: Option<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "user_code")
        .map(|(_, v)| UserCode::prefill(&v));
    let mut location = format!(
        "{}/{}/signon/?flowId={}",
        state.settings.issuer,
        tenant.uuid,
        secret.expose()
    );
    if let Some(c) = code {
        location.push_str(&format!("&user_code={c}"));
    }
    let mut res = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /{envID}/signon/?flowId=…`: the sign-on screen. The first browser to open it takes the
/// flow over (`pages::adopt_flow`), and the ordinary pages walk it; for everyone else the
/// link is dead.
async fn sign_on_page(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ip: ClientAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(flow_id) = get("flowId") else {
        return Redirect::to(&format!("{}/device", tenant.base)).into_response();
    };
    crate::pages::adopt_flow(
        state,
        tenant,
        ip,
        &headers,
        &Secret::from_presented(flow_id).hash(),
        get("user_code"),
    )
    .await
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn key(flow_id: &str) -> SecretHash {
    Secret::from_presented(flow_id).hash()
}

async fn read(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    Path((_env, flow_id)): Path<(String, String)>,
) -> Response {
    match verification::load(&tenant, &key(&flow_id), crate::now()).await {
        Ok(flow) => resource(&state, &tenant, &flow_id, flow).await,
        Err(e) => step_error(e),
    }
}

fn field<'a>(body: &'a Value, name: &'a str) -> Result<&'a str, &'a str> {
    body.get(name).and_then(Value::as_str).ok_or(name)
}

fn required(name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_DATA",
        &format!("{name} is required"),
        Some(("REQUIRED_VALUE", name)),
    )
}

/// `POST /{envID}/flows/{flowID}`: the action is the media type.
async fn act(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path((_env, flow_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let media = media_type(&headers);
    let is = |t: &str| media.eq_ignore_ascii_case(t);
    if ![USER_CODE_VERIFY, USERNAME_PASSWORD_CHECK, CONSENT]
        .into_iter()
        .any(is)
    {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_REQUEST",
            "The content type does not name a flow action",
            None,
        );
    }
    let body: Value = match crate::json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "The request body must be a JSON object",
                None,
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                &format!("The request body must be a JSON object: {e}"),
                None,
            );
        }
    };
    let k = key(&flow_id);
    let result = if is(USER_CODE_VERIFY) {
        match field(&body, "userCode") {
            Ok(code) => verification::verify_user_code(&state, &tenant, &k, code, ip, false).await,
            Err(name) => return required(name),
        }
    } else if is(USERNAME_PASSWORD_CHECK) {
        match (field(&body, "username"), field(&body, "password")) {
            (Ok(u), Ok(p)) => verification::sign_on(&state, &tenant, &k, u, p, ip, None).await,
            (Err(name), _) | (_, Err(name)) => return required(name),
        }
    } else {
        match body.get("accept").and_then(Value::as_bool) {
            Some(accept) => verification::consent(&state, &tenant, &k, accept, ip, true).await,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_DATA",
                    "accept must be true or false",
                    Some(("INVALID_VALUE", "accept")),
                );
            }
        }
    };
    match result {
        Ok(flow) => resource(&state, &tenant, &flow_id, flow).await,
        Err(e) => step_error(e),
    }
}
