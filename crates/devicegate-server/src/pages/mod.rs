//! The verification pages at `/device`: the browser front-end to [`crate::verification`].
//!
//! Enter (or confirm) the code, sign in, see who asks for what and from where, approve or
//! deny. Every page is server-rendered and works without JavaScript. State changes are POSTs
//! carrying an anti-CSRF token bound to the browser session, answered with 303 on success;
//! errors re-render a page. Only the session that entered a code can decide it: the session
//! holds the flow, and the flow holds the code.

mod account;
mod passkey;
mod session;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use devicegate_core::SecretHash;
use devicegate_core::flow::{Flow, FlowError};
use devicegate_core::user_code::UserCode;
use devicegate_proto::{FlowResult, FlowStatus};
use devicegate_store::StoreError;
use minijinja::{Environment, Value, context};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::extract::{ClientAddr, MAX_FORM_PARAMS};
use crate::i18n::Strings;
use crate::tenant::Tenant;
use crate::upstream::{self, UpstreamError};
use crate::verification::{self, Described, StepError};
use crate::{AppState, Settings, StartError, now};
use session::{Session, SessionCookie};

const TEMPLATES: [(&str, &str); 9] = [
    ("base.html", include_str!("../../templates/base.html")),
    ("enter.html", include_str!("../../templates/enter.html")),
    ("signin.html", include_str!("../../templates/signin.html")),
    ("consent.html", include_str!("../../templates/consent.html")),
    ("done.html", include_str!("../../templates/done.html")),
    ("message.html", include_str!("../../templates/message.html")),
    ("factor.html", include_str!("../../templates/factor.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("devices.html", include_str!("../../templates/devices.html")),
];
const STYLE: &str = include_str!("../../assets/style.css");
const SCRIPT: &str = include_str!("../../assets/passkeys.js");
const DEFAULT_LOGO: &[u8] = include_bytes!("../../assets/logo.svg");

/// Templates, styles and strings, prepared once at start.
#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    css: String,
    logo: (Vec<u8>, String),
    https: bool,
}

impl Pages {
    pub fn new(settings: &Settings) -> Result<Pages, StartError> {
        let mut env = Environment::new();
        for (name, builtin) in TEMPLATES {
            let source = match &settings.templates_dir {
                Some(dir) if dir.join(name).is_file() => std::fs::read_to_string(dir.join(name))
                    .map_err(|e| {
                        StartError::Templates(format!("{}: {e}", dir.join(name).display()))
                    })?,
                _ => builtin.to_owned(),
            };
            env.add_template_owned(name, source)
                .map_err(|e| StartError::Templates(format!("{name}: {e}")))?;
        }
        let brand = &settings.branding;
        let logo = brand
            .logo
            .clone()
            .unwrap_or_else(|| (DEFAULT_LOGO.to_vec(), "image/svg+xml".to_owned()));
        Ok(Pages {
            env,
            css: STYLE.replace("__ACCENT__", &brand.accent_color),
            logo,
            https: settings.issuer.starts_with("https://"),
        })
    }
}

/// The pages' Content Security Policy. Forms post to the pages only; where a form's answer
/// sends the browser on to an upstream provider (its 303), Chromium checks `form-action`
/// along the redirect, so those origins are allowed too.
fn csp(form_targets: &[String]) -> HeaderValue {
    let mut v = String::from(
        "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'",
    );
    for origin in form_targets {
        v.push(' ');
        v.push_str(origin);
    }
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("default-src 'self'"))
}

/// Security headers on every page (the code can be in the URL, hence no referrer).
fn page_headers<S: Clone + Send + Sync + 'static>(router: Router<S>, https: bool) -> Router<S> {
    let set = |name: header::HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let router = router
        // A page whose forms may lead to an upstream provider sets its own (`csp`).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            csp(&[]),
        ))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
        .layer(set(header::CACHE_CONTROL, "no-store"));
    if https {
        router.layer(set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        router
    }
}

pub fn router(settings: &Settings) -> Router<AppState> {
    let routes = Router::new()
        .route("/device", get(enter_page).post(enter_code))
        .route("/device/signin", get(signin_page).post(signin))
        .route("/device/consent", get(consent_page).post(decide))
        .route("/device/done", get(done_page))
        .route("/device/signout", post(sign_out))
        .route("/device/factor", get(factor_page).post(factor))
        .route("/device/factor/enroll", post(factor_enroll))
        .route("/device/passkey", post(passkey::sign_in))
        .route("/device/passkey/options", post(passkey::sign_in_options))
        .route("/account/security", get(account::page))
        .route("/account/signin", post(account::sign_in))
        .route("/account/devices", get(account::devices))
        .route("/account/devices/signout", post(account::sign_device_out))
        .route(
            "/account/enroll",
            get(account::link_page).post(account::follow_link),
        )
        .route("/account/passkeys", post(account::add_passkey))
        .route("/account/passkeys/options", post(account::passkey_options))
        .route("/account/passkeys/rename", post(account::rename_passkey))
        .route("/account/passkeys/remove", post(account::remove_passkey))
        .route("/account/totp/enroll", post(account::totp_enroll))
        .route("/account/totp", post(account::totp_confirm))
        .route("/account/recovery-codes", post(account::new_recovery_codes))
        .route("/device/upstream", post(upstream_start))
        .route("/device/callback", get(upstream_callback))
        .route("/device/assets/style.css", get(style))
        .route("/device/assets/logo", get(logo))
        .route("/device/assets/passkeys.js", get(script));
    page_headers(routes, settings.issuer.starts_with("https://"))
}

