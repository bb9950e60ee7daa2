//! `devicegate check ISSUER`: a conformance checker for any RFC 8628 server.
//!
//! It walks a server's discovery document, device authorizations, polling and redemption as
//! a client would, and as a careless or hostile one would, and says for each rule whether
//! the server keeps it: PASS, WARN (a SHOULD not met), FAIL (a MUST broken) or SKIP (why).
//! The requests are its own, raw, so that it sees statuses and headers; the typed parts
//! (authorizations, refreshes) go through `devicegate-client`. Every check is listed with
//! its clause in `docs/conformance.md`.

mod approve;
mod report;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use devicegate_client::{AuthorizationRequest, Client, ClientAuth, Endpoints, Secret};
use devicegate_proto::DeviceAuthorizationResponse;
use reqwest::header::HeaderMap;
use serde_json::Value;

pub use approve::{Approver, Decision};
pub use report::{Finding, Outcome, Report};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The server's issuer URL (its discovery document is under it)
    pub issuer: String,
    /// A client registered for the device grant
    #[arg(long)]
    pub client_id: String,
    /// Its secret, for a confidential client
    #[arg(long, env = "DEVICEGATE_CHECK_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// How to send the secret: HTTP Basic or in the form body
    #[arg(long, value_parser = ["basic", "post"], default_value = "basic")]
    pub auth_method: String,
    /// Scopes to ask for
    #[arg(long, default_value = "openid")]
    pub scope: String,
    /// How codes get approved: flows-api (devicegate's, with --username and
    /// --password-stdin), command:"…" (run with DEVICEGATE_CHECK_USER_CODE,
    /// DEVICEGATE_CHECK_VERIFICATION_URI[_COMPLETE] and DEVICEGATE_CHECK_DECISION=approve|deny
    /// in its environment), or manual (a person, told what to do)
    #[arg(long, default_value = "manual")]
    pub approve: String,
    /// The person who approves, for --approve flows-api
    #[arg(long)]
    pub username: Option<String>,
    /// Read that person's password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// A second client registered for the device grant: its polls of the first client's
    /// codes must be refused
    #[arg(long)]
    pub other_client_id: Option<String>,
    /// That second client's secret, sent the same way
    #[arg(long)]
    pub other_client_secret: Option<String>,
    /// Wait for a code to expire, to see `expired_token` (as long as the server's code
    /// lifetime)
    #[arg(long)]
    pub wait_expiry: bool,
    /// Device authorizations to sample for the user codes' alphabet and entropy
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    /// Only these checks (comma-separated names, or prefixes ending in `.` such as `token.`)
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// A machine-readable report on standard output instead of lines
    #[arg(long)]
    pub json: bool,
}

