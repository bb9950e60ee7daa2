//! `/account/security`: a signed-in person's passkeys (list, name, remove, add) and one-time
//! codes (set up with a QR code and a typed check; new recovery codes).
//!
//! Being signed in is the browser session's sign-on, accepted as long as it would carry over
//! to a device (`verification::carries_over`). Changes also need a recent sign-on
//! ([`FRESH_FOR`]), so that a session left open, or a stolen cookie, cannot quietly add a
//! passkey of its own: the person signs in again first. Signing in for this page walks a
//! verification flow that never gets a code (`?then=account`), the same sign-in as for a
//! device.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devicegate_proto::TotpEnrolment;
use devicegate_store::{StoreError, UserRecord};
use minijinja::{Value, context};
use webauthn_rs::prelude::RegisterPublicKeyCredential;

use devicegate_core::secret::{Secret, SecretKind};

use super::session::Session;
use super::{PageForm, Visit};
use crate::scoped::Held;
use crate::verification::{self, SignOn, StepError};
use crate::{now, passkeys};

/// How recent a sign-on must be to change how the person signs in.
pub const FRESH_FOR: Duration = Duration::from_secs(600);

/// The person this browser is signed in as, and whether that sign-on is recent.
struct Person {
    user: UserRecord,
    fresh: bool,
}

async fn person(visit: &Visit) -> Result<Option<Person>, StepError> {
    let Some(s) = visit.session.as_ref().filter(|s| s.is_stored()) else {
        return Ok(None);
    };
    let Some(on) = SignOn::of(&s.record) else {
        return Ok(None);
    };
    let now = now();
    // An enrolment link's session is for this page alone, for its session lifetime.
    if !on.had("link") && !verification::carries_over(&visit.tenant, on, now).await? {
        return Ok(None);
    }
    let user = match visit.tenant.store.get_user(on.user_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(Person {
        user,
        fresh: on.auth_time.plus(FRESH_FOR) > now,
    }))
}

/// After the person proved a new factor here (a code from the authenticator just set up,
/// or the passkey just registered), this session's sign-on counts it, as a sign-in with it
/// would: the factor now owed under `optional` does not sign them out of this page.
async fn add_to_sign_on(visit: &mut Visit, method: &str) -> Result<(), StepError> {
    let Some(s) = visit.session.as_mut().filter(|s| s.is_stored()) else {
        return Ok(());
    };
    let mut methods: Vec<String> = s
        .record
        .amr
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .filter(|m| *m != "mfa")
        .map(str::to_owned)
        .collect();
    if !methods.iter().any(|m| m == method) {
        methods.push(method.to_owned());
    }
    methods.push("mfa".to_owned());
    s.record.amr = Some(methods.join(" "));
    visit.tenant.store.update_session(&s.record).await?;
    Ok(())
}

/// What the page shows besides the person's factors.
#[derive(Default)]
struct Shown<'a> {
    notice: Option<&'a str>,
    error: Option<&'a str>,
    enrolment: Option<TotpEnrolment>,
    recovery_codes: Option<Vec<String>>,
}