/// What a page handler knows about the request.
struct Visit {
    state: AppState,
    tenant: Arc<Tenant>,
    cookie: SessionCookie,
    session: Option<Session>,
    ip: IpAddr,
    /// The person's words, in the language their browser asks for.
    t: Arc<Strings>,
    /// Origins this page's forms may lead to (`allow_providers`).
    upstream_origins: Vec<String>,
    /// The person is signing in for the account page (`?then=account`), not for a device:
    /// sign-in ends there.
    for_account: bool,
}

impl Visit {
    /// The visit, or the error page when the browser's session could not be read.
    async fn new(
        state: AppState,
        tenant: Arc<Tenant>,
        ClientAddr(ip): ClientAddr,
        headers: &HeaderMap,
    ) -> Result<Visit, Response> {
        let cookie = SessionCookie::new(state.pages.https, &tenant.id);
        let session = Session::load(&state, &tenant, &cookie, headers).await;
        let t = state.i18n.pick(headers.get(header::ACCEPT_LANGUAGE));
        let mut visit = Visit {
            state,
            tenant,
            cookie,
            session: None,
            ip,
            t,
            upstream_origins: Vec::new(),
            for_account: false,
        };
        match session {
            Ok(session) => {
                visit.session = session;
                Ok(visit)
            }
            Err(e) => Err(visit.step_error(e.into())),
        }
    }

    fn pages(&self) -> &Pages {
        &self.state.pages
    }

    /// Renders `name`, with the page chrome's variables added to `ctx`.
    fn render(
        &self,
        status: StatusCode,
        name: &str,
        title: &str,
        ctx: Value,
        signed_in: Option<&str>,
    ) -> Response {
        let p = self.pages();
        let brand = context! {
            name => self.state.settings.branding.product_name,
            logo => true,
        };
        let full = context! {
            t => Value::from_serialize(&*self.t),
            brand,
            title,
            csrf => self.session.as_ref().map(Session::csrf),
            // Tenant names are [a-z0-9-]: nothing in the prefix needs escaping.
            base => Value::from_safe_string(self.tenant.base.clone()),
            signed_in,
            then_q => if self.for_account { "?then=account" } else { "" },
            passkeys => self.state.passkeys.enabled(),
            ..ctx
        };
        match p.env.get_template(name).and_then(|t| t.render(full)) {
            Ok(html) => {
                let mut res = (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    html,
                )
                    .into_response();
                if let Ok(lang) = HeaderValue::from_str(&self.t.lang) {
                    res.headers_mut().insert(header::CONTENT_LANGUAGE, lang);
                }
                res.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept-language"));
                if let Some(s) = &self.session
                    && let Some(cookie) = s.set_cookie(&self.cookie)
                {
                    res.headers_mut().append(header::SET_COOKIE, cookie);
                }
                if !self.upstream_origins.is_empty() {
                    res.headers_mut()
                        .insert(header::CONTENT_SECURITY_POLICY, csp(&self.upstream_origins));
                }
                res
            }
            Err(e) => {
                tracing::error!(error = %e, template = name, "template failed");
                // The operator's template may be what failed: plain text, in the person's words.
                (StatusCode::INTERNAL_SERVER_ERROR, self.t.internal.clone()).into_response()
            }
        }
    }

    fn message(&self, status: StatusCode, title: &str, message: &str) -> Response {
        self.render(status, "message.html", title, context! { message }, None)
    }

    /// Redirect after a POST (303), carrying a new session cookie if there is one.
    fn see_other(&self, to: &str) -> Response {
        let mut res = Redirect::to(&format!("{}{to}", self.tenant.base)).into_response();
        if let Some(s) = &self.session
            && let Some(cookie) = s.set_cookie(&self.cookie)
        {
            res.headers_mut().append(header::SET_COOKIE, cookie);
        }
        res
    }

    /// A refusal page unless the POST is a form of at most [`MAX_FORM_PARAMS`] fields (400
    /// otherwise) from a session with its anti-CSRF token.
    fn refusal(&self, form: &PageForm) -> Option<Response> {
        let t = self.t.clone();
        if form.too_many_fields {
            return Some(self.message(StatusCode::BAD_REQUEST, &t.bad_form_title, &t.bad_form));
        }
        let Some(s) = &self.session else {
            return Some(self.message(
                StatusCode::BAD_REQUEST,
                &t.session_lost_title,
                &t.session_lost,
            ));
        };
        if !s.csrf_matches(form.get("csrf").unwrap_or("")) {
            return Some(self.message(
                StatusCode::FORBIDDEN,
                &t.session_lost_title,
                &t.session_lost,
            ));
        }
        None
    }

    fn flow_key(&self) -> Option<SecretHash> {
        self.session.as_ref().and_then(|s| s.record.flow_hash)
    }

