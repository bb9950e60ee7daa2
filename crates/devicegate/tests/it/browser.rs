//! The verification pages in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver with fantoccini). After each approval the
//! device's poll returns tokens; after each denial, `access_denied`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

pub(crate) const PHONE: (u32, u32) = (390, 844);
pub(crate) const DESKTOP: (u32, u32) = (1280, 860);

pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start(size: (u32, u32)) -> Browser {
        Self::start_in(size, "en-US").await
    }

    /// A browser whose language (its `Accept-Language`) is `lang`.
    pub(crate) async fn start_in((width, height): (u32, u32), lang: &str) -> Browser {
        // Two TLS backends are linked (ring through reqwest, aws-lc-rs through fantoccini's
        // hyper-rustls); choose one. The WebDriver connection itself is plain HTTP.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver not found: ./scripts/test installs Debian's chromium and chromium-driver");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--lang={lang}"),
            format!("--accept-lang={lang}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {"intl.accept_languages": lang},
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    client.set_window_size(width, height).await.unwrap();
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                    };
                }
                Err(e) => last_err = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not start Chromium through chromedriver: {last_err:?}");
    }

    pub(crate) async fn finish(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let e = self.client.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    /// Clicks a submit button and waits for the next page to load.
    pub(crate) async fn click(&self, css: &str) {
        let old_page = self.client.find(Locator::Css("html")).await.unwrap();
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        for _ in 0..250 {
            if old_page.tag_name().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..250 {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await;
            if state.ok().as_ref().and_then(Value::as_str) == Some("complete") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the page after clicking {css} did not load");
    }

    pub(crate) async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Asserts the page shows every one of `texts`.
    pub(crate) async fn shows(&self, texts: &[&str]) {
        let body = self.text().await;
        for t in texts {
            assert!(body.contains(t), "{t:?} is not on the page: {body}");
        }
    }

    pub(crate) async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Saves a screenshot under `target/screenshots/`.
    pub(crate) async fn shot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        // The whole page, not just the first screenful: grow the window to fit, then restore.
        let (w, h) = self.client.get_window_size().await.unwrap();
        let (w, h) = (w as u32, h as u32);
        let full = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .unwrap();
        let full = full.as_u64().unwrap_or(u64::from(h)) as u32;
        if full > h {
            let chrome = h.saturating_sub(self.inner_height().await);
            self.client.set_window_size(w, full + chrome).await.unwrap();
        }
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(w, h).await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    pub(crate) async fn inner_height(&self) -> u32 {
        let v = self
            .client
            .execute("return window.innerHeight", vec![])
            .await
            .unwrap();
        v.as_u64().unwrap_or(0) as u32
    }

    pub(crate) async fn enter_code(&self, s: &TestServer, code: &str) {
        self.goto(&s.url("/device")).await;
        self.fill("input[name=user_code]", code).await;
        self.click("form[action='/device'] button[type=submit]")
            .await;
    }

    pub(crate) async fn sign_in(&self, username: &str, password: &str) {
        self.fill("input[name=username]", username).await;
        self.fill("input[name=password]", password).await;
        self.click("form[action='/device/signin'] button[type=submit]")
            .await;
    }

    pub(crate) async fn decide(&self, decision: &str) {
        self.click(&format!("button[name=decision][value={decision}]"))
            .await;
    }
}

async fn poll(s: &TestServer, d: &Value) -> (StatusCode, Value) {
    s.poll("tv", d["device_code"].as_str().unwrap()).await
}

async fn server() -> (TestServer, Value) {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let d = s
        .device_authorization("tv", Some("openid profile email offline_access"))
        .await;
    (s, d)
}

#[tokio::test]
async fn approve_through_code_entry() {
    let (s, d) = server().await;
    let b = Browser::start(PHONE).await;
    // Typed in lower case with a space, as people do.
    b.enter_code(
        &s,
        &d["user_code"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .replace('-', " "),
    )
    .await;
    assert_eq!(b.path().await, "/device/signin");
    b.sign_in("ann", PASSWORD).await;
    assert_eq!(b.path().await, "/device/consent");
    let text = b.text().await;
    for expected in [
        "tv app",
        d["user_code"].as_str().unwrap(),
        "See your email address",
        "127.0.0.1",
        "If someone sent you this link",
    ] {
        assert!(
            text.contains(expected),
            "consent page lacks {expected:?}: {text}"
        );
    }
    b.decide("approve").await;
    assert_eq!(b.path().await, "/device/done");
    assert!(
        b.text()
            .await
            .contains("You can return to your device now.")
    );
    let (status, t) = poll(&s, &d).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert!(t["id_token"].is_string() && t["refresh_token"].is_string());
    b.finish().await;
}

#[tokio::test]
async fn approve_through_the_prefilled_link() {
    let (s, d) = server().await;
    let b = Browser::start(DESKTOP).await;
    let link = d["verification_uri_complete"].as_str().unwrap();
    b.goto(link).await;
    let field = b
        .client
        .find(Locator::Css("input[name=user_code]"))
        .await
        .unwrap();
    assert_eq!(
        field.prop("value").await.unwrap().as_deref(),
        d["user_code"].as_str()
    );
    // Opening the link alone moved nothing.
    assert_eq!(poll(&s, &d).await.1["error"], "authorization_pending");
    b.click("form[action='/device'] button[type=submit]").await;
    b.sign_in("ann", PASSWORD).await;
    // The code came in a link, the usual phishing vector: the page says so, and approving
    // needs the person to confirm the code against the device in front of them.
    b.shows(&["This code came in a link."]).await;
    b.shot("consent-from-a-link").await;
    b.decide("approve").await;
    assert_eq!(b.path().await, "/device/consent");
    b.shows(&["Check it against the device in front of you"])
        .await;
    b.client
        .find(Locator::Css("input[name=confirm_code]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.decide("approve").await;
    assert_eq!(b.path().await, "/device/done");
    assert_eq!(poll(&s, &d).await.0, StatusCode::OK);
    b.finish().await;
}

#[tokio::test]
async fn deny() {
    let (s, d) = server().await;
    let b = Browser::start(PHONE).await;
    b.enter_code(&s, d["user_code"].as_str().unwrap()).await;
    b.sign_in("ann", PASSWORD).await;
    b.decide("deny").await;
    assert!(b.text().await.contains("Request denied"));
    let (status, body) = poll(&s, &d).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied"))
    );
    b.finish().await;
}

#[tokio::test]
async fn wrong_code_then_the_right_one() {
    let (s, d) = server().await;
    let b = Browser::start(PHONE).await;
    b.enter_code(&s, "BCDF-BCDF").await;
    let text = b.text().await;
    assert!(
        text.contains("That code is not right") && text.contains("4 attempts left."),
        "{text}"
    );
    b.fill("input[name=user_code]", d["user_code"].as_str().unwrap())
        .await;
    b.click("form[action='/device'] button[type=submit]").await;
    b.sign_in("ann", PASSWORD).await;
    b.decide("approve").await;
    assert_eq!(poll(&s, &d).await.0, StatusCode::OK);
    b.finish().await;
}

#[tokio::test]
async fn expired_and_already_used_codes() {
    let s = TestServer::start().await;
    s.client(devicegate_store::ClientRecord {
        device_code_ttl_secs: Some(1),
        ..client_record("short", None)
    })
    .await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let expired = s.device_authorization("short", None).await;
    let used = s.device_authorization("tv", None).await;
    s.decide(used["user_code"].as_str().unwrap(), "ann", false)
        .await;
    sleep_ms(1100).await;
    let b = Browser::start(PHONE).await;
    b.enter_code(&s, expired["user_code"].as_str().unwrap())
        .await;
    assert!(b.text().await.contains("This code has expired"));
    b.enter_code(&s, used["user_code"].as_str().unwrap()).await;
    assert!(b.text().await.contains("This code has already been used"));
    let (status, body) = s.poll("tv", used["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("access_denied"))
    );
    b.finish().await;
}

#[tokio::test]
async fn lockout_after_too_many_wrong_codes() {
    let (s, d) = server().await;
    let b = Browser::start(PHONE).await;
    for _ in 0..10 {
        b.enter_code(&s, "ZZZZ-ZZZZ").await;
    }
    // The tenth ends the second attempt (five wrong codes each); the page says so.
    assert!(b.text().await.contains("it has ended"));
    b.enter_code(&s, d["user_code"].as_str().unwrap()).await;
    assert!(
        b.text().await.contains("Too many attempts"),
        "the right code is refused while locked out"
    );
    assert_eq!(poll(&s, &d).await.1["error"], "authorization_pending");
    b.finish().await;
}

#[tokio::test]
async fn sign_in_failure_then_success() {
    let (s, d) = server().await;
    let b = Browser::start(DESKTOP).await;
    b.enter_code(&s, d["user_code"].as_str().unwrap()).await;
    b.sign_in("ann", "not the password").await;
    assert!(b.text().await.contains("Wrong username or password."));
    b.sign_in("nobody", PASSWORD).await;
    assert!(b.text().await.contains("Wrong username or password."));
    b.sign_in("ann", PASSWORD).await;
    b.decide("approve").await;
    assert_eq!(poll(&s, &d).await.0, StatusCode::OK);
    b.finish().await;
}

/// Every page at a phone's and a desktop's size, saved for people to look at.
#[tokio::test]
async fn screenshots_of_every_page() {
    for (size, label) in [(PHONE, "phone"), (DESKTOP, "desktop")] {
        let (s, d) = server().await;
        let other = s.device_authorization("tv", None).await;
        s.decide(other["user_code"].as_str().unwrap(), "ann", true)
            .await;
        let b = Browser::start(size).await;
        b.goto(&s.url(&format!(
            "/device?user_code={}",
            d["user_code"].as_str().unwrap()
        )))
        .await;
        let code = d["user_code"].as_str().unwrap();
        b.shot(&format!("{label}-1-enter")).await;
        b.shows(&["Connect a device"]).await;
        b.enter_code(&s, "BCDF-BCDF").await;
        b.shot(&format!("{label}-2-wrong-code")).await;
        b.shows(&["That code is not right.", "4 attempts left."])
            .await;
        b.enter_code(&s, other["user_code"].as_str().unwrap()).await;
        b.shot(&format!("{label}-3-used-code")).await;
        b.shows(&["This code has already been used"]).await;
        b.enter_code(&s, code).await;
        b.shot(&format!("{label}-4-sign-in")).await;
        // The sign-in page names the device asking and its code.
        b.shows(&["Sign in", "tv app", code]).await;
        b.sign_in("ann", "wrong password").await;
        b.shot(&format!("{label}-5-sign-in-failed")).await;
        b.shows(&["Wrong username or password."]).await;
        b.sign_in("ann", PASSWORD).await;
        b.shot(&format!("{label}-6-consent")).await;
        b.shows(&["Allow this device?", "tv app", code]).await;
        b.decide("approve").await;
        b.shot(&format!("{label}-7-done")).await;
        b.shows(&["Device connected"]).await;
        // Five wrong codes end the attempt; the address's ten a minute (two spent above,
        // refilling one each 6 s) then pause entry.
        for _ in 0..5 {
            b.enter_code(&s, "ZZZZ-ZZZZ").await;
        }
        b.shot(&format!("{label}-8-attempt-ended")).await;
        b.shows(&["it has ended"]).await;
        for _ in 0..15 {
            b.enter_code(&s, "ZZZZ-ZZZZ").await;
            if b.text().await.contains("Too many attempts") {
                break;
            }
        }
        b.shot(&format!("{label}-9-too-many")).await;
        b.shows(&["Too many attempts"]).await;
        b.finish().await;
        assert_eq!(poll(&s, &d).await.0, StatusCode::OK);
    }
}

/// Issue 13 in a real browser: the code, "Continue with Corp SSO", node oidc-provider's own
/// login and consent pages, back to devicegate's consent; the device's tokens are for the
/// account linked to the provider's subject.
#[tokio::test]
async fn approve_through_the_organisations_provider() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let op = crate::oidc_provider::OidcProvider::start_with(&[(
        "UPSTREAM_REDIRECT_URIS",
        &format!("{base}/device/callback"),
    )]);
    let s = TestServer::start_on(listener, |_| {}).await;
    s.public_client("tv", 1).await;
    s.store()
        .create_upstream(&crate::upstream::upstream(&op.issuer))
        .await
        .unwrap();
    let d = s.device_authorization("tv", Some("openid profile")).await;
    let b = Browser::start(PHONE).await;
    b.enter_code(&s, d["user_code"].as_str().unwrap()).await;
    assert_eq!(b.path().await, "/device/signin");
    b.shows(&["Continue with Corp SSO"]).await;
    b.shot("signin-with-upstream").await;
    b.click("button.upstream").await;
    // The provider's own pages.
    let at = b.client.current_url().await.unwrap();
    assert!(
        at.as_str().starts_with(&op.issuer),
        "{at}: {}",
        b.text().await
    );
    b.fill("input[name=login]", "dave").await;
    b.fill(
        "input[name=password]",
        "any password the dev interactions accept",
    )
    .await;
    b.click("button[type=submit]").await;
    b.click("button[type=submit]").await;
    // Back at devicegate: signed in, and consent still decides.
    assert_eq!(b.path().await, "/device/consent");
    b.shows(&["corp:dave@example.com", d["user_code"].as_str().unwrap()])
        .await;
    assert_eq!(poll(&s, &d).await.1["error"], "authorization_pending");
    b.decide("approve").await;
    assert_eq!(b.path().await, "/device/done");
    let (status, t) = poll(&s, &d).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (_, id) = claims(t["id_token"].as_str().unwrap());
    let dave = s
        .store()
        .get_user_by_username("default", "corp:dave@example.com")
        .await
        .unwrap();
    assert_eq!(id["sub"], dave.id.as_str());
    b.finish().await;
}

#[tokio::test]
async fn sign_out_a_device_from_the_list_of_devices() {
    let (s, d) = server().await;
    let b = Browser::start(DESKTOP).await;
    b.enter_code(&s, d["user_code"].as_str().unwrap()).await;
    b.sign_in("ann", PASSWORD).await;
    b.decide("approve").await;
    let (status, t) = poll(&s, &d).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (status, renewed) = refresh(&s, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");

    // The list: the client's name, from where, what it may do, when it was last active.
    b.goto(&s.url("/account/devices")).await;
    b.shows(&[
        "Your devices",
        "tv app",
        "from 127.0.0.1",
        "last active",
        "Stay signed in on the device",
    ])
    .await;
    b.shot("account-devices").await;
    b.click("form[action='/account/devices/signout'] button")
        .await;
    // Asked first: nothing is signed out yet.
    b.shows(&["Sign out tv app? It loses access at once"]).await;
    let (status, _) = refresh(&s, renewed["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "not yet");
    // The refresh just made is the family's newest token: sign out revokes the family.
    b.click("button[name=confirm][value=yes]").await;
    assert_eq!(b.path().await, "/account/devices");
    b.shows(&["The device is signed out.", "No device holds access"])
        .await;
    let sub = t_subject(&t);
    let left = s
        .store()
        .list_families("default", Some(&sub), None, devicegate_server::now())
        .await
        .unwrap();
    assert_eq!(left, vec![]);
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(renewed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    b.finish().await;
}

fn t_subject(t: &Value) -> String {
    claims(t["access_token"].as_str().unwrap()).1["sub"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn refresh(s: &TestServer, token: &str) -> (StatusCode, Value) {
    let (status, _, body) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "tv"),
                ("refresh_token", token),
            ],
        )
        .await;
    (status, body)
}

/// The consent page in the browser's own language, with the warning that the person is not
/// near the device: the device asked from Lisbon (through the trusted proxy), the browser is
/// in Oslo (127.0.0.1 in the tests' GeoIP database), and the client warns.
#[tokio::test]
async fn consent_in_the_browsers_language_warns_when_the_device_is_elsewhere() {
    let (s, _geo) = geoip_server().await;
    let cases = [
        (
            "de-DE",
            "Dieses Gerät zulassen?",
            "Sie befinden sich nicht in der Nähe dieses Geräts.",
            "Standort dieses Geräts: Lissabon, Portugal. Ihr Standort: Oslo, Norwegen.",
        ),
        (
            "ja",
            "このデバイスを承認しますか？",
            "あなたはこのデバイスの近くにいません。",
            "このデバイスの所在地：ポルトガル、リスボン。あなたの所在地：ノルウェー、オスロ。",
        ),
    ];
    for (lang, title, warning, places) in cases {
        let res = reqwest::Client::new()
            .post(s.url("/oauth2/device_authorization"))
            .header("x-forwarded-for", "198.51.100.7")
            .form(&[("client_id", "tv"), ("scope", "openid profile")])
            .send()
            .await
            .unwrap();
        let d: Value = res.json().await.unwrap();
        let b = Browser::start_in(PHONE, lang).await;
        b.enter_code(&s, d["user_code"].as_str().unwrap()).await;
        b.sign_in("ann", PASSWORD).await;
        assert_eq!(b.path().await, "/device/consent");
        b.shows(&[title, warning, places, "198.51.100.7"]).await;
        // Deny is the focused choice.
        let focused = b
            .client
            .execute("return document.activeElement.value", vec![])
            .await
            .unwrap();
        assert_eq!(focused, json!("deny"));
        let lang = &lang[..2];
        b.shot(&format!("consent-elsewhere-{lang}-phone")).await;
        b.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .unwrap();
        b.shot(&format!("consent-elsewhere-{lang}-desktop")).await;
        b.decide("deny").await;
        assert_eq!(b.path().await, "/device/done");
        let (status, body) = poll(&s, &d).await;
        assert_eq!(
            (status, &body["error"]),
            (StatusCode::BAD_REQUEST, &json!("access_denied"))
        );
        b.finish().await;
    }
}