/// Runs the checks; exit status 1 when any failed.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let password = match args.password_stdin {
        true => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            Some(line.trim_end_matches(['\r', '\n']).to_owned())
        }
        false => None,
    };
    let approver = Approver::parse(&args.approve, args.username.clone(), password)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(check(&args, approver));
    if args.json {
        let out = serde_json::json!({
            "issuer": args.issuer,
            "checks": report.findings,
            "summary": report.summary(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", report.summary_line());
    }
    Ok(match report.summary().fail {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Every check against `args.issuer`.
pub async fn check(args: &CheckArgs, approver: Approver) -> Report {
    let mut r = Report::new(args.only.clone(), !args.json);
    let issuer = args.issuer.trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a TLS backend is built in");
    let Some(t) = discovery(&mut r, &http, &issuer, args).await else {
        return r;
    };
    let t = Arc::new(t);
    let mut seen_codes = Vec::new();
    // A code to leave until it expires, asked for first so that its wait runs beside the
    // other checks.
    let to_expire = match args.wait_expiry {
        true => t
            .authorize_quietly(&args.scope)
            .await
            .map(|d| (d, tokio::time::Instant::now())),
        false => None,
    };

    // The first code: its response, then the polls before and after its approval.
    let Some(main) = authorization(&mut r, &t, &args.scope).await else {
        return r;
    };
    seen_codes.push(main.user_code.clone());
    bad_authorizations(&mut r, &t).await;
    polling_before_approval(&mut r, &t, &main).await;
    redemption(&mut r, &t, &main, &approver, args).await;

    // A second code: polled by another client, then denied.
    if r.wants_any(&["token.other_client", "token.access_denied"]) {
        if let Some(second) = t.authorize_quietly(&args.scope).await {
            seen_codes.push(second.user_code.clone());
            other_client(&mut r, &t, &second, args).await;
            denial(&mut r, &t, &second, &approver).await;
        } else {
            r.fail(
                "token.access_denied",
                "RFC 8628 §3.5",
                "a second device authorization was refused",
            );
        }
    }
    bad_token_requests(&mut r, &t).await;
    match to_expire {
        Some((third, issued)) => {
            seen_codes.push(third.user_code.clone());
            expiry(&mut r, &t, &third, issued).await;
        }
        None if args.wait_expiry => r.fail(
            "token.expired_token",
            "RFC 8628 §3.5",
            "a device authorization to leave until it expired was refused",
        ),
        None => r.skip(
            "token.expired_token",
            "RFC 8628 §3.5",
            "not asked for: --wait-expiry waits a code's whole lifetime",
        ),
    }
    user_codes(&mut r, &t, &args.scope, seen_codes, args.samples).await;
    no_store(&mut r, &t);
    r
}

/// How a client sends its credentials.
#[derive(Debug, Clone)]
struct Creds {
    id: String,
    secret: Option<String>,
    basic: bool,
}

impl Creds {
    fn client_auth(&self) -> ClientAuth {
        match (&self.secret, self.basic) {
            (None, _) => ClientAuth::None,
            (Some(s), true) => ClientAuth::SecretBasic(Secret::new(s.clone())),
            (Some(s), false) => ClientAuth::SecretPost(Secret::new(s.clone())),
        }
    }

    /// The method's name in RFC 8414's `token_endpoint_auth_methods_supported`.
    fn method(&self) -> &'static str {
        match (&self.secret, self.basic) {
            (None, _) => "none",
            (Some(_), true) => "client_secret_basic",
            (Some(_), false) => "client_secret_post",
        }
    }
}

/// An answer as the checker sees it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    async fn read(res: reqwest::Response) -> Answer {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }

    fn no_store(&self) -> bool {
        self.headers
            .get_all("cache-control")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
    }

    /// "HTTP 400 authorization_pending".
    fn brief(&self) -> String {
        match self.error() {
            Some(e) => format!("HTTP {} {e}", self.status),
            None if self.body.get("access_token").is_some() => {
                format!("HTTP {} with tokens", self.status)
            }
            None => format!("HTTP {}", self.status),
        }
    }
}

/// The server under test.
#[derive(Debug)]
struct Target {
    http: reqwest::Client,
    issuer: String,
    meta: Value,
    device_authorization: String,
    token: String,
    creds: Creds,
    client: Client,
    /// Every token-endpoint answer: (what was asked, status, had `no-store`).
    token_answers: std::sync::Mutex<Vec<(String, u16, bool)>>,
}

impl Target {
    /// A form POST with `creds` (none: the form as given).
    async fn post(
        &self,
        url: &str,
        creds: Option<&Creds>,
        mut form: Vec<(String, String)>,
    ) -> Option<Answer> {
        let mut req = self.http.post(url).header("accept", "application/json");
        if let Some(c) = creds {
            req = devicegate_client::authenticate(req, &c.id, &c.client_auth(), &mut form);
        }
        let res = req.form(&form).send().await.ok()?;
        Some(Answer::read(res).await)
    }

    /// A token request, remembered for the `no-store` check.
    async fn token_request(
        &self,
        what: &str,
        creds: Option<&Creds>,
        form: Vec<(String, String)>,
    ) -> Option<Answer> {
        let a = self.post(&self.token, creds, form).await?;
        self.token_answers.lock().expect("not poisoned").push((
            what.to_owned(),
            a.status,
            a.no_store(),
        ));
        Some(a)
    }

    async fn poll(&self, creds: &Creds, device_code: &str, what: &str) -> Option<Answer> {
        let form = vec![
            ("grant_type".to_owned(), DEVICE_GRANT.to_owned()),
            ("device_code".to_owned(), device_code.to_owned()),
        ];
        self.token_request(what, Some(creds), form).await
    }

    /// A device authorization through `devicegate-client`, for codes only counted.
    async fn authorize_quietly(&self, scope: &str) -> Option<DeviceAuthorizationResponse> {
        let request = AuthorizationRequest::new().scope(scope);
        let a = self.client.authorize(&request).await.ok()?;
        Some(a.response().clone())
    }
}

/// The discovery document: reachable, for this issuer, with the device grant.
async fn discovery(
    r: &mut Report,
    http: &reqwest::Client,
    issuer: &str,
    args: &CheckArgs,
) -> Option<Target> {
    const WHERE: &str = "RFC 8414 §3, OIDC Discovery §4";
    let mut meta = None;
    let mut tried = Vec::new();
    for url in devicegate_client::well_known_urls(issuer) {
        match http.get(&url).send().await {
            Ok(res) if res.status().is_success() => {
                if let Ok(v) = res.json::<Value>().await
                    && v.is_object()
                {
                    meta = Some((url, v));
                    break;
                }
                tried.push(format!("{url}: not a JSON object"));
            }
            Ok(res) => tried.push(format!("{url}: HTTP {}", res.status())),
            Err(e) => tried.push(format!("{url}: {e}")),
        }
    }
    let Some((url, meta)) = meta else {
        r.fail("discovery.metadata", WHERE, tried.join("; "));
        return None;
    };
    r.pass("discovery.metadata", WHERE, format!("at {url}"));
    // §3.3: identical to the issuer the address was formed from (as typed, trailing slash
    // and all); from here on, the document's own issuer is the one tokens must name.
    let named = meta["issuer"].as_str().unwrap_or("").to_owned();
    r.expect(
        "discovery.issuer",
        "RFC 8414 §3.3",
        named == args.issuer,
        Outcome::Fail,
        format!("the document names {named:?}; checked: {:?}", args.issuer),
    );
    let issuer = named.as_str();
    let (Some(device), Some(token)) = (
        meta["device_authorization_endpoint"].as_str(),
        meta["token_endpoint"].as_str(),
    ) else {
        r.fail(
            "discovery.device_endpoint",
            "RFC 8628 §4",
            "no device_authorization_endpoint (or token_endpoint) in the metadata",
        );
        return None;
    };
    r.pass("discovery.device_endpoint", "RFC 8628 §4", device);
    match meta["grant_types_supported"].as_array() {
        None => r.warn(
            "discovery.device_grant",
            "RFC 8414 §2",
            "no grant_types_supported: clients cannot tell that the device grant is offered",
        ),
        Some(g) => r.expect(
            "discovery.device_grant",
            "RFC 8414 §2",
            g.iter().any(|v| v == DEVICE_GRANT),
            Outcome::Warn,
            format!("grant_types_supported: {}", Value::Array(g.clone())),
        ),
    }
    let creds = Creds {
        id: args.client_id.clone(),
        secret: args.client_secret.clone(),
        basic: args.auth_method == "basic",
    };
    let mut endpoints = Endpoints::new(device, token);
    endpoints.issuer = Some(issuer.to_owned());
    endpoints.jwks_uri = meta["jwks_uri"].as_str().map(str::to_owned);
    let client = Client::new(endpoints, &creds.id)
        .with_auth(creds.client_auth())
        .with_http(http.clone());
    Some(Target {
        http: http.clone(),
        issuer: issuer.to_owned(),
        device_authorization: device.to_owned(),
        token: token.to_owned(),
        meta,
        creds,
        client,
        token_answers: Default::default(),
    })
}

/// The first device authorization, read field by field.
async fn authorization(
    r: &mut Report,
    t: &Target,
    scope: &str,
) -> Option<DeviceAuthorizationResponse> {
    const WHERE: &str = "RFC 8628 §3.2";
    let form = vec![("scope".to_owned(), scope.to_owned())];
    let Some(a) = t.post(&t.device_authorization, Some(&t.creds), form).await else {
        r.fail(
            "authorization.response",
            WHERE,
            "the request did not reach the server",
        );
        return None;
    };
    if a.status != 200 {
        r.fail(
            "authorization.response",
            WHERE,
            format!("{} {}", a.brief(), a.body),
        );
        return None;
    }
    let b = &a.body;
    let mut wrong = Vec::new();
    for field in ["device_code", "user_code", "verification_uri"] {
        if !b[field].is_string() {
            wrong.push(format!("{field} is not a string"));
        }
    }
    if !b["expires_in"].is_u64() {
        wrong.push("expires_in is not a positive integer".into());
    }
    if b.get("interval").is_some_and(|i| !i.is_u64()) {
        wrong.push("interval is not an integer".into());
    }
    if !wrong.is_empty() {
        r.fail("authorization.response", WHERE, wrong.join("; "));
        return None;
    }
    let device: DeviceAuthorizationResponse = serde_json::from_value(b.clone()).ok()?;
    r.pass(
        "authorization.response",
        WHERE,
        "device_code, user_code, verification_uri, expires_in",
    );
    match device.interval {
        Some(i) => r.pass("authorization.interval", WHERE, format!("{i} s")),
        None => r.warn(
            "authorization.interval",
            WHERE,
            "no interval: clients fall back to 5 s and cannot be told otherwise",
        ),
    }
    match &device.verification_uri_complete {
        None => r.skip(
            "authorization.verification_uri_complete",
            "RFC 8628 §3.3.1",
            "not offered (optional)",
        ),
        Some(uri) => {
            let bare = |s: &str| -> String {
                s.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_uppercase()
            };
            let decoded: String =
                form_urlencoded::parse(uri.split('?').nth(1).unwrap_or("").as_bytes())
                    .map(|(_, v)| v.into_owned())
                    .collect::<Vec<_>>()
                    .join(" ");
            let holds = bare(&decoded).contains(&bare(&device.user_code))
                || uri.contains(&device.user_code);
            r.expect(
                "authorization.verification_uri_complete",
                "RFC 8628 §3.3.1",
                holds,
                Outcome::Fail,
                format!("{uri} (code {})", device.user_code),
            );
        }
    }
    r.expect(
        "authorization.expires_in",
        "RFC 8628 §3.2, §5.2",
        (60..=1800).contains(&device.expires_in),
        Outcome::Warn,
        format!(
            "{} s (between 60 s and 30 min leaves a person time and an attacker little)",
            device.expires_in
        ),
    );
    r.expect(
        "authorization.no_store",
        "RFC 6749 §5.1",
        a.no_store(),
        Outcome::Warn,
        "the response holds a device code: Cache-Control: no-store keeps it out of caches",
    );
    let listed = t.meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect::<Vec<_>>());
    let method = t.creds.method();
    match listed {
        Some(m) => r.expect(
            "discovery.auth_methods",
            "RFC 8414 §2",
            m.contains(&method),
            Outcome::Warn,
            format!("{method} worked; listed: {}", m.join(", ")),
        ),
        // RFC 8414 §2: absent means client_secret_basic.
        None => r.expect(
            "discovery.auth_methods",
            "RFC 8414 §2",
            method == "client_secret_basic",
            Outcome::Warn,
            format!("{method} worked; none listed (which means client_secret_basic)"),
        ),
    }
    Some(device)
}

/// Device authorizations that must be refused, each with its error and status.
async fn bad_authorizations(r: &mut Report, t: &Target) {
    let unknown = Creds {
        id: "devicegate-check-no-such-client".into(),
        secret: None,
        basic: false,
    };
    if r.wants("authorization.unknown_client") {
        let a = t
            .post(&t.device_authorization, Some(&unknown), vec![])
            .await;
        refused(
            r,
            "authorization.unknown_client",
            "RFC 8628 §3.2, RFC 6749 §5.2",
            a,
            &["invalid_client"],
            &[400, 401],
        );
    }
    if r.wants("authorization.missing_client") {
        let a = t.post(&t.device_authorization, None, vec![]).await;
        refused(
            r,
            "authorization.missing_client",
            "RFC 6749 §5.2",
            a,
            &["invalid_request", "invalid_client"],
            &[400, 401],
        );
    }
    if r.wants("authorization.bad_scope") {
        let form = vec![(
            "scope".to_owned(),
            "devicegate-check-no-such-scope".to_owned(),
        )];
        let a = t.post(&t.device_authorization, Some(&t.creds), form).await;
        match a {
            // §3.3 lets a server ignore scopes it does not know.
            Some(a) if a.status == 200 => r.warn(
                "authorization.bad_scope",
                "RFC 6749 §3.3, §5.2",
                "an unknown scope was accepted (allowed, but invalid_scope tells the client)",
            ),
            other => refused(
                r,
                "authorization.bad_scope",
                "RFC 6749 §3.3, §5.2",
                other,
                &["invalid_scope"],
                &[400],
            ),
        }
    }
    if r.wants("authorization.duplicate_parameters") {
        let form = vec![
            ("scope".to_owned(), "openid".to_owned()),
            ("scope".to_owned(), "openid".to_owned()),
        ];
        let a = t.post(&t.device_authorization, Some(&t.creds), form).await;
        refused(
            r,
            "authorization.duplicate_parameters",
            "RFC 6749 §3.1, §5.2",
            a,
            &["invalid_request"],
            &[400],
        );
    }
    if r.wants("authorization.get") {
        let url = format!("{}?client_id={}", t.device_authorization, t.creds.id);
        match t.http.get(&url).send().await {
            Ok(res) => {
                let a = Answer::read(res).await;
                let outcome = match (a.body.get("device_code"), a.status) {
                    (Some(_), _) => Outcome::Fail,
                    // Not a refusal, but no code either (a redirect to a page, say).
                    (None, 200..=399) => Outcome::Warn,
                    // Refused, but as a failure of the server's own.
                    (None, 500..) => Outcome::Warn,
                    (None, _) => Outcome::Pass,
                };
                r.add("authorization.get", "RFC 8628 §3.1", outcome, a.brief());
            }
            Err(e) => r.fail("authorization.get", "RFC 8628 §3.1", e.to_string()),
        }
    }
}

/// PASS when `a` is one of `errors` with one of `statuses`.
fn refused(
    r: &mut Report,
    name: &'static str,
    clause: &'static str,
    a: Option<Answer>,
    errors: &[&str],
    statuses: &[u16],
) {
    let Some(a) = a else {
        r.fail(name, clause, "the request did not reach the server");
        return;
    };
    let ok = a.error().is_some_and(|e| errors.contains(&e)) && statuses.contains(&a.status);
    r.expect(
        name,
        clause,
        ok,
        Outcome::Fail,
        format!(
            "{} (expected {} with {:?})",
            a.brief(),
            errors.join(" or "),
            statuses
        ),
    );
}

/// `authorization_pending`, then `slow_down` for a poll before the interval, the interval
/// five seconds longer after it, and polling that keeps to it answered as pending again.
async fn polling_before_approval(r: &mut Report, t: &Target, d: &DeviceAuthorizationResponse) {
    const WHERE: &str = "RFC 8628 §3.5";
    let names = [
        "token.authorization_pending",
        "token.slow_down",
        "token.interval_increased",
        "token.polling_resumes",
    ];
    if !r.wants_any(&names) {
        return;
    }
    let mut interval = d.interval.unwrap_or(5);
    tokio::time::sleep(Duration::from_secs(interval)).await;
    let Some(first) = t.poll(&t.creds, &d.device_code, "a pending poll").await else {
        r.fail(names[0], WHERE, "the request did not reach the server");
        return;
    };
    r.expect(
        names[0],
        WHERE,
        first.error() == Some("authorization_pending") && first.status == 400,
        Outcome::Fail,
        first.brief(),
    );
    // At once: too early.
    let Some(early) = t.poll(&t.creds, &d.device_code, "an early poll").await else {
        return;
    };
    let slowed = early.error() == Some("slow_down");
    r.expect(
        names[1],
        WHERE,
        slowed,
        Outcome::Warn,
        format!("a poll straight after another: {}", early.brief()),
    );
    if !slowed {
        r.skip(names[2], WHERE, "no slow_down to follow");
        r.skip(names[3], WHERE, "no slow_down to follow");
        return;
    }
    interval += 5;
    // After the old interval but before the new one: still too early.
    tokio::time::sleep(Duration::from_millis((interval - 5) * 1000 + 500)).await;
    let Some(between) = t
        .poll(&t.creds, &d.device_code, "a poll at the old interval")
        .await
    else {
        return;
    };
    let increased = between.error() == Some("slow_down");
    r.expect(
        names[2],
        WHERE,
        increased,
        Outcome::Warn,
        format!(
            "a poll {} s after slow_down (interval now {interval} s): {}",
            interval - 5,
            between.brief()
        ),
    );
    if increased {
        interval += 5;
    }
    tokio::time::sleep(Duration::from_millis(interval * 1000 + 500)).await;
    let Some(on_time) = t.poll(&t.creds, &d.device_code, "a poll on time").await else {
        return;
    };
    r.expect(
        names[3],
        WHERE,
        on_time.error() == Some("authorization_pending"),
        Outcome::Warn,
        format!("a poll {interval} s later: {}", on_time.brief()),
    );
}

/// Approval, then one poll for the tokens: the tokens, a refresh, then the code presented
/// again. A second code, approved, then polled twenty times at once: exactly one poll gets
/// tokens. (Two codes, because a server may revoke what a code gave once the code comes back,
/// as RFC 6749 §4.1.2 suggests for authorization codes, and the refresh check needs them.)
async fn redemption(
    r: &mut Report,
    t: &Arc<Target>,
    d: &DeviceAuthorizationResponse,
    approver: &Approver,
    args: &CheckArgs,
) {
    let names = [
        "tokens.response",
        "tokens.id_token",
        "tokens.refresh_rotation",
        "token.redeemed_twice",
    ];
    if r.wants_any(&names) {
        match approved_and_redeemed(r, t, d, approver).await {
            Some(won) => {
                tokens(r, t, &won.body, args).await;
                let again = t.poll(&t.creds, &d.device_code, "a redeemed code").await;
                match again {
                    Some(a) if a.body.get("access_token").is_some() => r.fail(
                        names[3],
                        "RFC 8628 §3.5, RFC 6749 §5.2",
                        "a redeemed device code gave tokens again",
                    ),
                    other => refused(
                        r,
                        names[3],
                        "RFC 8628 §3.5, RFC 6749 §5.2",
                        other,
                        &["invalid_grant", "expired_token"],
                        &[400],
                    ),
                }
            }
            None => {
                for n in names {
                    r.skip(n, "", "no tokens to check");
                }
            }
        }
    }
    if !r.wants("redemption.once") {
        return;
    }
    const ONCE: &str = "RFC 8628 §3.5, RFC 6749 §10.5";
    let Some(second) = t.authorize_quietly(&args.scope).await else {
        r.fail(
            "redemption.once",
            ONCE,
            "a device authorization was refused",
        );
        return;
    };
    if let Err(e) = approver
        .decide(&t.http, &t.issuer, &second, Decision::Approve)
        .await
    {
        r.fail("redemption.once", ONCE, format!("could not approve: {e}"));
        return;
    }
    tokio::time::sleep(Duration::from_secs(second.interval.unwrap_or(5))).await;
    let mut polls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let t = t.clone();
        let code = second.device_code.clone();
        polls.spawn(async move { t.poll(&t.creds, &code, "one of 20 concurrent polls").await });
    }
    let mut winners = 0;
    let mut others = BTreeSet::new();
    while let Some(a) = polls.join_next().await {
        match a.ok().flatten() {
            Some(a) if a.status == 200 && a.body.get("access_token").is_some() => winners += 1,
            Some(a) => {
                others.insert(a.brief());
            }
            None => {
                others.insert("no answer".into());
            }
        }
    }
    let others: Vec<String> = others.into_iter().collect();
    r.add(
        "redemption.once",
        ONCE,
        match winners {
            1 => Outcome::Pass,
            // Only more than one proves the MUST broken; none is a server that would not
            // redeem an approved code under load.
            0 => Outcome::Warn,
            _ => Outcome::Fail,
        },
        format!(
            "{winners} of 20 concurrent polls got tokens; the others: {}",
            others.join(", ")
        ),
    );
}

/// `d` approved, then polled (keeping to the interval) until it gives tokens.
async fn approved_and_redeemed(
    r: &mut Report,
    t: &Target,
    d: &DeviceAuthorizationResponse,
    approver: &Approver,
) -> Option<Answer> {
    if let Err(e) = approver
        .decide(&t.http, &t.issuer, d, Decision::Approve)
        .await
    {
        r.fail(
            "tokens.response",
            "RFC 8628 §3.5",
            format!("could not approve: {e}"),
        );
        return None;
    }
    // The polls before may have raised the interval by slow_downs: wait for the longest.
    let mut wait = d.interval.unwrap_or(5) + 10;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(wait)).await;
        let a = t.poll(&t.creds, &d.device_code, "an approved code").await?;
        match a.error() {
            None if a.status == 200 => return Some(a),
            Some("slow_down") => wait += 5,
            Some("authorization_pending") => {}
            _ => {
                r.fail(
                    "tokens.response",
                    "RFC 8628 §3.5",
                    format!("an approved code: {}", a.brief()),
                );
                return None;
            }
        }
    }
    r.fail(
        "tokens.response",
        "RFC 8628 §3.5",
        "an approved code never gave tokens",
    );
    None
}