    /// The page for a step error.
    fn step_error(&self, e: StepError) -> Response {
        let t = self.t.clone();
        match e {
            // The flow is over; a new one starts with the next code typed (the limits per
            // address and account still apply), and the page says so.
            StepError::Flow(FlowError::WrongCode { attempts_left: 0 }) => {
                self.enter(StatusCode::BAD_REQUEST, Some(&t.flow_failed), "")
            }
            StepError::Flow(FlowError::WrongCode { attempts_left }) => {
                let error = t.then(&t.wrong_code, &t.attempts_left(attempts_left));
                self.enter(StatusCode::BAD_REQUEST, Some(&error), "")
            }
            StepError::Flow(FlowError::CodeExpired) => self.message(
                StatusCode::BAD_REQUEST,
                &t.expired_code_title,
                &t.expired_code,
            ),
            StepError::Flow(FlowError::CodeUsed) => {
                self.message(StatusCode::BAD_REQUEST, &t.used_code_title, &t.used_code)
            }
            StepError::Flow(FlowError::CodeClaimed) => {
                self.message(StatusCode::BAD_REQUEST, &t.used_code_title, &t.claimed_code)
            }
            StepError::Flow(FlowError::Expired) | StepError::NotFound => {
                self.message(StatusCode::GONE, &t.expired_flow_title, &t.expired_flow)
            }
            StepError::Flow(FlowError::WrongStatus(status)) => self.see_other(step_path(status)),
            StepError::Flow(FlowError::Held) => {
                self.message(StatusCode::GONE, &t.dead_link_title, &t.dead_link)
            }
            StepError::Limited {
                sign_on_first: true,
                ..
            } if self
                .session
                .as_ref()
                .is_some_and(|s| s.record.user_id.is_none()) =>
            {
                self.see_other("/device/signin")
            }
            StepError::Limited { retry_after, .. } => self.too_many(retry_after),
            StepError::PasskeysOff => {
                self.message(StatusCode::BAD_REQUEST, &t.signin_title, &t.passkeys_off)
            }
            StepError::CodeNotConfirmed => self.message(
                StatusCode::BAD_REQUEST,
                &t.consent_title,
                &t.confirm_code_missing,
            ),
            StepError::FarAway => self.message(
                StatusCode::FORBIDDEN,
                &t.consent_title,
                &t.proximity_refused,
            ),
            StepError::PasswordsOff => {
                self.message(StatusCode::BAD_REQUEST, &t.signin_title, &t.passwords_off)
            }
            StepError::InvalidCredentials | StepError::InvalidSession => self.message(
                StatusCode::UNAUTHORIZED,
                &t.signin_title,
                &t.bad_credentials,
            ),
            StepError::Busy | StepError::Unavailable => self.message(
                StatusCode::SERVICE_UNAVAILABLE,
                &t.unavailable_title,
                &t.unavailable,
            ),
            StepError::Internal => self.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                &t.internal_title,
                &t.internal,
            ),
        }
    }

    /// The page for a failed sign-in at an upstream provider: the flow is as it was, so the
    /// person can try again; the reason is in the log only.
    fn upstream_error(&self, e: UpstreamError) -> Response {
        let t = self.t.clone();
        let (status, message) = match e {
            UpstreamError::Step(e) => return self.step_error(e),
            UpstreamError::Unknown => (StatusCode::NOT_FOUND, &t.upstream_unknown),
            UpstreamError::BadState => (StatusCode::BAD_REQUEST, &t.upstream_bad_state),
            UpstreamError::Refused => (StatusCode::FORBIDDEN, &t.upstream_refused),
            UpstreamError::Unreachable => (StatusCode::BAD_GATEWAY, &t.upstream_unreachable),
            UpstreamError::Invalid => (StatusCode::BAD_GATEWAY, &t.upstream_invalid),
            UpstreamError::NotAllowed => (StatusCode::FORBIDDEN, &t.upstream_not_allowed),
        };
        self.message(status, &t.upstream_failed_title, message)
    }

    fn too_many(&self, retry_after: Duration) -> Response {
        let t = self.t.clone();
        let secs = retry_after.as_secs().max(1);
        let mut res = self.message(
            StatusCode::TOO_MANY_REQUESTS,
            &t.too_many_title,
            &t.too_many(secs),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        res
    }

    fn enter(&self, status: StatusCode, error: Option<&str>, user_code: &str) -> Response {
        let t = self.t.clone();
        let signed_in = self.session.as_ref().and_then(|s| s.username.as_deref());
        // A code that came in a link (`verification_uri_complete`) is marked so, and its
        // approval asks the person to confirm it against the device.
        let from_link = !user_code.is_empty() && error.is_none();
        self.render(
            status,
            "enter.html",
            &t.enter_title,
            context! { error, user_code, from_link },
            signed_in,
        )
    }

    /// Stores the session if it is a pre-session (the browser is about to change state),
    /// within the address's cap.
    async fn store_session(&mut self) -> Result<(), StepError> {
        let Some(s) = self.session.take() else {
            return Ok(());
        };
        if !s.is_stored() {
            let paid = crate::limits::pay_for_row(
                &self.state,
                crate::limits::Row::Session,
                self.ip,
                now(),
            )
            .await;
            if let Err(e) = paid
                .map_err(StepError::from)
                .and_then(|p| p.map_err(StepError::from))
            {
                self.session = Some(s);
                return Err(e);
            }
        }
        self.session = Some(s.stored(&self.state, &self.tenant).await?);
        Ok(())
    }

    /// Lets the forms of the page this visit renders lead on to the tenant's upstream
    /// providers (`csp`). Only pages where sign-in may start need it: the sign-in page, and
    /// the code page when a code goes straight to the one provider.
    async fn allow_providers(&mut self) {
        match upstream::listed(&self.state, &self.tenant).await {
            Ok(ups) => {
                self.upstream_origins = ups
                    .iter()
                    .filter_map(|u| upstream::origin(&u.issuer))
                    .collect();
            }
            // The forms then stay on the pages; a sign-in through a provider fails later
            // with its own page.
            Err(e) => tracing::warn!(error = %e, "could not list the upstream providers"),
        }
    }

    /// The flow this session walks, if it still lives.
    async fn current_flow(&self) -> Option<Flow> {
        let key = self.flow_key()?;
        verification::load(&self.tenant, &key, now()).await.ok()
    }
}

