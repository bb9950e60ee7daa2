//! `GET /metrics`: the request counters and the device-flow funnel move with a real flow.
//!
//! Each server counts into a registry of its own, so the counts are exactly what this test
//! caused.

use std::collections::HashMap;

use devicegate_store::ClientRecord;
use reqwest::StatusCode;

use crate::support::*;

async fn scrape(s: &TestServer) -> (String, HashMap<String, f64>) {
    let res = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    let values = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    (text, values)
}

fn grew(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests_and_the_device_flow_funnel() {
    let s = TestServer::start().await;
    s.public_client("tv", 5).await;
    s.client(ClientRecord {
        device_code_ttl_secs: Some(1),
        ..client_record("short", None)
    })
    .await;
    s.user("ann").await;
    let (_, before) = scrape(&s).await;

    let approved = s.device_authorization("tv", Some("openid")).await;
    let denied = s.device_authorization("tv", Some("openid")).await;
    let code = |d: &serde_json::Value, k: &str| d[k].as_str().unwrap().to_owned();
    // RFC 8628 §3.5: the first poll is pending, one straight after it is told to slow down.
    let (_, b) = s.poll("tv", &code(&denied, "device_code")).await;
    assert_eq!(b["error"], "authorization_pending");
    let (_, b) = s.poll("tv", &code(&denied, "device_code")).await;
    assert_eq!(b["error"], "slow_down");
    s.decide(&code(&approved, "user_code"), "ann", true).await;
    s.decide(&code(&denied, "user_code"), "ann", false).await;
    let (status, b) = s.poll("tv", &code(&approved, "device_code")).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let short = s.device_authorization("short", Some("openid")).await;
    sleep_ms(1100).await;
    let (_, b) = s.poll("short", &code(&short, "device_code")).await;
    assert_eq!(b["error"], "expired_token");

    let (text, after) = scrape(&s).await;
    for (series, expected) in [
        ("devicegate_device_codes_issued_total", 3.0),
        ("devicegate_codes_verified_total", 2.0),
        ("devicegate_codes_approved_total", 1.0),
        ("devicegate_codes_denied_total", 1.0),
        ("devicegate_slow_down_answers_total", 1.0),
        ("devicegate_expired_token_answers_total", 1.0),
        ("devicegate_code_to_approval_seconds_count", 1.0),
        (
            r#"devicegate_http_requests_total{route="/oauth2/device_authorization",status="2xx"}"#,
            3.0,
        ),
        (
            r#"devicegate_http_requests_total{route="/oauth2/token",status="4xx"}"#,
            3.0,
        ),
        (
            r#"devicegate_http_requests_total{route="/oauth2/token",status="2xx"}"#,
            1.0,
        ),
        (
            r#"devicegate_http_request_duration_seconds_count{route="/oauth2/token"}"#,
            4.0,
        ),
    ] {
        assert_eq!(
            grew(&before, &after, series),
            expected,
            "{series} grew by {} (expected {expected})\n{text}",
            grew(&before, &after, series)
        );
    }
    // Routes are labelled by pattern: flow ids, which are capabilities, never show.
    assert!(text.contains(r#"route="/api/v1/flows/{id}""#), "{text}");
    assert!(!text.contains("dgf_"), "{text}");
}
