//! Device-code phishing defences (RFC 10027) over real HTTP, with trusted-proxy headers
//! standing in for distant addresses: where a client's devices may ask from, what device
//! grants may get, and whether the approver is near the device.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::{Page, to_consent};
use crate::support::*;

const DEVICE: &str = "198.51.100.7";
const NEIGHBOUR: &str = "198.51.100.99";
const FAR: &str = "203.0.113.50";

/// A server that believes `X-Forwarded-For` from 127.0.0.1, with client `tv` and `ann`.
async fn server() -> TestServer {
    let s =
        TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    s
}

/// An HTTP client (with its own cookies) seen by the server at `ip`.
fn at(ip: &str) -> reqwest::Client {
    at_in(ip, "en")
}

/// …whose browser asks for `lang`.
fn at_in(ip: &str, lang: &str) -> reqwest::Client {
    crate::pages::browser_sending(&[("x-forwarded-for", ip), ("accept-language", lang)])
}

async fn authorize(s: &TestServer, from: &str, scope: Option<&str>) -> (StatusCode, Value) {
    let mut form = vec![("client_id", "tv")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let res = at(from)
        .post(s.url("/oauth2/device_authorization"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(res).await;
    (status, body)
}

async fn act(c: &reqwest::Client, s: &TestServer, flow: &str, body: Value) -> (StatusCode, Value) {
    let res = c
        .post(s.url(&format!("/api/v1/flows/{flow}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(res).await;
    (status, body)
}

/// Walks a flows-API flow from `from` to consent for `d`; returns the flow id and the view.
async fn to_consent_api(s: &TestServer, from: &str, d: &Value) -> (String, Value) {
    to_consent_api_in(s, &at(from), d).await
}

async fn to_consent_api_in(s: &TestServer, c: &reqwest::Client, d: &Value) -> (String, Value) {
    let res = c
        .post(s.url("/api/v1/flows"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (_, _, f) = split(res).await;
    let flow = f["id"].as_str().unwrap().to_owned();
    act(
        c,
        s,
        &flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    let (status, view) = act(
        c,
        s,
        &flow,
        json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    (flow, view)
}

/// The person at `from` approves (`accept`) or denies the flow's device.
async fn consent(s: &TestServer, from: &str, flow: &str, accept: bool) -> (StatusCode, Value) {
    act(
        &at(from),
        s,
        flow,
        json!({"action": "consent", "accept": accept}),
    )
    .await
}

/// A new code of the device, walked to consent through the flows API from `from`.
async fn fresh_consent(s: &TestServer, from: &str) -> (Value, String, Value) {
    let (_, d) = authorize(s, DEVICE, Some("openid")).await;
    let (flow, view) = to_consent_api(s, from, &d).await;
    (d, flow, view)
}

fn cli(s: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = crate::cli::run(s.dir.path(), args, None);
    assert!(ok, "{args:?}: {err}");
    out
}

#[tokio::test]
async fn a_clients_device_policy_limits_where_codes_start_and_what_they_get() {
    let s = server().await;
    cli(
        &s,
        &[
            "client",
            "update",
            "tv",
            "--device-networks",
            "198.51.100.0/24, 2001:db8::/32",
            "--device-refresh-tokens",
            "false",
            "--device-scope",
            "openid profile",
            "--device-access-token-ttl-secs",
            "600",
        ],
    );
    let listed: Value = serde_json::from_str(&cli(&s, &["client", "list", "--json"])).unwrap();
    let tv = &listed[0];
    assert_eq!(
        tv["device_networks"],
        json!(["198.51.100.0/24", "2001:db8::/32"])
    );
    assert_eq!(tv["device_refresh_tokens"], false);
    assert_eq!(tv["device_scope"], "openid profile");
    assert_eq!(tv["device_access_token_ttl_secs"], 600);
    let (ok, _, err) = crate::cli::run(
        s.dir.path(),
        &["client", "update", "tv", "--device-networks", "nope"],
        None,
    );
    assert!(!ok && err.contains("nope"), "{err}");

    // From elsewhere: refused with a clear OAuth error.
    let (status, body) = authorize(&s, FAR, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    // Beyond the ceiling: refused; no scope: the client's scopes within the ceiling.
    let (status, body) = authorize(&s, DEVICE, Some("openid offline_access")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope");
    let (status, d) = authorize(&s, DEVICE, None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    s.decide(d["user_code"].as_str().unwrap(), "ann", true)
        .await;
    let (status, t) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["scope"], "openid profile");
    assert!(t.get("refresh_token").is_none(), "no refresh token: {t}");
    assert_eq!(t["expires_in"], 600);
    let (_, claims) = claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
}

#[tokio::test]
async fn an_approval_from_elsewhere_is_shown_warned_against_or_refused() {
    let s = server().await;
    // off: the facts are reported, the approval goes through, and it is in the trail.
    let (_, flow, view) = fresh_consent(&s, FAR).await;
    assert_eq!(
        view["device"],
        json!({"ip": DEVICE, "relation": "elsewhere", "proximity": "off"})
    );
    let (status, _) = consent(&s, FAR, &flow, true).await;
    assert_eq!(status, StatusCode::OK);
    let (_, d2) = authorize(&s, DEVICE, Some("openid")).await;
    let (_, near) = to_consent_api(&s, NEIGHBOUR, &d2).await;
    assert_eq!(near["device"]["relation"], "same_network");

    // warn: the consent page says where each is, warns, and puts Deny first.
    cli(&s, &["client", "update", "tv", "--proximity", "warn"]);
    let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
    let far = at(FAR);
    let page: Page = to_consent(&s, &far, d["user_code"].as_str().unwrap(), "ann").await;
    assert!(
        page.html
            .contains(&format!("it asked from {DEVICE}, and you are at {FAR}")),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("You are not near this device."),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains(r#"value="deny" class="primary" autofocus"#),
        "{}",
        page.html
    );
    // …and still lets the person approve.
    let (_, flow, _) = fresh_consent(&s, FAR).await;
    let (status, _) = consent(&s, FAR, &flow, true).await;
    assert_eq!(status, StatusCode::OK);

    // same_network: refused from elsewhere (the API and the pages), allowed next door.
    cli(
        &s,
        &["client", "update", "tv", "--proximity", "same_network"],
    );
    let (d, flow, view) = fresh_consent(&s, FAR).await;
    assert_eq!(view["device"]["proximity"], "same_network");
    let (status, body) = consent(&s, FAR, &flow, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "access_denied");
    let (status, view) = consent(&s, FAR, &flow, false).await;
    assert_eq!(status, StatusCode::OK, "denying is always allowed: {view}");
    let (status, body) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("access_denied"))
    );
    let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
    let far = at(FAR);
    let page = to_consent(&s, &far, d["user_code"].as_str().unwrap(), "ann").await;
    assert!(
        page.html
            .contains("can only be approved from the network it is on")
    );
    assert!(!page.html.contains(r#"value="approve""#), "{}", page.html);
    let refused = crate::pages::post(
        &far,
        s.url("/device/consent"),
        &[("csrf", &page.csrf()), ("decision", "approve")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
    let (_, flow, _) = fresh_consent(&s, NEIGHBOUR).await;
    let (status, body) = consent(&s, NEIGHBOUR, &flow, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every approval from elsewhere is in the audit trail as such.
    let mut approved = Vec::new();
    for _ in 0..50 {
        let out = cli(&s, &["audit", "--json", "--event", "approved"]);
        approved = serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        if approved.len() >= 3 {
            break;
        }
        sleep_ms(50).await;
    }
    let far_ones = approved
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .unwrap()
                .ends_with("approver elsewhere")
        })
        .count();
    assert_eq!(far_ones, 2, "{approved:?}");
}

#[tokio::test]
async fn where_the_device_and_the_approver_are_in_words_from_a_geoip_database() {
    let (s, _geo) = geoip_server().await;

    // The consent page, in the words of the person's language, beside the warning.
    for (lang, expected) in [
        (
            "en",
            "This device is in Lisbon, Portugal. You are in Oslo, Norway.",
        ),
        (
            "de",
            "Standort dieses Geräts: Lissabon, Portugal. Ihr Standort: Oslo, Norwegen.",
        ),
        (
            "ja",
            "このデバイスの所在地：ポルトガル、リスボン。あなたの所在地：ノルウェー、オスロ。",
        ),
    ] {
        let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
        let page = to_consent(
            &s,
            &at_in(FAR, lang),
            d["user_code"].as_str().unwrap(),
            "ann",
        )
        .await;
        assert!(page.html.contains(expected), "{lang}: {}", page.html);
        let warning = page.html.find(r#"class="error-box""#).unwrap();
        let buttons = page.html.find(r#"name="decision""#).unwrap();
        let place = page.html.find(expected).unwrap();
        assert!(place < warning && warning < buttons, "{}", page.html);
    }
    // An approver the database does not know about.
    let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
    let page = to_consent(
        &s,
        &at("192.0.2.1"),
        d["user_code"].as_str().unwrap(),
        "ann",
    )
    .await;
    assert!(
        page.html
            .contains("This device is in Lisbon, Portugal. We cannot tell where you are."),
        "{}",
        page.html
    );
    // Next door: the network says enough.
    let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
    let page = to_consent(&s, &at(NEIGHBOUR), d["user_code"].as_str().unwrap(), "ann").await;
    assert!(page.html.contains("same network"), "{}", page.html);
    assert!(!page.html.contains("Lisbon"), "{}", page.html);

    // The flows API: the same facts, names in the asked language, and ISO country codes.
    let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
    let (flow, view) = to_consent_api_in(&s, &at_in(FAR, "pt-BR"), &d).await;
    assert_eq!(
        view["device"],
        json!({
            "ip": DEVICE,
            "relation": "elsewhere",
            "proximity": "warn",
            "location": {"country_code": "PT", "country": "Portugal", "city": "Lisboa"},
            "approver_location": {"country_code": "NO", "country": "Noruega", "city": "Oslo"},
        })
    );
    let (_, d) = authorize(&s, DEVICE, Some("openid")).await;
    let (_, view) = to_consent_api_in(&s, &at("192.0.2.1"), &d).await;
    assert_eq!(view["device"]["location"]["city"], "Lisbon");
    assert!(view["device"].get("approver_location").is_none(), "{view}");

    // The audit trail names both places, for operators, in English.
    let (status, _) = consent(&s, FAR, &flow, true).await;
    assert_eq!(status, StatusCode::OK);
    let out = cli(&s, &["audit", "--json", "--event", "approved"]);
    let events: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        events[0]["detail"],
        format!("device at {DEVICE} in Lisbon, PT; approver in Oslo, NO; approver elsewhere")
    );
}

#[tokio::test]
async fn a_geoip_database_that_cannot_be_read_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.mmdb");
    std::fs::write(&bad, b"not a MaxMind database").unwrap();
    let err = crate::cli::refused_start(dir.path(), &["--geoip-database", bad.to_str().unwrap()]);
    assert!(
        err.contains("GeoIP database") && err.contains("broken.mmdb"),
        "{err}"
    );
}
