//! Sign-in through an organisation's OpenID provider (issue 13), over real HTTP: node
//! oidc-provider as the organisation's provider for the whole round trip, and a provider of
//! our own made to misbehave (wrong nonce, audience or issuer, expired, unsigned or HMAC ID
//! tokens, codes refused, `access_denied`, rotated keys, down) for every fault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devicegate_core::SecretHash;
use devicegate_core::keys::{Algorithm, KeyMaterial, Signer};
use devicegate_store::{DEFAULT_TENANT, UpstreamRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::oidc_provider::{OidcProvider, forms};
use crate::pages::{Page, browser, get as page_get, post as page_post};
use crate::support::*;

const CLIENT_ID: &str = "devicegate";
const CLIENT_SECRET: &str = "devicegate-upstream-test-secret";

/// What the misbehaving provider does at its token and authorization endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Good,
    WrongNonce,
    WrongAudience,
    WrongIssuer,
    Expired,
    FutureIat,
    Unsigned,
    Hmac,
    UnknownKey,
    OtherAzp,
    RefuseCode,
    Deny,
    NoIdToken,
}

#[derive(Debug, Default)]
struct Seen {
    authorize: HashMap<String, String>,
    token: HashMap<String, String>,
    basic_auth: Option<String>,
}

struct Op {
    issuer: String,
    mode: Mutex<Mode>,
    signer: Mutex<Signer>,
    seen: Mutex<Seen>,
    claims: Mutex<Value>,
}

type Shared = Arc<Op>;

/// A provider of our own on 127.0.0.1 whose answers the test chooses.
struct FakeOp {
    op: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn signer() -> Signer {
    Signer::from_material(&KeyMaterial::generate(Algorithm::Es256).unwrap()).unwrap()
}

impl FakeOp {
    async fn start() -> FakeOp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let op = Arc::new(Op {
            issuer: issuer.clone(),
            mode: Mutex::new(Mode::Good),
            signer: Mutex::new(signer()),
            seen: Mutex::default(),
            claims: Mutex::new(json!({
                "sub": "alice-sub",
                "email": "alice@example.com",
                "email_verified": true,
                "name": "Alice Example",
                "preferred_username": "alice",
                "groups": ["staff", "devices"],
            })),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(op.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOp { op, task }
    }

    fn set(&self, mode: Mode) {
        *self.op.mode.lock().unwrap() = mode;
    }

    fn claim(&self, name: &str, value: Value) {
        self.op.claims.lock().unwrap()[name] = value;
    }

    /// A new signing key: the JWKS devicegate cached no longer has it.
    fn rotate(&self) {
        *self.op.signer.lock().unwrap() = signer();
    }

    fn seen_authorize(&self) -> HashMap<String, String> {
        self.op.seen.lock().unwrap().authorize.clone()
    }
}

async fn discovery(State(op): State<Shared>) -> Json<Value> {
    let i = &op.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    }))
}

async fn jwks(State(op): State<Shared>) -> Json<Value> {
    Json(json!({"keys": [op.signer.lock().unwrap().jwk().clone()]}))
}

async fn authorize(State(op): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    op.seen.lock().unwrap().authorize = q.clone();
    let back = &q["redirect_uri"];
    let state = &q["state"];
    match *op.mode.lock().unwrap() {
        Mode::Deny => Redirect::to(&format!("{back}?error=access_denied&state={state}")),
        // The code carries the nonce and the challenge, as a real provider remembers them.
        _ => Redirect::to(&format!(
            "{back}?code=code-{}&state={state}",
            q["code_challenge"]
        )),
    }
    .into_response()
}

fn sha256_b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(SecretHash::of(s.as_bytes()).as_bytes())
}

