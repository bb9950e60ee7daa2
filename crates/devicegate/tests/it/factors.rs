//! One-time codes and recovery codes (issue 14) over real HTTP, with codes computed here
//! from the enrolled secret as an authenticator app would: enrolment led by a `required`
//! policy, sign-in, replays refused, wrong codes limited like passwords, recovery codes used
//! once, `amr` in the ID token for each method, and `user reset-factors`.

use devicegate_store::ClientRecord;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::{browser, get as page_get, post as page_post};
use crate::support::*;

/// The authenticator secret an enrolment page shows (beside its QR code).
fn shown_secret(enrol: &crate::pages::Page) -> String {
    assert_eq!(enrol.status, StatusCode::OK, "{}", enrol.html);
    assert!(enrol.html.contains("<svg"), "a QR code: {}", enrol.html);
    enrol
        .html
        .split("class=\"secret\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned()
}

/// The code an authenticator app shows for `secret` (base32) at Unix time `at`.
fn code(secret: &str, at: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        Some("t".into()),
        "t".into(),
    )
    .unwrap()
    .generate(at)
}

fn now_secs() -> u64 {
    devicegate_server::now().as_secs() as u64
}

/// A server with tenant `acme` under `policy`, its client `tv` and user `ann`.
async fn acme(policy: &str) -> TestServer {
    let s = TestServer::start().await;
    s.tenant("acme").await;
    s.store().set_second_factor("acme", policy).await.unwrap();
    s.client(ClientRecord {
        tenant: "acme".into(),
        poll_interval_secs: Some(1),
        ..client_record("tv", None)
    })
    .await;
    let ann = devicegate_store::UserRecord {
        id: devicegate_core::secret::random_id(),
        tenant: "acme".into(),
        username: "ann".into(),
        password_hash: devicegate_core::password::hash_password(PASSWORD),
        name: None,
        email: None,
        created_at: devicegate_server::now(),
        disabled: false,
    };
    s.store().create_user(&ann).await.unwrap();
    s
}

async fn act(s: &TestServer, flow: &str, body: Value) -> (StatusCode, Value) {
    let (status, _, b) = s
        .api("POST", &format!("/t/acme/api/v1/flows/{flow}"), Some(body))
        .await;
    (status, b)
}

