//! The OAuth endpoints, numbered as in the core issue: 1 device authorization, 2 device-code
//! polling, 3 refresh, 4 errors, 5 discovery, 6 JWKS and userinfo, 7 tokens.

use base64::Engine;
use devicegate_core::keys::Algorithm;
use devicegate_proto::GRANT_TYPE_DEVICE_CODE;
use devicegate_store::ClientRecord;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

fn assert_oauth_error(status: StatusCode, body: &Value, want_status: StatusCode, want: &str) {
    assert_eq!(
        (status, body["error"].as_str()),
        (want_status, Some(want)),
        "{body}"
    );
    assert!(body["error_description"].is_string(), "{body}");
}

// 1. Device authorization.

#[tokio::test]
async fn rfc8628_3_2_device_authorization_answers_every_member() {
    let s = TestServer::start().await;
    s.public_client("cli", 5).await;
    let (status, headers, b) = s
        .form("/oauth2/device_authorization", &[("client_id", "cli")])
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(headers["cache-control"], "no-store");
    let device_code = b["device_code"].as_str().unwrap();
    // `dgd_<grant id>.<secret>`: 256 random bits behind the grant it names.
    let (_, random) = device_code
        .strip_prefix("dgd_")
        .expect("recognisable prefix")
        .split_once('.')
        .expect("a selector");
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(random)
            .unwrap()
            .len(),
        32
    );
    let user_code = b["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert!(
        user_code
            .replace('-', "")
            .chars()
            .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)),
        "{user_code}"
    );
    assert_eq!(b["verification_uri"], s.url("/device"));
    assert_eq!(
        b["verification_uri_complete"],
        s.url(&format!("/device?user_code={user_code}"))
    );
    assert_eq!(
        (b["expires_in"].as_u64(), b["interval"].as_u64()),
        (Some(600), Some(5))
    );
    // Device codes are stored only as hashes.
    let raw = std::fs::read(s.dir.path().join("devicegate.db")).unwrap();
    let wal = std::fs::read(s.dir.path().join("devicegate.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(!bytes.windows(random.len()).any(|w| w == random.as_bytes()));
    }
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_post() {
    let s = TestServer::start().await;
    let secret = s.confidential_client("svc").await;
    let ok = s
        .http
        .post(s.url("/oauth2/device_authorization"))
        .basic_auth("svc", Some(&secret))
        .form(&[("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let (status, _, b) = s
        .form(
            "/oauth2/device_authorization",
            &[("client_id", "svc"), ("client_secret", &secret)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");

    // Wrong secret through Basic: 401 with a challenge.
    let bad = s
        .http
        .post(s.url("/oauth2/device_authorization"))
        .basic_auth("svc", Some("dgs_wrong"))
        .form(&[("scope", "openid")])
        .send()
        .await
        .unwrap();
    let (status, headers, b) = split(bad).await;
    assert_oauth_error(status, &b, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(headers["cache-control"], "no-store");
    // Wrong secret in the body, no secret at all, unknown client: 401 invalid_client.
    for params in [
        vec![("client_id", "svc"), ("client_secret", "dgs_wrong")],
        vec![("client_id", "svc")],
        vec![("client_id", "nobody")],
    ] {
        let (status, _, b) = s.form("/oauth2/device_authorization", &params).await;
        assert_oauth_error(status, &b, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // Two methods at once is a malformed request.
    let both = s
        .http
        .post(s.url("/oauth2/device_authorization"))
        .basic_auth("svc", Some(&secret))
        .form(&[("client_secret", secret.as_str())])
        .send()
        .await
        .unwrap();
    let (status, _, b) = split(both).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn scopes_default_to_the_clients_and_must_be_allowed() {
    let s = TestServer::start().await;
    s.client(ClientRecord {
        scopes: devicegate_core::scope::Scopes::parse("openid profile").unwrap(),
        ..client_record("narrow", None)
    })
    .await;
    s.user("ann").await;
    let (status, _, b) = s
        .form(
            "/oauth2/device_authorization",
            &[("client_id", "narrow"), ("scope", "openid email")],
        )
        .await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_scope");
    let (status, _, b) = s
        .form(
            "/oauth2/device_authorization",
            &[("client_id", "narrow"), ("scope", "open\"id")],
        )
        .await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_scope");
    let d = s.device_authorization("narrow", None).await;
    s.decide(d["user_code"].as_str().unwrap(), "ann", true)
        .await;
    let (status, b) = s.poll("narrow", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b["scope"], "openid profile");
}

#[tokio::test]
async fn a_blank_scope_means_the_default_and_a_custom_verification_uri_is_announced() {
    let s = TestServer::start_with(|c| {
        c.verification_uri = Some("https://login.example/activate".into())
    })
    .await;
    s.public_client("cli", 1).await;
    let (status, _, b) = s
        .form(
            "/oauth2/device_authorization",
            &[("client_id", "cli"), ("scope", "   ")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["verification_uri"], "https://login.example/activate");
    let flow = s.new_flow().await;
    let (_, v) = s
        .act(
            &flow,
            serde_json::json!({"action": "user_code.verify", "user_code": b["user_code"]}),
        )
        .await;
    assert_eq!(
        v["scopes"],
        serde_json::json!(["email", "offline_access", "openid", "profile"])
    );
}

#[tokio::test]
async fn oidc_auth_time_is_when_the_person_signed_on() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let d = s.device_authorization("cli", Some("openid")).await;
    let flow = s.new_flow().await;
    let (_, b) = s
        .act(
            &flow,
            serde_json::json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(b["status"], "USER_CODE_REQUIRED");
    let signed_on = devicegate_server::now().as_secs();
    sleep_ms(2100).await;
    s.act(
        &flow,
        serde_json::json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    s.act(
        &flow,
        serde_json::json!({"action": "consent", "accept": true}),
    )
    .await;
    let (_, t) = s.poll("cli", d["device_code"].as_str().unwrap()).await;
    let (_, id) = claims(t["id_token"].as_str().unwrap());
    let auth_time = id["auth_time"].as_i64().unwrap();
    assert!(
        (signed_on - 1..=signed_on).contains(&auth_time),
        "auth_time {auth_time}, signed on {signed_on}"
    );
    assert!(id["iat"].as_i64().unwrap() >= auth_time + 2);
}

#[tokio::test]
async fn longer_user_codes_are_shown_in_fours_and_accepted() {
    let s = TestServer::start_with(|c| c.user_code_length = 12).await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let d = s.device_authorization("cli", None).await;
    let code = d["user_code"].as_str().unwrap();
    assert_eq!(
        (code.len(), &code[4..5], &code[9..10]),
        (14, "-", "-"),
        "{code}"
    );
    s.decide(&code.to_lowercase().replace('-', " "), "ann", true)
        .await;
    assert_eq!(
        s.poll("cli", d["device_code"].as_str().unwrap()).await.0,
        StatusCode::OK
    );
}

// 2. Polling.

#[tokio::test]
async fn rfc8628_3_5_pending_then_slow_down_and_the_longer_interval_is_remembered() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    let d = s.device_authorization("cli", None).await;
    let code = d["device_code"].as_str().unwrap();
    // The first poll is never throttled, even straight after the code was issued.
    let (status, b) = s.poll("cli", code).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "authorization_pending");
    let (status, b) = s.poll("cli", code).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "slow_down");
    assert_eq!(b["interval"], 6);
    // 1.2 s later would have been fine at the old interval, but the interval is now 6 s.
    sleep_ms(1200).await;
    let (status, b) = s.poll("cli", code).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "slow_down");
    assert_eq!(b["interval"], 11);
}

#[tokio::test]
async fn polls_after_waiting_the_interval_stay_pending() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    let d = s.device_authorization("cli", None).await;
    let code = d["device_code"].as_str().unwrap();
    for _ in 0..3 {
        let (status, b) = s.poll("cli", code).await;
        assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "authorization_pending");
        sleep_ms(1050).await;
    }
}

#[tokio::test]
async fn denied_expired_unknown_foreign_and_redeemed_codes() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.public_client("other", 1).await;
    s.client(ClientRecord {
        device_code_ttl_secs: Some(1),
        ..client_record("short", None)
    })
    .await;
    s.user("ann").await;

    let d = s.device_authorization("cli", None).await;
    s.decide(d["user_code"].as_str().unwrap(), "ann", false)
        .await;
    let (status, b) = s.poll("cli", d["device_code"].as_str().unwrap()).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "access_denied");

    let d = s.device_authorization("short", None).await;
    sleep_ms(1100).await;
    let (status, b) = s.poll("short", d["device_code"].as_str().unwrap()).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "expired_token");

    let (status, b) = s.poll("cli", "dgd_not-a-code").await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");

    let d = s.device_authorization("cli", None).await;
    let code = d["device_code"].as_str().unwrap();
    let (status, b) = s.poll("other", code).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
    // The code names its grant, but only the whole code opens it: the grant's id with any
    // other secret is no code.
    let (selector, secret) = code.split_once('.').unwrap();
    assert!(selector.len() == 4 + 28 && secret.len() == 43, "{code}");
    let forged = format!("{selector}.{}", "A".repeat(43));
    let (status, b) = s.poll("cli", &forged).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
    s.decide(d["user_code"].as_str().unwrap(), "ann", true)
        .await;
    let (status, b) = s.poll("cli", &forged).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(s.poll("cli", code).await.0, StatusCode::OK);
    let (status, b) = s.poll("cli", code).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_polls_of_one_approved_code_give_exactly_one_token() {
    let s = std::sync::Arc::new(TestServer::start().await);
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let d = s
        .device_authorization("cli", Some("openid offline_access"))
        .await;
    s.decide(d["user_code"].as_str().unwrap(), "ann", true)
        .await;
    let code = d["device_code"].as_str().unwrap().to_owned();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (s, code, barrier) = (s.clone(), code.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.poll("cli", &code).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, b) = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
        }
    }
    assert_eq!(ok, 1);
}

// 3. Refresh.

async fn refresh(s: &TestServer, token: &str, scope: Option<&str>) -> (StatusCode, Value) {
    let mut p = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "cli"),
    ];
    if let Some(sc) = scope {
        p.push(("scope", sc));
    }
    let (status, _, b) = s.form("/oauth2/token", &p).await;
    (status, b)
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let first = s
        .tokens("cli", "openid profile offline_access", "ann")
        .await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert!(r1.starts_with("dgr_"));

    let (status, second) = refresh(&s, &r1, None).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert!(second["id_token"].is_string());
    assert_eq!(second["scope"], "offline_access openid profile");

    // Narrowing is allowed; the new refresh token keeps the original scope.
    let (status, narrow) = refresh(&s, &r2, Some("openid")).await;
    assert_eq!(status, StatusCode::OK, "{narrow}");
    assert_eq!(narrow["scope"], "openid");
    assert_eq!(
        claims(narrow["access_token"].as_str().unwrap()).1["scope"],
        "openid"
    );
    let r3 = narrow["refresh_token"].as_str().unwrap().to_owned();
    let (status, b) = refresh(&s, &r3, Some("openid email")).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_scope");
    let (status, wide_again) = refresh(&s, &r3, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(wide_again["scope"], "offline_access openid profile");
    let r4 = wide_again["refresh_token"].as_str().unwrap().to_owned();

    // Replaying a rotated token revokes the family, including the newest token.
    let (status, b) = refresh(&s, &r1, None).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
    let (status, b) = refresh(&s, &r4, None).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_tokens_only_with_offline_access_and_only_for_their_client() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.public_client("other", 1).await;
    s.user("ann").await;
    let t = s.tokens("cli", "openid", "ann").await;
    assert!(t.get("refresh_token").is_none(), "{t}");
    let t = s.tokens("cli", "offline_access", "ann").await;
    assert!(t.get("id_token").is_none(), "no openid, no ID token: {t}");
    let (status, _, b) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", "other"),
            ],
        )
        .await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn refresh_token_families_end_at_their_max_lifetime_however_often_rotated() {
    let max = std::time::Duration::from_secs(3);
    let s = TestServer::start_with(|c| {
        c.refresh_token_ttl = std::time::Duration::from_secs(3600);
        c.refresh_token_max_lifetime = max;
    })
    .await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let first = s.tokens("cli", "openid offline_access", "ann").await;
    // The family started at the redemption, which answered before this instant.
    let redeemed = std::time::Instant::now();
    let mut current = first["refresh_token"].as_str().unwrap().to_owned();
    let mut rotations = 0;
    while redeemed.elapsed() < std::time::Duration::from_secs(2) {
        let (status, b) = refresh(&s, &current, None).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        current = b["refresh_token"].as_str().unwrap().to_owned();
        rotations += 1;
        // Each rotation renews the token, but only up to the family's end.
        let stored = s
            .store()
            .get_refresh_token(&devicegate_core::Secret::from_presented(current.as_str()).hash())
            .await
            .unwrap();
        assert_eq!(stored.expires_at, stored.family_started_at.plus(max));
        sleep_ms(400).await;
    }
    assert!(rotations >= 3, "{rotations}");
    tokio::time::sleep(
        max.saturating_sub(redeemed.elapsed()) + std::time::Duration::from_millis(200),
    )
    .await;
    let (status, b) = refresh(&s, &current, None).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_grant");
}