async fn token(
    State(op): State<Shared>,
    headers: axum::http::HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    {
        let mut seen = op.seen.lock().unwrap();
        seen.token = form.clone();
        seen.basic_auth = basic.clone();
    }
    let mode = *op.mode.lock().unwrap();
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let challenge = form
        .get("code")
        .and_then(|c| c.strip_prefix("code-"))
        .unwrap_or_default();
    let verifier = form.get("code_verifier").map(String::as_str).unwrap_or("");
    if mode == Mode::RefuseCode
        || basic.as_deref() != Some(&expected_basic)
        || sha256_b64(verifier) != challenge
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    let nonce = op.seen.lock().unwrap().authorize["nonce"].clone();
    let now = devicegate_server::now().as_secs();
    let mut claims = op.claims.lock().unwrap().clone();
    let set = |c: &mut Value, k: &str, v: Value| c[k] = v;
    set(&mut claims, "iss", json!(op.issuer));
    set(&mut claims, "aud", json!(CLIENT_ID));
    set(&mut claims, "iat", json!(now));
    set(&mut claims, "exp", json!(now + 300));
    set(&mut claims, "auth_time", json!(now - 5));
    set(&mut claims, "nonce", json!(nonce));
    match mode {
        Mode::WrongNonce => set(&mut claims, "nonce", json!("another-nonce")),
        Mode::WrongAudience => set(&mut claims, "aud", json!("someone-else")),
        Mode::WrongIssuer => set(&mut claims, "iss", json!("http://evil.example")),
        Mode::Expired => set(&mut claims, "exp", json!(now - 120)),
        Mode::FutureIat => set(&mut claims, "iat", json!(now + 3600)),
        Mode::OtherAzp => set(&mut claims, "azp", json!("someone-else")),
        _ => {}
    }
    let signed = |s: &Signer| devicegate_core::jwt::encode(s, "JWT", &claims).unwrap();
    let id_token = match mode {
        Mode::Unsigned | Mode::Hmac => {
            let alg = if mode == Mode::Unsigned {
                "none"
            } else {
                "HS256"
            };
            let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT"}).to_string());
            let body = URL_SAFE_NO_PAD.encode(claims.to_string());
            let sig = if mode == Mode::Hmac {
                "c2lnbmF0dXJl"
            } else {
                ""
            };
            format!("{header}.{body}.{sig}")
        }
        Mode::UnknownKey => signed(&signer()),
        _ => signed(&op.signer.lock().unwrap()),
    };
    let mut body =
        json!({"access_token": "op-access-token", "token_type": "Bearer", "expires_in": 300});
    if mode != Mode::NoIdToken {
        body["id_token"] = json!(id_token);
    }
    Json(body).into_response()
}

pub fn upstream(issuer: &str) -> UpstreamRecord {
    UpstreamRecord {
        tenant: DEFAULT_TENANT.into(),
        id: "corp".into(),
        name: "Corp SSO".into(),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        auth_method: "client_secret_basic".into(),
        scopes: "openid profile email".into(),
        allowed_domains: Vec::new(),
        require_claims: Vec::new(),
        link_by_email: false,
        max_age_secs: None,
        force_login: false,
        created_at: devicegate_server::now(),
    }
}

/// A server with the public client `tv` and the upstream `corp` at `issuer`.
async fn server_with(issuer: &str, tweak: impl FnOnce(&mut UpstreamRecord)) -> TestServer {
    let s = TestServer::start_with(|c| {
        c.cors_allowed_origins = vec!["http://ui.example".into()];
    })
    .await;
    s.public_client("tv", 1).await;
    let mut up = upstream(issuer);
    tweak(&mut up);
    s.store().create_upstream(&up).await.unwrap();
    s
}

/// Enters `code` in a browser and clicks "Continue with Corp SSO": the provider's
/// authorization URL.
async fn to_provider(s: &TestServer, b: &reqwest::Client, code: &str) -> String {
    let entry = page_get(b, s.url("/device")).await;
    page_post(
        b,
        s.url("/device"),
        &[("csrf", &entry.csrf()), ("user_code", code)],
    )
    .await;
    let signin = page_get(b, s.url("/device/signin")).await;
    assert!(
        signin.html.contains("Continue with Corp SSO"),
        "{}",
        signin.html
    );
    // The form's answer leads to the provider: the page's CSP lets it (`form-action`).
    let csp = signin.headers["content-security-policy"].to_str().unwrap();
    let issuer = s.store().list_upstreams(DEFAULT_TENANT).await.unwrap()[0]
        .issuer
        .clone();
    assert!(
        csp.contains(&format!("form-action 'self' {issuer}")),
        "{csp}"
    );
    let go = page_post(
        b,
        s.url("/device/upstream"),
        &[("csrf", &signin.csrf()), ("upstream", "corp")],
    )
    .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.html);
    go.location().to_owned()
}

