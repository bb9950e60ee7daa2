//! The verification flows API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn err(status: StatusCode, b: &Value) -> (StatusCode, &str) {
    (status, b["error"].as_str().unwrap_or("<none>"))
}

#[tokio::test]
async fn a_flow_walks_code_sign_on_consent() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", Some("openid email")).await;
    let (status, headers, created) = s.api("POST", "/api/v1/flows", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["status"], "USER_CODE_REQUIRED");
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("dgf_") && id.len() > 40, "unguessable: {id}");
    assert_eq!(headers["location"], format!("/api/v1/flows/{id}"));
    assert_eq!(headers["cache-control"], "no-store");

    // Any case, spaces instead of the dash.
    let typed = d["user_code"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .replace('-', " ");
    let (status, b) = s
        .act(
            id,
            json!({"action": "user_code.verify", "user_code": typed}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "SIGN_ON_REQUIRED");
    assert_eq!(b["client"], json!({"id": "tv", "name": "tv app"}));
    assert_eq!(b["scopes"], json!(["email", "openid"]));
    assert_eq!(b["user_code"], d["user_code"]);

    let (status, b) = s
        .act(
            id,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("CONSENT_REQUIRED")),
        "{b}"
    );
    assert_eq!(b["username"], "ann");
    let (_, _, read) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(read["status"], "CONSENT_REQUIRED");

    let (status, b) = s
        .act(id, json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(
        (status, b["status"].as_str(), b["result"].as_str()),
        (StatusCode::OK, Some("COMPLETED"), Some("approved"))
    );
    let (status, _) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    // Nothing more to do in a completed flow.
    let (status, b) = s
        .act(id, json!({"action": "consent", "accept": false}))
        .await;
    assert_eq!(err(status, &b), (StatusCode::CONFLICT, "invalid_action"));
}

#[tokio::test]
async fn sign_on_first_then_code_then_deny() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", None).await;
    let id = s.new_flow().await;
    let (status, b) = s
        .act(
            &id,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("USER_CODE_REQUIRED")),
        "{b}"
    );
    let (status, b) = s
        .act(
            &id,
            json!({"action": "user_code.verify", "user_code": d["user_code"]}),
        )
        .await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("CONSENT_REQUIRED")),
        "{b}"
    );
    let (status, b) = s
        .act(&id, json!({"action": "consent", "accept": false}))
        .await;
    assert_eq!(
        (status, b["result"].as_str()),
        (StatusCode::OK, Some("denied"))
    );
    let (status, b) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(err(status, &b), (StatusCode::BAD_REQUEST, "access_denied"));
}

#[tokio::test]
async fn five_wrong_codes_fail_the_flow_with_attempts_counted_down() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    let d = s.device_authorization("tv", None).await;
    let id = s.new_flow().await;
    for (i, guess) in ["BCDF-BCDF", "nonsense", "", "BCDF-BCDG", "ZZZZ-ZZZZ"]
        .iter()
        .enumerate()
    {
        let (status, b) = s
            .act(
                &id,
                json!({"action": "user_code.verify", "user_code": guess}),
            )
            .await;
        assert_eq!(
            err(status, &b),
            (StatusCode::BAD_REQUEST, "invalid_user_code"),
            "{b}"
        );
        assert_eq!(b["attempts_left"], 4 - i);
    }
    let (_, _, read) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(read["status"], "FAILED");
    // Even the right code is refused now.
    let (status, b) = s
        .act(
            &id,
            json!({"action": "user_code.verify", "user_code": d["user_code"]}),
        )
        .await;
    assert_eq!(err(status, &b), (StatusCode::CONFLICT, "invalid_action"));
}

#[tokio::test]
async fn expired_and_used_codes_are_told_apart() {
    let s = TestServer::start().await;
    s.client(devicegate_store::ClientRecord {
        device_code_ttl_secs: Some(1),
        ..client_record("short", None)
    })
    .await;
    s.public_client("tv", 5).await;
    s.user("ann").await;
    let expired = s.device_authorization("short", None).await;
    let used = s.device_authorization("tv", None).await;
    s.decide(used["user_code"].as_str().unwrap(), "ann", true)
        .await;
    sleep_ms(1100).await;
    let id = s.new_flow().await;
    let (status, b) = s
        .act(
            &id,
            json!({"action": "user_code.verify", "user_code": expired["user_code"]}),
        )
        .await;
    assert_eq!(
        err(status, &b),
        (StatusCode::BAD_REQUEST, "expired_user_code")
    );
    let (status, b) = s
        .act(
            &id,
            json!({"action": "user_code.verify", "user_code": used["user_code"]}),
        )
        .await;
    assert_eq!(err(status, &b), (StatusCode::BAD_REQUEST, "used_user_code"));
}