// 4. Errors.

#[tokio::test]
async fn rfc6749_5_2_errors_for_bad_requests() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.client(ClientRecord {
        grant_types: vec![GRANT_TYPE_DEVICE_CODE.into()],
        ..client_record("no-refresh", None)
    })
    .await;
    s.client(ClientRecord {
        grant_types: vec!["refresh_token".into()],
        ..client_record("no-device", None)
    })
    .await;

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("grant_type", "password"), ("client_id", "cli")],
            "unsupported_grant_type",
        ),
        (vec![("client_id", "cli")], "invalid_request"),
        (
            vec![("grant_type", GRANT_TYPE_DEVICE_CODE), ("client_id", "cli")],
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "no-refresh"),
                ("refresh_token", "x"),
            ],
            "unauthorized_client",
        ),
        (
            vec![
                ("grant_type", GRANT_TYPE_DEVICE_CODE),
                ("client_id", "no-device"),
                ("device_code", "x"),
            ],
            "unauthorized_client",
        ),
    ];
    for (params, want) in cases {
        let (status, headers, b) = s.form("/oauth2/token", &params).await;
        assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, want);
        assert_eq!(headers["cache-control"], "no-store");
    }
    let (status, _, b) = s
        .form(
            "/oauth2/device_authorization",
            &[("client_id", "no-device")],
        )
        .await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "unauthorized_client");

    // Repeated parameters.
    let res = s
        .http
        .post(s.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&grant_type=refresh_token&client_id=cli")
        .send()
        .await
        .unwrap();
    let (status, _, b) = split(res).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");
    // Not a form.
    let res = s
        .http
        .post(s.url("/oauth2/token"))
        .json(&serde_json::json!({"grant_type": "refresh_token", "client_id": "cli"}))
        .send()
        .await
        .unwrap();
    let (status, _, b) = split(res).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");
    // Too large.
    let huge = format!("client_id=cli&scope={}", "a".repeat(1 << 20));
    let res = s
        .http
        .post(s.url("/oauth2/device_authorization"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, _, b) = split(res).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert_eq!(b["error"], "invalid_request");
}

#[tokio::test]
async fn rfc6749_2_3_a_repeated_authorization_header_authenticates_no_one() {
    let s = TestServer::start().await;
    let secret = s.confidential_client("svc").await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let env = s.store().get_tenant("default").await.unwrap().uuid;
    let pingone = format!("/{env}/as/device_authorization");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("svc:{secret}"))
    );
    // The first header is right; the second must not leave it standing, in either order.
    for (first, second) in [
        (basic.as_str(), "Basic Ym9ndXM6Ym9ndXM="),
        ("Basic Ym9ndXM6Ym9ndXM=", basic.as_str()),
        (basic.as_str(), basic.as_str()),
    ] {
        for (path, params) in [
            ("/oauth2/device_authorization", vec![("scope", "openid")]),
            (
                "/oauth2/token",
                vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", "dgr_unknown"),
                ],
            ),
            (
                "/oauth2/v1/device",
                vec![("response_type", "device_code"), ("scope", "openid")],
            ),
            (pingone.as_str(), vec![("scope", "openid")]),
        ] {
            let res = s
                .http
                .post(s.url(path))
                .header("authorization", first)
                .header("authorization", second)
                .form(&params)
                .send()
                .await
                .unwrap();
            let (status, headers, b) = split(res).await;
            assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");
            assert_eq!(
                headers.get("cache-control").map(|v| v.to_str().unwrap()),
                Some("no-store"),
                "{path}"
            );
        }
    }
    // Userinfo: two bearer tokens, even two good ones, read no one's info.
    let t = s.tokens("cli", "openid", "ann").await;
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .header("authorization", &bearer)
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    let (status, headers, b) = split(res).await;
    assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_request")
    );
}

