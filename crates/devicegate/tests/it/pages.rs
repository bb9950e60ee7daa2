//! The verification pages over HTTP: headers, cookies, CSRF, the 303s and the 429s.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::support::*;

/// A browser: its own cookie jar, no redirects followed.
pub fn browser() -> reqwest::Client {
    browser_sending(&[])
}

/// A browser that sends `headers` with every request.
pub fn browser_sending(headers: &[(&'static str, &str)]) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        h.insert(
            *name,
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(h)
        .build()
        .unwrap()
}

/// The value of `<input name="{name}" … value="…">` in a page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.find("value=\"")? + 7;
    Some(tag[v..v + tag[v..].find('"')?].to_owned())
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub html: String,
}

impl Page {
    pub fn csrf(&self) -> String {
        input_value(&self.html, "csrf").expect("a csrf field")
    }

    pub fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }
}

pub async fn get(b: &reqwest::Client, url: String) -> Page {
    page(b.get(url)).await
}

pub async fn post(b: &reqwest::Client, url: String, form: &[(&str, &str)]) -> Page {
    page(b.post(url).form(form)).await
}

/// Sends `req` and reads the answer as a page.
async fn page(req: reqwest::RequestBuilder) -> Page {
    let res = req.send().await.unwrap();
    Page {
        status: res.status(),
        headers: res.headers().clone(),
        html: res.text().await.unwrap(),
    }
}

fn assert_page_headers(p: &Page) {
    let csp = p.headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(p.headers["x-frame-options"], "DENY");
    assert_eq!(p.headers["x-content-type-options"], "nosniff");
    assert_eq!(p.headers["referrer-policy"], "no-referrer");
    assert_eq!(p.headers["cache-control"], "no-store");
}

/// Walks code → sign-in → consent in `b`; returns the consent page.
pub(crate) async fn to_consent(
    s: &TestServer,
    b: &reqwest::Client,
    code: &str,
    username: &str,
) -> Page {
    let entry = get(b, s.url("/device")).await;
    let p = post(
        b,
        s.url("/device"),
        &[("csrf", &entry.csrf()), ("user_code", code)],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/signin"),
        "{}",
        p.html
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
        (StatusCode::SEE_OTHER, "/device/consent"),
        "{}",
        p.html
    );
    get(b, s.url("/device/consent")).await
}

