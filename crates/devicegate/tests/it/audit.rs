//! The audit trail over real HTTP and the real binary: a whole flow's events in order, with
//! who, which client and from where, and never a secret; filters; administrative changes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// The trail as `devicegate audit --json … ` prints it.
fn trail(s: &TestServer, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(filters);
    let (ok, out, err) = crate::cli::run(s.dir.path(), &args, None);
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn events(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|e| e["event"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_whole_flow_is_in_the_audit_trail_in_order_and_without_a_secret() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    let ann = s.user("ann").await;
    let (ok, _, err) = crate::cli::run(
        s.dir.path(),
        &["client", "update", "tv", "--name", "Living room TV"],
        None,
    );
    assert!(ok, "{err}");

    let d = s
        .device_authorization("tv", Some("openid offline_access"))
        .await;
    let flow = s.new_flow().await;
    let (status, _) = s
        .act(
            &flow,
            json!({"action": "user_code.verify", "user_code": "BCDF-GHJK"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    s.act(
        &flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    let (status, _) = s
        .act(
            &flow,
            json!({"action": "sign_on", "username": "ann", "password": "wrong password"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, on) = s
        .act(
            &flow,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    s.act(&flow, json!({"action": "consent", "accept": true}))
        .await;
    let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (status, _, _) = s
        .form(
            "/oauth2/revoke",
            &[
                ("client_id", "tv"),
                ("token", t["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The server writes events in the background: wait for the last one.
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = trail(&s, &[]);
        if events(&rows).contains(&"revoked") {
            break;
        }
        sleep_ms(50).await;
    }
    assert_eq!(
        events(&rows),
        [
            "admin",
            "code_issued",
            "wrong_code",
            "sign_in_failed",
            "sign_in",
            "approved",
            "redeemed",
            "revoked"
        ]
    );
    let sid = claims(t["access_token"].as_str().unwrap()).1["sid"].clone();
    let find = |e: &str| rows.iter().find(|r| r["event"] == e).unwrap().clone();
    assert_eq!(find("admin")["actor"], "admin");
    assert!(
        find("admin")["detail"]
            .as_str()
            .unwrap()
            .contains("client update tv --name=Living room TV")
    );
    let issued = find("code_issued");
    assert_eq!(
        (&issued["client_id"], &issued["ip"]),
        (&json!("tv"), &json!("127.0.0.1"))
    );
    assert_eq!(issued["grant_id"], sid);
    let approved = find("approved");
    assert_eq!(approved["actor"], ann.as_str());
    assert_eq!(approved["ip"], "127.0.0.1");
    assert_eq!(approved["grant_id"], sid);
    assert_eq!(find("sign_in")["detail"], "method=password");
    assert_eq!(find("redeemed")["family_id"], sid);
    assert_eq!(find("revoked")["family_id"], sid);

    // Never a secret: no code, token, flow id, session or password anywhere in it.
    let text = serde_json::to_string(&rows).unwrap();
    for secret in [
        d["device_code"].as_str().unwrap(),
        d["user_code"].as_str().unwrap(),
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
        &flow,
        on["session"].as_str().unwrap(),
        PASSWORD,
        "wrong password",
        "dgd_",
        "dgr_",
        "dgf_",
        "dga_",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the trail: {text}");
    }

    // Filters.
    assert_eq!(events(&trail(&s, &["--event", "approved"])), ["approved"]);
    assert_eq!(
        events(&trail(&s, &["--user", "ann"])),
        ["sign_in", "approved"]
    );
    assert_eq!(events(&trail(&s, &["--user", "admin"])), ["admin"]);
    assert_eq!(
        events(&trail(&s, &["--client", "tv", "--since", "1h"])),
        ["code_issued", "approved", "redeemed", "revoked"]
    );
    assert_eq!(trail(&s, &["--limit", "2"]).len(), 2);
    let (ok, _, err) = crate::cli::run(s.dir.path(), &["audit", "--since", "soon"], None);
    assert!(!ok && err.contains("--since"), "{err}");
}