#[tokio::test]
async fn bad_credentials_are_one_answer_for_unknown_users_and_wrong_passwords() {
    let s = TestServer::start().await;
    s.user("ann").await;
    let id = s.new_flow().await;
    let (s1, b1) = s
        .act(
            &id,
            json!({"action": "sign_on", "username": "ann", "password": "wrong password"}),
        )
        .await;
    let (s2, b2) = s
        .act(
            &id,
            json!({"action": "sign_on", "username": "nobody", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        err(s1, &b1),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    assert_eq!(b1, b2);
    assert_eq!(s1, s2);
}

#[tokio::test]
async fn unknown_flows_404_wrong_actions_409_expired_flows_410() {
    let s = TestServer::start_with(|c| c.flow_ttl = std::time::Duration::from_secs(1)).await;
    let (status, _, b) = s.api("GET", "/api/v1/flows/dgf_nope", None).await;
    assert_eq!(err(status, &b), (StatusCode::NOT_FOUND, "not_found"));
    let (status, b) = s
        .act("dgf_nope", json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(err(status, &b), (StatusCode::NOT_FOUND, "not_found"));
    let id = s.new_flow().await;
    let (status, b) = s
        .act(&id, json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(err(status, &b), (StatusCode::CONFLICT, "invalid_action"));
    let (status, b) = s.act(&id, json!({"action": "dance"})).await;
    assert_eq!(
        err(status, &b),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    sleep_ms(1100).await;
    let (status, _, b) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(err(status, &b), (StatusCode::GONE, "expired_flow"));
    let (status, b) = s
        .act(
            &id,
            json!({"action": "user_code.verify", "user_code": "BCDF-GHJK"}),
        )
        .await;
    assert_eq!(err(status, &b), (StatusCode::GONE, "expired_flow"));
}

#[tokio::test]
async fn only_json_bodies_drive_a_flow() {
    let s = TestServer::start().await;
    let id = s.new_flow().await;
    for ct in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "multipart/form-data; boundary=x",
    ] {
        let res = s
            .http
            .post(s.url(&format!("/api/v1/flows/{id}")))
            .header("content-type", ct)
            .body("action=consent&accept=true")
            .send()
            .await
            .unwrap();
        let (status, _, b) = split(res).await;
        assert_eq!(
            err(status, &b),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        let res = s
            .http
            .post(s.url("/api/v1/flows"))
            .header("content-type", ct)
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}

#[tokio::test]
async fn no_cors_by_default_and_only_listed_origins_when_configured() {
    let s = TestServer::start().await;
    let res = s
        .http
        .post(s.url("/api/v1/flows"))
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let s = TestServer::start_with(|c| c.cors_allowed_origins = vec!["https://ui.example".into()])
        .await;
    let preflight = |origin: &'static str| {
        s.http
            .request(reqwest::Method::OPTIONS, s.url("/api/v1/flows"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://ui.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://ui.example"
    );
    let res = s.http.get(s.url("/api/v1/flows")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn a_code_verified_in_one_flow_cannot_be_taken_or_consented_in_another() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    s.user("ann").await;
    s.user("mallory").await;
    let d = s.device_authorization("tv", None).await;
    let code = d["user_code"].clone();
    let a = s.new_flow().await;
    s.act(
        &a,
        json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
    )
    .await;
    let (_, b) = s
        .act(&a, json!({"action": "user_code.verify", "user_code": code}))
        .await;
    assert_eq!(b["status"], "CONSENT_REQUIRED");
    // Someone else who saw the code enters it in their own flow: refused, and not counted
    // as a wrong code.
    let other = s.new_flow().await;
    s.act(
        &other,
        json!({"action": "sign_on", "username": "mallory", "password": PASSWORD}),
    )
    .await;
    let (status, b) = s
        .act(
            &other,
            json!({"action": "user_code.verify", "user_code": code}),
        )
        .await;
    assert_eq!(
        err(status, &b),
        (StatusCode::BAD_REQUEST, "used_user_code"),
        "{b}"
    );
    let (status, b) = s
        .act(&other, json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(err(status, &b), (StatusCode::CONFLICT, "invalid_action"));
    // The flow that entered it first still decides, for its own user.
    let (status, b) = s
        .act(&a, json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(
        (status, b["result"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{b}"
    );
    let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let ann = s
        .store()
        .get_user_by_username("default", "ann")
        .await
        .unwrap();
    assert_eq!(
        claims(t["access_token"].as_str().unwrap()).1["sub"],
        ann.id.as_str()
    );
}

#[tokio::test]
async fn completed_flows_stay_readable_after_expiry() {
    let s = TestServer::start_with(|c| c.flow_ttl = std::time::Duration::from_secs(1)).await;
    s.public_client("tv", 5).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", None).await;
    let id = s.new_flow().await;
    s.act(
        &id,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    s.act(
        &id,
        json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
    )
    .await;
    let (_, b) = s
        .act(&id, json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(b["result"], "approved");
    sleep_ms(1100).await;
    let (status, _, b) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(
        (status, b["result"].as_str()),
        (StatusCode::OK, Some("approved")),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_codes_all_count() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let id = s.new_flow().await;
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (s, id) = (s.clone(), id.clone());
            tokio::spawn(async move {
                s.act(
                    &id,
                    json!({"action": "user_code.verify", "user_code": "BCDF-BCDF"}),
                )
                .await
            })
        })
        .collect();
    let mut left: Vec<u64> = Vec::new();
    for t in tasks {
        let (status, b) = t.await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        left.push(b["attempts_left"].as_u64().unwrap());
    }
    left.sort();
    assert_eq!(left, vec![0, 1, 2, 3, 4], "each wrong code counted once");
    let (_, _, read) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(read["status"], "FAILED");
}

#[tokio::test]
async fn a_person_signs_on_once_and_resumes_the_session_for_later_devices() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    s.user("ann").await;
    let walk_to_sign_on = |d: Value| {
        let s = &s;
        async move {
            let id = s.new_flow().await;
            let code = d["user_code"].as_str().unwrap();
            let (status, b) = s
                .act(
                    &id,
                    json!({"action": "user_code.verify", "user_code": code}),
                )
                .await;
            assert_eq!(b["status"], "SIGN_ON_REQUIRED", "{status} {b}");
            id
        }
    };
    let first = s.device_authorization("tv", Some("openid")).await;
    let id = walk_to_sign_on(first.clone()).await;
    let (status, b) = s
        .act(
            &id,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let session = b["session"].as_str().unwrap().to_owned();
    assert!(
        session.starts_with("dga_") && session.len() > 40,
        "{session}"
    );
    // Returned once: reading the flow does not show it again.
    let (_, _, read) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert!(read.get("session").is_none(), "{read}");
    s.act(&id, json!({"action": "consent", "accept": true}))
        .await;
    let (_, tokens) = s.poll("tv", first["device_code"].as_str().unwrap()).await;
    let (_, first_id) = claims(tokens["id_token"].as_str().unwrap());

    sleep_ms(1100).await;
    let second = s.device_authorization("tv", Some("openid")).await;
    let id = walk_to_sign_on(second.clone()).await;
    // A made-up or garbled session is refused and changes nothing.
    for bad in ["dgb_made-up", "", "not a session"] {
        let (status, b) = s
            .act(&id, json!({"action": "session.resume", "session": bad}))
            .await;
        assert_eq!(
            err(status, &b),
            (StatusCode::UNAUTHORIZED, "invalid_session")
        );
    }
    let (_, _, read) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(read["status"], "SIGN_ON_REQUIRED");
    let (status, b) = s
        .act(&id, json!({"action": "session.resume", "session": session}))
        .await;
    assert_eq!(
        (status, b["status"].as_str(), b["username"].as_str()),
        (StatusCode::OK, Some("CONSENT_REQUIRED"), Some("ann")),
        "{b}"
    );
    assert!(b.get("session").is_none(), "{b}");
    s.act(&id, json!({"action": "consent", "accept": true}))
        .await;
    let (status, tokens) = s.poll("tv", second["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, second_id) = claims(tokens["id_token"].as_str().unwrap());
    // Same person, and auth_time is still the one sign-on.
    assert_eq!(second_id["sub"], first_id["sub"]);
    assert_eq!(second_id["auth_time"], first_id["auth_time"]);
    assert!(second_id["iat"].as_i64() > first_id["iat"].as_i64());

    // A session resumes only flows that wait for a sign-on.
    let (status, b) = s
        .act(&id, json!({"action": "session.resume", "session": session}))
        .await;
    assert_eq!(err(status, &b), (StatusCode::CONFLICT, "invalid_action"));

    // Ended, it resumes nothing.
    let third = s.device_authorization("tv", Some("openid")).await;
    let id = walk_to_sign_on(third).await;
    let (status, _, _) = s
        .api(
            "POST",
            "/api/v1/sessions/end",
            Some(json!({"session": session})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, b) = s
        .act(&id, json!({"action": "session.resume", "session": session}))
        .await;
    assert_eq!(
        err(status, &b),
        (StatusCode::UNAUTHORIZED, "invalid_session")
    );
    // A new password ends every session of the person.
    let (_, b) = s
        .act(
            &id,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    let kept = b["session"].as_str().unwrap().to_owned();
    let hash = devicegate_core::password::hash_password("a new password, long enough");
    s.store()
        .set_password(devicegate_store::DEFAULT_TENANT, "ann", &hash)
        .await
        .unwrap();
    let fourth = s.device_authorization("tv", Some("openid")).await;
    let id = walk_to_sign_on(fourth).await;
    let (status, b) = s
        .act(&id, json!({"action": "session.resume", "session": kept}))
        .await;
    assert_eq!(
        err(status, &b),
        (StatusCode::UNAUTHORIZED, "invalid_session")
    );
}

#[tokio::test]
async fn rfc8259_4_a_body_that_repeats_a_key_is_refused_and_changes_nothing() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    let d = s.device_authorization("tv", Some("openid")).await;
    let code = d["user_code"].as_str().unwrap();
    let id = s.new_flow().await;
    let raw = |path: String, body: String| {
        s.http
            .post(s.url(&path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Whichever value a reader keeps, it is not this server's to choose.
    for body in [
        format!(
            r#"{{"action": "user_code.verify", "user_code": "BCDF-BCDF", "user_code": "{code}"}}"#
        ),
        format!(r#"{{"action": "consent", "action": "user_code.verify", "user_code": "{code}"}}"#),
    ] {
        let (status, _, b) = split(raw(format!("/api/v1/flows/{id}"), body).await.unwrap()).await;
        assert_eq!(
            err(status, &b),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        assert!(
            b["error_description"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{b}"
        );
    }
    let (_, _, f) = s.api("GET", &format!("/api/v1/flows/{id}"), None).await;
    assert_eq!(f["status"], "USER_CODE_REQUIRED", "{f}");
    for (path, body) in [
        ("/api/v1/flows", r#"{"a": 1, "a": 2}"#),
        (
            "/api/v1/sessions/end",
            r#"{"session": "dga_x", "session": "dga_y"}"#,
        ),
    ] {
        let (status, _, b) = split(raw(path.into(), body.into()).await.unwrap()).await;
        assert_eq!(
            err(status, &b),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{path}"
        );
    }
}

/// A new password stops what the person had under way: a code approved but not yet redeemed
/// is denied (no token, no refresh family), and a flow waiting at consent fails.
#[tokio::test]
async fn a_new_password_denies_unredeemed_approvals_and_fails_open_flows() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let approved = s
        .device_authorization("tv", Some("openid offline_access"))
        .await;
    s.decide(approved["user_code"].as_str().unwrap(), "ann", true)
        .await;
    let waiting = s.device_authorization("tv", Some("openid")).await;
    let flow = s.new_flow().await;
    s.act(
        &flow,
        json!({"action": "user_code.verify", "user_code": waiting["user_code"]}),
    )
    .await;
    let (_, b) = s
        .act(
            &flow,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(b["status"], "CONSENT_REQUIRED", "{b}");

    // The operator sets ann's password from the command line, another process on the file.
    let (ok, _, stderr) = crate::cli::run(
        s.dir.path(),
        &["user", "set-password", "ann", "--password-stdin"],
        Some("a new password, long enough\n"),
    );
    assert!(ok, "{stderr}");

    let (status, b) = s
        .poll("tv", approved["device_code"].as_str().unwrap())
        .await;
    assert_eq!(err(status, &b), (StatusCode::BAD_REQUEST, "access_denied"));
    assert!(b.get("access_token").is_none() && b.get("refresh_token").is_none());
    let (status, b) = s
        .act(&flow, json!({"action": "consent", "accept": true}))
        .await;
    assert_eq!(err(status, &b), (StatusCode::CONFLICT, "invalid_action"));
    let (_, _, b) = s.api("GET", &format!("/api/v1/flows/{flow}"), None).await;
    assert_eq!(b["status"], "FAILED", "{b}");
    let (status, b) = s.poll("tv", waiting["device_code"].as_str().unwrap()).await;
    assert_eq!(
        err(status, &b),
        (StatusCode::BAD_REQUEST, "authorization_pending")
    );
}
