//! `devicegate check`, the conformance checker: every check passes against devicegate; the
//! known gaps show against node oidc-provider; and against small servers written here, each
//! broken in one way, the check for that rule fails.

use devicegate_store::ClientRecord;
use serde_json::Value;

use crate::support::*;

/// `devicegate check ISSUER …` as a user runs it; its JSON report.
pub(crate) async fn check(issuer: &str, flags: &[&str], stdin: Option<&str>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["check", issuer, "--json"];
    args.extend_from_slice(flags);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.map(str::to_owned);
    let (_, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::run(dir.path(), &args, stdin.as_deref())
    })
    .await
    .unwrap();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

/// The outcome of each check by name.
pub(crate) fn outcomes(report: &Value) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["outcome"].as_str().unwrap().to_owned(),
                c["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn device_client(id: &str) -> ClientRecord {
    ClientRecord {
        poll_interval_secs: Some(1),
        device_code_ttl_secs: Some(60),
        ..client_record(id, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_devicegate() {
    let s = TestServer::start().await;
    s.client(device_client("tv")).await;
    s.client(device_client("other")).await;
    s.user("ann").await;
    let report = check(
        &s.base,
        &[
            "--client-id",
            "tv",
            "--scope",
            "openid profile offline_access",
            "--approve",
            "flows-api",
            "--username",
            "ann",
            "--password-stdin",
            "--other-client-id",
            "other",
            "--wait-expiry",
        ],
        Some(&format!("{PASSWORD}\n")),
    )
    .await;
    let all = outcomes(&report);
    let not_passed: Vec<_> = all.iter().filter(|(_, o, _)| o != "PASS").collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert!(all.len() >= 28, "{all:#?}");
    assert_eq!(report["summary"]["fail"], 0);
}