/// A device's code (asking `scope`), and a flows-API flow that entered it: the flow id.
async fn code_entered(s: &TestServer, scope: &str) -> (Value, String) {
    let (_, _, d) = s
        .form(
            "/t/acme/oauth2/device_authorization",
            &[("client_id", "tv"), ("scope", scope)],
        )
        .await;
    let (_, _, f) = s.api("POST", "/t/acme/api/v1/flows", Some(json!({}))).await;
    let flow = f["id"].as_str().unwrap().to_owned();
    act(
        s,
        &flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    (d, flow)
}

/// A device's code, and a flows-API flow that entered it and signed `ann` on with her
/// password: the flow id and the answer.
async fn signed_on(s: &TestServer) -> (Value, String, Value) {
    let (d, flow) = code_entered(s, "openid offline_access").await;
    let (status, b) = act(
        s,
        &flow,
        json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    (d, flow, b)
}

async fn approve_and_redeem(s: &TestServer, flow: &str, d: &Value) -> Value {
    let (status, b) = act(s, flow, json!({"action": "consent", "accept": true})).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let (status, t) = s
        .poll_at(
            "/t/acme/oauth2/token",
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    claims(t["id_token"].as_str().unwrap()).1
}

#[tokio::test]
async fn a_required_second_factor_is_enrolled_then_asked_and_no_code_works_twice() {
    let s = acme("required").await;
    // The password alone leads to enrolment; nothing is kept yet.
    let (d, flow, b) = signed_on(&s).await;
    assert_eq!(b["status"], "SECOND_FACTOR_REQUIRED", "{b}");
    assert_eq!(b["second_factors"], json!(["totp.enroll"]));
    assert!(
        b.get("session").is_none(),
        "no session before the second factor: {b}"
    );
    let (status, e) = act(&s, &flow, json!({"action": "consent", "accept": true})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "no consent before the second factor: {e}"
    );
    let (status, en) = act(&s, &flow, json!({"action": "totp.enroll"})).await;
    assert_eq!(status, StatusCode::OK, "{en}");
    let secret = en["totp_enrolment"]["secret"].as_str().unwrap().to_owned();
    assert!(
        en["totp_enrolment"]["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let (status, e) = act(
        &s,
        &flow,
        json!({"action": "totp.verify", "code": "000000"}),
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let t = now_secs();
    let (status, ok) = act(
        &s,
        &flow,
        json!({"action": "totp.verify", "code": code(&secret, t)}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["status"], "CONSENT_REQUIRED");
    let recovery: Vec<String> = ok["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    let session = ok["session"].as_str().unwrap().to_owned();
    let id = approve_and_redeem(&s, &flow, &d).await;
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));

    // Enrolled: a password asks for a code; the code just used does not work again.
    let (d2, flow2, b2) = signed_on(&s).await;
    assert_eq!(
        b2["second_factors"],
        json!(["totp", "recovery_code"]),
        "{b2}"
    );
    let (status, _) = act(
        &s,
        &flow2,
        json!({"action": "totp.verify", "code": code(&secret, t)}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a replayed code is refused"
    );
    let (status, _) = act(&s, &flow2, json!({"action": "totp.enroll"})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "enrolled already: no new secret"
    );
    // A recovery code works once, typed loosely.
    let typed = recovery[0].to_uppercase().replace('-', " ");
    let (status, b) = act(
        &s,
        &flow2,
        json!({"action": "recovery_code.verify", "code": typed}),
    )
    .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("CONSENT_REQUIRED")),
        "{b}"
    );
    let id2 = approve_and_redeem(&s, &flow2, &d2).await;
    assert_eq!(id2["amr"], json!(["pwd", "otp", "mfa"]));
    let (_, flow3, _) = signed_on(&s).await;
    let (status, _) = act(
        &s,
        &flow3,
        json!({"action": "recovery_code.verify", "code": recovery[0]}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );

    // The session kept after both factors carries them: the next flow needs neither.
    let (d4, flow4) = code_entered(&s, "openid").await;
    let (status, b) = act(
        &s,
        &flow4,
        json!({"action": "session.resume", "session": session}),
    )
    .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("CONSENT_REQUIRED")),
        "{b}"
    );
    assert_eq!(
        approve_and_redeem(&s, &flow4, &d4).await["amr"],
        json!(["pwd", "otp", "mfa"])
    );

    // Wrong codes count like failed passwords: the account is throttled from this address.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let (status, _) = act(
            &s,
            &flow3,
            json!({"action": "totp.verify", "code": "000000"}),
        )
        .await;
        statuses.push(status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn without_a_policy_a_password_alone_signs_on_and_says_so() {
    let s = acme("off").await;
    let (d, flow, b) = signed_on(&s).await;
    assert_eq!(b["status"], "CONSENT_REQUIRED", "{b}");
    assert!(b.get("second_factors").is_none());
    assert_eq!(
        approve_and_redeem(&s, &flow, &d).await["amr"],
        json!(["pwd"])
    );
    // Optional: people without an authenticator are not asked.
    s.store()
        .set_second_factor("acme", "optional")
        .await
        .unwrap();
}

#[tokio::test]
async fn the_pages_enrol_and_ask_for_a_code_without_javascript_and_reset_factors_clears_it() {
    let s = acme("required").await;
    let (_, _, d) = s
        .form(
            "/t/acme/oauth2/device_authorization",
            &[("client_id", "tv"), ("scope", "openid")],
        )
        .await;
    let b = browser();
    let entry = page_get(&b, s.url("/t/acme/device")).await;
    page_post(
        &b,
        s.url("/t/acme/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    let signin = page_get(&b, s.url("/t/acme/device/signin")).await;
    let next = page_post(
        &b,
        s.url("/t/acme/device/signin"),
        &[
            ("csrf", &signin.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(next.location(), "/t/acme/device/factor", "{}", next.html);
    let factor = page_get(&b, s.url("/t/acme/device/factor")).await;
    assert!(
        factor.html.contains("Set up an authenticator app"),
        "{}",
        factor.html
    );
    let enrol = page_post(
        &b,
        s.url("/t/acme/device/factor/enroll"),
        &[("csrf", &factor.csrf())],
    )
    .await;
    let secret = shown_secret(&enrol);
    let codes = page_post(
        &b,
        s.url("/t/acme/device/factor"),
        &[
            ("csrf", &enrol.csrf()),
            ("code", &code(&secret, now_secs())),
        ],
    )
    .await;
    assert_eq!(codes.status, StatusCode::OK, "{}", codes.html);
    assert_eq!(
        codes.html.matches("<li><code>").count(),
        10,
        "{}",
        codes.html
    );
    let consent = page_get(&b, s.url("/t/acme/device/consent")).await;
    let done = page_post(
        &b,
        s.url("/t/acme/device/consent"),
        &[("csrf", &consent.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(done.location(), "/t/acme/device/done");
    let (status, t) = s
        .poll_at(
            "/t/acme/oauth2/token",
            "tv",
            d["device_code"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(
        claims(t["id_token"].as_str().unwrap()).1["amr"],
        json!(["pwd", "otp", "mfa"])
    );

    // An operator resets the factors: the next sign-in enrols again.
    let ann = s.store().get_user_by_username("acme", "ann").await.unwrap();
    assert!(s.store().get_totp("acme", &ann.id).await.is_ok());
    s.store().delete_factors("acme", &ann.id).await.unwrap();
    let (_, _, b2) = signed_on(&s).await;
    assert_eq!(b2["second_factors"], json!(["totp.enroll"]));
}

/// `ann`'s browser (with its cookie jar in reach) signed in for the account page of `acme`.
async fn account_signed_in(
    s: &TestServer,
) -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let b = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = page_get(&b, s.url("/t/acme/account/security")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    assert!(
        page.html
            .contains("Sign in to see and change how you sign in.")
    );
    let go = page_post(
        &b,
        s.url("/t/acme/account/signin"),
        &[("csrf", &page.csrf())],
    )
    .await;
    assert_eq!(go.location(), "/t/acme/device/signin?then=account");
    let signin = page_get(&b, s.url("/t/acme/device/signin?then=account")).await;
    assert!(
        signin
            .html
            .contains("action=\"/t/acme/device/signin?then=account\""),
        "{}",
        signin.html
    );
    let signed = page_post(
        &b,
        s.url("/t/acme/device/signin?then=account"),
        &[
            ("csrf", &signin.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        signed.location(),
        "/t/acme/account/security",
        "{}",
        signed.html
    );
    (b, jar)
}

#[tokio::test]
async fn the_account_page_sets_up_one_time_codes_and_changes_need_a_fresh_sign_in() {
    // Optional: nobody is asked for a code until they set one up, which only the account
    // page lets them do.
    let s = acme("optional").await;
    let (b, jar) = account_signed_in(&s).await;
    let page = page_get(&b, s.url("/t/acme/account/security")).await;
    assert!(
        page.html.contains("One-time codes are off."),
        "{}",
        page.html
    );
    let enrol = page_post(
        &b,
        s.url("/t/acme/account/totp/enroll"),
        &[("csrf", &page.csrf())],
    )
    .await;
    let secret = shown_secret(&enrol);
    let typed = code(&secret, now_secs());
    let wrong = page_post(
        &b,
        s.url("/t/acme/account/totp"),
        &[("csrf", &enrol.csrf()), ("code", "000000")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.html);
    let done = page_post(
        &b,
        s.url("/t/acme/account/totp"),
        &[("csrf", &enrol.csrf()), ("code", &typed)],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.html);
    assert_eq!(done.html.matches("<li><code>").count(), 10, "{}", done.html);
    assert!(
        done.html
            .contains("One-time codes are on. 10 recovery codes left.")
    );
    // The same code again is refused: its time step was used.
    let replay = page_post(
        &b,
        s.url("/t/acme/account/totp"),
        &[("csrf", &enrol.csrf()), ("code", &typed)],
    )
    .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.html);
    // New recovery codes replace the old ones.
    let ann = s.store().get_user_by_username("acme", "ann").await.unwrap();
    let fresh = page_post(
        &b,
        s.url("/t/acme/account/recovery-codes"),
        &[("csrf", &enrol.csrf())],
    )
    .await;
    assert_eq!(
        fresh.html.matches("<li><code>").count(),
        10,
        "{}",
        fresh.html
    );
    assert_eq!(
        s.store()
            .count_recovery_codes("acme", &ann.id)
            .await
            .unwrap(),
        10
    );
    // Now the person is asked for a code after the password.
    let (_, _, on) = signed_on(&s).await;
    assert_eq!(on["status"], "SECOND_FACTOR_REQUIRED", "{on}");
    assert_eq!(on["second_factors"], json!(["totp", "recovery_code"]));

    // Someone else's passkey cannot be renamed or removed from here.
    let bobs = devicegate_store::PasskeyRecord {
        tenant: "acme".into(),
        id: "bobs-key".into(),
        user_id: "bob".into(),
        credential_id: b"bob".to_vec(),
        name: "bob's".into(),
        credential: "{}".into(),
        sign_count: 0,
        backup_eligible: false,
        backup_state: false,
        created_at: devicegate_server::now(),
        last_used_at: None,
    };
    s.store().create_passkey(&bobs).await.unwrap();
    for (path, extra) in [
        ("/t/acme/account/passkeys/rename", ("name", "mine")),
        ("/t/acme/account/passkeys/remove", ("x", "")),
    ] {
        let res = page_post(
            &b,
            s.url(path),
            &[("csrf", &enrol.csrf()), ("id", "bobs-key"), extra],
        )
        .await;
        assert_eq!(res.location(), "/t/acme/account/security", "{path}");
    }
    assert_eq!(s.store().get_passkey("acme", b"bob").await.unwrap(), bobs);
    // Without the session's anti-CSRF token, nothing changes.
    let forged = page_post(
        &b,
        s.url("/t/acme/account/recovery-codes"),
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.store()
            .count_recovery_codes("acme", &ann.id)
            .await
            .unwrap(),
        10
    );

    // A sign-on older than ten minutes (a session left open, or its cookie stolen) may look
    // but not change: sign in again first.
    let cookies =
        reqwest::cookie::CookieStore::cookies(jar.as_ref(), &s.url("/").parse().unwrap()).unwrap();
    let id = cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find_map(|c| c.strip_prefix("devicegate-acme="))
        .unwrap()
        .to_owned();
    let hash = devicegate_core::Secret::from_presented(&id).hash();
    let mut session = s.store().get_session(&hash).await.unwrap();
    session.signed_on_at = Some(devicegate_core::Timestamp::from_millis(
        devicegate_server::now().as_millis() - 660_000,
    ));
    s.store().update_session(&session).await.unwrap();
    let stale = page_get(&b, s.url("/t/acme/account/security")).await;
    assert!(
        stale
            .html
            .contains("To change these settings, sign in again first.")
    );
    assert!(
        !stale.html.contains("/account/recovery-codes"),
        "{}",
        stale.html
    );
    for path in [
        "/t/acme/account/recovery-codes",
        "/t/acme/account/totp/enroll",
        "/t/acme/account/passkeys/options",
    ] {
        let res = page_post(&b, s.url(path), &[("csrf", &stale.csrf())]).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path}: {}", res.html);
    }
    assert_eq!(
        s.store()
            .count_recovery_codes("acme", &ann.id)
            .await
            .unwrap(),
        10
    );
}