async fn render(visit: &Visit, person: &Person, status: StatusCode, shown: Shown<'_>) -> Response {
    let t = visit.t.clone();
    let store = &visit.tenant.store;
    let (passkeys, totp_on, left) = match (
        store.list_passkeys(&person.user.id).await,
        verification::totp_confirmed(&visit.tenant, &person.user.id).await,
        store.count_recovery_codes(&person.user.id).await,
    ) {
        (Ok(p), Ok(h), Ok(n)) => (p, h, n),
        (Err(e), _, _) | (_, _, Err(e)) => return visit.step_error(e.into()),
        (_, Err(e), _) => return visit.step_error(e),
    };
    let day = |ts: devicegate_core::Timestamp| ts.to_rfc3339().chars().take(10).collect::<String>();
    let passkeys: Vec<Value> = passkeys
        .iter()
        .map(|p| {
            let used = match p.last_used_at {
                Some(at) => t.passkey_used(day(at)),
                None => t.passkey_never_used.to_owned(),
            };
            let kind = if p.backup_eligible {
                &t.passkey_synced
            } else {
                &t.passkey_device_bound
            };
            context! {
                id => p.id,
                name => p.name,
                facts => format!("{} · {used} · {kind}", t.passkey_created(day(p.created_at))),
            }
        })
        .collect();
    let qr = shown.enrolment.as_ref().and_then(|e| super::qr_svg(&e.uri));
    let ctx = context! {
        signed_in_here => true,
        fresh => person.fresh,
        notice => shown.notice,
        error => shown.error,
        passkey_list => passkeys,
        totp_on,
        totp_status => if totp_on { t.totp_on(left) } else { t.totp_off.to_owned() },
        enrolment => shown.enrolment.as_ref().map(|e| context! { secret => e.secret }),
        qr => qr.map(Value::from_safe_string),
        recovery_codes => shown.recovery_codes,
    };
    visit.render(
        status,
        "account.html",
        &t.account_title,
        ctx,
        Some(&person.user.username),
    )
}

/// The page for a browser not signed in (or signed in too long ago for a change): a button
/// that starts a sign-in for this page.
fn sign_in_first(visit: &Visit, status: StatusCode, notice: &str) -> Response {
    let t = visit.t.clone();
    visit.render(
        status,
        "account.html",
        &t.account_title,
        context! { signed_in_here => false, notice },
        None,
    )
}

/// `GET /account/security[?done=…]`.
pub(super) async fn page(mut visit: Visit, RawQuery(query): RawQuery) -> Response {
    if visit.session.is_none() {
        // A pre-session: the sign-in button's anti-CSRF token, nothing stored.
        visit.session = Some(Session::start(&visit.state, &visit.tenant));
    }
    let t = visit.t.clone();
    let person = match person(&visit).await {
        Ok(Some(p)) => p,
        Ok(None) => return sign_in_first(&visit, StatusCode::OK, &t.account_signin_help),
        Err(e) => return visit.step_error(e),
    };
    let done = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "done")
        .map(|(_, v)| v.into_owned());
    let notice = match done.as_deref() {
        Some("added") => Some(t.passkey_added.as_str()),
        Some("removed") => Some(t.passkey_removed.as_str()),
        Some("renamed") => Some(t.passkey_renamed.as_str()),
        _ => None,
    };
    let shown = Shown {
        notice,
        ..Shown::default()
    };
    render(&visit, &person, StatusCode::OK, shown).await
}

/// `POST /account/signin`: starts a sign-in for this page (a flow that never gets a code).
pub(super) async fn sign_in(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    if let Err(e) = visit.store_session().await {
        return visit.step_error(e);
    }
    let flow = match verification::start(&visit.state, &visit.tenant, visit.ip).await {
        Ok((_, flow)) => flow,
        Err(e) => return visit.step_error(e),
    };
    if let Some(s) = visit.session.as_mut() {
        s.record.flow_hash = Some(flow.secret_hash);
        if let Err(e) = visit.tenant.store.update_session(&s.record).await {
            return visit.step_error(e.into());
        }
    }
    visit.see_other("/device/signin?then=account")
}

/// The signed-in person for a change, or the page to show instead: signed out, or signed in
/// too long ago (sign in again first).
async fn changer(visit: &Visit, form: &PageForm) -> Result<Person, Response> {
    if let Some(page) = visit.refusal(form) {
        return Err(page);
    }
    let t = visit.t.clone();
    match person(visit).await {
        Ok(Some(p)) if p.fresh => Ok(p),
        Ok(Some(_)) => Err(sign_in_first(
            visit,
            StatusCode::FORBIDDEN,
            &t.account_stale,
        )),
        Ok(None) => Err(sign_in_first(
            visit,
            StatusCode::UNAUTHORIZED,
            &t.account_signin_help,
        )),
        Err(e) => Err(visit.step_error(e)),
    }
}

