//! The device side: `devicegate-client` and `devicegate login` against devicegate over real
//! HTTP, and the client's RFC 8628 §3.5 schedule against a server that says `slow_down`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devicegate_client::{AuthorizationRequest, Client, ClientAuth, Error, Secret};
use serde_json::{Value, json};

use crate::support::*;

const SCOPE: &str = "openid profile offline_access";

async fn server() -> (Arc<TestServer>, String) {
    let s = TestServer::start().await;
    s.public_client("cli", 1).await;
    let sub = s.user("ann").await;
    (Arc::new(s), sub)
}

/// Approves (or denies) `user_code` as `ann` once the device has started polling.
fn decide_soon(s: &Arc<TestServer>, user_code: &str, accept: bool) -> tokio::task::JoinHandle<()> {
    let (s, code) = (s.clone(), user_code.to_owned());
    tokio::spawn(async move {
        sleep_ms(300).await;
        s.decide(&code, "ann", accept).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_discovers_logs_in_and_refreshes_against_devicegate() {
    let (s, sub) = server().await;
    let client = Client::discover(&s.base, "cli").await.unwrap();
    assert_eq!(client.endpoints().token, s.url("/oauth2/token"));
    assert_eq!(
        client.endpoints().revocation.as_deref(),
        Some(s.url("/oauth2/revoke").as_str())
    );
    let a = client
        .authorize(&AuthorizationRequest::new().scope(SCOPE))
        .await
        .unwrap();
    assert_eq!(a.interval(), Duration::from_secs(1));
    assert_eq!(a.verification_uri(), s.url("/device"));
    let approver = decide_soon(&s, a.user_code(), true);
    let tokens = client.poll(&a).await.unwrap();
    approver.await.unwrap();

    let (_, id) = claims(tokens.id_token.as_ref().unwrap().expose());
    assert_eq!(
        (id["sub"].as_str(), id["aud"].as_str()),
        (Some(&*sub), Some("cli"))
    );
    let mut granted: Vec<&str> = tokens.scope.as_deref().unwrap().split(' ').collect();
    granted.sort_unstable();
    assert_eq!(granted, ["offline_access", "openid", "profile"]);
    let refresh = tokens.refresh_token.clone().unwrap();

    let renewed = client.refresh(&refresh).await.unwrap();
    assert_ne!(renewed.refresh_token.as_ref(), Some(&refresh), "rotated");
    assert_ne!(renewed.access_token, tokens.access_token);
    // The rotated-away token is refused with the server's own code.
    let e = client.refresh(&refresh).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some("invalid_grant"), "{e}");
    // RFC 7009 through the client: the renewed refresh token is revoked with its family.
    let renewed_refresh = renewed.refresh_token.clone().unwrap();
    client
        .revoke(
            &renewed_refresh,
            devicegate_client::TokenTypeHint::RefreshToken,
        )
        .await
        .unwrap();
    let e = client.refresh(&renewed_refresh).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some("invalid_grant"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8628_3_5_denial_is_access_denied() {
    let (s, _) = server().await;
    let client = Client::discover(&s.base, "cli").await.unwrap();
    let a = client
        .authorize(&AuthorizationRequest::new())
        .await
        .unwrap();
    let denier = decide_soon(&s, a.user_code(), false);
    let e = client.poll(&a).await.unwrap_err();
    denier.await.unwrap();
    assert!(matches!(e, Error::AccessDenied), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8628_3_5_polling_stops_when_the_code_expires() {
    let s = TestServer::start().await;
    s.client(devicegate_store::ClientRecord {
        device_code_ttl_secs: Some(3),
        poll_interval_secs: Some(1),
        ..client_record("short", None)
    })
    .await;
    let client = Client::discover(&s.base, "short").await.unwrap();
    let a = client
        .authorize(&AuthorizationRequest::new())
        .await
        .unwrap();
    let started = Instant::now();
    let e = client.poll(&a).await.unwrap_err();
    assert!(matches!(e, Error::Expired), "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "stops at expires_in, not later: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_clients_authenticate_with_basic_or_post() {
    let s = TestServer::start().await;
    let secret = s.confidential_client("svc").await;
    let endpoints = devicegate_client::Endpoints::discover(&reqwest::Client::new(), &s.base)
        .await
        .unwrap();
    for auth in [
        ClientAuth::SecretBasic(Secret::new(&*secret)),
        ClientAuth::SecretPost(Secret::new(&*secret)),
    ] {
        let client = Client::new(endpoints.clone(), "svc").with_auth(auth.clone());
        client
            .authorize(&AuthorizationRequest::new().scope("openid"))
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e}"));
    }
    let wrong = Client::new(endpoints, "svc").with_auth(ClientAuth::SecretBasic("dgs_x".into()));
    let e = wrong
        .authorize(&AuthorizationRequest::new())
        .await
        .unwrap_err();
    assert_eq!(e.oauth_code(), Some("invalid_client"), "{e}");
}

/// A server that answers `slow_down` (without naming an interval), then
/// `authorization_pending`, then tokens, and records when each poll came. It publishes only
/// RFC 8414 metadata, so discovery must fall back to it.
async fn slow_down_server() -> (String, Arc<Mutex<Vec<Instant>>>) {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let polls = Arc::new(Mutex::new(Vec::new()));
    let meta = json!({
        "issuer": base,
        "token_endpoint": format!("{base}/token"),
        "device_authorization_endpoint": format!("{base}/device_authorization"),
    });
    let device = json!({
        "device_code": "dc", "user_code": "WDJB-MJHT",
        "verification_uri": format!("{base}/device"), "expires_in": 120, "interval": 1,
    });
    let p = polls.clone();
    let app = axum::Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { axum::Json(meta) }),
        )
        .route(
            "/device_authorization",
            post(move || async move { axum::Json(device) }),
        )
        .route(
            "/token",
            post(move || {
                let p = p.clone();
                async move {
                    let n = {
                        let mut p = p.lock().unwrap();
                        p.push(Instant::now());
                        p.len()
                    };
                    let (status, body) = match n {
                        1 => (400, json!({"error": "slow_down"})),
                        2 => (400, json!({"error": "authorization_pending"})),
                        _ => (200, json!({"access_token": "at", "token_type": "Bearer"})),
                    };
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(body),
                    )
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, polls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8628_3_5_slow_down_adds_5_seconds_and_keeps_them_over_http() {
    let (base, polls) = slow_down_server().await;
    let client = Client::discover(&base, "cli").await.unwrap();
    let a = client
        .authorize(&AuthorizationRequest::new())
        .await
        .unwrap();
    let start = Instant::now();
    let tokens = client.poll(&a).await.unwrap();
    assert_eq!(tokens.access_token.expose(), "at");
    assert_eq!(
        (tokens.expires_in, tokens.scope),
        (None, None),
        "lenient shape"
    );
    let polls = polls.lock().unwrap().clone();
    assert_eq!(polls.len(), 3);
    let gaps = [polls[0] - start, polls[1] - polls[0], polls[2] - polls[1]];
    let secs = |s| Duration::from_secs(s);
    assert!(gaps[0] >= secs(1) && gaps[0] < secs(2), "{gaps:?}");
    // 1 s + 5 s after slow_down, and still 6 s after the next, pending, answer.
    assert!(gaps[1] >= secs(6) && gaps[1] < secs(7), "{gaps:?}");
    assert!(gaps[2] >= secs(6) && gaps[2] < secs(7), "{gaps:?}");
    // This server has no revocation endpoint, and the client says so rather than guessing one.
    let e = client
        .revoke(
            &tokens.access_token,
            devicegate_client::TokenTypeHint::AccessToken,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Unsupported("revocation_endpoint")),
        "{e}"
    );
}

// ---- the `devicegate login` command, as a subprocess ----

fn devicegate(token_file: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_devicegate"));
    c.args(args)
        .env("DEVICEGATE_TOKEN_FILE", token_file)
        .env("DEVICEGATE_LOG", "warn")
        .env_remove("DEVICEGATE_ISSUER")
        .env_remove("DEVICEGATE_CONFIG")
        .env_remove("DEVICEGATE_CLIENT_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs a short command to its end: (exit code, stdout, stderr).
async fn run(token_file: &Path, args: &[&str]) -> (i32, String, String) {
    let mut c = devicegate(token_file, args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `devicegate login`, reads its stdout until `find` picks something out of a line,
/// and returns that, the lines so far, and a task that yields (exit code, rest of stdout).
async fn start_login(
    token_file: &Path,
    args: &[&str],
    find: fn(&str) -> Option<String>,
) -> (
    String,
    String,
    tokio::task::JoinHandle<(i32, String, String)>,
) {
    let mut child: Child = devicegate(token_file, args).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let (mut seen, mut tx) = (String::new(), Some(tx));
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 {
            seen.push_str(&line);
            if let Some(found) = find(&line)
                && let Some(tx) = tx.take()
            {
                tx.send((found, seen.clone())).unwrap();
            }
            line.clear();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            seen,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });
    let (found, seen) = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("the login prints its code")
        .expect("the login printed no code");
    (found, seen, task)
}

fn json_user_code(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["user_code"].as_str().map(str::to_owned)
}

/// The plain code line of the human screen: `    BCDF-GHJK`.
fn screen_user_code(line: &str) -> Option<String> {
    let t = line.trim();
    let ok = t.len() == 9
        && t.chars().enumerate().all(|(i, c)| {
            if i == 4 {
                c == '-'
            } else {
                c.is_ascii_uppercase()
            }
        });
    ok.then(|| t.to_owned())
}

fn stored(token_file: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(token_file).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_json_then_token_show_refresh_and_logout() {
    let (s, sub) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config").join("tokens.json");
    let args = [
        "login",
        "--issuer",
        &s.base,
        "--client-id",
        "cli",
        "--scope",
        SCOPE,
        "--json",
    ];
    let (code, first, login) = start_login(&file, &args, json_user_code).await;
    let pending: Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["verification_uri"], s.url("/device"));
    assert_eq!(
        pending["verification_uri_complete"],
        s.url(&format!("/device?user_code={code}"))
    );
    s.decide(&code, "ann", true).await;
    let (exit, out, err) = login.await.unwrap();
    assert_eq!(exit, 0, "{out}{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "JSON lines only: {out}");
    let done = &lines[1];
    assert_eq!(done["status"], "ok");
    assert_eq!(
        (done["subject"].as_str(), done["username"].as_str()),
        (Some(&*sub), Some("ann"))
    );
    assert_eq!(done["has_refresh_token"], true);

    // Stored for this issuer and client, readable by the user alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let entries = stored(&file)["entries"].clone();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(
        (
            entries[0]["issuer"].as_str(),
            entries[0]["client_id"].as_str()
        ),
        (Some(&*s.base), Some("cli"))
    );
    let first_refresh = entries[0]["tokens"]["refresh_token"].clone();

    let (exit, out, err) = run(&file, &["token", "show", "--id-token", "--json"]).await;
    assert_eq!(exit, 0, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["id_token_claims"]["sub"].as_str(), Some(&*sub));
    assert!(shown["expires_at"].as_u64().unwrap() > 0);
    assert!(
        !out.contains("\"access_token\""),
        "show never prints tokens: {out}"
    );
    let (exit, out, _) = run(&file, &["token", "show"]).await;
    assert_eq!(exit, 0);
    assert!(
        out.contains("signed in as   ann (") && out.contains("expires in"),
        "{out}"
    );

    let (exit, out, err) = run(&file, &["token", "refresh", "--json"]).await;
    assert_eq!(exit, 0, "{out}{err}");
    assert_ne!(
        stored(&file)["entries"][0]["tokens"]["refresh_token"],
        first_refresh
    );

    let kept = stored(&file)["entries"][0]["tokens"].clone();
    let (exit, out, err) = run(&file, &["logout", "--json", "--issuer", &s.base]).await;
    assert_eq!(exit, 0, "{out}{err}");
    let gone: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(gone["revoked"], true, "logout revokes on the server");
    // The server refuses what the file held: the refresh token, and its access token.
    let (status, _, body) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "cli"),
                ("refresh_token", kept["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
    let res = s
        .http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(kept["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(stored(&file)["entries"], json!([]));
    let (exit, _, err) = run(&file, &["token", "show"]).await;
    assert!(exit == 1 && err.contains("not logged in"), "{exit} {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_shows_the_screen_and_exits_3_when_denied() {
    let (s, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let args = ["login", "--issuer", &s.base, "--client-id", "cli"];
    let (code, _, login) = start_login(&file, &args, screen_user_code).await;
    s.decide(&code, "ann", false).await;
    let (exit, out, err) = login.await.unwrap();
    assert_eq!(exit, 3, "{out}{err}");
    assert!(
        out.contains(&format!("    {}\n", s.url("/device"))),
        "{out}"
    );
    // The code in block letters, and a QR code made of half blocks.
    assert!(
        out.lines().filter(|l| l.contains('█')).count() > 15,
        "{out}"
    );
    assert!(out.contains('▀') || out.contains('▄'), "{out}");
    assert!(out.contains("The sign-in was denied."), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no colours or countdown when not a terminal: {out:?}"
    );
    assert!(!file.exists(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_exits_4_on_expiry_and_2_without_an_issuer() {
    let s = TestServer::start().await;
    s.client(devicegate_store::ClientRecord {
        device_code_ttl_secs: Some(2),
        poll_interval_secs: Some(1),
        ..client_record("short", None)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (exit, out, err) = run(
        &file,
        &[
            "login",
            "--issuer",
            &s.base,
            "--client-id",
            "short",
            "--json",
        ],
    )
    .await;
    assert_eq!(exit, 4, "{out}{err}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["status"].as_str(), last["error"].as_str()),
        (Some("expired"), Some("expired_token"))
    );

    let (exit, _, err) = run(&file, &["login", "--client-id", "short"]).await;
    assert_eq!(exit, 2, "{err}");
    assert!(err.contains("--issuer"), "{err}");
}
