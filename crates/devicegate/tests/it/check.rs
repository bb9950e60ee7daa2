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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confidential_client_checks_with_either_way_of_sending_its_secret() {
    let s = TestServer::start().await;
    let secret = s.confidential_client("backend").await;
    s.user("ann").await;
    for method in ["basic", "post"] {
        let report = check(
            &s.base,
            &[
                "--client-id",
                "backend",
                "--client-secret",
                &secret,
                "--auth-method",
                method,
                "--approve",
                "flows-api",
                "--username",
                "ann",
                "--password-stdin",
                "--only",
                "discovery.auth_methods,authorization.,tokens.response,token.invalid_client",
            ],
            Some(&format!("{PASSWORD}\n")),
        )
        .await;
        let all = outcomes(&report);
        let not_passed: Vec<_> = all.iter().filter(|(_, o, _)| o != "PASS").collect();
        assert!(not_passed.is_empty(), "{method}: {not_passed:#?}");
        assert!(all.len() >= 12, "{all:#?}");
        let methods = &all
            .iter()
            .find(|(n, _, _)| n == "discovery.auth_methods")
            .unwrap()
            .2;
        assert!(
            methods.starts_with(&format!("client_secret_{method} worked")),
            "{methods}"
        );
    }
}

/// One way a server can be wrong: the fake server below keeps every rule but this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    Nothing,
    NoMetadata,
    NoDeviceEndpoint,
    NoClientNeeded,
    NoTokenType,
    WrongIssuer,
    DeviceGrantUnlisted,
    AuthMethodUnlisted,
    NoVerificationUri,
    NoInterval,
    CompleteUriWithoutCode,
    DayLongCodes,
    NoStore,
    WrongErrors,
    ScopeIgnored,
    DuplicatesAccepted,
    GetAccepted,
    NoSlowDown,
    IntervalNotIncreased,
    SlowDownForever,
    DenialIgnored,
    NeverExpires,
    AnyClientsCode,
    NoChallenge,
    RedeemedTwice,
    IdTokenForAnother,
    NoRotation,
    ReplacedRefreshWorks,
    FourDigitCodes,
}

#[derive(Debug)]
struct Code {
    client: String,
    user_code: String,
    decision: Option<bool>,
    redeemed: bool,
    expires: std::time::Instant,
    interval: u64,
    last_poll: Option<std::time::Instant>,
}

/// A small RFC 8628 server, in memory, right in every way but `brk`.
struct Fake {
    brk: Break,
    base: String,
    signer: devicegate_core::keys::Signer,
    codes: std::sync::Mutex<std::collections::HashMap<String, Code>>,
    /// Refresh tokens: whether each still works.
    refresh: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

type Reply = axum::response::Response;

impl Fake {
    fn reply(&self, status: u16, body: Value, extra: &[(&str, &str)]) -> Reply {
        use axum::response::IntoResponse;
        let mut res = (
            axum::http::StatusCode::from_u16(status).unwrap(),
            axum::Json(body),
        )
            .into_response();
        if self.brk != Break::NoStore {
            res.headers_mut()
                .insert("cache-control", "no-store".parse().unwrap());
        }
        for (k, v) in extra {
            res.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse::<axum::http::HeaderValue>().unwrap(),
            );
        }
        res
    }

    fn error(&self, status: u16, error: &str) -> Reply {
        let error = match (self.brk, error) {
            (
                Break::WrongErrors,
                "invalid_client" | "authorization_pending" | "unsupported_grant_type",
            ) => "invalid_request",
            _ => error,
        };
        self.reply(status, serde_json::json!({"error": error}), &[])
    }

    fn metadata(&self) -> Value {
        let b = &self.base;
        let mut grants = vec!["refresh_token"];
        if self.brk != Break::DeviceGrantUnlisted {
            grants.push("urn:ietf:params:oauth:grant-type:device_code");
        }
        let methods = match self.brk {
            Break::AuthMethodUnlisted => vec!["client_secret_basic"],
            _ => vec!["none"],
        };
        let mut meta = serde_json::json!({
            "issuer": if self.brk == Break::WrongIssuer { format!("{b}/elsewhere") } else { b.clone() },
            "device_authorization_endpoint": format!("{b}/device"),
            "token_endpoint": format!("{b}/token"),
            "jwks_uri": format!("{b}/jwks"),
            "grant_types_supported": grants,
            "token_endpoint_auth_methods_supported": methods,
        });
        if self.brk == Break::NoDeviceEndpoint {
            meta.as_object_mut()
                .unwrap()
                .remove("device_authorization_endpoint");
        }
        meta
    }