/// `POST /account/passkeys/options`: creation options for a new passkey (JSON), the challenge
/// bound to this browser session.
pub(super) async fn passkey_options(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let Some(s) = &visit.session else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match passkeys::register_options(&visit.state, &visit.tenant, &person.user, &s.record.id_hash)
        .await
    {
        Ok(options) => Json(options).into_response(),
        Err(e) => visit.step_error(e),
    }
}

/// `POST /account/passkeys` with `credential` (the browser's answer as JSON) and `name`.
pub(super) async fn add_passkey(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let Some(s) = &visit.session else {
        return visit.see_other("/account/security");
    };
    let result = match serde_json::from_str::<RegisterPublicKeyCredential>(
        form.get("credential").unwrap_or(""),
    ) {
        Ok(credential) => {
            passkeys::register_finish(
                &visit.state,
                &visit.tenant,
                &person.user.id,
                &s.record.id_hash,
                &credential,
                form.get("name").unwrap_or(""),
            )
            .await
        }
        Err(_) => Err(StepError::InvalidCredentials),
    };
    let t = visit.t.clone();
    match result {
        Ok(p) => {
            let method = if p.backup_eligible { "swk" } else { "hwk" };
            if let Err(e) = add_to_sign_on(&mut visit, method).await {
                return visit.step_error(e);
            }
            visit.see_other("/account/security?done=added")
        }
        Err(StepError::InvalidCredentials) => {
            let shown = Shown {
                error: Some(&t.passkey_add_failed),
                ..Shown::default()
            };
            render(&visit, &person, StatusCode::BAD_REQUEST, shown).await
        }
        Err(e) => visit.step_error(e),
    }
}

/// `POST /account/passkeys/rename` with `id` and `name`.
pub(super) async fn rename_passkey(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let name = passkeys::clean_name(form.get("name").unwrap_or(""));
    let id = form.get("id").unwrap_or("");
    match visit
        .tenant
        .store
        .rename_passkey(&person.user.id, id, &name)
        .await
    {
        Ok(()) => visit.see_other("/account/security?done=renamed"),
        // Not this person's (or gone): nothing changed.
        Err(StoreError::NotFound) => visit.see_other("/account/security"),
        Err(e) => visit.step_error(e.into()),
    }
}

/// `POST /account/passkeys/remove` with `id`. The person's other sessions end with it (a
/// passkey is removed because a device was lost: whatever signed in there is signed out);
/// this one stays.
pub(super) async fn remove_passkey(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let id = form.get("id").unwrap_or("");
    let store = &visit.tenant.store;
    match store.delete_passkey(&person.user.id, id).await {
        Ok(()) => {
            let keep = visit.session.as_ref().map(|s| s.record.id_hash);
            if let Err(e) = store.end_sessions(&person.user.id, keep.as_ref()).await {
                return visit.step_error(e.into());
            }
            visit.see_other("/account/security?done=removed")
        }
        Err(StoreError::NotFound) => visit.see_other("/account/security"),
        Err(e) => visit.step_error(e.into()),
    }
}

/// `POST /account/totp/enroll`: a new authenticator secret, shown once with its QR code.
pub(super) async fn totp_enroll(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    match verification::enroll_totp_for(&visit.tenant, &person.user).await {
        Ok(enrolment) => {
            let shown = Shown {
                enrolment,
                ..Shown::default()
            };
            render(&visit, &person, StatusCode::OK, shown).await
        }
        Err(e) => visit.step_error(e),
    }
}