impl axum::extract::FromRequestParts<AppState> for Visit {
    type Rejection = Response;

    /// Every page handler starts the same way: the tenant, the session, the client address.
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let Some(tenant) = parts.extensions.get::<Arc<Tenant>>().cloned() else {
            return Err(StatusCode::NOT_FOUND.into_response());
        };
        let ip = ClientAddr::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut visit = Visit::new(state.clone(), tenant, ip, &parts.headers).await?;
        visit.for_account = parts.uri.query().is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "then" && v == "account")
        });
        Ok(visit)
    }
}

impl Visit {
    /// Where a person goes on after a sign-on step left the flow in `status`: the device's
    /// next step, or, signing in for the account page, that page once signed on.
    fn next(&self, status: FlowStatus) -> String {
        match (self.for_account, status) {
            (true, FlowStatus::UserCodeRequired) => "/account/security".to_owned(),
            (true, FlowStatus::SecondFactorRequired) => "/device/factor?then=account".to_owned(),
            _ => step_path(status).to_owned(),
        }
    }
}

/// Where a flow in `status` continues.
fn step_path(status: FlowStatus) -> &'static str {
    match status {
        FlowStatus::UserCodeRequired | FlowStatus::Failed => "/device",
        FlowStatus::SignOnRequired => "/device/signin",
        FlowStatus::SecondFactorRequired => "/device/factor",
        FlowStatus::ConsentRequired => "/device/consent",
        FlowStatus::Completed => "/device/done",
    }
}

/// A form body. Page forms have only our own fields; a repeated field keeps its first value.
#[derive(Debug, Default)]
struct PageForm {
    fields: Vec<(String, String)>,
    /// More than [`MAX_FORM_PARAMS`] fields were sent (no page sends that many); the form is
    /// refused, and only the first ones were read.
    too_many_fields: bool,
}

