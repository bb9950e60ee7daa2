//! Tenants, and the vendor dialects (Oracle IDCS, PingOne, Ocient) over real HTTP, with the
//! shapes of ../shared/reference/.

use std::time::Duration;

use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, SecretKind};
use devicegate_store::{ClientRecord, TenantRecord, UserRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::{Page, browser, get, post};
use crate::support::*;

const ACME_UUID: &str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";

/// A server with tenant `acme`, client `tv` in both tenants, `ann` in both, `bob` only in acme.
async fn two_tenants() -> TestServer {
    let s = TestServer::start().await;
    s.store()
        .create_tenant(&TenantRecord {
            second_factor: "off".into(),
            id: "acme".into(),
            uuid: ACME_UUID.into(),
            local_passwords: true,
            created_at: devicegate_server::now(),
        })
        .await
        .unwrap();
    s.public_client("tv", 1).await;
    s.client(ClientRecord {
        tenant: "acme".into(),
        name: "Acme TV".into(),
        poll_interval_secs: Some(1),
        ..client_record("tv", None)
    })
    .await;
    s.client(ClientRecord {
        tenant: "acme".into(),
        ..client_record("acme-only", None)
    })
    .await;
    s.user("ann").await;
    for name in ["ann", "bob"] {
        let u = UserRecord {
            id: devicegate_core::secret::random_id(),
            tenant: "acme".into(),
            username: name.into(),
            password_hash: devicegate_core::password::hash_password(PASSWORD),
            name: Some(format!("{name} of Acme")),
            email: None,
            created_at: devicegate_server::now(),
            disabled: false,
        };
        s.store().create_user(&u).await.unwrap();
    }
    s
}

async fn flow_at(s: &TestServer, base: &str) -> String {
    let (status, _, b) = s
        .api("POST", &format!("{base}/api/v1/flows"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

/// `bob` approves the code of `d` through a flow of acme's flows API; returns the flow id and
/// the answer to his sign-on (with the session it kept).
async fn approve_in_acme(s: &TestServer, d: &Value) -> (String, Value) {
    let flow = flow_at(s, "/t/acme").await;
    act_at(
        s,
        "/t/acme",
        &flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    let (status, signed_on) = act_at(
        s,
        "/t/acme",
        &flow,
        json!({"action": "sign_on", "username": "bob", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed_on}");
    let (status, b) = act_at(
        s,
        "/t/acme",
        &flow,
        json!({"action": "consent", "accept": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    (flow, signed_on)
}

async fn act_at(s: &TestServer, base: &str, flow: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, b) = s
        .api("POST", &format!("{base}/api/v1/flows/{flow}"), Some(body))
        .await;
    (status, b)
}

#[tokio::test]
async fn a_tenant_has_its_own_issuer_keys_clients_users_codes_and_tokens() {
    let s = two_tenants().await;
    let (_, _, meta) = s
        .api("GET", "/t/acme/.well-known/openid-configuration", None)
        .await;
    assert_eq!(meta["issuer"], s.url("/t/acme"));
    assert_eq!(meta["token_endpoint"], s.url("/t/acme/oauth2/token"));
    let (_, _, acme_jwks) = s.api("GET", "/t/acme/oauth2/jwks", None).await;
    let (_, _, default_jwks) = s.api("GET", "/oauth2/jwks", None).await;
    assert_ne!(acme_jwks["keys"][0]["kid"], default_jwks["keys"][0]["kid"]);

    // A whole flow inside acme.
    let (status, _, d) = s
        .form(
            "/t/acme/oauth2/device_authorization",
            &[("client_id", "tv")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["verification_uri"], s.url("/t/acme/device"));
    let code = d["user_code"].as_str().unwrap();

    // Another tenant's code is a wrong code here, and its device code unknown.
    let flow = s.new_flow().await;
    let (status, b) = s
        .act(
            &flow,
            json!({"action": "user_code.verify", "user_code": code}),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_user_code")),
        "{b}"
    );
    let (status, b) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{b}"
    );
    // acme's client and user do not exist in the default tenant.
    let (status, _, b) = s
        .form(
            "/oauth2/device_authorization",
            &[("client_id", "acme-only")],
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, b) = s
        .act(
            &flow,
            json!({"action": "sign_on", "username": "bob", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    // A flow of one tenant does not exist in another.
    let (status, _, _) = s
        .api("GET", &format!("/t/acme/api/v1/flows/{flow}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, b) = approve_in_acme(&s, &d).await;
    assert_eq!(b["client"]["name"].as_str(), Some("Acme TV"), "{b}");
    let (status, t) = s
        .poll_at(
            "/t/acme/oauth2/token",
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (header, claims) = crate::support::claims(t["access_token"].as_str().unwrap());
    assert_eq!(claims["iss"], s.url("/t/acme"));
    assert_eq!(header["kid"], acme_jwks["keys"][0]["kid"]);
    let at = t["access_token"].as_str().unwrap();
    // Accepted by acme's userinfo, refused by the default tenant's.
    let ok = s
        .http
        .get(s.url("/t/acme/oauth2/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let refused = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // Its refresh token is unknown to the default tenant's client of the same id.
    let rt = t["refresh_token"].as_str().unwrap();
    let (status, _, b) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", rt),
            ],
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _, _) = s
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", rt),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The tenant's pages post to the tenant's paths; an unknown tenant is a 404.
    let page = get(&browser(), s.url("/t/acme/device")).await;
    assert!(
        page.html.contains(r#"action="/t/acme/device""#),
        "{}",
        page.html
    );
    let (status, _, b) = s
        .api("GET", "/t/nope/.well-known/openid-configuration", None)
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn idcs_device_endpoint_and_token_polling() {
    let s = two_tenants().await;
    let secret = s.confidential_client("backend").await;
    let (status, _, d) = s
        .form(
            "/oauth2/v1/device",
            &[
                ("response_type", "device_code"),
                ("client_id", "tv"),
                ("scope", "openid profile"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    for member in ["expires_in", "device_code", "user_code", "verification_uri"] {
        assert!(!d[member].is_null(), "{member}: {d}");
    }
    let code = d["user_code"].as_str().unwrap();
    assert!(
        code.len() == 8 && !code.contains('-'),
        "IDCS shows the code undecorated: {code}"
    );
    for (params, status_want, error) in [
        (
            vec![("client_id", "tv")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("response_type", "code"), ("client_id", "tv")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("response_type", "device_code"), ("client_id", "nobody")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("response_type", "device_code"), ("client_id", "backend")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ] {
        let (status, _, b) = s.form("/oauth2/v1/device", &params).await;
        assert_eq!(
            (status, b["error"].as_str()),
            (status_want, Some(error)),
            "{params:?}: {b}"
        );
    }
    let (status, _, _) = s
        .form(
            "/oauth2/v1/device",
            &[
                ("response_type", "device_code"),
                ("client_id", "backend"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let poll = |device_code: String| {
        let s = &s;
        async move { s.poll_at("/oauth2/v1/token", "tv", &device_code).await }
    };
    let device_code = d["device_code"].as_str().unwrap().to_owned();
    assert_eq!(
        poll(device_code.clone()).await.1["error"],
        "authorization_pending"
    );
    // Approved through the pages, as an IDCS user would.
    let b = browser();
    let entry = get(&b, d["verification_uri"].as_str().unwrap().to_owned()).await;
    finish_on_pages(&s, &b, entry, Some(code), true).await;
    let (status, t) = poll(device_code).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert!(t["id_token"].is_string());

    // A denial reads as access_denied, and the tenant has the same endpoints under its prefix.
    let (status, _, d) = s
        .form(
            "/t/acme/oauth2/v1/device",
            &[("response_type", "device_code"), ("client_id", "tv")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let flow = flow_at(&s, "/t/acme").await;
    act_at(
        &s,
        "/t/acme",
        &flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    act_at(
        &s,
        "/t/acme",
        &flow,
        json!({"action": "sign_on", "username": "bob", "password": PASSWORD}),
    )
    .await;
    act_at(
        &s,
        "/t/acme",
        &flow,
        json!({"action": "consent", "accept": false}),
    )
    .await;
    let (_, b) = s
        .poll_at(
            "/t/acme/oauth2/v1/token",
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(b["error"], "access_denied");
}

async fn ping_post(
    s: &TestServer,
    env: &str,
    flow: &str,
    media: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = s
        .http
        .post(s.url(&format!("/{env}/flows/{flow}")))
        .header("content-type", media)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

const VERIFY: &str = "application/vnd.pingidentity.deviceAuthGrant.userCode.verify+json";
const CHECK: &str = "application/vnd.pingidentity.usernamePassword.check+json";
const CONSENT: &str = "application/vnd.pingidentity.deviceAuthGrant.consent+json";

/// `GET /{env}/device`: the flow id from the `Location`.
async fn ping_start(s: &TestServer, path: &str) -> (StatusCode, String) {
    let res = s.http.get(s.url(path)).send().await.unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location)
}

fn flow_id(location: &str) -> String {
    location
        .split("flowId=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn pingone_device_authorization_flows_api_and_token() {
    let s = two_tenants().await;
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let (status, _, d) = s
        .form(
            &format!("/{env}/as/device_authorization"),
            &[("client_id", "tv"), ("scope", "openid")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["verification_uri"], s.url(&format!("/{env}/device")));
    assert_eq!(
        d["verification_uri_complete"],
        s.url(&format!(
            "/{env}/device?user_code={}",
            d["user_code"].as_str().unwrap()
        ))
    );
    assert_eq!(
        (d["expires_in"].as_u64(), d["interval"].as_u64()),
        (Some(600), Some(1))
    );

    let (status, location) = ping_start(&s, &format!("/{env}/device")).await;
    assert_eq!(status, StatusCode::FOUND);
    assert!(
        location.starts_with(&s.url(&format!("/{env}/signon/?flowId="))),
        "{location}"
    );
    let flow = flow_id(&location);
    let (status, f) = s
        .api("GET", &format!("/{env}/flows/{flow}"), None)
        .await
        .into_pair();
    assert_eq!(
        (status, f["status"].as_str()),
        (StatusCode::OK, Some("DAG_USER_CODE_REQUIRED")),
        "{f}"
    );
    assert_eq!(f["environment"]["id"], env.as_str());

    let (status, e) = ping_post(&s, &env, &flow, VERIFY, json!({"userCode": "BCDF-BCDF"})).await;
    assert_eq!(
        (
            status,
            e["code"].as_str(),
            e["details"][0]["target"].as_str()
        ),
        (
            StatusCode::BAD_REQUEST,
            Some("INVALID_DATA"),
            Some("userCode")
        ),
        "{e}"
    );
    let (status, f) = ping_post(&s, &env, &flow, VERIFY, json!({"userCode": d["user_code"]})).await;
    assert_eq!(
        (status, f["status"].as_str()),
        (StatusCode::OK, Some("USERNAME_PASSWORD_REQUIRED")),
        "{f}"
    );
    assert_eq!(f["application"]["id"], "tv");
    let (status, e) = ping_post(
        &s,
        &env,
        &flow,
        CHECK,
        json!({"username": "ann", "password": "wrong password"}),
    )
    .await;
    assert_eq!(
        (status, e["details"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_CREDENTIALS")),
        "{e}"
    );
    let (status, f) = ping_post(
        &s,
        &env,
        &flow,
        CHECK,
        json!({"username": "ann", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        (status, f["status"].as_str()),
        (StatusCode::OK, Some("DAG_CONSENT_REQUIRED")),
        "{f}"
    );
    let (status, f) = ping_post(&s, &env, &flow, CONSENT, json!({"accept": true})).await;
    assert_eq!(
        (status, f["status"].as_str()),
        (StatusCode::OK, Some("COMPLETED")),
        "{f}"
    );

    let (status, t) = s
        .poll_at(
            &format!("/{env}/as/token"),
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");

    // Errors in PingOne's shape.
    let res = s
        .http
        .post(s.url(&format!("/{env}/flows/{flow}")))
        .json(&json!({"accept": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, e) = ping_post(&s, &env, "dgf_nope", CONSENT, json!({"accept": true})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    assert!(e["id"].is_string() && e["message"].is_string());
    let (status, _) = ping_start(&s, "/00000000-0000-4000-8000-000000000000/device").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = ping_start(&s, &format!("/{env}/device/no-such-app")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, location) = ping_start(&s, &format!("/{env}/device/tv")).await;
    assert_eq!(status, StatusCode::FOUND, "{location}");
}

#[tokio::test]
async fn pingone_refused_consent_fails_the_flow_and_environments_are_isolated() {
    let s = two_tenants().await;
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let (_, _, d) = s
        .form(
            &format!("/{ACME_UUID}/as/device_authorization"),
            &[("client_id", "tv")],
        )
        .await;
    // An acme code is no code in the default environment's flow.
    let (_, location) = ping_start(&s, &format!("/{env}/device")).await;
    let flow = flow_id(&location);
    let (status, e) = ping_post(&s, &env, &flow, VERIFY, json!({"userCode": d["user_code"]})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_DATA")),
        "{e}"
    );
    // In acme's environment, bob refuses.
    let (_, location) = ping_start(&s, &format!("/{ACME_UUID}/device")).await;
    let flow = flow_id(&location);
    ping_post(
        &s,
        ACME_UUID,
        &flow,
        CHECK,
        json!({"username": "bob", "password": PASSWORD}),
    )
    .await;
    let (_, f) = ping_post(
        &s,
        ACME_UUID,
        &flow,
        VERIFY,
        json!({"userCode": d["user_code"]}),
    )
    .await;
    assert_eq!(f["status"], "DAG_CONSENT_REQUIRED", "{f}");
    let (_, f) = ping_post(&s, ACME_UUID, &flow, CONSENT, json!({"accept": false})).await;
    assert_eq!(f["status"], "FAILED", "{f}");
    let (_, b) = s
        .poll_at(
            &format!("/{ACME_UUID}/as/token"),
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(b["error"], "access_denied");
}

#[tokio::test]
async fn pingone_sign_on_screen_walks_the_flow_in_the_browser() {
    let s = two_tenants().await;
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let (_, _, d) = s
        .form(
            &format!("/{env}/as/device_authorization"),
            &[("client_id", "tv")],
        )
        .await;
    let (_, location) = ping_start(
        &s,
        &format!(
            "/{env}/device?user_code={}",
            d["user_code"].as_str().unwrap()
        ),
    )
    .await;
    let b = browser();
    let p = get(&b, location).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let entry = get(&b, s.url(p.location())).await;
    assert_eq!(
        crate::pages::input_value(&entry.html, "user_code").as_deref(),
        d["user_code"].as_str()
    );
    finish_on_pages(&s, &b, entry, None, true).await;
    let (status, t) = s
        .poll_at(
            &format!("/{env}/as/token"),
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
}

/// A device's code at PingOne's endpoints and a sign-on link for it (`GET /{envID}/device`):
/// the environment, the link, its flow id and the device authorization response.
struct SignOnLink {
    env: String,
    link: String,
    flow: String,
    device: Value,
}

async fn sign_on_link(s: &TestServer) -> SignOnLink {
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let (_, _, device) = s
        .form(
            &format!("/{env}/as/device_authorization"),
            &[("client_id", "tv"), ("scope", "openid")],
        )
        .await;
    let (status, link) = ping_start(s, &format!("/{env}/device")).await;
    assert_eq!(status, StatusCode::FOUND);
    let flow = flow_id(&link);
    SignOnLink {
        env,
        link,
        flow,
        device,
    }
}

impl SignOnLink {
    fn user_code(&self) -> &str {
        self.device["user_code"].as_str().unwrap()
    }

    /// The device's poll at PingOne's token endpoint.
    async fn poll(&self, s: &TestServer) -> (StatusCode, Value) {
        let code = self.device["device_code"].as_str().unwrap();
        s.poll_at(&format!("/{}/as/token", self.env), "tv", code)
            .await
    }

    async fn grant_status(&self, s: &TestServer) -> &'static str {
        let code = devicegate_core::user_code::UserCode::parse(self.user_code()).unwrap();
        s.store()
            .get_grant_by_user_code(&code)
            .await
            .unwrap()
            .status
            .name()
    }
}

/// In browser `b`, which holds the link's flow: enters the code and signs `username` in;
/// returns the consent page.
async fn sign_in_on_pages(s: &TestServer, b: &reqwest::Client, code: &str, username: &str) -> Page {
    let entry = get(b, s.url("/device")).await;
    let p = post(
        b,
        s.url("/device"),
        &[("csrf", &entry.csrf()), ("user_code", code)],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/signin")
    );
    let form = get(b, s.url("/device/signin")).await;
    let p = post(
        b,
        s.url("/device/signin"),
        &[
            ("csrf", &form.csrf()),
            ("username", username),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/consent")
    );
    let consent = get(b, s.url("/device/consent")).await;
    assert_eq!(consent.status, StatusCode::OK);
    consent
}

/// Browser `b` (not the one walking the flow) tries everything a browser can to see or
/// approve it: the link, the consent page, an approval with its own anti-CSRF token, and the
/// flows API with the link's flow id. None of it shows `username` or approves anything.
async fn cannot_take_over(s: &TestServer, b: &reqwest::Client, l: &SignOnLink, username: &str) {
    let p = get(b, l.link.clone()).await;
    assert_eq!(p.status, StatusCode::GONE, "{}", p.html);
    assert!(!p.html.contains(username), "{}", p.html);
    let p = get(b, s.url("/device/consent")).await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/device"));
    let entry = get(b, s.url("/device")).await;
    assert!(!entry.html.contains(username), "{}", entry.html);
    let p = post(
        b,
        s.url("/device/consent"),
        &[("csrf", &entry.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/device"));
    let (status, e) = ping_post(s, &l.env, &l.flow, CONSENT, json!({"accept": true})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(l.grant_status(s).await, "pending");
}

#[tokio::test]
async fn pingone_sign_on_link_belongs_to_the_first_browser_that_opens_it() {
    let s = two_tenants().await;
    let carol = s.user("carol").await;
    let l = sign_on_link(&s).await;
    let a = browser();
    let p = get(&a, l.link.clone()).await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/device"));
    let consent = sign_in_on_pages(&s, &a, l.user_code(), "carol").await;
    assert!(consent.html.contains("carol"));

    // Browser B opens the same link: it sees nobody's account and can approve nothing.
    let b = browser();
    cannot_take_over(&s, &b, &l, "carol").await;

    // A opening its link again goes on with its own flow, and approves.
    let p = get(&a, l.link.clone()).await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/consent")
    );
    let p = post(
        &a,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/done")
    );
    let (status, t) = l.poll(&s).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(claims(t["id_token"].as_str().unwrap()).1["sub"], carol);
}

#[tokio::test]
async fn pingone_sign_on_link_opened_after_another_browser_started_is_dead() {
    let s = two_tenants().await;
    s.user("carol").await;
    let l = sign_on_link(&s).await;
    let a = browser();
    let p = get(&a, l.link.clone()).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    // A has only opened the link; B follows it now, and again once A signed in.
    let b = browser();
    cannot_take_over(&s, &b, &l, "carol").await;
    let consent = sign_in_on_pages(&s, &a, l.user_code(), "carol").await;
    cannot_take_over(&s, &b, &l, "carol").await;
    let p = post(
        &a,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(l.grant_status(&s).await, "approved");

    // Two browsers opening a new link at once: one gets the flow.
    let l = sign_on_link(&s).await;
    let (a, b) = (browser(), browser());
    let (pa, pb) = tokio::join!(get(&a, l.link.clone()), get(&b, l.link.clone()));
    let mut statuses = [pa.status, pb.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::SEE_OTHER, StatusCode::GONE]);
}

#[tokio::test]
async fn pingone_flow_signed_on_through_the_flows_api_stays_with_its_caller() {
    let s = two_tenants().await;
    s.user("carol").await;
    let l = sign_on_link(&s).await;
    // A custom UI signs carol on through PingOne's flows API, with the link's flow id.
    let (status, f) = ping_post(
        &s,
        &l.env,
        &l.flow,
        CHECK,
        json!({"username": "carol", "password": PASSWORD}),
    )
    .await;
    assert_eq!(
        (status, f["status"].as_str()),
        (StatusCode::OK, Some("DAG_USER_CODE_REQUIRED")),
        "{f}"
    );
    // A browser that did not sign on cannot continue it from the link.
    let b = browser();
    let p = get(&b, l.link.clone()).await;
    assert_eq!(p.status, StatusCode::GONE, "{}", p.html);
    assert!(!p.html.contains("carol"));
    let entry = get(&b, s.url("/device")).await;
    let p = post(
        &b,
        s.url("/device/consent"),
        &[("csrf", &entry.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(p.location(), "/device");
    // The custom UI goes on.
    let (_, f) = ping_post(
        &s,
        &l.env,
        &l.flow,
        VERIFY,
        json!({"userCode": l.user_code()}),
    )
    .await;
    assert_eq!(f["status"], "DAG_CONSENT_REQUIRED", "{f}");
    let p = get(&b, l.link.clone()).await;
    assert_eq!(p.status, StatusCode::GONE, "{}", p.html);
    assert!(!p.html.contains("carol"));
    assert_eq!(l.grant_status(&s).await, "pending");
    let (_, f) = ping_post(&s, &l.env, &l.flow, CONSENT, json!({"accept": true})).await;
    assert_eq!(f["status"], "COMPLETED", "{f}");
    let (status, t) = l.poll(&s).await;
    assert_eq!(status, StatusCode::OK, "{t}");
}

async fn ocient(s: &TestServer, path: &str, body: Value, xff: Option<&str>) -> (StatusCode, Value) {
    let mut req = s.http.post(s.url(path)).json(&body);
    if let Some(ip) = xff {
        req = req.header("x-forwarded-for", ip);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap())
}

/// From a code-entry page `entry` in browser `b`: enters `code` (or the one the page was
/// filled with), signs `ann` in, and approves or denies.
async fn finish_on_pages(
    s: &TestServer,
    b: &reqwest::Client,
    entry: Page,
    code: Option<&str>,
    accept: bool,
) {
    let consent = to_consent_page(s, "", b, entry, code).await;
    let decision = if accept { "approve" } else { "deny" };
    let p = post(
        b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", decision)],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
}

/// From a code-entry page `entry` of the tenant at `base`: enters `code` (or the one the page
/// was filled with) and signs `ann` in; returns the consent page.
async fn to_consent_page(
    s: &TestServer,
    base: &str,
    b: &reqwest::Client,
    entry: Page,
    code: Option<&str>,
) -> Page {
    let filled = crate::pages::input_value(&entry.html, "user_code");
    let code = code.map(str::to_owned).or(filled).expect("a code to enter");
    post(
        b,
        s.url(&format!("{base}/device")),
        &[("csrf", &entry.csrf()), ("user_code", &code)],
    )
    .await;
    let form = get(b, s.url(&format!("{base}/device/signin"))).await;
    post(
        b,
        s.url(&format!("{base}/device/signin")),
        &[
            ("csrf", &form.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let consent = get(b, s.url(&format!("{base}/device/consent"))).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.html);
    consent
}

/// Approves (or denies) as `ann` through the pages, following a link that fills the code in.
async fn approve_on_pages(s: &TestServer, link: &str, accept: bool) {
    let b = browser();
    let entry = get(&b, link.to_owned()).await;
    finish_on_pages(s, &b, entry, None, accept).await;
}

fn assert_ocient_error(status: StatusCode, body: &Value, want: StatusCode, sql_state: &str) {
    assert_eq!(
        (status, body["status"]["sql_state"].as_str()),
        (want, Some(sql_state)),
        "{body}"
    );
    assert!(
        body["status"]["vendor_code"].as_i64().unwrap() < 0 && body["status"]["reason"].is_string()
    );
}

#[tokio::test]
async fn ocient_grant_and_a_verify_that_waits_for_the_approval() {
    let s = std::sync::Arc::new(two_tenants().await);
    let (status, g) = ocient(
        &s,
        "/v1/sso_device_grant",
        json!({"database": "retail_analytics"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g}");
    assert_eq!(
        g["status"],
        json!({"reason": "Device authorization initiated", "sql_state": "00000", "vendor_code": 0})
    );
    let code = g["user_code"].as_str().unwrap().to_owned();
    assert!(code.len() == 8 && !code.contains('-'));
    assert_eq!(g["verification_uri"], s.url("/device"));
    assert_eq!(
        g["verification_uri_complete"],
        s.url(&format!("/device?code={code}"))
    );
    assert!(g["device_secret"].as_str().unwrap().starts_with("dgd_"));

    // Nobody approves within a second: a timeout, told apart from the other errors.
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": code, "timeout": 1}),
        None,
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::REQUEST_TIMEOUT, "HYT00");

    // verify waits (timeout given as a string, as Ocient documents it) while a person approves.
    let waiter = {
        let (s, code) = (s.clone(), code.clone());
        tokio::spawn(async move {
            ocient(
                &s,
                "/v1/sso_device_grant_verify",
                json!({"user_code": code, "database": "retail_analytics", "timeout": "20"}),
                None,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    approve_on_pages(&s, g["verification_uri_complete"].as_str().unwrap(), true).await;
    let (status, v) = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["username"].as_str(), v["database"].as_str()),
        (Some("ann"), Some("retail_analytics"))
    );
    assert_eq!(v["status"]["sql_state"], "00000");
    let (header, claims) = crate::support::claims(v["access_token"].as_str().unwrap());
    assert_eq!(
        (header["typ"].as_str(), claims["database"].as_str()),
        (Some("at+jwt"), Some("retail_analytics"))
    );
    let (_, _, jwks) = s.api("GET", "/oauth2/jwks", None).await;
    assert_eq!(
        header["kid"], jwks["keys"][0]["kid"],
        "signed with the tenant's key"
    );

    // Redeemed once.
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": code}),
        None,
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::CONFLICT, "08003");
    // Unknown codes and bad parameters.
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": "BCDFBCDF"}),
        None,
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::NOT_FOUND, "42704");
    for timeout in [json!(0), json!(601), json!("soon"), json!(true)] {
        let (status, e) = ocient(
            &s,
            "/v1/sso_device_grant_verify",
            json!({"user_code": code, "timeout": timeout}),
            None,
        )
        .await;
        assert_ocient_error(status, &e, StatusCode::BAD_REQUEST, "22023");
    }
    // An empty body asks for the system database.
    let res = s
        .http
        .post(s.url("/v1/sso_device_grant"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// Finding: `sso_device_grant_verify` answered 500 random codes in under a second with 404,
/// never 429. Wrong codes there count against the per-address limit like everywhere else.
#[tokio::test]
async fn ocient_verify_is_no_unthrottled_oracle() {
    let s =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let (_, g) = ocient(&s, "/v1/sso_device_grant", json!({}), Some("203.0.113.1")).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let guess = devicegate_core::user_code::UserCode::generate().display();
        let (status, _) = ocient(
            &s,
            "/v1/sso_device_grant_verify",
            json!({"user_code": guess, "timeout": 1}),
            Some("203.0.113.66"),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..10], &[StatusCode::NOT_FOUND; 10]);
    assert_eq!(&statuses[10..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    // The guesser's limit holds for a live code too (even with its secret), on the pages'
    // flows API too; the device's own address is not affected.
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": g["user_code"], "timeout": 1, "device_secret": g["device_secret"]}),
        Some("203.0.113.66"),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    let flow = s.new_flow().await;
    let res = s
        .http
        .post(s.url(&format!("/api/v1/flows/{flow}")))
        .header("x-forwarded-for", "203.0.113.66")
        .json(&json!({"action": "user_code.verify", "user_code": g["user_code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": g["user_code"], "timeout": 1}),
        Some("203.0.113.1"),
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::REQUEST_TIMEOUT, "HYT00");
}

#[tokio::test]
async fn ocient_denial_expiry_and_the_user_code_mitigations() {
    let s =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    s.user("ann").await;
    // A short-lived Ocient client, to see expiry.
    s.client(ClientRecord {
        device_code_ttl_secs: Some(1),
        scopes: Scopes::parse("openid profile").unwrap(),
        ..client_record("ocient", None)
    })
    .await;
    let (_, g) = ocient(&s, "/v1/sso_device_grant", json!({}), Some("203.0.113.1")).await;
    let code = g["user_code"].as_str().unwrap().to_owned();
    // From another address, a bare user code, or one with a wrong secret, gets exactly the
    // answer an unknown code gets: whether the code exists is not told.
    let (_, unknown) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": "BCDF-BCDF", "timeout": 1}),
        Some("203.0.113.2"),
    )
    .await;
    for body in [
        json!({"user_code": code, "timeout": 1}),
        json!({"user_code": code, "timeout": 1, "device_secret": "dgd_wrong"}),
    ] {
        let (status, e) =
            ocient(&s, "/v1/sso_device_grant_verify", body, Some("203.0.113.2")).await;
        assert_ocient_error(status, &e, StatusCode::NOT_FOUND, "42704");
        assert_eq!(e, unknown);
    }
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": code, "timeout": 1, "device_secret": g["device_secret"]}),
        Some("203.0.113.2"),
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::REQUEST_TIMEOUT, "HYT00");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": code}),
        Some("203.0.113.1"),
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::GONE, "08004");

    // A denial.
    s.store().delete_client("default", "ocient").await.unwrap();
    let (_, g) = ocient(&s, "/v1/sso_device_grant", json!({}), Some("203.0.113.1")).await;
    approve_on_pages(&s, g["verification_uri_complete"].as_str().unwrap(), false).await;
    let (status, e) = ocient(
        &s,
        "/v1/sso_device_grant_verify",
        json!({"user_code": g["user_code"]}),
        Some("203.0.113.1"),
    )
    .await;
    assert_ocient_error(status, &e, StatusCode::FORBIDDEN, "28000");
    assert_eq!(e["status"]["vendor_code"], -1002);
}

#[tokio::test]
async fn rfc8259_4_dialect_bodies_that_repeat_a_key_are_refused_in_the_dialects_format() {
    let s = two_tenants().await;
    let raw = |path: String, media: &str, body: String| {
        s.http
            .post(s.url(&path))
            .header("content-type", media)
            .body(body)
            .send()
    };
    // Ocient: its status object, as for any other malformed body.
    for (path, body) in [
        (
            "/v1/sso_device_grant",
            r#"{"database": "a", "database": "b"}"#,
        ),
        (
            "/v1/sso_device_grant_verify",
            r#"{"user_code": "BCDFBCDF", "user_code": "BCDFBCDG"}"#,
        ),
    ] {
        let res = raw(path.into(), "application/json", body.into())
            .await
            .unwrap();
        let status = res.status();
        let b: Value = res.json().await.unwrap();
        assert_ocient_error(status, &b, StatusCode::BAD_REQUEST, "22023");
        assert!(
            b["status"]["reason"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{b}"
        );
    }

    // PingOne: a verify whose second `userCode` is the right one verifies nothing.
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let (_, _, d) = s
        .form(
            &format!("/{env}/as/device_authorization"),
            &[("client_id", "tv"), ("scope", "openid")],
        )
        .await;
    let (_, location) = ping_start(&s, &format!("/{env}/device")).await;
    let flow = flow_id(&location);
    let body = format!(
        r#"{{"userCode": "BCDF-BCDF", "userCode": {}}}"#,
        d["user_code"]
    );
    let res = raw(format!("/{env}/flows/{flow}"), VERIFY, body)
        .await
        .unwrap();
    let status = res.status();
    let e: Value = res.json().await.unwrap();
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_DATA")),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("duplicate key"),
        "{e}"
    );
    let (_, f) = s
        .api("GET", &format!("/{env}/flows/{flow}"), None)
        .await
        .into_pair();
    assert_eq!(f["status"], "DAG_USER_CODE_REQUIRED", "{f}");
}

/// Ocient's verify at the tenant at `base` with the code and secret of grant `og`, waiting a
/// second at most.
async fn verify_with_secret(s: &TestServer, base: &str, og: &Value) -> (StatusCode, Value) {
    ocient(
        s,
        &format!("{base}/v1/sso_device_grant_verify"),
        json!({"user_code": og["user_code"], "device_secret": og["device_secret"], "timeout": 1}),
        None,
    )
    .await
}

/// Issue 12: every surface treats another tenant's records as absent. acme's grant (device
/// code and user code), flow, kept session, browser session and tokens are tried on every
/// route family of the default tenant (native and IDCS endpoints, the pages including the
/// done page, the flows API, PingOne, Ocient), and each is answered as if it did not exist;
/// afterwards they all still work in acme.
#[tokio::test]
async fn another_tenants_records_are_absent_on_every_surface() {
    let s = two_tenants().await;
    let env = s.store().get_tenant("default").await.unwrap().uuid;

    // In acme: a grant approved through the flows API with a kept session, its tokens, a
    // pending grant, an Ocient grant, and a finished flow walked on the pages.
    let (_, _, approved) = s
        .form(
            "/t/acme/oauth2/device_authorization",
            &[("client_id", "tv")],
        )
        .await;
    let (_, _, pending) = s
        .form(
            "/t/acme/oauth2/device_authorization",
            &[("client_id", "tv")],
        )
        .await;
    let (flow, signed_on) = approve_in_acme(&s, &approved).await;
    let kept = signed_on["session"].as_str().unwrap().to_owned();
    let (status, tokens) = s
        .poll_at(
            "/t/acme/oauth2/token",
            "tv",
            approved["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (status, og) = ocient(&s, "/t/acme/v1/sso_device_grant", json!({}), None).await;
    assert_eq!(status, StatusCode::OK, "{og}");

    // A browser whose cookies the test can read.
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let acme = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let entry = get(&acme, s.url("/t/acme/device")).await;
    let consent = to_consent_page(&s, "/t/acme", &acme, entry, pending["user_code"].as_str()).await;
    let done = post(
        &acme,
        s.url("/t/acme/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "deny")],
    )
    .await;
    assert_eq!(done.location(), "/t/acme/device/done");
    // The session cookie acme's pages gave this browser at sign-in.
    let cookies = reqwest::cookie::CookieStore::cookies(
        jar.as_ref(),
        &s.url("/t/acme/device").parse().unwrap(),
    )
    .unwrap();
    let acme_cookie = cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix("devicegate-acme="))
        .expect("a session cookie")
        .to_owned();
    let acme_done = get(&acme, s.url("/t/acme/device/done")).await;
    assert_eq!(acme_done.status, StatusCode::OK);

    // Native and IDCS token endpoints: acme's device codes and refresh token are unknown.
    for path in [
        "/oauth2/token",
        "/oauth2/v1/token",
        &format!("/{env}/as/token"),
    ] {
        for code in [&approved, &pending] {
            let (status, b) = s
                .poll_at(path, "tv", code["device_code"].as_str().unwrap())
                .await;
            assert_eq!(
                (status, b["error"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_grant")),
                "{path}: {b}"
            );
        }
        let (status, _, b) = s
            .form(
                path,
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", "tv"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                ],
            )
            .await;
        assert_eq!(
            (status, b["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant")),
            "{path}: {b}"
        );
    }
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Flows API: acme's flow does not exist here, its code is a wrong code, its kept session
    // is no session, and ending it here ends nothing.
    let (status, _, _) = s.api("GET", &format!("/api/v1/flows/{flow}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .act(&flow, json!({"action": "consent", "accept": false}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let here = s.new_flow().await;
    let (status, b) = s
        .act(
            &here,
            json!({"action": "user_code.verify", "user_code": pending["user_code"]}),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_user_code")),
        "{b}"
    );
    let (status, _, _) = s
        .api(
            "POST",
            "/api/v1/sessions/end",
            Some(json!({"session": kept})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let local = s.device_authorization("tv", None).await;
    let here = s.new_flow().await;
    s.act(
        &here,
        json!({"action": "user_code.verify", "user_code": local["user_code"]}),
    )
    .await;
    let (status, b) = s
        .act(&here, json!({"action": "session.resume", "session": kept}))
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_session")),
        "{b}"
    );

    // PingOne: acme's flow is not in the default environment.
    let (status, _, _) = s.api("GET", &format!("/{env}/flows/{flow}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Ocient: acme's code, even with its secret, is an unknown code here.
    let (status, e) = verify_with_secret(&s, "", &og).await;
    assert_ocient_error(status, &e, StatusCode::NOT_FOUND, "42704");

    // Pages: acme's code is a wrong code; acme's session cookie is no session here; and a
    // session of this tenant that somehow names acme's finished flow does not show it.
    let other = browser();
    let entry = get(&other, s.url("/device")).await;
    let wrong = post(
        &other,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", og["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.html);
    let acme_flow_hash = s
        .store()
        .get_session(&Secret::from_presented(acme_cookie.as_str()).hash())
        .await
        .unwrap()
        .flow_hash
        .unwrap();
    let forged = Secret::generate(SecretKind::BrowserSession);
    let now = devicegate_server::now();
    s.store()
        .create_session(&devicegate_store::BrowserSession {
            amr: None,
            idp: None,
            id_hash: forged.hash(),
            tenant: "default".into(),
            user_id: None,
            signed_on_at: None,
            flow_hash: Some(acme_flow_hash),
            created_at: now,
            expires_at: now.plus(Duration::from_secs(600)),
        })
        .await
        .unwrap();
    let res = s
        .http
        .get(s.url("/device/done"))
        .header("cookie", format!("devicegate={}", forged.expose()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/device");
    let res = s
        .http
        .get(s.url("/device/done"))
        .header("cookie", format!("devicegate={acme_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "acme's cookie is no session here"
    );

    // Everything still works in acme.
    let (status, _, f) = s
        .api("GET", &format!("/t/acme/api/v1/flows/{flow}"), None)
        .await;
    assert_eq!(
        (status, f["result"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{f}"
    );
    let (status, _, _) = s
        .form(
            "/t/acme/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, e) = verify_with_secret(&s, "/t/acme", &og).await;
    assert_ocient_error(status, &e, StatusCode::REQUEST_TIMEOUT, "HYT00");
    let again = get(&acme, s.url("/t/acme/device/done")).await;
    assert_eq!(again.status, StatusCode::OK);
}

/// Issue 12: a store failure other than unavailability (here, rows a bug or a bad migration
/// left unreadable) is a 500 on every surface, in the surface's own format, and no detail of
/// it reaches the caller.
#[tokio::test]
async fn a_broken_record_is_a_500_in_every_surfaces_format_without_its_detail() {
    let s = two_tenants().await;
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let d = s
        .device_authorization("tv", Some("openid offline_access"))
        .await;
    let tokens = {
        s.decide(d["user_code"].as_str().unwrap(), "ann", true)
            .await;
        let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{t}");
        t
    };
    let (_, og) = ocient(&s, "/v1/sso_device_grant", json!({}), None).await;
    let pending = s.device_authorization("tv", None).await;
    let flow = s.new_flow().await;
    // A browser that reached the consent page.
    let b = browser();
    let entry = get(&b, s.url("/device")).await;
    let consent = to_consent_page(&s, "", &b, entry, pending["user_code"].as_str()).await;

    let db = rusqlite::Connection::open(s.dir.path().join("devicegate.db")).unwrap();
    db.execute_batch(
        "UPDATE flows SET status = 'BROKEN_STATUS';
         UPDATE refresh_tokens SET scopes = '\"broken';
         UPDATE device_grants SET status = 'broken_status' WHERE client_id = 'ocient';",
    )
    .unwrap();
    let no_detail = |body: &str| {
        let lower = body.to_lowercase();
        for leak in ["broken", "invalid", "sqlite", "column", "conversion"] {
            assert!(!lower.contains(leak), "internal detail {leak:?} in {body}");
        }
    };

    // Native: RFC 6749 §5.2 JSON.
    let (status, _, b2) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(
        (status, b2["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
    no_detail(&b2.to_string());
    // Flows API: the same JSON.
    let (status, _, b2) = s.api("GET", &format!("/api/v1/flows/{flow}"), None).await;
    assert_eq!(
        (status, b2["error"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("server_error"))
    );
    no_detail(&b2.to_string());
    // PingOne: its error object.
    let (status, _, b2) = s.api("GET", &format!("/{env}/flows/{flow}"), None).await;
    assert_eq!(
        (status, b2["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("UNEXPECTED_ERROR"))
    );
    no_detail(&b2.to_string());
    // Ocient: its status object.
    let (status, e) = verify_with_secret(&s, "", &og).await;
    assert_ocient_error(status, &e, StatusCode::INTERNAL_SERVER_ERROR, "XX000");
    no_detail(&e.to_string());
    // Pages: a readable page.
    let page = post(
        &b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(
        page.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        page.html
    );
    assert!(page.html.contains("Something went wrong"), "{}", page.html);
    no_detail(&page.html);
}

/// Ocient redeems through the token endpoint's path, in its own shape: its answer has no
/// place for a refresh token, so none is stored even when the operator gave its client
/// `offline_access` and the refresh grant, and the access token carries the database.
#[tokio::test]
async fn ocient_redemption_stores_no_refresh_token_it_cannot_hand_out() {
    let s = TestServer::start().await;
    s.user("ann").await;
    s.client(client_record("ocient", None)).await;
    let (status, g) = ocient(
        &s,
        "/v1/sso_device_grant",
        json!({"database": "sales"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{g}");
    approve_on_pages(&s, g["verification_uri_complete"].as_str().unwrap(), true).await;
    let (status, t) = verify_with_secret(&s, "", &g).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(
        (t["database"].as_str(), t["username"].as_str()),
        (Some("sales"), Some("ann"))
    );
    let (_, claims) = crate::support::claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        (
            claims["database"].as_str(),
            claims["preferred_username"].as_str()
        ),
        (Some("sales"), Some("ann"))
    );
    assert!(
        t.get("refresh_token").is_none() && t.get("id_token").is_none(),
        "{t}"
    );
    let db = rusqlite::Connection::open(s.dir.path().join("devicegate.db")).unwrap();
    let stored: i64 = db
        .query_row("SELECT count(*) FROM refresh_tokens", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0);
}