    fn device(&self, form: &[(String, String)]) -> Reply {
        let one = |k: &str| form.iter().filter(|(n, _)| n == k).count();
        if one("client_id") == 0 && self.brk != Break::NoClientNeeded {
            return self.error(400, "invalid_request");
        }
        if self.brk != Break::DuplicatesAccepted && form.iter().any(|(n, _)| one(n) > 1) {
            return self.error(400, "invalid_request");
        }
        let client = form
            .iter()
            .find(|(n, _)| n == "client_id")
            .map_or_else(|| "tv".to_owned(), |(_, v)| v.clone());
        if client != "tv" && client != "other" {
            return self.error(401, "invalid_client");
        }
        let scope = form
            .iter()
            .find(|(n, _)| n == "scope")
            .map_or("", |(_, v)| v);
        let known = ["openid", "profile", "offline_access"];
        if self.brk != Break::ScopeIgnored
            && scope
                .split(' ')
                .any(|s| !s.is_empty() && !known.contains(&s))
        {
            return self.error(400, "invalid_scope");
        }
        let device_code = devicegate_core::secret::random_id();
        let user_code = match self.brk {
            Break::FourDigitCodes => format!("{:04}", rand_below(10_000)),
            _ => devicegate_core::user_code::UserCode::generate().display(),
        };
        let expires_in = match self.brk {
            Break::DayLongCodes => 86_400,
            Break::NeverExpires => 3,
            _ => 60,
        };
        self.codes.lock().unwrap().insert(
            device_code.clone(),
            Code {
                client,
                user_code: user_code.clone(),
                decision: None,
                redeemed: false,
                expires: std::time::Instant::now() + std::time::Duration::from_secs(expires_in),
                interval: 1,
                last_poll: None,
            },
        );
        let b = &self.base;
        let mut body = serde_json::json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": format!("{b}/verify"),
            "verification_uri_complete": match self.brk {
                Break::CompleteUriWithoutCode => format!("{b}/verify?code=nothing"),
                _ => format!("{b}/verify?code={user_code}"),
            },
            "expires_in": expires_in,
            "interval": 1,
        });
        match self.brk {
            Break::NoInterval => body.as_object_mut().unwrap().remove("interval"),
            Break::NoVerificationUri => body.as_object_mut().unwrap().remove("verification_uri"),
            _ => None,
        };
        self.reply(200, body, &[])
    }

    fn token(&self, basic: Option<&str>, form: &[(String, String)]) -> Reply {
        if basic.is_some() {
            // No client here has a secret.
            let challenge: &[(&str, &str)] = match self.brk {
                Break::NoChallenge => &[],
                _ => &[("www-authenticate", "Basic realm=\"fake\"")],
            };
            return self.reply(
                401,
                serde_json::json!({"error": "invalid_client"}),
                challenge,
            );
        }
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let client = get("client_id").unwrap_or("");
        match get("grant_type") {
            Some("urn:ietf:params:oauth:grant-type:device_code") => {}
            Some("refresh_token") => {
                return self.refresh(client, get("refresh_token").unwrap_or(""));
            }
            _ => return self.error(400, "unsupported_grant_type"),
        }
        let mut codes = self.codes.lock().unwrap();
        let Some(code) = codes.get_mut(get("device_code").unwrap_or("")) else {
            return self.error(400, "invalid_grant");
        };
        if code.client != client && self.brk != Break::AnyClientsCode {
            return self.error(400, "invalid_grant");
        }
        if code.redeemed && self.brk != Break::RedeemedTwice {
            return self.error(400, "invalid_grant");
        }
        let now = std::time::Instant::now();
        if now > code.expires && self.brk != Break::NeverExpires {
            return self.error(400, "expired_token");
        }
        let decision = match self.brk {
            Break::DenialIgnored if code.decision == Some(false) => None,
            _ => code.decision,
        };
        match decision {
            Some(false) => return self.error(400, "access_denied"),
            Some(true) => {}
            None => {
                let early = code
                    .last_poll
                    .is_some_and(|at| now.duration_since(at).as_secs_f64() < code.interval as f64);
                code.last_poll = Some(now);
                return match (self.brk, early) {
                    (Break::SlowDownForever, _) if code.interval > 1 => {
                        self.error(400, "slow_down")
                    }
                    (Break::NoSlowDown, _) | (_, false) => self.error(400, "authorization_pending"),
                    (Break::IntervalNotIncreased, true) => self.error(400, "slow_down"),
                    (_, true) => {
                        code.interval += 5;
                        self.error(400, "slow_down")
                    }
                };
            }
        }
        code.redeemed = true;
        let client = code.client.clone();
        drop(codes);
        self.tokens(&client)
    }

    fn tokens(&self, client: &str) -> Reply {
        let now = devicegate_server::now().as_secs();
        let aud = match self.brk {
            Break::IdTokenForAnother => "someone-else",
            _ => client,
        };
        let claims = serde_json::json!({
            "iss": self.base, "aud": aud, "sub": "ann", "iat": now, "exp": now + 300,
        });
        let id_token = devicegate_core::jwt::encode(&self.signer, "JWT", &claims).unwrap();
        let refresh = devicegate_core::secret::random_id();
        self.refresh.lock().unwrap().insert(refresh.clone(), true);
        let mut body = serde_json::json!({
            "access_token": devicegate_core::secret::random_id(),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
            "refresh_token": refresh,
        });
        if self.brk == Break::NoTokenType {
            body.as_object_mut().unwrap().remove("token_type");
        }
        self.reply(200, body, &[])
    }

    fn refresh(&self, client: &str, token: &str) -> Reply {
        let mut live = self.refresh.lock().unwrap();
        if live.get(token) != Some(&true) {
            return self.error(400, "invalid_grant");
        }
        match self.brk {
            Break::NoRotation => {
                let body = serde_json::json!({
                    "access_token": devicegate_core::secret::random_id(),
                    "token_type": "Bearer",
                    "expires_in": 300,
                });
                return self.reply(200, body, &[]);
            }
            Break::ReplacedRefreshWorks => {}
            _ => {
                live.insert(token.to_owned(), false);
            }
        }
        drop(live);
        self.tokens(client)
    }

    fn decide(&self, user_code: &str, approve: bool) {
        let mut codes = self.codes.lock().unwrap();
        if let Some(c) = codes.values_mut().find(|c| c.user_code == user_code) {
            c.decision = Some(approve);
        }
    }
}