/// The token response, the ID token against the JWKS, and refresh-token rotation.
async fn tokens(r: &mut Report, t: &Target, body: &Value, args: &CheckArgs) {
    let bearer = body["token_type"]
        .as_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("bearer"));
    r.expect(
        "tokens.response",
        "RFC 6749 §5.1",
        body["access_token"].is_string() && bearer,
        Outcome::Fail,
        format!(
            "token_type {}, expires_in {}",
            body["token_type"], body["expires_in"]
        ),
    );
    match body["id_token"].as_str() {
        None if args.scope.split(' ').any(|s| s == "openid") => r.fail(
            "tokens.id_token",
            "OIDC Core §3.1.3.3",
            "scope openid was granted no id_token",
        ),
        None => r.skip(
            "tokens.id_token",
            "OIDC Core §3.1.3.7",
            "no openid scope asked",
        ),
        Some(id) => match verify_id_token(t, id).await {
            Ok(detail) => r.pass("tokens.id_token", "OIDC Core §3.1.3.7", detail),
            Err(e) => r.fail("tokens.id_token", "OIDC Core §3.1.3.7", e),
        },
    }
    const ROTATION: &str = "RFC 9700 §4.14.2";
    let Some(refresh) = body["refresh_token"].as_str() else {
        r.skip(
            "tokens.refresh_rotation",
            ROTATION,
            "no refresh token issued",
        );
        return;
    };
    let old = Secret::new(refresh);
    let refreshed = match t.client.refresh(&old).await {
        Ok(tokens) => tokens,
        Err(e) => {
            r.fail(
                "tokens.refresh_rotation",
                "RFC 6749 §6",
                format!("refresh failed: {e}"),
            );
            return;
        }
    };
    let rotated = refreshed.refresh_token.as_ref() != Some(&old);
    if !rotated {
        let public = t.creds.secret.is_none();
        r.expect(
            "tokens.refresh_rotation",
            ROTATION,
            !public,
            Outcome::Warn,
            "the refresh token was not rotated (a public client's should be)",
        );
        return;
    }
    let form = vec![
        ("grant_type".to_owned(), "refresh_token".to_owned()),
        ("refresh_token".to_owned(), refresh.to_owned()),
    ];
    let reuse = t
        .token_request("a replaced refresh token", Some(&t.creds), form)
        .await;
    match reuse {
        // RFC 9700 requires rotation (or sender-constraint) of public clients' tokens only;
        // RFC 6749 §6 lets a server keep a confidential client's old token working.
        Some(a) if a.body.get("access_token").is_some() => r.add(
            "tokens.refresh_rotation",
            ROTATION,
            match t.creds.secret {
                None => Outcome::Fail,
                Some(_) => Outcome::Warn,
            },
            "rotated, but the replaced refresh token still works",
        ),
        other => refused(
            r,
            "tokens.refresh_rotation",
            ROTATION,
            other,
            &["invalid_grant"],
            &[400],
        ),
    }
}

