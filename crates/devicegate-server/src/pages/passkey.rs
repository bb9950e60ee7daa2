//! Signing in with a passkey on the pages (or giving it as the second step): the page's
//! script asks for options, lets the browser sign them, and posts the answer as an ordinary
//! form, answered like the password form (303 on success, the page again on failure).

use axum::Json;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devicegate_proto::FlowStatus;
use webauthn_rs::prelude::PublicKeyCredential;

use super::{FactorPage, PageForm, Visit, factor_form, signin_form};
use crate::passkeys;
use crate::verification::StepError;

/// A JSON error for the script (it only tells the person the passkey did not work).
fn json_error(status: StatusCode) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": "passkey_unavailable" })),
    )
        .into_response()
}

/// `POST /device/passkey/options`: request options for the flow this session walks, as
/// JSON; the challenge is kept in the store, bound to the flow, until the answer comes.
pub(super) async fn sign_in_options(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let Some(key) = visit.flow_key() else {
        return json_error(StatusCode::BAD_REQUEST);
    };
    match passkeys::sign_in_options(&visit.state, &visit.tenant, &key).await {
        Ok(options) => Json(options).into_response(),
        Err(StepError::Limited { .. }) => json_error(StatusCode::TOO_MANY_REQUESTS),
        Err(StepError::Unavailable | StepError::Busy) => {
            json_error(StatusCode::SERVICE_UNAVAILABLE)
        }
        Err(StepError::Internal) => json_error(StatusCode::INTERNAL_SERVER_ERROR),
        Err(_) => json_error(StatusCode::CONFLICT),
    }
}

/// `POST /device/passkey` with `credential` (the browser's answer as JSON).
pub(super) async fn sign_in(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    let result =
        match serde_json::from_str::<PublicKeyCredential>(form.get("credential").unwrap_or("")) {
            Ok(credential) => {
                passkeys::sign_in_finish(&visit.state, &visit.tenant, &key, &credential, visit.ip)
                    .await
            }
            Err(_) => Err(StepError::InvalidCredentials),
        };
    match result {
        Ok(flow) => {
            let user = match &flow.user_id {
                Some(id) => visit.tenant.store.get_user(id).await,
                None => return visit.see_other("/device"),
            };
            let username = match user {
                Ok(u) => u.username,
                Err(e) => return visit.step_error(e.into()),
            };
            if let Some(old) = visit.session.take() {
                match old
                    .rotate(&visit.state, &visit.tenant, &flow, &username)
                    .await
                {
                    Ok(new) => visit.session = Some(new),
                    Err(e) => return visit.step_error(e.into()),
                }
            }
            visit.see_other(&visit.next(flow.status))
        }
        Err(StepError::InvalidCredentials) => {
            let t = visit.t.clone();
            match visit.current_flow().await {
                Some(flow) if flow.status == FlowStatus::SecondFactorRequired => {
                    let p = FactorPage {
                        error: Some(&t.passkey_failed),
                        ..FactorPage::default()
                    };
                    factor_form(&visit, flow, StatusCode::UNAUTHORIZED, p).await
                }
                Some(flow) => {
                    signin_form(
                        &visit,
                        flow,
                        StatusCode::UNAUTHORIZED,
                        Some(&t.passkey_failed),
                        "",
                    )
                    .await
                }
                None => visit.see_other("/device"),
            }
        }
        Err(e) => visit.step_error(e),
    }
}