impl PageForm {
    fn parse(body: &[u8]) -> PageForm {
        let mut fields: Vec<(String, String)> = form_urlencoded::parse(body)
            .take(MAX_FORM_PARAMS + 1)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let too_many_fields = fields.len() > MAX_FORM_PARAMS;
        fields.truncate(MAX_FORM_PARAMS);
        PageForm {
            fields,
            too_many_fields,
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET /device[?user_code=…]`: the code form, pre-filled from `verification_uri_complete`.
/// It changes nothing but starting a browser session.
async fn enter_page(mut visit: Visit, RawQuery(query): RawQuery) -> Response {
    if !visit.tenant.local_passwords {
        visit.allow_providers().await;
    }
    if visit.session.is_none() {
        visit.session = Some(Session::start(&visit.state, &visit.tenant));
    }
    let prefill: String = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        // `code` is how Ocient's verification_uri_complete carries it.
        .find(|(k, _)| k == "user_code" || k == "code")
        .map(|(_, c)| UserCode::prefill(&c))
        .unwrap_or_default();
    visit.enter(StatusCode::OK, None, &prefill)
}

/// A verification flow started elsewhere (PingOne's `/{envID}/device`) becomes this browser's,
/// if nobody walks it yet: it takes a new capability that only this session holds, so the
/// link is dead for every other browser and for the flows API. A browser that opens a dead
/// link goes on with the flow it walks, if any (it opened the link before): a flow held by
/// one session is never handed to another.
pub async fn adopt_flow(
    state: AppState,
    tenant: Arc<Tenant>,
    ip: ClientAddr,
    headers: &HeaderMap,
    link: &SecretHash,
    user_code: Option<String>,
) -> Response {
    let mut visit = match Visit::new(state, tenant, ip, headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    let flow = match verification::adopt(&visit.tenant, link).await {
        Ok(f) => f,
        Err(StepError::NotFound | StepError::Flow(FlowError::Held)) => {
            if let Some(own) = visit.current_flow().await {
                return visit.see_other(step_path(own.status));
            }
            let t = visit.t.clone();
            return visit.message(StatusCode::GONE, &t.dead_link_title, &t.dead_link);
        }
        Err(e) => return visit.step_error(e),
    };
    if visit.session.is_none() {
        visit.session = Some(Session::start(&visit.state, &visit.tenant));
    }
    if let Err(e) = visit.store_session().await {
        return visit.step_error(e);
    }
    if let Some(s) = visit.session.as_mut() {
        s.record.flow_hash = Some(flow.secret_hash);
        if let Err(e) = visit.tenant.store.update_session(&s.record).await {
            return visit.step_error(e.into());
        }
    }
    let code = UserCode::prefill(&user_code.unwrap_or_default());
    match flow.status {
        FlowStatus::UserCodeRequired if !code.is_empty() => {
            visit.see_other(&format!("/device?user_code={code}"))
        }
        status => visit.see_other(step_path(status)),
    }
}

/// `POST /device`: a code was entered.
async fn enter_code(mut visit: Visit, body: Bytes) -> Response {
    if !visit.tenant.local_passwords {
        visit.allow_providers().await;
    }
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    if let Err(e) = visit.store_session().await {
        return visit.step_error(e);
    }
    let input = form.get("user_code").unwrap_or("").to_owned();
    let key = match usable_flow(&visit, &input).await {
        Ok(Usable::Continue(status)) => return visit.see_other(step_path(status)),
        Ok(Usable::Enter(key)) => key,
        Err(e) => return visit.step_error(e),
    };
    let result = verification::verify_user_code(
        &visit.state,
        &visit.tenant,
        &key,
        &input,
        visit.ip,
        form.get("from_link") == Some("1"),
    )
    .await;
    if let Some(s) = visit.session.as_mut()
        && s.record.flow_hash != Some(key)
    {
        s.record.flow_hash = Some(key);
        if let Err(e) = visit.tenant.store.update_session(&s.record).await {
            return visit.step_error(e.into());
        }
    }
    match result {
        // Without passwords and with one provider, sign-in is that provider: straight there.
        Ok(flow) if flow.status == FlowStatus::SignOnRequired && !visit.tenant.local_passwords => {
            match upstream::listed(&visit.state, &visit.tenant).await {
                Ok(ups) if ups.len() == 1 => go_upstream(&visit, &ups[0].id, &key).await,
                Ok(_) => visit.see_other(step_path(flow.status)),
                Err(e) => visit.step_error(e.into()),
            }
        }
        Ok(flow) => visit.see_other(step_path(flow.status)),
        Err(e) => visit.step_error(e),
    }
}

enum Usable {
    /// Enter the code in this flow.
    Enter(SecretHash),
    /// The code is already this session's; go on where the flow is.
    Continue(FlowStatus),
}

/// The flow to enter a code in: the session's, while it waits for a code; otherwise a new
/// one, already signed on if the session is. Re-entering the code the session's flow holds
/// continues that flow rather than competing with it.
async fn usable_flow(visit: &Visit, input: &str) -> Result<Usable, StepError> {
    if let Some(flow) = visit.current_flow().await {
        match flow.status {
            FlowStatus::UserCodeRequired => {
                return Ok(Usable::Enter(flow.secret_hash));
            }
            FlowStatus::SignOnRequired
            | FlowStatus::SecondFactorRequired
            | FlowStatus::ConsentRequired => {
                let held = verification::describe(&visit.tenant, flow.clone()).await?;
                if held.grant.as_ref().map(|g| &g.user_code) == UserCode::parse(input).as_ref() {
                    return Ok(Usable::Continue(flow.status));
                }
            }
            FlowStatus::Completed | FlowStatus::Failed => {}
        }
    }
    let (secret, _) = verification::start(&visit.state, &visit.tenant, visit.ip).await?;
    let key = secret.hash();
    // The session's sign-on carries over only while it would still be accepted now (a
    // provider that wants a fresh sign-in for every device, passwords switched off, …);
    // otherwise the person signs on again.
    if let Some(on) = visit
        .session
        .as_ref()
        .and_then(|s| verification::SignOn::of(&s.record))
        && verification::carries_over(&visit.tenant, on, now()).await?
    {
        verification::resume_session(&visit.tenant, &key, on, &[]).await?;
    }
    Ok(Usable::Enter(key))
}

/// `GET /device/signin`.
async fn signin_page(mut visit: Visit) -> Response {
    visit.allow_providers().await;
    match visit.current_flow().await {
        Some(flow) if flow.status == FlowStatus::SignOnRequired => {
            signin_form(&visit, flow, StatusCode::OK, None, "").await
        }
        // Signing in for the account page, or before a code while anonymous code entry is
        // paused (the way on then).
        Some(flow) if flow.status == FlowStatus::UserCodeRequired && flow.user_id.is_none() => {
            let t = visit.t.clone();
            let notice = (!visit.for_account).then_some(t.sign_in_first.as_str());
            signin_form(&visit, flow, StatusCode::OK, notice, "").await
        }
        Some(flow) => visit.see_other(step_path(flow.status)),
        None => visit.see_other("/device"),
    }
}

async fn signin_form(
    visit: &Visit,
    flow: Flow,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let d = match verification::describe(&visit.tenant, flow).await {
        Ok(d) => d,
        Err(e) => return visit.step_error(e),
    };
    let upstreams = match upstream::listed(&visit.state, &visit.tenant).await {
        Ok(u) => u,
        Err(e) => return visit.step_error(e.into()),
    };
    let t = visit.t.clone();
    let ctx = context! {
        error,
        username,
        client_name => d.client_name,
        user_code => d.grant.as_ref().map(|g| g.user_code.display()),
        passwords => visit.tenant.local_passwords,
        upstreams => upstreams
            .iter()
            .map(|u| context! { id => u.id, label => t.continue_with(u.name.clone()) })
            .collect::<Vec<_>>(),
    };
    visit.render(status, "signin.html", &t.signin_title, ctx, None)
}

/// `POST /device/signin`: on success the browser gets a new session id, and a mark that it
/// signed in to this account.
async fn signin(mut visit: Visit, headers: HeaderMap, body: Bytes) -> Response {
    visit.allow_providers().await;
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    if !visit.tenant.local_passwords {
        let t = visit.t.clone();
        return visit.message(StatusCode::BAD_REQUEST, &t.signin_title, &t.passwords_off);
    }
    let username = form.get("username").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("");
    let known = Session::known_browser(&visit.tenant, &visit.cookie, &headers).await;
    match verification::sign_on(
        &visit.state,
        &visit.tenant,
        &key,
        &username,
        password,
        visit.ip,
        known.as_ref(),
    )
    .await
    {
        Ok(flow) => {
            let Some(old) = visit.session.take() else {
                return visit.see_other("/device");
            };
            match old
                .rotate(&visit.state, &visit.tenant, &flow, &username)
                .await
            {
                Ok(new) => visit.session = Some(new),
                Err(e) => return visit.step_error(e.into()),
            }
            let mut res = visit.see_other(&visit.next(flow.status));
            let user_id = flow.user_id.as_deref().unwrap_or_default();
            if known.as_ref().map(|k| k.user_id.as_str()) != Some(user_id) {
                match Session::mark_known(&visit.cookie, &visit.tenant, user_id).await {
                    Ok(cookie) => {
                        res.headers_mut().append(header::SET_COOKIE, cookie);
                    }
                    // The sign-in stands; only the mark is missing.
                    Err(e) => tracing::warn!(error = %e, "could not mark a known browser"),
                }
            }
            res
        }
        Err(StepError::InvalidCredentials) => match visit.current_flow().await {
            Some(flow) => {
                let t = visit.t.clone();
                signin_form(
                    &visit,
                    flow,
                    StatusCode::UNAUTHORIZED,
                    Some(&t.bad_credentials),
                    &username,
                )
                .await
            }
            None => visit.see_other("/device"),
        },
        Err(e) => visit.step_error(e),
    }
}

/// `GET /device/factor`: the second step after a password, or its enrolment.
async fn factor_page(visit: Visit) -> Response {
    match visit.current_flow().await {
        Some(flow) if flow.status == FlowStatus::SecondFactorRequired => {
            factor_form(&visit, flow, StatusCode::OK, FactorPage::default()).await
        }
        Some(flow) => visit.see_other(step_path(flow.status)),
        None => visit.see_other("/device"),
    }
}

/// What the second-step page shows beside its forms.
#[derive(Default)]
struct FactorPage<'a> {
    error: Option<&'a str>,
    enrolment: Option<devicegate_proto::TotpEnrolment>,
    recovery_codes: Option<Vec<String>>,
    next: Option<String>,
}

async fn factor_form(visit: &Visit, flow: Flow, status: StatusCode, p: FactorPage<'_>) -> Response {
    let offered = match verification::factors_offered(&visit.tenant, &flow).await {
        Ok(o) => o,
        Err(e) => return visit.step_error(e),
    };
    let qr = p.enrolment.as_ref().and_then(|e| qr_svg(&e.uri));
    let t = visit.t.clone();
    let ctx = context! {
        error => p.error,
        enroll => offered.iter().any(|o| o == "totp.enroll") || p.enrolment.is_some(),
        totp => offered.iter().any(|o| o == "totp"),
        passkey => offered.iter().any(|o| o == "webauthn"),
        enrolment => p.enrolment.as_ref().map(|e| context! { secret => e.secret }),
        qr => qr.map(Value::from_safe_string),
        recovery_codes => p.recovery_codes,
        next => p.next,
    };
    visit.render(status, "factor.html", &t.factor_title, ctx, None)
}

/// An authenticator's `otpauth://` URI as an inline SVG QR code (no script, no image fetch).
fn qr_svg(uri: &str) -> Option<String> {
    qrcode::QrCode::new(uri.as_bytes()).ok().map(|q| {
        q.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build()
    })
}

/// `POST /device/factor/enroll`: a new authenticator secret, shown once with its QR code.
async fn factor_enroll(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    match verification::totp_enroll(&visit.tenant, &key).await {
        Ok((flow, enrolment)) => {
            let p = FactorPage {
                enrolment: Some(enrolment),
                ..FactorPage::default()
            };
            factor_form(&visit, flow, StatusCode::OK, p).await
        }
        Err(e) => visit.step_error(e),
    }
}

/// `POST /device/factor` with `code` (a one-time code: the second step, or the check that
/// confirms an enrolment, after which the recovery codes are shown once) or `recovery_code`.
async fn factor(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    let result = match (form.get("code"), form.get("recovery_code")) {
        (Some(code), _) => {
            verification::totp_verify(&visit.state, &visit.tenant, &key, code, visit.ip).await
        }
        (None, Some(code)) => {
            verification::recovery_verify(&visit.state, &visit.tenant, &key, code, visit.ip)
                .await
                .map(|f| (f, None))
        }
        (None, None) => return visit.see_other("/device/factor"),
    };
    match result {
        Ok((flow, recovery)) => {
            // The session now carries both factors, for the next device it approves.
            if let Some(old) = visit.session.take() {
                let username = old.username.clone().unwrap_or_default();
                match old
                    .rotate(&visit.state, &visit.tenant, &flow, &username)
                    .await
                {
                    Ok(new) => visit.session = Some(new),
                    Err(e) => return visit.step_error(e.into()),
                }
            }
            match recovery {
                Some(codes) => {
                    let next = visit.next(flow.status);
                    let p = FactorPage {
                        recovery_codes: Some(codes),
                        next: Some(next),
                        ..FactorPage::default()
                    };
                    factor_form(&visit, flow, StatusCode::OK, p).await
                }
                None => visit.see_other(&visit.next(flow.status)),
            }
        }
        Err(StepError::InvalidCredentials) => match visit.current_flow().await {
            Some(flow) => {
                let t = visit.t.clone();
                let p = FactorPage {
                    error: Some(&t.wrong_factor),
                    ..FactorPage::default()
                };
                factor_form(&visit, flow, StatusCode::UNAUTHORIZED, p).await
            }
            None => visit.see_other("/device"),
        },
        Err(e) => visit.step_error(e),
    }
}

/// `POST /device/upstream` with `upstream=ID`: sends the browser to the organisation's
/// provider to sign in for the flow this session walks (`upstream`).
async fn upstream_start(mut visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    let id = form.get("upstream").unwrap_or("").to_owned();
    if let Err(e) = visit.store_session().await {
        return visit.step_error(e);
    }
    go_upstream(&visit, &id, &key).await
}

/// 303 to the provider `id` for the flow behind `key`, with the binding cookie.
async fn go_upstream(visit: &Visit, id: &str, key: &SecretHash) -> Response {
    match upstream::start(&visit.state, &visit.tenant, id, key, None, visit.ip).await {
        Ok(started) => {
            let mut res = Redirect::to(&started.authorization_url).into_response();
            if let Some(s) = &visit.session
                && let Some(cookie) = s.set_cookie(&visit.cookie)
            {
                res.headers_mut().append(header::SET_COOKIE, cookie);
            }
            res.headers_mut().append(
                header::SET_COOKIE,
                visit
                    .cookie
                    .upstream()
                    .set(started.binding.expose(), UPSTREAM_COOKIE_SECS),
            );
            res
        }
        Err(e) => visit.upstream_error(e),
    }
}

/// How long the binding cookie of a round trip to a provider lives.
const UPSTREAM_COOKIE_SECS: u64 = 600;

/// The `Set-Cookie` binding a round trip to an upstream provider to the browser, for the
/// flows API's `upstream.start` (the pages set it in `go_upstream`).
pub(crate) fn upstream_binding_cookie(
    state: &AppState,
    tenant: &Tenant,
    value: &str,
) -> HeaderValue {
    SessionCookie::new(state.pages.https, &tenant.id)
        .upstream()
        .set(value, UPSTREAM_COOKIE_SECS)
}

/// `GET /device/callback?state=…&code=…`: the provider sends the browser back here. On
/// success the session is signed on (a new session id) and consent follows; a round trip
/// the flows API started goes on to its `return_to`.
async fn upstream_callback(
    mut visit: Visit,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let mut back = upstream::Callback::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()).take(MAX_FORM_PARAMS)
    {
        let slot = match k.as_ref() {
            "state" => &mut back.state,
            "code" => &mut back.code,
            "error" => &mut back.error,
            _ => continue,
        };
        slot.get_or_insert_with(|| v.into_owned());
    }
    let binding = visit.cookie.upstream().read(&headers).map(str::to_owned);
    let finished = match upstream::finish(
        &visit.state,
        &visit.tenant,
        back,
        binding.as_deref(),
        visit.ip,
    )
    .await
    {
        Ok(f) => f,
        Err(e) => return visit.upstream_error(e),
    };
    let clear = visit.cookie.upstream().clear();
    let mut res = if let Some(to) = &finished.return_to {
        Redirect::to(to).into_response()
    } else {
        let walks_it = visit.flow_key() == Some(finished.flow.secret_hash);
        match visit.session.take() {
            Some(old) if walks_it => {
                match old
                    .rotate(
                        &visit.state,
                        &visit.tenant,
                        &finished.flow,
                        &finished.user.username,
                    )
                    .await
                {
                    Ok(new) => visit.session = Some(new),
                    Err(e) => return visit.step_error(e.into()),
                }
                visit.see_other(step_path(finished.flow.status))
            }
            other => {
                visit.session = other;
                let t = visit.t.clone();
                visit.message(StatusCode::OK, &t.upstream_done_title, &t.upstream_done)
            }
        }
    };
    res.headers_mut().append(header::SET_COOKIE, clear);
    res
}

/// `GET /device/consent`: who asks, for what, from where.
async fn consent_page(visit: Visit) -> Response {
    let flow = match visit.current_flow().await {
        Some(f) if f.status == FlowStatus::ConsentRequired => f,
        Some(f) => return visit.see_other(step_path(f.status)),
        None => return visit.see_other("/device"),
    };
    match verification::describe(&visit.tenant, flow).await {
        Ok(d) => consent_form(&visit, &d),
        Err(e) => visit.step_error(e),
    }
}

fn consent_form(visit: &Visit, d: &Described) -> Response {
    consent_form_with(visit, d, StatusCode::OK, None)
}

fn consent_form_with(
    visit: &Visit,
    d: &Described,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let t = visit.t.clone();
    let Some(grant) = &d.grant else {
        return visit.message(StatusCode::GONE, &t.expired_code_title, &t.expired_code);
    };
    let ago = t.ago(grant.created_at.until(now()).as_secs());
    let ip = grant
        .requester
        .ip
        .clone()
        .unwrap_or_else(|| t.unknown_device.to_owned());
    let code = grant.user_code.display();
    // Where the approver is, seen from the device (RFC 10027 proximity).
    let relation = crate::proximity::relate(grant.requester.ip.as_deref(), visit.ip);
    use crate::proximity::Relation;
    let (near, far) = match relation {
        Relation::SameAddress => (Some(t.proximity_same_address(ip.clone())), false),
        Relation::SameNetwork => (Some(t.proximity_same_network(ip.clone())), false),
        Relation::Elsewhere => (
            Some(t.proximity_elsewhere(ip.clone(), visit.ip.to_canonical().to_string())),
            true,
        ),
        Relation::Unknown => (None, false),
    };
    // Where both are, in words, when the operator's GeoIP database knows (not needed when
    // they share a network).
    let places = match relation {
        Relation::SameAddress | Relation::SameNetwork => None,
        Relation::Elsewhere | Relation::Unknown => places(visit, grant.requester.ip.as_deref()),
    };
    let ctx = context! {
        error,
        from_link => d.flow.from_link,
        proximity_note => near,
        places,
        far_warn => far && d.proximity == "warn",
        far_refused => far && d.proximity == "same_network",
        client_name => d.client_name.clone().unwrap_or_else(|| grant.client_id.clone()),
        user_code => code,
        user_code_spelled => grant.user_code.canonical().chars().map(String::from).collect::<Vec<_>>().join(" "),
        scopes => in_reading_order(grant.scopes.iter()).map(|s| t.scope(s)).collect::<Vec<_>>(),
        origin => t.consent_origin(ago, ip.clone()),
        user_agent => grant.requester.user_agent.clone().unwrap_or_default(),
    };
    visit.render(
        status,
        "consent.html",
        &t.consent_title,
        ctx,
        d.username.as_deref(),
    )
}

/// "This device is in Lisbon, Portugal. You are in Oslo, Norway.", from the GeoIP database;
/// `None` when it does not know where the device is.
fn places(visit: &Visit, device: Option<&str>) -> Option<String> {
    let geo = &visit.state.geoip;
    let device = device.and_then(|d| d.parse::<IpAddr>().ok())?;
    let t = &visit.t;
    let there = t.place(&geo.locate(device, &t.lang)?)?;
    let here = geo.locate(visit.ip, &t.lang).and_then(|p| t.place(&p));
    let here = here.map_or_else(|| t.geo_unknown.clone(), |h| t.geo_you_in(h));
    Some(t.then(&t.geo_device_in(there), &here))
}

/// Identity first, then what the device may read, then how long it stays; others after.
fn in_reading_order<'a>(scopes: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    let rank = |s: &str| match s {
        "openid" => 0,
        "profile" => 1,
        "email" => 2,
        "offline_access" => 4,
        _ => 3,
    };
    let mut v: Vec<&str> = scopes.collect();
    v.sort_by_key(|s| rank(s));
    v.into_iter()
}