/// The ID token's signature against the JWKS, and `iss`, `aud`, `exp`, `iat`, with
/// `jsonwebtoken` (through `devicegate-client`), not devicegate's own verifier.
async fn verify_id_token(t: &Target, id_token: &str) -> Result<String, String> {
    let jwks_uri = t.meta["jwks_uri"]
        .as_str()
        .ok_or("no jwks_uri in the metadata")?;
    let (alg, claims) =
        devicegate_client::verify_id_token(&t.http, jwks_uri, &t.issuer, &t.creds.id, id_token)
            .await?;
    Ok(format!(
        "{alg:?} signature verified; iss, aud, exp, iat hold (sub {})",
        claims["sub"]
    ))
}

/// Another client's polls of this client's code are refused.
async fn other_client(
    r: &mut Report,
    t: &Target,
    d: &DeviceAuthorizationResponse,
    args: &CheckArgs,
) {
    const WHERE: &str = "RFC 8628 §3.4, RFC 6749 §5.2";
    let Some(id) = &args.other_client_id else {
        r.skip(
            "token.other_client",
            WHERE,
            "needs --other-client-id (a second client of the device grant)",
        );
        return;
    };
    let other = Creds {
        id: id.clone(),
        secret: args.other_client_secret.clone(),
        basic: t.creds.basic,
    };
    let a = t
        .poll(&other, &d.device_code, "another client's poll")
        .await;
    refused(
        r,
        "token.other_client",
        WHERE,
        a,
        &["invalid_grant"],
        &[400],
    );
}