/// Follows the fake provider's redirect back to devicegate's callback: the callback's page.
async fn back_from(b: &reqwest::Client, authorization_url: &str) -> (String, Page) {
    let at_op = page_get(b, authorization_url.to_owned()).await;
    assert_eq!(at_op.status, StatusCode::SEE_OTHER);
    let callback = at_op.location().to_owned();
    (callback.clone(), page_get(b, callback).await)
}

/// A device's code (asking `scope`) approved in a new browser through `corp`: the tokens the
/// device then gets, and the browser.
async fn approved_through_corp(s: &TestServer, scope: Option<&str>) -> (Value, reqwest::Client) {
    let d = s.device_authorization("tv", scope).await;
    let b = browser();
    let url = to_provider(s, &b, d["user_code"].as_str().unwrap()).await;
    let (_, back) = back_from(&b, &url).await;
    assert_eq!(back.location(), "/device/consent", "{}", back.html);
    approve(s, &b).await;
    let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    (t, b)
}

/// A device's code entered in a new flow of the flows API, which now waits for a sign-on.
async fn api_flow_at_sign_on(s: &TestServer) -> (Value, String) {
    let d = s.device_authorization("tv", None).await;
    let flow = s.new_flow().await;
    s.act(
        &flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    (d, flow)
}

/// The page says nothing of the reason, which is only in the log.
fn no_detail(page: &Page) {
    let lower = page.html.to_lowercase();
    for leak in [
        "nonce",
        "audience",
        "signature",
        "invalid_grant",
        "expired",
        "issuer",
    ] {
        assert!(
            !lower.contains(leak),
            "the page tells {leak:?}: {}",
            page.html
        );
    }
}

/// After a failed round trip the flow still waits for a sign-on, and a good one succeeds.
async fn still_retryable(s: &TestServer, b: &reqwest::Client, op: &FakeOp, device: &Value) {
    let signin = page_get(b, s.url("/device/signin")).await;
    assert_eq!(signin.status, StatusCode::OK, "{}", signin.html);
    op.set(Mode::Good);
    let go = page_post(
        b,
        s.url("/device/upstream"),
        &[("csrf", &signin.csrf()), ("upstream", "corp")],
    )
    .await;
    let (_, done) = back_from(b, go.location()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    assert_eq!(done.location(), "/device/consent");
    approve(s, b).await;
    let (status, t) = s.poll("tv", device["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t}");
}

async fn approve(s: &TestServer, b: &reqwest::Client) {
    let consent = page_get(b, s.url("/device/consent")).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    let done = page_post(
        b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(done.location(), "/device/done");
}

#[tokio::test]
async fn a_round_trip_signs_on_links_the_account_and_consent_still_decides() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    let d = s
        .device_authorization("tv", Some("openid profile email"))
        .await;
    let b = browser();
    let url = to_provider(&s, &b, d["user_code"].as_str().unwrap()).await;
    // PKCE S256, state and nonce; nothing of the user code travels to the provider.
    let (_, back) = back_from(&b, &url).await;
    let asked = op.seen_authorize();
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert_eq!(asked["redirect_uri"], s.url("/device/callback"));
    assert!(asked["state"].starts_with("dgo_") && asked["nonce"].len() >= 20);
    assert!(asked["scope"].split(' ').any(|x| x == "openid"));
    let code = d["user_code"].as_str().unwrap().replace('-', "");
    assert!(!url.contains(&code) && !url.contains(d["user_code"].as_str().unwrap()));
    assert!(!url.contains(CLIENT_SECRET));
    let seen = op.op.seen.lock().unwrap().basic_auth.clone();
    assert!(seen.is_some_and(|h| h.starts_with("Basic ")));
    // Signed on, but nothing approved yet: consent follows.
    assert_eq!(back.location(), "/device/consent");
    let (status, b2) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(b2["error"], "authorization_pending", "{status} {b2}");
    let consent = page_get(&b, s.url("/device/consent")).await;
    assert!(
        consent.html.contains("corp:alice@example.com"),
        "{}",
        consent.html
    );
    approve(&s, &b).await;
    let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (_, id) = claims(t["id_token"].as_str().unwrap());
    let user = s
        .store()
        .get_user_by_username("default", "corp:alice@example.com")
        .await
        .unwrap();
    assert_eq!(id["sub"], user.id.as_str());
    assert_eq!(user.email.as_deref(), Some("alice@example.com"));
    assert!(user.password_hash.is_empty());
    // The provider's tokens never reach the device; devicegate's say which provider
    // signed the person on.
    assert!(!t.to_string().contains("op-access-token"));
    assert_eq!(id["idp"], "corp", "{id}");
    let (_, at) = claims(t["access_token"].as_str().unwrap());
    assert_eq!(at["idp"], "corp", "{at}");
    assert_eq!(at["iss"], s.url(""), "devicegate stays the issuer");

    // A second device, the same person: the same account.
    let (t2, _) = approved_through_corp(&s, Some("openid")).await;
    let (_, id2) = claims(t2["id_token"].as_str().unwrap());
    assert_eq!(id2["sub"], id["sub"]);
    // An account made by an upstream sign-in has no password to guess.
    let (_, flow) = api_flow_at_sign_on(&s).await;
    let (status, e) = s
        .act(
            &flow,
            json!({"action": "sign_on", "username": "corp:alice@example.com", "password": ""}),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
}

#[tokio::test]
async fn every_bad_answer_of_the_provider_is_a_readable_page_and_the_flow_survives() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    for (mode, status) in [
        (Mode::WrongNonce, StatusCode::BAD_GATEWAY),
        (Mode::WrongAudience, StatusCode::BAD_GATEWAY),
        (Mode::WrongIssuer, StatusCode::BAD_GATEWAY),
        (Mode::Expired, StatusCode::BAD_GATEWAY),
        (Mode::FutureIat, StatusCode::BAD_GATEWAY),
        (Mode::Unsigned, StatusCode::BAD_GATEWAY),
        (Mode::Hmac, StatusCode::BAD_GATEWAY),
        (Mode::UnknownKey, StatusCode::BAD_GATEWAY),
        (Mode::OtherAzp, StatusCode::BAD_GATEWAY),
        (Mode::RefuseCode, StatusCode::BAD_GATEWAY),
        (Mode::NoIdToken, StatusCode::BAD_GATEWAY),
        (Mode::Deny, StatusCode::FORBIDDEN),
    ] {
        let d = s.device_authorization("tv", None).await;
        let b = browser();
        let url = to_provider(&s, &b, d["user_code"].as_str().unwrap()).await;
        op.set(mode);
        let (_, page) = back_from(&b, &url).await;
        assert_eq!(page.status, status, "{mode:?}: {}", page.html);
        assert!(
            page.html.contains("Sign-in did not complete"),
            "{mode:?}: {}",
            page.html
        );
        no_detail(&page);
        still_retryable(&s, &b, &op, &d).await;
    }
}

#[tokio::test]
async fn a_state_is_taken_once_by_the_browser_that_started_it() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    let d = s.device_authorization("tv", None).await;
    let b = browser();
    let url = to_provider(&s, &b, d["user_code"].as_str().unwrap()).await;
    let at_op = page_get(&b, url.clone()).await;
    let callback = at_op.location().to_owned();

    // Another browser cannot use it: without a binding cookie, or with another one, it is
    // refused, and the round trip stays for its own browser.
    let thief = page_get(&browser(), callback.clone()).await;
    assert_eq!(thief.status, StatusCode::BAD_REQUEST, "{}", thief.html);
    let thief = s
        .http
        .get(&callback)
        .header("cookie", "devicegate_upstream=dgn_not-the-binding")
        .send()
        .await
        .unwrap();
    assert_eq!(thief.status(), StatusCode::BAD_REQUEST);
    let own = page_get(&b, callback.clone()).await;
    assert_eq!(own.location(), "/device/consent", "{}", own.html);
    // Used once: a replay, even from its own browser, finds nothing.
    let replay = page_get(&b, callback.clone()).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.html);

    // A forged state, and none.
    for forged in ["dgo_forged", "", "something"] {
        let page = page_get(
            &b,
            s.url(&format!("/device/callback?state={forged}&code=x")),
        )
        .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.html);
    }
    // An unknown upstream.
    let other = browser();
    let d2 = s.device_authorization("tv", None).await;
    to_provider(&s, &other, d2["user_code"].as_str().unwrap()).await;
    let signin = page_get(&other, s.url("/device/signin")).await;
    let nope = page_post(
        &other,
        s.url("/device/upstream"),
        &[("csrf", &signin.csrf()), ("upstream", "nope")],
    )
    .await;
    assert_eq!(nope.status, StatusCode::NOT_FOUND, "{}", nope.html);
}