fn rand_below(n: u32) -> u32 {
    let b = devicegate_core::secret::random_id();
    b.bytes()
        .fold(0u32, |a, x| a.wrapping_mul(31).wrapping_add(u32::from(x)))
        % n
}

/// The fake server on a free port; its issuer URL.
async fn fake(brk: Break) -> String {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let material =
        devicegate_core::keys::KeyMaterial::generate(devicegate_core::keys::Algorithm::Rs256)
            .unwrap();
    let f = std::sync::Arc::new(Fake {
        brk,
        base: base.clone(),
        signer: devicegate_core::keys::Signer::from_material(&material).unwrap(),
        codes: Default::default(),
        refresh: Default::default(),
    });
    let parse = |body: &[u8]| -> Vec<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    };
    let (f1, f2, f3, f4, f5, f6) = (f.clone(), f.clone(), f.clone(), f.clone(), f.clone(), f);
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move {
                use axum::response::IntoResponse;
                match f1.brk {
                    Break::NoMetadata => axum::http::StatusCode::NOT_FOUND.into_response(),
                    _ => axum::Json(f1.metadata()).into_response(),
                }
            }),
        )
        .route(
            "/jwks",
            get(move || async move { axum::Json(serde_json::json!({"keys": [f2.signer.jwk()]})) }),
        )
        .route(
            "/device",
            post(move |body: axum::body::Bytes| async move { f3.device(&parse(&body)) }).get(
                move |q: axum::extract::RawQuery| async move {
                    use axum::response::IntoResponse;
                    match f6.brk {
                        Break::GetAccepted => f6.device(&parse(q.0.unwrap_or_default().as_bytes())),
                        _ => axum::http::StatusCode::METHOD_NOT_ALLOWED.into_response(),
                    }
                },
            ),
        )
        .route(
            "/token",
            post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    let basic = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    f4.token(basic.as_deref(), &parse(&body))
                },
            ),
        )
        .route(
            "/decide",
            post(move |q: axum::extract::RawQuery| async move {
                let q: Vec<(String, String)> = parse(q.0.unwrap_or_default().as_bytes());
                let get = |k: &str| {
                    q.iter()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                f5.decide(&get("code"), get("decision") == "approve");
                "ok"
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The checker against a fake server, approving through its `/decide` with curl (the
/// `command:` mode, as a team would plug in a script of its own).
async fn check_fake(brk: Break, only: &[&str]) -> Vec<(String, String, String)> {
    let base = fake(brk).await;
    let approve = "command:curl -fsS -X POST \"$DEVICEGATE_CHECK_ISSUER/decide?code=$DEVICEGATE_CHECK_USER_CODE&decision=$DEVICEGATE_CHECK_DECISION\"";
    let only = only.join(",");
    let mut flags = vec![
        "--client-id",
        "tv",
        "--other-client-id",
        "other",
        "--approve",
        approve,
    ];
    if !only.is_empty() {
        flags.extend_from_slice(&["--only", &only]);
    }
    if brk == Break::NeverExpires {
        flags.push("--wait-expiry");
    }
    outcomes(&check(&base, &flags, None).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeping_every_rule_passes_every_check() {
    let all = check_fake(Break::Nothing, &[]).await;
    let not_passed: Vec<_> = all
        .iter()
        .filter(|(n, o, _)| o != "PASS" && n != "token.expired_token")
        .collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert!(all.len() >= 28, "{all:#?}");
}

/// Each rule broken alone: its check reports it (FAIL for a MUST, WARN for a SHOULD).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_rule_is_reported_by_its_check() {
    use Break::*;
    let cases: &[(Break, &str, &str, &[&str])] = &[
        (
            NoMetadata,
            "discovery.metadata",
            "FAIL",
            &["discovery.metadata"],
        ),
        (
            NoDeviceEndpoint,
            "discovery.device_endpoint",
            "FAIL",
            &["discovery.device_endpoint"],
        ),
        (
            NoClientNeeded,
            "authorization.missing_client",
            "FAIL",
            &["authorization.missing_client"],
        ),
        (NoTokenType, "tokens.response", "FAIL", &["tokens.response"]),
        (
            WrongIssuer,
            "discovery.issuer",
            "FAIL",
            &["discovery.issuer"],
        ),
        (
            DeviceGrantUnlisted,
            "discovery.device_grant",
            "WARN",
            &["discovery.device_grant"],
        ),
        (
            AuthMethodUnlisted,
            "discovery.auth_methods",
            "WARN",
            &["discovery.auth_methods"],
        ),
        (
            NoVerificationUri,
            "authorization.response",
            "FAIL",
            &["authorization.response"],
        ),
        (
            NoInterval,
            "authorization.interval",
            "WARN",
            &["authorization.interval"],
        ),
        (
            CompleteUriWithoutCode,
            "authorization.verification_uri_complete",
            "FAIL",
            &["authorization.verification_uri_complete"],
        ),
        (
            DayLongCodes,
            "authorization.expires_in",
            "WARN",
            &["authorization.expires_in"],
        ),
        (
            NoStore,
            "authorization.no_store",
            "WARN",
            &["authorization.no_store"],
        ),
        (
            NoStore,
            "token.no_store",
            "FAIL",
            &["token.no_store", "redemption.once"],
        ),
        (
            WrongErrors,
            "authorization.unknown_client",
            "FAIL",
            &["authorization.unknown_client"],
        ),
        (
            WrongErrors,
            "token.unsupported_grant_type",
            "FAIL",
            &["token.unsupported_grant_type"],
        ),
        (
            WrongErrors,
            "token.authorization_pending",
            "FAIL",
            &["token.authorization_pending"],
        ),
        (
            ScopeIgnored,
            "authorization.bad_scope",
            "WARN",
            &["authorization.bad_scope"],
        ),
        (
            DuplicatesAccepted,
            "authorization.duplicate_parameters",
            "FAIL",
            &["authorization.duplicate_parameters"],
        ),
        (
            GetAccepted,
            "authorization.get",
            "FAIL",
            &["authorization.get"],
        ),
        (NoSlowDown, "token.slow_down", "WARN", &["token.slow_down"]),
        (
            IntervalNotIncreased,
            "token.interval_increased",
            "WARN",
            &["token.interval_increased"],
        ),
        (
            SlowDownForever,
            "token.polling_resumes",
            "WARN",
            &["token.polling_resumes"],
        ),
        (
            DenialIgnored,
            "token.access_denied",
            "FAIL",
            &["token.access_denied"],
        ),
        (
            NeverExpires,
            "token.expired_token",
            "FAIL",
            &["token.expired_token"],
        ),
        (
            AnyClientsCode,
            "token.other_client",
            "FAIL",
            &["token.other_client"],
        ),
        (
            NoChallenge,
            "token.invalid_client",
            "FAIL",
            &["token.invalid_client"],
        ),
        (
            RedeemedTwice,
            "redemption.once",
            "FAIL",
            &["redemption.once"],
        ),
        (
            RedeemedTwice,
            "token.redeemed_twice",
            "FAIL",
            &["token.redeemed_twice"],
        ),
        (
            IdTokenForAnother,
            "tokens.id_token",
            "FAIL",
            &["tokens.id_token"],
        ),
        (
            NoRotation,
            "tokens.refresh_rotation",
            "WARN",
            &["tokens.refresh_rotation"],
        ),
        (
            ReplacedRefreshWorks,
            "tokens.refresh_rotation",
            "FAIL",
            &["tokens.refresh_rotation"],
        ),
        (
            FourDigitCodes,
            "user_code.entropy",
            "WARN",
            &["user_code.entropy"],
        ),
    ];
    let mut runs = tokio::task::JoinSet::new();
    for &(brk, name, expected, only) in cases {
        runs.spawn(async move {
            let found = check_fake(brk, only).await;
            let got = found.iter().find(|(n, _, _)| n == name).cloned();
            (brk, name, expected, got, found)
        });
    }
    let mut wrong = Vec::new();
    while let Some(run) = runs.join_next().await {
        let (brk, name, expected, got, found) = run.unwrap();
        if got.as_ref().map(|(_, o, _)| o.as_str()) != Some(expected) {
            wrong.push(format!(
                "{brk:?}: {name} should be {expected}; found {found:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// node oidc-provider, approved through its own pages by the fixture's `approve.js`: the
/// gaps it is known for show, and the rest passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_providers_known_gaps_show_and_the_rest_passes() {
    let op = crate::oidc_provider::OidcProvider::start_with(&[]);
    let script = crate::oidc_provider::fixture_dir().join("approve.js");
    let approve = format!("command:node {}", script.display());
    let report = check(
        &op.issuer,
        &[
            "--client-id",
            "cli",
            "--other-client-id",
            "cli2",
            "--scope",
            "openid offline_access",
            "--approve",
            &approve,
        ],
        None,
    )
    .await;
    let all = outcomes(&report);
    let of = |name: &str| {
        all.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, o, d)| (o.clone(), d.clone()))
            .unwrap_or_else(|| panic!("no {name} in {all:#?}"))
    };
    // The gaps: no interval in the device authorization response, no slow_down (so nothing
    // to follow it), unknown scopes accepted, and a GET answered with a server error.
    for (name, expected) in [
        ("authorization.interval", "WARN"),
        ("token.slow_down", "WARN"),
        ("token.interval_increased", "SKIP"),
        ("token.polling_resumes", "SKIP"),
        ("authorization.bad_scope", "WARN"),
        ("authorization.get", "WARN"),
        ("token.expired_token", "SKIP"),
    ] {
        assert_eq!(of(name).0, expected, "{name}: {all:#?}");
    }
    // The rest passes.
    let gaps = [
        "authorization.interval",
        "token.slow_down",
        "token.interval_increased",
        "token.polling_resumes",
        "authorization.bad_scope",
        "authorization.get",
        "token.expired_token",
    ];
    let others: Vec<_> = all
        .iter()
        .filter(|(n, o, _)| !gaps.contains(&n.as_str()) && o != "PASS")
        .collect();
    assert!(others.is_empty(), "{others:#?}");
    assert_eq!(report["summary"]["fail"], 0);
}

/// `--approve manual`: the checker tells the person what to do on standard error and waits
/// for Enter; here the "person" reads the code there and denies it at the fake server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approves_or_denies_when_asked() {
    use std::io::{BufRead, Write};
    let base = fake(Break::Nothing).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_devicegate"))
        .args(["check", &base, "--client-id", "tv", "--approve", "manual"])
        .args(["--only", "token.access_denied", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let asked = tokio::task::spawn_blocking(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with(">>> Open"))
            .unwrap()
    })
    .await
    .unwrap();
    assert!(asked.contains("DENY it"), "{asked}");
    let code = asked
        .split("enter code ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    reqwest::Client::new()
        .post(format!("{base}/decide?code={code}&decision=deny"))
        .send()
        .await
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcomes(&report),
        vec![(
            "token.access_denied".to_owned(),
            "PASS".to_owned(),
            "HTTP 400 access_denied (expected access_denied with [400])".to_owned()
        )]
    );
}