/// `POST /device/consent` with `decision=approve|deny`.
async fn decide(visit: Visit, body: Bytes) -> Response {
    let form = PageForm::parse(&body);
    if let Some(page) = visit.refusal(&form) {
        return page;
    }
    let accept = match form.get("decision") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return visit.see_other("/device/consent"),
    };
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    let confirmed = form.get("confirm_code") == Some("yes");
    match verification::consent(
        &visit.state,
        &visit.tenant,
        &key,
        accept,
        visit.ip,
        confirmed,
    )
    .await
    {
        Ok(_) => visit.see_other("/device/done"),
        Err(StepError::CodeNotConfirmed) => match visit.current_flow().await {
            Some(flow) => match verification::describe(&visit.tenant, flow).await {
                Ok(d) => {
                    let t = visit.t.clone();
                    consent_form_with(
                        &visit,
                        &d,
                        StatusCode::BAD_REQUEST,
                        Some(&t.confirm_code_missing),
                    )
                }
                Err(e) => visit.step_error(e),
            },
            None => visit.see_other("/device"),
        },
        Err(e) => visit.step_error(e),
    }
}

/// `GET /device/done`.
async fn done_page(visit: Visit) -> Response {
    let Some(key) = visit.flow_key() else {
        return visit.see_other("/device");
    };
    // A finished flow stays readable after its expiry.
    let flow = match visit.tenant.store.get_flow(&key).await {
        Ok(f) if f.status == FlowStatus::Completed => f,
        Ok(f) => return visit.see_other(step_path(f.status)),
        Err(StoreError::NotFound) => return visit.see_other("/device"),
        Err(e) => return visit.step_error(e.into()),
    };
    let t = visit.t.clone();
    let (title, result) = match flow.result {
        Some(FlowResult::Approved) => (&t.approved_title, "approved"),
        _ => (&t.denied_title, "denied"),
    };
    let signed_in = visit.session.as_ref().and_then(|s| s.username.as_deref());
    visit.render(
        StatusCode::OK,
        "done.html",
        title,
        context! { result },
        signed_in,
    )
}

/// `POST /device/signout`: ends the session on the server and in the browser.
async fn sign_out(mut visit: Visit, body: Bytes) -> Response {
    if let Some(page) = visit.refusal(&PageForm::parse(&body)) {
        return page;
    }
    if let Some(s) = visit.session.take().filter(Session::is_stored) {
        let _ = visit.tenant.store.delete_session(&s.record).await;
    }
    let mut res = Redirect::to(&format!("{}/device", visit.tenant.base)).into_response();
    res.headers_mut()
        .append(header::SET_COOKIE, visit.cookie.clear());
    res
}

async fn style(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        state.pages.css.clone(),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn logo(State(state): State<AppState>) -> Response {
    let (bytes, media_type) = state.pages.logo.clone();
    let media_type = HeaderValue::from_str(&media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    ([(header::CONTENT_TYPE, media_type)], bytes).into_response()
}