#[tokio::test]
async fn approve_through_the_pages_with_every_header_and_a_303_per_post() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let d = s
        .device_authorization("tv", Some("openid email offline_access"))
        .await;
    let code = d["user_code"].as_str().unwrap();
    let b = browser();

    let entry = get(&b, s.url("/device")).await;
    assert_eq!(entry.status, StatusCode::OK);
    assert_page_headers(&entry);
    assert!(
        entry.headers.get("strict-transport-security").is_none(),
        "no HSTS over http"
    );
    let cookie = entry.headers["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(entry.html.contains(r#"name="user_code""#) && entry.html.contains("autofocus"));
    assert!(entry.html.contains(r#"autocomplete="off""#));

    let p = post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", &code.to_lowercase().replace('-', " ")),
        ],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let signin = get(&b, s.url("/device/signin")).await;
    assert_page_headers(&signin);
    assert!(
        signin.html.contains(r#"autocomplete="username""#)
            && signin.html.contains(r#"autocomplete="current-password""#)
    );
    let p = post(
        &b,
        s.url("/device/signin"),
        &[
            ("csrf", &signin.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/consent")
    );
    let new_cookie = p.headers["set-cookie"].to_str().unwrap();
    assert_ne!(
        new_cookie.split(';').next(),
        cookie.split(';').next(),
        "a new session id at sign-in"
    );

    let consent = get(&b, s.url("/device/consent")).await;
    assert_page_headers(&consent);
    for text in [
        "tv app",
        code,
        "See your email address",
        "127.0.0.1",
        "just now",
        "If someone sent you this link",
        "ann",
    ] {
        assert!(consent.html.contains(text), "consent page lacks {text:?}");
    }
    assert!(
        consent.html.contains(r#"name="decision" value="approve""#)
            && consent.html.contains(r#"name="decision" value="deny""#)
    );
    let p = post(
        &b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/done")
    );
    let done = get(&b, s.url("/device/done")).await;
    assert!(done.html.contains("Device connected") && done.html.contains("return to your device"));
    assert!(!done.html.contains("name=\"user_code\"") && !done.html.contains("name=\"decision\""));
    let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t}");
}

#[tokio::test]
async fn the_prefilled_link_changes_nothing_until_posted() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    let d = s.device_authorization("tv", None).await;
    let code = d["user_code"].as_str().unwrap();
    let b = browser();
    let p = get(&b, s.url(&format!("/device?user_code={code}"))).await;
    assert_eq!(input_value(&p.html, "user_code").as_deref(), Some(code));
    let grant = s
        .store()
        .get_grant_by_user_code(&devicegate_core::user_code::UserCode::parse(code).unwrap())
        .await
        .unwrap();
    assert_eq!(grant.flow_id, None, "a GET binds nothing");
    // Markup in the query is dropped, not reflected.
    let p = get(
        &b,
        s.url("/device?user_code=%22%3E%3Cscript%3Ealert(1)%3C/script%3E"),
    )
    .await;
    assert!(!p.html.contains("<script>"));
}

#[tokio::test]
async fn posts_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", None).await;
    let code = d["user_code"].as_str().unwrap();
    let b = browser();
    let entry = get(&b, s.url("/device")).await;
    for csrf in ["", "forged", &entry.csrf()[1..]] {
        let p = post(&b, s.url("/device"), &[("csrf", csrf), ("user_code", code)]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert_page_headers(&p);
    }
    // Another browser's token does not fit this browser's session.
    let other = browser();
    let other_csrf = get(&other, s.url("/device")).await.csrf();
    let p = post(
        &b,
        s.url("/device"),
        &[("csrf", &other_csrf), ("user_code", code)],
    )
    .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // No session at all.
    let p = post(
        &browser(),
        s.url("/device"),
        &[("csrf", &entry.csrf()), ("user_code", code)],
    )
    .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    let grant = s
        .store()
        .get_grant_by_user_code(&devicegate_core::user_code::UserCode::parse(code).unwrap())
        .await
        .unwrap();
    assert_eq!(grant.flow_id, None, "nothing changed");
    // Sign-out needs the token too.
    let p = post(&b, s.url("/device/signout"), &[("csrf", "forged")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn only_the_session_that_entered_the_code_can_decide_it_and_sign_out_ends_it() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    s.user("mallory").await;
    let d = s.device_authorization("tv", None).await;
    let code = d["user_code"].as_str().unwrap();
    let ann = browser();
    let consent = to_consent(&s, &ann, code, "ann").await;
    assert_eq!(consent.status, StatusCode::OK);

    // Mallory's browser has its own session and no flow with this code.
    let mallory = browser();
    let entry = get(&mallory, s.url("/device")).await;
    let p = post(
        &mallory,
        s.url("/device/consent"),
        &[("csrf", &entry.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/device"));
    let p = post(
        &mallory,
        s.url("/device"),
        &[("csrf", &entry.csrf()), ("user_code", code)],
    )
    .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.html.contains("another browser"), "{}", p.html);
    let (status, b) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("authorization_pending"))
    );

    // Signing out ends the session: the browser is back to a fresh start.
    let p = post(&ann, s.url("/device/signout"), &[("csrf", &consent.csrf())]).await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/device"));
    assert!(
        p.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let p = get(&ann, s.url("/device/consent")).await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/device"));
}

#[tokio::test]
async fn a_signed_out_session_id_is_dead_on_the_server() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Sign in as ann by hand, keeping the signed-in session's cookie.
    let p = get(&plain, s.url("/device")).await;
    let pre = cookie_pair(&p);
    let d = s.device_authorization("tv", None).await;
    let code = d["user_code"].as_str().unwrap();
    let res = plain
        .post(s.url("/device"))
        .header("cookie", &pre)
        .form(&[("csrf", p.csrf().as_str()), ("user_code", code)])
        .send()
        .await
        .unwrap();
    let stored = res.headers()["set-cookie"].to_str().unwrap();
    let stored = stored.split(';').next().unwrap().to_owned();
    let with = |cookie: &str, url: String| plain.get(url).header("cookie", cookie.to_owned());
    let form = page(with(&stored, s.url("/device/signin"))).await;
    let res = plain
        .post(s.url("/device/signin"))
        .header("cookie", &stored)
        .form(&[
            ("csrf", form.csrf().as_str()),
            ("username", "ann"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let signed_in = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("devicegate=dgb_"))
        .unwrap();
    let consent = page(with(&signed_in, s.url("/device/consent"))).await;
    assert!(consent.html.contains("Signed in as"), "{}", consent.html);
    // Sign out, then replay the signed-in cookie: it names nobody and holds no flow.
    let res = plain
        .post(s.url("/device/signout"))
        .header("cookie", &signed_in)
        .form(&[("csrf", consent.csrf().as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let replayed = page(with(&signed_in, s.url("/device/consent"))).await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER, "no flow any more");
    let entry = page(with(&signed_in, s.url("/device"))).await;
    assert!(!entry.html.contains("Signed in as"), "{}", entry.html);
    // Entering a fresh code with it asks for a sign-in again, as for a stranger.
    let d = s.device_authorization("tv", None).await;
    let res = plain
        .post(s.url("/device"))
        .header("cookie", &signed_in)
        .form(&[
            ("csrf", entry.csrf().as_str()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let to = res.headers()["location"].to_str().unwrap();
    assert!(to.ends_with("/device/signin"), "{to}");
}

fn cookie_pair(p: &Page) -> String {
    let set = p.headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn https_issuers_get_host_prefixed_secure_cookies_and_hsts() {
    let s = TestServer::start_with(|c| c.issuer = "https://login.example".into()).await;
    let p = get(&browser(), s.url("/device")).await;
    let cookie = p.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-devicegate=") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(
        p.headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );
}

#[tokio::test]
async fn wrong_codes_are_limited_per_ip_and_a_right_code_is_refused_while_limited() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    let d = s.device_authorization("tv", None).await;
    let b = browser();
    let mut last = None;
    for i in 0..10 {
        let entry = get(&b, s.url("/device")).await;
        let p = post(
            &b,
            s.url("/device"),
            &[("csrf", &entry.csrf()), ("user_code", "BCDF-BCDF")],
        )
        .await;
        // Each flow fails after 5 wrong codes; the page says the attempt ended (not that
        // entry is paused), and the next code starts a new flow at once.
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "attempt {i}: {}", p.html);
        if i % 5 == 4 {
            assert!(p.html.contains("it has ended"), "attempt {i}: {}", p.html);
            assert!(!p.html.contains("paused"), "attempt {i}: {}", p.html);
        }
        last = Some(p);
    }
    assert!(last.unwrap().html.contains("fifth wrong code"));
    // The IP has used its ten: even the right code is refused, from a fresh browser too, and
    // through the flows API, and a forged X-Forwarded-For does not help.
    let fresh = browser();
    let entry = get(&fresh, s.url("/device")).await;
    let p = post(
        &fresh,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = p.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let flow = s.new_flow().await;
    let res = s
        .http
        .post(s.url(&format!("/api/v1/flows/{flow}")))
        .header("x-forwarded-for", "203.0.113.50")
        .json(&serde_json::json!({"action": "user_code.verify", "user_code": d["user_code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let grant = s
        .store()
        .get_grant_by_user_code(
            &devicegate_core::user_code::UserCode::parse(d["user_code"].as_str().unwrap()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(grant.flow_id, None);
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_client_address() {
    let s =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    let flow = s.new_flow().await;
    // Ten wrong codes from one forwarded client limit that client only.
    for i in 0..10 {
        let flow = if i < 5 {
            flow.clone()
        } else {
            s.new_flow().await
        };
        let res = s
            .http
            .post(s.url(&format!("/api/v1/flows/{flow}")))
            .header("x-forwarded-for", "203.0.113.7")
            .json(&serde_json::json!({"action": "user_code.verify", "user_code": "BCDF-BCDF"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    let try_from = |ip: &'static str| {
        let s = &s;
        async move {
            let flow = s.new_flow().await;
            s.http
                .post(s.url(&format!("/api/v1/flows/{flow}")))
                .header("x-forwarded-for", ip)
                .json(&serde_json::json!({"action": "user_code.verify", "user_code": "BCDF-BCDF"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(try_from("203.0.113.7").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(try_from("203.0.113.8").await, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn sign_in_failures_are_limited_per_account() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", None).await;
    let b = browser();
    let entry = get(&b, s.url("/device")).await;
    post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    for _ in 0..10 {
        let form = get(&b, s.url("/device/signin")).await;
        let p = post(
            &b,
            s.url("/device/signin"),
            &[
                ("csrf", &form.csrf()),
                ("username", "ann"),
                ("password", "wrong password"),
            ],
        )
        .await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        assert!(p.html.contains("Wrong username or password."));
    }
    let form = get(&b, s.url("/device/signin")).await;
    let p = post(
        &b,
        s.url("/device/signin"),
        &[
            ("csrf", &form.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        p.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password is refused while limited"
    );
    assert!(p.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn client_names_are_escaped_and_branding_and_templates_come_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("done.html"), "{% extends \"base.html\" %}{% block content %}<p id=custom>custom done page: {{ result }}</p>{% endblock %}").unwrap();
    let templates = dir.path().to_path_buf();
    let s = TestServer::start_with(move |c| {
        c.branding.product_name = "Acme Sign-in".into();
        c.branding.accent_color = "#aa0033".into();
        c.templates_dir = Some(templates);
    })
    .await;
    s.client(devicegate_store::ClientRecord {
        name: "<script>alert('x')</script> Evil".into(),
        ..client_record("evil", None)
    })
    .await;
    s.user("ann").await;
    let d = s.device_authorization("evil", None).await;
    let b = browser();
    let consent = to_consent(&s, &b, d["user_code"].as_str().unwrap(), "ann").await;
    assert!(
        !consent.html.contains("<script>alert"),
        "client names are escaped"
    );
    assert!(consent.html.contains("&lt;script&gt;"));
    assert!(consent.html.contains("Acme Sign-in"));
    let css = b
        .get(s.url("/device/assets/style.css"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(css.contains("--accent: #aa0033"));
    let p = post(
        &b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "deny")],
    )
    .await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let done = get(&b, s.url("/device/done")).await;
    assert!(
        done.html.contains("custom done page: denied"),
        "{}",
        done.html
    );
    let (status, body) = s.poll("evil", d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied"))
    );
}

#[tokio::test]
async fn a_signed_in_session_approves_the_next_device_without_signing_in_again() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let b = browser();
    let first = s.device_authorization("tv", None).await;
    let consent = to_consent(&s, &b, first["user_code"].as_str().unwrap(), "ann").await;
    post(
        &b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = s.device_authorization("tv", None).await;
    let entry = get(&b, s.url("/device")).await;
    assert!(entry.html.contains("Signed in as"));
    let p = post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", second["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/consent")
    );
    let consent = get(&b, s.url("/device/consent")).await;
    post(
        &b,
        s.url("/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    for d in [first, second] {
        let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{t}");
    }
}

#[tokio::test]
async fn an_expired_flow_gets_its_own_page() {
    let s = TestServer::start_with(|c| c.flow_ttl = Duration::from_secs(1)).await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", None).await;
    let b = browser();
    let entry = get(&b, s.url("/device")).await;
    post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    let form = get(&b, s.url("/device/signin")).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let p = post(
        &b,
        s.url("/device/signin"),
        &[
            ("csrf", &form.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(p.status, StatusCode::GONE);
    assert!(
        p.html.contains("This page has expired") && p.html.contains("Start again"),
        "{}",
        p.html
    );
    let (_, body) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(body["error"], "authorization_pending");
}

#[tokio::test]
async fn a_form_of_more_than_64_fields_gets_a_readable_400_and_changes_nothing() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    let d = s.device_authorization("tv", Some("openid")).await;
    let code = d["user_code"].as_str().unwrap();
    let b = browser();
    let entry = get(&b, s.url("/device")).await;
    let csrf = entry.csrf();
    let mut fields = vec![
        ("csrf".to_owned(), csrf.clone()),
        ("user_code".to_owned(), code.to_owned()),
    ];
    fields.extend((0..100).map(|i| (format!("x{i}"), "1".to_owned())));
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let p = post(&b, s.url("/device"), &fields).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.html);
    assert!(p.html.contains("This form could not be read"), "{}", p.html);
    assert_page_headers(&p);
    // The code was not entered: the same session enters it now, as if for the first time.
    let p = post(
        &b,
        s.url("/device"),
        &[("csrf", &csrf), ("user_code", code)],
    )
    .await;
    assert_eq!(
        (p.status, p.location()),
        (StatusCode::SEE_OTHER, "/device/signin"),
        "{}",
        p.html
    );
}