/// `POST /account/totp` with `code`: confirms the enrolment; the recovery codes are shown
/// once.
pub(super) async fn totp_confirm(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let code = form.get("code").unwrap_or("");
    let t = visit.t.clone();
    match verification::check_totp_for(&visit.state, &visit.tenant, &person.user, code, visit.ip)
        .await
    {
        Ok(recovery_codes) => {
            if let Err(e) = add_to_sign_on(&mut visit, "otp").await {
                return visit.step_error(e);
            }
            let t = visit.t.clone();
            let shown = Shown {
                notice: Some(&t.totp_enrolled),
                recovery_codes,
                ..Shown::default()
            };
            render(&visit, &person, StatusCode::OK, shown).await
        }
        Err(StepError::InvalidCredentials) => {
            let shown = Shown {
                error: Some(&t.wrong_factor),
                ..Shown::default()
            };
            render(&visit, &person, StatusCode::UNAUTHORIZED, shown).await
        }
        Err(e) => visit.step_error(e),
    }
}

/// `POST /account/recovery-codes`: ten new recovery codes in place of the old ones, shown
/// once (only with an authenticator set up).
pub(super) async fn new_recovery_codes(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    let person = match changer(&visit, &form).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    match verification::totp_confirmed(&visit.tenant, &person.user.id).await {
        Ok(true) => {}
        Ok(_) => return visit.see_other("/account/security"),
        Err(e) => return visit.step_error(e),
    }
    match verification::new_recovery_codes(&visit.tenant, &person.user.id).await {
        Ok(codes) => {
            let shown = Shown {
                recovery_codes: Some(codes),
                ..Shown::default()
            };
            render(&visit, &person, StatusCode::OK, shown).await
        }
        Err(e) => visit.step_error(e),
    }
}