/// A denied code answers `access_denied`.
async fn denial(r: &mut Report, t: &Target, d: &DeviceAuthorizationResponse, approver: &Approver) {
    const WHERE: &str = "RFC 8628 §3.5";
    if !r.wants("token.access_denied") {
        return;
    }
    if let Err(e) = approver.decide(&t.http, &t.issuer, d, Decision::Deny).await {
        r.fail("token.access_denied", WHERE, format!("could not deny: {e}"));
        return;
    }
    tokio::time::sleep(Duration::from_secs(d.interval.unwrap_or(5) + 1)).await;
    let a = t.poll(&t.creds, &d.device_code, "a denied code").await;
    refused(
        r,
        "token.access_denied",
        WHERE,
        a,
        &["access_denied"],
        &[400],
    );
}

/// A code left alone until it expires answers `expired_token`.
async fn expiry(
    r: &mut Report,
    t: &Target,
    d: &DeviceAuthorizationResponse,
    issued: tokio::time::Instant,
) {
    const WHERE: &str = "RFC 8628 §3.5";
    tokio::time::sleep_until(issued + Duration::from_secs(d.expires_in + 2)).await;
    let a = t.poll(&t.creds, &d.device_code, "an expired code").await;
    refused(
        r,
        "token.expired_token",
        WHERE,
        a,
        &["expired_token"],
        &[400],
    );
}