#[tokio::test]
async fn forms_of_more_than_64_parameters_are_refused() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    let form = |n: usize| {
        let mut body = String::from("client_id=cli");
        for i in 1..n {
            body.push_str(&format!("&x{i}=1"));
        }
        body
    };
    let post = |body: String| {
        s.http
            .post(s.url("/oauth2/device_authorization"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let (status, _, b) = split(post(form(64)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    for n in [65, 2000] {
        let (status, _, b) = split(post(form(n)).await.unwrap()).await;
        assert_oauth_error(status, &b, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn garbage_never_causes_a_500() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    let bodies: [&[u8]; 7] = [
        b"",
        b"%%%%",
        b"client_id=%FF%FE&grant_type=\x00",
        b"grant_type=urn:ietf:params:oauth:grant-type:device_code&client_id=cli&device_code=%00%01",
        b"client_id=cli&scope=%E2%82%AC",
        b"\xff\xfe\xfd",
        b"client_id=cli&grant_type=refresh_token&refresh_token=dgr_\xff",
    ];
    for path in [
        "/oauth2/token",
        "/oauth2/device_authorization",
        "/oauth2/userinfo",
        "/api/v1/flows",
        "/api/v1/flows/dgf_x",
    ] {
        for body in bodies {
            for ct in [
                "application/x-www-form-urlencoded",
                "application/json",
                "text/plain",
            ] {
                let res = s
                    .http
                    .post(s.url(path))
                    .header("content-type", ct)
                    .body(body.to_vec())
                    .send()
                    .await
                    .unwrap();
                let status = res.status();
                let text = res.text().await.unwrap();
                assert!(
                    !status.is_server_error(),
                    "{path} {ct} {body:?}: {status} {text}"
                );
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
                assert!(status.is_success() || v["error"].is_string(), "{text}");
            }
        }
    }
    let res = s
        .http
        .post(s.url("/oauth2/token"))
        .header("authorization", "Basic !!!")
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

// 5. Discovery.

#[tokio::test]
async fn discovery_documents_advertise_the_endpoints() {
    let s = TestServer::start().await;
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, _, m) = s.api("GET", path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(m["issuer"], s.base);
        assert_eq!(
            m["device_authorization_endpoint"],
            s.url("/oauth2/device_authorization")
        );
        assert_eq!(m["token_endpoint"], s.url("/oauth2/token"));
        assert_eq!(m["jwks_uri"], s.url("/oauth2/jwks"));
        assert_eq!(m["userinfo_endpoint"], s.url("/oauth2/userinfo"));
        for member in [
            "grant_types_supported",
            "scopes_supported",
            "response_types_supported",
            "subject_types_supported",
            "id_token_signing_alg_values_supported",
            "token_endpoint_auth_methods_supported",
            "claims_supported",
        ] {
            assert!(
                m[member].as_array().is_some_and(|a| !a.is_empty()),
                "{path} {member}"
            );
        }
        let grants = m["grant_types_supported"].to_string();
        assert!(grants.contains(GRANT_TYPE_DEVICE_CODE) && grants.contains("refresh_token"));
        assert_eq!(m["id_token_signing_alg_values_supported"][0], "ES256");
    }
}

// 6 and 7. JWKS, userinfo, tokens.

#[tokio::test]
async fn access_tokens_can_be_signed_with_their_own_algorithm() {
    let s = TestServer::start_with(|c| {
        c.signing_alg = Algorithm::Rs256;
        c.access_token_signing_alg = Some(Algorithm::Es256);
    })
    .await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let t = s.tokens("cli", "openid", "ann").await;
    let (at_header, _) = claims(t["access_token"].as_str().unwrap());
    let (id_header, _) = claims(t["id_token"].as_str().unwrap());
    assert_eq!(
        (at_header["alg"].as_str(), id_header["alg"].as_str()),
        (Some("ES256"), Some("RS256"))
    );
    // Both keys are published; discovery names only the ID tokens' algorithm.
    let (_, _, jwks) = s.api("GET", "/oauth2/jwks", None).await;
    let kids: Vec<&Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(kids.contains(&&at_header["kid"]) && kids.contains(&&id_header["kid"]));
    let (_, _, m) = s
        .api("GET", "/.well-known/openid-configuration", None)
        .await;
    assert_eq!(
        m["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    // The access token works where access tokens are checked.
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_rfc9068_jwts_signed_by_a_published_key_and_userinfo_accepts_them() {
    for alg in [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa] {
        let s = TestServer::start_with(|c| c.signing_alg = alg).await;
        s.public_client("cli", 1).await;
        let sub = s.user("ann").await;
        let t = s.tokens("cli", "openid profile email", "ann").await;
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["expires_in"], 3600);
        let (header, c) = claims(t["access_token"].as_str().unwrap());
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["alg"], alg.as_str());
        for member in [
            "iss",
            "sub",
            "aud",
            "client_id",
            "scope",
            "iat",
            "exp",
            "jti",
        ] {
            assert!(!c[member].is_null(), "{member} missing from {c}");
        }
        assert_eq!(
            (
                c["iss"].as_str(),
                c["sub"].as_str(),
                c["client_id"].as_str()
            ),
            (Some(s.base.as_str()), Some(sub.as_str()), Some("cli"))
        );
        let (_, _, jwks) = s.api("GET", "/oauth2/jwks", None).await;
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == header["kid"]),
            "{jwks}"
        );

        let (id_header, id) = claims(t["id_token"].as_str().unwrap());
        assert_eq!(id_header["kid"], header["kid"]);
        assert_eq!(
            (
                id["aud"].as_str(),
                id["email"].as_str(),
                id["preferred_username"].as_str()
            ),
            (Some("cli"), Some("ann@example.com"), Some("ann"))
        );

        let at = t["access_token"].as_str().unwrap();
        for post in [false, true] {
            let req = if post {
                s.http.post(s.url("/oauth2/userinfo"))
            } else {
                s.http.get(s.url("/oauth2/userinfo"))
            };
            let (status, headers, info) = split(req.bearer_auth(at).send().await.unwrap()).await;
            assert_eq!(status, StatusCode::OK, "{info}");
            assert_eq!(headers["cache-control"], "no-store");
            assert_eq!(
                (
                    info["sub"].as_str(),
                    info["email"].as_str(),
                    info["name"].as_str()
                ),
                (
                    Some(sub.as_str()),
                    Some("ann@example.com"),
                    Some("ann Example")
                )
            );
        }
    }
}

#[tokio::test]
async fn userinfo_refuses_missing_forged_and_scope_less_tokens() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let (status, headers, _) =
        split(s.http.get(s.url("/oauth2/userinfo")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let t = s.tokens("cli", "openid email", "ann").await;
    let at = t["access_token"].as_str().unwrap();
    // The ID token is no access token, and a tampered token fails its signature.
    let mut forged = at.to_owned();
    let i = forged.find('.').unwrap() + 10;
    let flipped = if &forged[i..=i] == "A" { "B" } else { "A" };
    forged.replace_range(i..=i, flipped);
    for bad in [
        t["id_token"].as_str().unwrap(),
        forged.as_str(),
        "not.a.jwt",
    ] {
        let (status, headers, b) = split(
            s.http
                .get(s.url("/oauth2/userinfo"))
                .bearer_auth(bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (status, b["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{b}"
        );
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    let no_openid = s.tokens("cli", "email", "ann").await;
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(no_openid["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A deleted user's token no longer reads their info.
    s.store().delete_user("default", "ann").await.unwrap();
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rfc7519_4_1_5_tokens_carry_nbf_and_userinfo_refuses_a_token_before_it() {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let t = s.tokens("cli", "openid", "ann").await;
    let (_, access) = claims(t["access_token"].as_str().unwrap());
    let (_, id) = claims(t["id_token"].as_str().unwrap());
    for c in [&access, &id] {
        assert!(c["nbf"].is_i64(), "{c}");
        assert_eq!(c["nbf"], c["iat"], "{c}");
    }
    // The same token, signed with the server's own key, but valid only in an hour.
    let key = s.store().list_keys("default").await.unwrap().remove(0);
    let signer =
        devicegate_core::keys::Signer::from_material(&devicegate_core::keys::KeyMaterial {
            alg: key.alg,
            pkcs8: key.pkcs8,
        })
        .unwrap();
    let mut later = access.clone();
    later["nbf"] = (access["iat"].as_i64().unwrap() + 3600).into();
    let userinfo = |token: String| {
        s.http
            .get(s.url("/oauth2/userinfo"))
            .bearer_auth(token)
            .send()
    };
    let signed = |c: &Value| {
        devicegate_core::jwt::encode(&signer, devicegate_core::jwt::TYP_ACCESS_TOKEN, c).unwrap()
    };
    let (status, _, b) = split(userinfo(signed(&access)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let (status, _, b) = split(userinfo(signed(&later)).await.unwrap()).await;
    assert_oauth_error(status, &b, StatusCode::UNAUTHORIZED, "invalid_token");
}

#[tokio::test]
async fn signing_keys_persist_across_restarts() {
    let mut s = TestServer::start().await;
    let (_, _, before) = s.api("GET", "/oauth2/jwks", None).await;
    s.running.take().unwrap().stop().await.unwrap();
    let store = devicegate_store::SqliteStore::open(s.dir.path().join("devicegate.db")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = devicegate_server::Settings {
        issuer: base.clone(),
        signing_alg: Algorithm::Es256,
        ..Default::default()
    };
    let running = devicegate::start(settings, std::sync::Arc::new(store), listener)
        .await
        .unwrap();
    let after: Value = s.http.get(format!("{base}/oauth2/jwks")).json_of().await;
    assert_eq!(before, after);
    running.stop().await.unwrap();
}