/// The live enrolment link `token` names in this tenant: its record and person.
async fn link(
    visit: &Visit,
    token: &str,
) -> Result<Option<(devicegate_store::BrowserSession, UserRecord)>, StepError> {
    if !token.starts_with(SecretKind::EnrolmentLink.prefix()) {
        return Ok(None);
    }
    let hash = Secret::from_presented(token).hash();
    let record = match visit.tenant.store.get_session(&hash).await {
        Ok(r) if r.expires_at > now() => r,
        Ok(_) | Err(StoreError::NotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(user_id) = &record.user_id else {
        return Ok(None);
    };
    match visit.tenant.store.get_user(user_id).await {
        Ok(user) => Ok(Some((record, user))),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `GET /account/enroll?token=dge_…`: what the link is for, and a button; nothing is used
/// up until the button is pressed (a link previewer fetching it takes nothing).
pub(super) async fn link_page(mut visit: Visit, RawQuery(query): RawQuery) -> Response {
    if visit.session.is_none() {
        visit.session = Some(Session::start(&visit.state, &visit.tenant));
    }
    let token = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let t = visit.t.clone();
    match link(&visit, &token).await {
        Ok(Some((_, user))) => visit.render(
            StatusCode::OK,
            "account.html",
            &t.link_title,
            context! {
                link_token => token,
                notice => t.link_help(user.username.clone()),
            },
            None,
        ),
        Ok(None) => visit.message(StatusCode::GONE, &t.link_title, &t.link_dead),
        Err(e) => visit.step_error(e),
    }
}

/// `POST /account/enroll` with `token`: uses the link up (once, across instances: the
/// record is deleted, and only the request that deleted it goes on) and signs this browser
/// in to the account page as its person, with a fresh sign-on that approves no device.
pub(super) async fn follow_link(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let t = visit.t.clone();
    let (record, user) = match link(&visit, form.get("token").unwrap_or("")).await {
        Ok(Some(found)) => found,
        Ok(None) => return visit.message(StatusCode::GONE, &t.link_title, &t.link_dead),
        Err(e) => return visit.step_error(e),
    };
    match visit.tenant.store.delete_session(&record).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => {
            return visit.message(StatusCode::GONE, &t.link_title, &t.link_dead);
        }
        Err(e) => return visit.step_error(e.into()),
    }
    let held = Held {
        user_id: Some(user.id.clone()),
        signed_on_at: Some(now()),
        amr: Some("link".to_owned()),
        ..Held::default()
    };
    let Some(old) = visit.session.take() else {
        return visit.see_other("/account/security");
    };
    match old
        .replace(&visit.state, &visit.tenant, held, &user.username)
        .await
    {
        Ok(new) => visit.session = Some(new),
        Err(e) => return visit.step_error(e.into()),
    }
    visit.see_other("/account/security")
}

/// The devices page with `notice` (or a confirmation to show instead of the list).
async fn devices_page(
    visit: &Visit,
    person: &Person,
    status: StatusCode,
    notice: Option<&str>,
    confirm: Option<Value>,
) -> Response {
    let t = visit.t.clone();
    let devices = match crate::devices::list(&visit.tenant, &person.user.id).await {
        Ok(d) => d,
        Err(e) => return visit.step_error(e),
    };
    let day = |ts: devicegate_core::Timestamp| {
        let s = ts.to_rfc3339();
        format!(
            "{} UTC",
            s.replace('T', " ").chars().take(16).collect::<String>()
        )
    };
    let shown: Vec<Value> = devices
        .iter()
        .map(|d| {
            let active = match d.last_refreshed_at() {
                Some(at) => t.device_active(day(at)),
                None => t.device_never_refreshed.to_owned(),
            };
            context! {
                id => d.token.family_id,
                name => d.client_name,
                facts => t.device_facts(
                    day(d.token.family_started_at),
                    active,
                    d.token.requester_ip.clone().unwrap_or_else(|| t.unknown_device.clone()),
                ),
                agent => d.token.requester_agent,
                scopes => super::in_reading_order(d.token.scopes.iter())
                    .map(|s| t.scope(s))
                    .collect::<Vec<_>>()
                    .join(" · "),
            }
        })
        .collect();
    visit.render(
        status,
        "devices.html",
        &t.devices_title,
        context! { signed_in_here => true, devices => shown, notice, confirm },
        Some(&person.user.username),
    )
}

/// `GET /account/devices[?done=signed-out]`: every device that holds access to the
/// person's account.
pub(super) async fn devices(mut visit: Visit, RawQuery(query): RawQuery) -> Response {
    if visit.session.is_none() {
        visit.session = Some(Session::start(&visit.state, &visit.tenant));
    }
    let t = visit.t.clone();
    let done = query.as_deref() == Some("done=signed-out");
    match person(&visit).await {
        Ok(Some(p)) => {
            let notice = done.then_some(t.device_signed_out.as_str());
            devices_page(&visit, &p, StatusCode::OK, notice, None).await
        }
        Ok(None) => visit.render(
            StatusCode::OK,
            "devices.html",
            &t.devices_title,
            context! { signed_in_here => false, notice => &t.account_signin_help },
            None,
        ),
        Err(e) => visit.step_error(e),
    }
}

/// `POST /account/devices/signout` with `id`: asks to confirm, then (with `confirm=yes`)
/// signs that device out. Signing a device out protects the person, so it needs a signed-in
/// session but not a fresh sign-on.
pub(super) async fn sign_device_out(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let t = visit.t.clone();
    let person = match person(&visit).await {
        Ok(Some(p)) => p,
        Ok(None) => return visit.see_other("/account/devices"),
        Err(e) => return visit.step_error(e),
    };
    let id = form.get("id").unwrap_or("");
    let devices = match crate::devices::list(&visit.tenant, &person.user.id).await {
        Ok(d) => d,
        Err(e) => return visit.step_error(e),
    };
    let Some(device) = devices.iter().find(|d| d.token.family_id == id) else {
        return devices_page(
            &visit,
            &person,
            StatusCode::NOT_FOUND,
            Some(&t.device_gone),
            None,
        )
        .await;
    };
    if form.get("confirm") != Some("yes") {
        let confirm = context! {
            id => id,
            question => t.device_confirm(device.client_name.clone()),
        };
        return devices_page(&visit, &person, StatusCode::OK, None, Some(confirm)).await;
    }
    match crate::devices::sign_out(&visit.state, &visit.tenant, &person.user.id, id).await {
        Ok(_) => visit.see_other("/account/devices?done=signed-out"),
        Err(e) => visit.step_error(e),
    }
}