/// Token requests that must be refused.
async fn bad_token_requests(r: &mut Report, t: &Target) {
    if r.wants("token.unsupported_grant_type") {
        let form = vec![(
            "grant_type".to_owned(),
            "urn:example:no-such-grant".to_owned(),
        )];
        let a = t
            .token_request("an unknown grant type", Some(&t.creds), form)
            .await;
        refused(
            r,
            "token.unsupported_grant_type",
            "RFC 6749 §5.2",
            a,
            &["unsupported_grant_type"],
            &[400],
        );
    }
    if r.wants("token.invalid_client") {
        // Basic credentials that cannot be right: §5.2 asks for 401 with WWW-Authenticate.
        let wrong = Creds {
            id: t.creds.id.clone(),
            secret: Some("devicegate-check-wrong-secret".into()),
            basic: true,
        };
        let form = vec![
            ("grant_type".to_owned(), DEVICE_GRANT.to_owned()),
            (
                "device_code".to_owned(),
                "devicegate-check-no-such-code".to_owned(),
            ),
        ];
        match t
            .token_request("wrong Basic credentials", Some(&wrong), form)
            .await
        {
            None => r.fail("token.invalid_client", "RFC 6749 §5.2", "no answer"),
            Some(a) => {
                let challenged = a.headers.get("www-authenticate").is_some();
                r.expect(
                    "token.invalid_client",
                    "RFC 6749 §5.2",
                    a.status == 401 && a.error() == Some("invalid_client") && challenged,
                    Outcome::Fail,
                    format!(
                        "{}, WWW-Authenticate {}",
                        a.brief(),
                        if challenged { "present" } else { "absent" }
                    ),
                );
            }
        }
    }
}