#[tokio::test]
async fn a_provider_that_is_down_is_a_readable_page_and_the_code_survives() {
    let op = FakeOp::start().await;
    let issuer = op.op.issuer.clone();
    drop(op);
    let s = server_with(&issuer, |_| {}).await;
    let d = s.device_authorization("tv", None).await;
    let b = browser();
    let entry = page_get(&b, s.url("/device")).await;
    page_post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    let signin = page_get(&b, s.url("/device/signin")).await;
    let page = page_post(
        &b,
        s.url("/device/upstream"),
        &[("csrf", &signin.csrf()), ("upstream", "corp")],
    )
    .await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.html);
    assert!(page.html.contains("could not be reached"), "{}", page.html);
    // The pages stay up, the flow still waits for a sign-on, and the code is pending.
    assert_eq!(
        page_get(&b, s.url("/device/signin")).await.status,
        StatusCode::OK
    );
    let (_, p) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(p["error"], "authorization_pending");
}

#[tokio::test]
async fn domain_and_claim_restrictions_refuse_a_person() {
    let op = FakeOp::start().await;
    for (domains, claims, allowed) in [
        (vec!["example.com"], vec![], true),
        (vec!["corp.example"], vec![], false),
        (vec![], vec![("groups", "devices")], true),
        (vec![], vec![("groups", "admins")], false),
    ] {
        let s = server_with(&op.op.issuer, |u| {
            u.allowed_domains = domains.iter().map(|d| d.to_string()).collect();
            u.require_claims = claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        })
        .await;
        let d = s.device_authorization("tv", None).await;
        let b = browser();
        let url = to_provider(&s, &b, d["user_code"].as_str().unwrap()).await;
        let (_, page) = back_from(&b, &url).await;
        if allowed {
            assert_eq!(page.location(), "/device/consent");
        } else {
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
            assert!(
                page.html.contains("may not approve devices"),
                "{}",
                page.html
            );
        }
    }
    // An unverified email is no email for the domain check.
    op.claim("email_verified", json!(false));
    let s = server_with(&op.op.issuer, |u| {
        u.allowed_domains = vec!["example.com".into()]
    })
    .await;
    let d = s.device_authorization("tv", None).await;
    let b = browser();
    let url = to_provider(&s, &b, d["user_code"].as_str().unwrap()).await;
    let (_, page) = back_from(&b, &url).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.html);
}