/// The user codes: unique, and from an alphabet and length with enough entropy.
async fn user_codes(
    r: &mut Report,
    t: &Target,
    scope: &str,
    mut codes: Vec<String>,
    samples: usize,
) {
    const WHERE: &str = "RFC 8628 §5.1, §6.1";
    if !r.wants("user_code.entropy") {
        return;
    }
    while codes.len() < samples.max(2) {
        match t.authorize_quietly(scope).await {
            Some(d) => codes.push(d.user_code),
            None => break,
        }
    }
    let bare: Vec<String> = codes
        .iter()
        .map(|c| {
            c.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_uppercase()
        })
        .collect();
    let distinct: BTreeSet<&String> = bare.iter().collect();
    if distinct.len() < bare.len() {
        r.fail(
            "user_code.entropy",
            WHERE,
            format!("a user code repeated among {} live codes", bare.len()),
        );
        return;
    }
    let alphabet: BTreeSet<char> = bare.iter().flat_map(|c| c.chars()).collect();
    let length = bare.iter().map(String::len).min().unwrap_or(0);
    // What the sample shows: digits only are 10; a sample that shows most of RFC 8628's 20
    // consonants is taken to have them all; anything else counts what it shows.
    let size = match alphabet.len() {
        _ if alphabet.iter().all(char::is_ascii_digit) => 10usize,
        15..20 => 20,
        n => n,
    };
    let bits = length as f64 * (size as f64).log2();
    let shown: String = alphabet.iter().collect();
    r.expect(
        "user_code.entropy",
        WHERE,
        // RFC 8628 §6.1's own examples: 8 of 20 letters (34.6 bits), 9 digits (29.9).
        bits >= 29.8,
        Outcome::Warn,
        format!(
            "{} codes, {length} characters from about {size} ({shown}): about {bits:.1} bits",
            bare.len()
        ),
    );
}

/// Every token-endpoint answer carried `Cache-Control: no-store`.
fn no_store(r: &mut Report, t: &Target) {
    const WHERE: &str = "RFC 6749 §5.1";
    let answers = t.token_answers.lock().expect("not poisoned");
    if answers.is_empty() {
        r.skip("token.no_store", WHERE, "no token request was made");
        return;
    }
    let missing: Vec<String> = answers
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(what, status, _)| format!("{what} (HTTP {status})"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let with_tokens_missing = answers.iter().any(|(_, s, ok)| *s == 200 && !ok);
    let outcome = match (missing.is_empty(), with_tokens_missing) {
        (true, _) => Outcome::Pass,
        (false, true) => Outcome::Fail,
        (false, false) => Outcome::Warn,
    };
    let detail = match missing.is_empty() {
        true => format!("on all {} answers", answers.len()),
        false => format!("missing on: {}", missing.join(", ")),
    };
    r.add("token.no_store", WHERE, outcome, detail);
}