#[tokio::test]
async fn max_age_and_force_login_are_asked_and_passwords_can_be_switched_off() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    // A tenant of its own (tenants are cached once loaded, and this one is not loaded yet).
    s.store()
        .create_tenant(&devicegate_store::TenantRecord {
            second_factor: "off".into(),
            id: "acme".into(),
            uuid: "0f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b".into(),
            local_passwords: true,
            created_at: devicegate_server::now(),
        })
        .await
        .unwrap();
    s.client(devicegate_store::ClientRecord {
        tenant: "acme".into(),
        poll_interval_secs: Some(1),
        ..client_record("tv", None)
    })
    .await;
    let mut up = upstream(&op.op.issuer);
    up.tenant = "acme".into();
    up.max_age_secs = Some(60);
    up.force_login = true;
    s.store().create_upstream(&up).await.unwrap();
    s.store().set_local_passwords("acme", false).await.unwrap();

    let (_, _, d) = s
        .form(
            "/t/acme/oauth2/device_authorization",
            &[("client_id", "tv")],
        )
        .await;
    let b = browser();
    let entry = page_get(&b, s.url("/t/acme/device")).await;
    // One provider and no passwords: the code goes straight to the provider.
    let go = page_post(
        &b,
        s.url("/t/acme/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.html);
    assert!(
        go.location().starts_with(&op.op.issuer),
        "{}",
        go.location()
    );
    let asked: HashMap<String, String> = reqwest::Url::parse(go.location())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        (asked["max_age"].as_str(), asked["prompt"].as_str()),
        ("60", "login")
    );
    assert_eq!(asked["redirect_uri"], s.url("/t/acme/device/callback"));
    let signin = page_get(&b, s.url("/t/acme/device/signin")).await;
    assert!(
        !signin.html.contains("name=\"password\""),
        "{}",
        signin.html
    );
    assert!(
        signin.html.contains("Continue with Corp SSO"),
        "{}",
        signin.html
    );
    let refused = page_post(
        &b,
        s.url("/t/acme/device/signin"),
        &[
            ("csrf", &signin.csrf()),
            ("username", "x"),
            ("password", "y"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let (_, back) = back_from(&b, go.location()).await;
    assert_eq!(back.location(), "/t/acme/device/consent", "{}", back.html);
}

#[tokio::test]
async fn the_flows_api_starts_a_round_trip_and_the_browser_returns_to_the_custom_ui() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    let (d, flow) = api_flow_at_sign_on(&s).await;
    let (status, e) = s
        .act(
            &flow,
            json!({"action": "upstream.start", "upstream": "corp", "return_to": "http://evil.example/x"}),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let res = s
        .http
        .post(s.url(&format!("/api/v1/flows/{flow}")))
        .json(&json!({"action": "upstream.start", "upstream": "corp", "return_to": "http://ui.example/done"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let body: Value = res.json().await.unwrap();
    let url = body["authorization_url"].as_str().unwrap();
    assert_eq!(body["status"], "SIGN_ON_REQUIRED");
    // The browser the custom UI sends there holds the binding cookie.
    let at_op = s.http.get(url).send().await.unwrap();
    let callback = at_op.headers()["location"].to_str().unwrap().to_owned();
    let back = s
        .http
        .get(&callback)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(back.headers()["location"], "http://ui.example/done");
    let (_, _, f) = s.api("GET", &format!("/api/v1/flows/{flow}"), None).await;
    assert_eq!(
        (f["status"].as_str(), f["username"].as_str()),
        (Some("CONSENT_REQUIRED"), Some("corp:alice@example.com")),
        "{f}"
    );
    s.act(&flow, json!({"action": "consent", "accept": true}))
        .await;
    let (status, _) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn node_oidc_provider_as_the_organisations_provider_and_an_ocient_grant_through_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let op =
        OidcProvider::start_with(&[("UPSTREAM_REDIRECT_URIS", &format!("{base}/device/callback"))]);
    let s = TestServer::start_on(listener, |_| {}).await;
    s.public_client("tv", 1).await;
    s.store()
        .create_upstream(&upstream(&op.issuer))
        .await
        .unwrap();
    for round in 0..2 {
        // An Ocient grant the second time: its verify waits while the person signs in.
        let (device_code, user_code) = if round == 0 {
            let d = s
                .device_authorization("tv", Some("openid profile email"))
                .await;
            (
                d["device_code"].as_str().map(str::to_owned),
                d["user_code"].as_str().unwrap().to_owned(),
            )
        } else {
            let g: Value = s
                .http
                .post(s.url("/v1/sso_device_grant"))
                .json(&json!({}))
                .json_of()
                .await;
            (None, g["user_code"].as_str().unwrap().to_owned())
        };
        let b = browser();
        let url = to_provider(&s, &b, &user_code).await;
        let callback = sign_in_at_oidc_provider(&op.issuer, &b, &url, "carol").await;
        assert!(
            callback.starts_with(&format!("{base}/device/callback?")),
            "{callback}"
        );
        let back = page_get(&b, callback).await;
        assert_eq!(back.location(), "/device/consent", "{}", back.html);
        approve(&s, &b).await;
        match device_code {
            Some(dc) => {
                let (status, t) = s.poll("tv", &dc).await;
                assert_eq!(status, StatusCode::OK, "{t}");
                let (_, id) = claims(t["id_token"].as_str().unwrap());
                let user = s
                    .store()
                    .get_user_by_username("default", "corp:carol@example.com")
                    .await
                    .unwrap();
                assert_eq!(id["sub"], user.id.as_str());
            }
            None => {
                let t: Value = s
                    .http
                    .post(s.url("/v1/sso_device_grant_verify"))
                    .json(&json!({"user_code": user_code, "timeout": 5}))
                    .json_of()
                    .await;
                assert_eq!(t["username"], "corp:carol@example.com", "{t}");
            }
        }
    }
}

/// At node oidc-provider: follows its redirects, signs in as `login` and consents through
/// its development interactions; returns the URL it finally sends the browser to.
async fn sign_in_at_oidc_provider(
    issuer: &str,
    b: &reqwest::Client,
    url: &str,
    login: &str,
) -> String {
    let absolute = |u: &str| {
        if u.starts_with('/') {
            format!("{issuer}{u}")
        } else {
            u.to_owned()
        }
    };
    let mut next = url.to_owned();
    let mut pending_form: Option<crate::oidc_provider::Form> = None;
    for _ in 0..20 {
        let res = match pending_form.take() {
            Some(f) => b
                .post(absolute(&f.action))
                .form(&f.fields)
                .send()
                .await
                .unwrap(),
            None => b.get(&next).send().await.unwrap(),
        };
        if res.status().is_redirection() {
            let to = absolute(res.headers()["location"].to_str().unwrap());
            if !to.starts_with(issuer) {
                return to;
            }
            next = to;
            continue;
        }
        let html = res.text().await.unwrap();
        let mut form = forms(&html)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no form:\n{html}"));
        if form.fields.iter().any(|(n, _)| n == "login") {
            form.set("login", login);
            form.set("password", "any password the dev interactions accept");
        }
        pending_form = Some(form);
    }
    panic!("oidc-provider did not send the browser back");
}

#[tokio::test]
async fn a_provider_that_rotated_its_keys_is_read_again() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    for round in 0..2 {
        if round == 1 {
            op.rotate();
        }
        let d = s.device_authorization("tv", None).await;
        let b = browser();
        let url = to_provider(&s, &b, d["user_code"].as_str().unwrap()).await;
        let (_, back) = back_from(&b, &url).await;
        assert_eq!(
            back.location(),
            "/device/consent",
            "round {round}: {}",
            back.html
        );
    }
}

#[tokio::test]
async fn a_verified_email_links_a_local_account_only_when_the_operator_asks() {
    let op = FakeOp::start().await;
    for link_by_email in [false, true] {
        let s = server_with(&op.op.issuer, |u| u.link_by_email = link_by_email).await;
        let erin = local_alice(&s).await;
        let (t, _) = approved_through_corp(&s, Some("openid")).await;
        let (_, id) = claims(t["id_token"].as_str().unwrap());
        assert_eq!(
            id["sub"] == erin.as_str(),
            link_by_email,
            "link_by_email {link_by_email}: {id}"
        );
    }
    // An unverified email never links.
    op.claim("email_verified", json!(false));
    let s = server_with(&op.op.issuer, |u| u.link_by_email = true).await;
    let erin = local_alice(&s).await;
    let (t, _) = approved_through_corp(&s, Some("openid")).await;
    let (_, id) = claims(t["id_token"].as_str().unwrap());
    assert_ne!(id["sub"], erin.as_str());
}

/// A local account `erin` whose email is the provider's person's (in another case).
async fn local_alice(s: &TestServer) -> String {
    let erin = devicegate_store::UserRecord {
        id: devicegate_core::secret::random_id(),
        tenant: DEFAULT_TENANT.into(),
        username: "erin".into(),
        password_hash: devicegate_core::password::hash_password(PASSWORD),
        name: None,
        email: Some("Alice@Example.com".into()),
        created_at: devicegate_server::now(),
        disabled: false,
    };
    s.store().create_user(&erin).await.unwrap();
    erin.id
}

/// A flood of forged callbacks (or of starts) is paid for per address like flows are: past
/// the cap every one is refused before the store is touched.
#[tokio::test]
async fn callbacks_and_starts_are_capped_per_address() {
    let op = FakeOp::start().await;
    let s = TestServer::start_with(|c| c.limits.max_flows_per_address = 6).await;
    s.public_client("tv", 1).await;
    s.store()
        .create_upstream(&upstream(&op.op.issuer))
        .await
        .unwrap();
    let forged = |n: usize| s.url(&format!("/device/callback?state=dgo_forged{n}&code=x"));
    // Without a binding cookie nothing is paid (and nothing is taken).
    for n in 0..20 {
        assert_eq!(
            page_get(&browser(), forged(n)).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    let mut statuses = Vec::new();
    for n in 0..8 {
        let res = s
            .http
            .get(forged(n))
            .header("cookie", "devicegate_upstream=dgn_forged")
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 400, 400, 400, 429, 429]);
}

/// The provider a person signed on through stays with what that sign-on leads to: a refresh
/// token's new access tokens, and the next device the same browser approves (its session).
#[tokio::test]
async fn idp_follows_refresh_tokens_and_the_browser_session() {
    let op = FakeOp::start().await;
    let s = server_with(&op.op.issuer, |_| {}).await;
    let (t, b) = approved_through_corp(&s, Some("openid offline_access")).await;
    let (status, _, r) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(claims(r["access_token"].as_str().unwrap()).1["idp"], "corp");
    assert_eq!(claims(r["id_token"].as_str().unwrap()).1["idp"], "corp");
    // The same browser, a second device: signed on already, straight to consent.
    let d2 = s.device_authorization("tv", Some("openid")).await;
    let entry = page_get(&b, s.url("/device")).await;
    let next = page_post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d2["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(next.location(), "/device/consent", "{}", next.html);
    approve(&s, &b).await;
    let (_, t2) = s.poll("tv", d2["device_code"].as_str().unwrap()).await;
    assert_eq!(claims(t2["id_token"].as_str().unwrap()).1["idp"], "corp");
    // A password sign-on carries no idp.
    s.user("ann").await;
    let d3 = s.device_authorization("tv", Some("openid")).await;
    s.decide(d3["user_code"].as_str().unwrap(), "ann", true)
        .await;
    let (_, t3) = s.poll("tv", d3["device_code"].as_str().unwrap()).await;
    assert!(
        claims(t3["id_token"].as_str().unwrap())
            .1
            .get("idp")
            .is_none()
    );
}

/// Review findings: names come from what the provider vouches for, a link by email goes
/// only to a local account not linked yet, and a provider that wants a fresh sign-in for
/// every device gets one even from a signed-in browser.
#[tokio::test]
async fn accounts_cannot_be_taken_over_through_names_emails_or_sessions() {
    let op = FakeOp::start().await;
    // A self-chosen preferred_username does not name the account.
    op.claim("preferred_username", json!("bob"));
    let s = server_with(&op.op.issuer, |u| u.link_by_email = true).await;
    let (t, b) = approved_through_corp(&s, Some("openid")).await;
    let alice = claims(t["id_token"].as_str().unwrap()).1["sub"].clone();
    let user = s
        .store()
        .get_user_by_username(DEFAULT_TENANT, "corp:alice@example.com")
        .await
        .unwrap();
    assert_eq!(alice, user.id.as_str());
    assert!(
        s.store()
            .get_user_by_username(DEFAULT_TENANT, "corp:bob")
            .await
            .is_err()
    );
    // Another subject with the same verified email (a recycled address) is not linked to the
    // account made by the first: it is no local account, and it is linked already.
    op.claim("sub", json!("mallory-sub"));
    let (t2, _) = approved_through_corp(&s, Some("openid")).await;
    assert_ne!(claims(t2["id_token"].as_str().unwrap()).1["sub"], alice);
    // A second upstream with link_by_email does not reach the account the first one made.
    let other = FakeOp::start().await;
    let mut second = upstream(&other.op.issuer);
    second.id = "other".into();
    second.name = "Other SSO".into();
    second.link_by_email = true;
    s.store().create_upstream(&second).await.unwrap();
    let d = s.device_authorization("tv", Some("openid")).await;
    let b3 = browser();
    let entry = page_get(&b3, s.url("/device")).await;
    page_post(
        &b3,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    let signin = page_get(&b3, s.url("/device/signin")).await;
    let go = page_post(
        &b3,
        s.url("/device/upstream"),
        &[("csrf", &signin.csrf()), ("upstream", "other")],
    )
    .await;
    back_from(&b3, go.location()).await;
    approve(&s, &b3).await;
    let (_, t3) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_ne!(claims(t3["id_token"].as_str().unwrap()).1["sub"], alice);

    // force_login: the browser signed in through corp still goes back to the provider.
    let mut corp = s
        .store()
        .get_upstream(DEFAULT_TENANT, "corp")
        .await
        .unwrap();
    corp.force_login = true;
    s.store().update_upstream(&corp).await.unwrap();
    let d4 = s.device_authorization("tv", Some("openid")).await;
    let entry = page_get(&b, s.url("/device")).await;
    let next = page_post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d4["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(next.location(), "/device/signin", "{}", next.html);
}
