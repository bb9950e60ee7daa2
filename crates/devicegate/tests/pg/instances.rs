//! Several `devicegate serve` processes on one PostgreSQL database behave as one server.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use devicegate_core::user_code::UserCode;
use devicegate_store::{PostgresStore, Store};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Ctx;

const ISSUER: &str = "http://devicegate.test";
const PASSWORD: &str = "correct horse battery";
const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// One `devicegate serve` process.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    fn spawn(database: &str) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_devicegate"))
            .args([
                "serve",
                "--database",
                database,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--issuer",
                ISSUER,
                // Clients are told apart by X-Forwarded-For in the limits case, whose client
                // cap is drawn in leases of 3.
                "--trusted-proxies",
                "127.0.0.1",
                "--max-pending-codes-per-client",
                "300",
            ])
            .env("DEVICEGATE_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Instance {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn ready(&self, http: &reqwest::Client) {
        for _ in 0..300 {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("instance {} did not become ready", self.base);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(database: &str, args: &[&str], stdin: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_devicegate"))
        .arg("--database")
        .arg(database)
        .args(args)
        .env("DEVICEGATE_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database with client `tv` (interval 1 s) and user `ann`, and `n` instances on it,
/// started together.
async fn cluster(ctx: &Ctx, n: usize) -> (String, Vec<Instance>, reqwest::Client) {
    let db = ctx.database();
    cli(&db, &["migrate"], "");
    cli(
        &db,
        &[
            "client",
            "create",
            "--id",
            "tv",
            "--name",
            "TV",
            "--public",
            "--poll-interval-secs",
            "1",
        ],
        "",
    );
    cli(
        &db,
        &["user", "create", "--username", "ann", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    let instances: Vec<Instance> = (0..n).map(|_| Instance::spawn(&db)).collect();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    for i in &instances {
        i.ready(&http).await;
    }
    (db, instances, http)
}

async fn form(http: &reqwest::Client, url: String, params: &[(&str, &str)]) -> (StatusCode, Value) {
    let res = http.post(url).form(params).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn authorize(http: &reqwest::Client, at: &Instance) -> Value {
    let (status, d) = form(
        http,
        at.url("/oauth2/device_authorization"),
        &[("client_id", "tv"), ("scope", "openid offline_access")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    d
}

async fn poll(http: &reqwest::Client, at: &Instance, d: &Value) -> (StatusCode, Value) {
    form(
        http,
        at.url("/oauth2/token"),
        &[
            ("grant_type", DEVICE_CODE),
            ("client_id", "tv"),
            ("device_code", d["device_code"].as_str().unwrap()),
        ],
    )
    .await
}

async fn act(http: &reqwest::Client, at: &Instance, flow: &str, body: Value) -> Value {
    let res = http
        .post(at.url(&format!("/api/v1/flows/{flow}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Approves `d` through the flows API of `at`.
async fn approve(http: &reqwest::Client, at: &Instance, d: &Value) {
    let res = http
        .post(at.url("/api/v1/flows"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let flow: Value = res.json().await.unwrap();
    let flow = flow["id"].as_str().unwrap();
    act(
        http,
        at,
        flow,
        json!({"action": "user_code.verify", "user_code": d["user_code"]}),
    )
    .await;
    act(
        http,
        at,
        flow,
        json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
    )
    .await;
    let done = act(http, at, flow, json!({"action": "consent", "accept": true})).await;
    assert_eq!(done["result"], "approved");
}

pub async fn shared_state(ctx: Arc<Ctx>) {
    let (_db, inst, http) = cluster(&ctx, 3).await;
    let (a, b, c) = (&inst[0], &inst[1], &inst[2]);
    // Started together on an empty database, they agreed on one signing key.
    let mut jwks = Vec::new();
    for i in &inst {
        jwks.push(
            http.get(i.url("/oauth2/jwks"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap(),
        );
    }
    assert_eq!(jwks[0]["keys"].as_array().unwrap().len(), 1, "{}", jwks[0]);
    assert!(jwks.iter().all(|j| j == &jwks[0]), "{jwks:?}");

    // A code issued by one instance, approved through a second, redeemed on a third.
    let d = authorize(&http, a).await;
    approve(&http, b, &d).await;
    let (status, t) = poll(&http, c, &d).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    // A token from one instance is accepted by another.
    let res = http
        .get(a.url("/oauth2/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (status, body) = form(
        &http,
        b.url("/oauth2/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tv"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // slow_down holds across instances: a poll on one, then at once on another.
    let d = authorize(&http, a).await;
    assert_eq!(poll(&http, b, &d).await.1["error"], "authorization_pending");
    let (_, body) = poll(&http, c, &d).await;
    assert_eq!(
        (body["error"].as_str(), body["interval"].as_u64()),
        (Some("slow_down"), Some(6)),
        "{body}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, body) = poll(&http, a, &d).await;
    assert_eq!(
        body["error"], "slow_down",
        "the longer interval is remembered everywhere: {body}"
    );

    // Once every instance answers a code's polls from memory, they still pace it together:
    // each tells the others of its polls within milliseconds.
    let d = authorize(&http, a).await;
    assert_eq!(poll(&http, b, &d).await.1["error"], "authorization_pending");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(poll(&http, a, &d).await.1["error"], "authorization_pending");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, body) = poll(&http, b, &d).await;
    assert_eq!(
        (body["error"].as_str(), body["interval"].as_u64()),
        (Some("slow_down"), Some(6)),
        "b heard of a's poll: {body}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        poll(&http, a, &d).await.1["error"],
        "slow_down",
        "a heard of b's longer interval"
    );
    // A decision made through one instance reaches the others' memory.
    approve(&http, c, &d).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = poll(&http, b, &d).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

pub async fn one_token_across_instances(ctx: Arc<Ctx>) {
    let (_db, inst, http) = cluster(&ctx, 3).await;
    let d = authorize(&http, &inst[0]).await;
    approve(&http, &inst[1], &d).await;
    let inst = Arc::new(inst);
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (inst, http, d, barrier) = (inst.clone(), http.clone(), d.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                poll(&http, &inst[i % 3], &d).await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
    assert_eq!(ok, 1);
}

pub async fn announcements(ctx: Arc<Ctx>) {
    let (db, inst, http) = cluster(&ctx, 2).await;
    // This process is a third instance listening on the same database.
    let store = PostgresStore::connect(&db).await.unwrap();
    let mut changes = store.subscribe();
    let d = authorize(&http, &inst[0]).await;
    let grant = store
        .get_grant_by_user_code(&UserCode::parse(d["user_code"].as_str().unwrap()).unwrap())
        .await
        .unwrap();
    approve(&http, &inst[1], &d).await;
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.grant_id == grant.id
                && store.get_grant(&grant.id).await.unwrap().status.name() == "approved"
            {
                return change;
            }
        }
    })
    .await
    .expect("the approval was announced to the listening instance");
    assert_eq!(heard.grant_id, grant.id);
}

pub async fn outage(ctx: Arc<Ctx>) {
    let (_db, mut inst, http) = cluster(&ctx, 2).await;
    let approved = authorize(&http, &inst[0]).await;
    approve(&http, &inst[1], &approved).await;

    ctx.pg.stop().unwrap();
    let (status, body) = poll(&http, &inst[0], &approved).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "{body}"
    );
    let text = body.to_string().to_lowercase();
    for leak in ["postgres", "connection", "refused", "sql", "pool"] {
        assert!(!text.contains(leak), "internal detail {leak:?} in {body}");
    }
    let (status, body) = form(
        &http,
        inst[1].url("/oauth2/device_authorization"),
        &[("client_id", "tv")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        )
    );
    // Every surface says so in its own format, without detail.
    let empty = |path: &str| {
        http.post(inst[0].url(path))
            .json(&serde_json::json!({}))
            .send()
    };
    let res = empty("/api/v1/flows").await.unwrap();
    let (status, body): (StatusCode, Value) = (res.status(), res.json().await.unwrap());
    assert_eq!(
        (status, body["error"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("temporarily_unavailable")
        ),
        "flows API: {body}"
    );
    let res = empty("/v1/sso_device_grant").await.unwrap();
    let (status, body): (StatusCode, Value) = (res.status(), res.json().await.unwrap());
    assert_eq!(
        (status, body["status"]["sql_state"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("08001")),
        "Ocient: {body}"
    );
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let entry = browser
        .get(inst[0].url("/device"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = entry
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .expect("a csrf field")
        .to_owned();
    let res = browser
        .post(inst[0].url("/device"))
        .form(&[("csrf", csrf.as_str()), ("user_code", "BCDF-GHJK")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = res.text().await.unwrap();
    assert!(page.contains("Temporarily unavailable"), "{page}");
    for leak in ["postgres", "connection", "refused", "pool"] {
        assert!(
            !page.to_lowercase().contains(leak),
            "internal detail {leak:?} in the page"
        );
    }
    assert_eq!(
        http.get(inst[0].url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK,
        "the process is up"
    );
    assert_eq!(
        http.get(inst[0].url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    ctx.pg.start().unwrap();
    for i in &inst {
        i.ready(&http).await;
    }
    for i in inst.iter_mut() {
        assert!(i.child.try_wait().unwrap().is_none(), "instances stayed up");
    }
    // The approval made before the outage survived, and is redeemed once.
    let (status, t) = poll(&http, &inst[1], &approved).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let (status, body) = poll(&http, &inst[0], &approved).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let fresh = authorize(&http, &inst[0]).await;
    assert_eq!(
        poll(&http, &inst[1], &fresh).await.1["error"],
        "authorization_pending"
    );
}

/// A request from `from` (through the trusted proxy every instance lists).
async fn send_from(
    http: &reqwest::Client,
    req: reqwest::RequestBuilder,
    from: &str,
) -> (StatusCode, Value) {
    let _ = http;
    let res = req.header("x-forwarded-for", from).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn flow_at(
    http: &reqwest::Client,
    at: &Instance,
    from: &str,
) -> (StatusCode, Option<String>) {
    let req = http.post(at.url("/api/v1/flows")).json(&json!({}));
    let (status, b) = send_from(http, req, from).await;
    (status, b["id"].as_str().map(str::to_owned))
}

fn addr(n: u32) -> String {
    std::net::IpAddr::from([198, 18, (n >> 8) as u8, n as u8]).to_string()
}

/// Every limit is shared: three instances, each request on the next one, refuse at exactly
/// the counts one instance does (the SQLite cases in tests/it/abuse.rs).
pub async fn limits_hold_across_instances(ctx: Arc<Ctx>) {
    let (_db, inst, http) = cluster(&ctx, 3).await;
    let at = |i: usize| &inst[i % inst.len()];
    let started = std::time::Instant::now();
    // Pending codes per address: 20, then 429 with Retry-After, whichever instance is asked.
    let flooder = addr(1);
    for i in 0..21 {
        let req = http
            .post(at(i).url("/oauth2/device_authorization"))
            .form(&[("client_id", "tv")]);
        let (status, b) = send_from(&http, req, &flooder).await;
        let want = if i < 20 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, want, "code {i}: {b}");
    }
    // Wrong codes per address: 10 a minute, across instances and flows.
    let guesser = addr(2);
    let mut statuses = Vec::new();
    let mut flow = None;
    for i in 0..12 {
        if i % 4 == 0 {
            flow = flow_at(&http, at(i), &guesser).await.1;
        }
        let req = http
            .post(at(i).url(&format!("/api/v1/flows/{}", flow.as_deref().unwrap())))
            .json(&json!({"action": "user_code.verify", "user_code": "BCDF-BCDF"}));
        statuses.push(send_from(&http, req, &guesser).await.0.as_u16());
    }
    assert_eq!(statuses, [[400; 10].as_slice(), &[429, 429]].concat());
    // A burst of 60 wrong passwords from one address, spread over the instances: exactly 10
    // are tried.
    let burst = addr(3);
    let flow = flow_at(&http, at(0), &burst).await.1.unwrap();
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let req = http
                .post(at(i).url(&format!("/api/v1/flows/{flow}")))
                .json(&json!({"action": "sign_on", "username": "ann", "password": "wrong"}));
            let (http, burst) = (http.clone(), burst.clone());
            tokio::spawn(async move { send_from(&http, req, &burst).await.0.as_u16() })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(counts, [(401, 10), (429, 50)].into_iter().collect());
    // Flows per address: 100.
    let starter = addr(4);
    for i in 0..100 {
        assert_eq!(
            flow_at(&http, at(i), &starter).await.0,
            StatusCode::CREATED,
            "flow {i}"
        );
    }
    assert_eq!(
        flow_at(&http, at(100), &starter).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The guessing budget: with the 24 eight-letter codes pending that one instance would
    // allow, anonymous entry pauses after the same ~508 wrong codes (one per 7 s refills).
    for i in 0..4 {
        let req = http
            .post(at(i).url("/oauth2/device_authorization"))
            .form(&[("client_id", "tv")]);
        assert_eq!(send_from(&http, req, &addr(5)).await.0, StatusCode::OK);
    }
    // Let every instance's count of pending codes catch up (read at most a second old).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut admitted = 0;
    let mut paused = false;
    'addresses: for n in 100..300 {
        let from = addr(n);
        let flow = flow_at(&http, at(n as usize), &from).await.1.unwrap();
        for k in 0..4 {
            let req = http
                .post(at(n as usize + k).url(&format!("/api/v1/flows/{flow}")))
                .json(&json!({"action": "user_code.verify", "user_code": "BCDF-BCDF"}));
            let (status, b) = send_from(&http, req, &from).await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(b["error"], "sign_on_required", "{b}");
                paused = true;
                break 'addresses;
            }
            assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
            admitted += 1;
        }
    }
    assert!(paused, "the shared budget never ran out");
    assert!(
        (500..=515).contains(&admitted),
        "{admitted} wrong codes before the pause"
    );
    // Codes per client: 300, drawn by each instance in leases of 3; however the leases fall,
    // the three instances together never issue more (20 addresses of 20 codes ask for 400).
    // 24 issued above (20 to the flooder, 4 for the budget).
    let mut issued = 24;
    for n in 0..20 {
        for k in 0..20 {
            let req = http
                .post(at(n + k).url("/oauth2/device_authorization"))
                .form(&[("client_id", "tv")]);
            if send_from(&http, req, &addr(1000 + n as u32)).await.0 == StatusCode::OK {
                issued += 1;
            }
        }
    }
    // The bucket refills one code per 2 s (300 per 600 s lifetime) while the case runs.
    let refilled = started.elapsed().as_secs() / 2 + 1;
    assert!(
        (290..=300 + refilled).contains(&issued),
        "{issued} codes for a client capped at 300 (+{refilled} refilled)"
    );
}

/// The `kid` a token was signed with.
fn kid(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn jwks_kids(http: &reqwest::Client, at: &Instance) -> Vec<String> {
    let jwks: Value = http
        .get(at.url("/oauth2/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn tokens_at(http: &reqwest::Client, at: &Instance) -> Value {
    let d = authorize(http, at).await;
    approve(http, at, &d).await;
    let (status, t) = poll(http, at, &d).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    t
}

async fn userinfo_status(http: &reqwest::Client, at: &Instance, token: &str) -> StatusCode {
    http.get(at.url("/oauth2/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// A key rotated from the CLI reaches both running instances without a restart: published
/// at once, signing after `key_publish_secs`; tokens signed before and after verify on both.
pub async fn key_rotation_across_instances(ctx: Arc<Ctx>) {
    let (db, inst, http) = cluster(&ctx, 2).await;
    let before = tokens_at(&http, &inst[0]).await;
    let old = kid(before["access_token"].as_str().unwrap());
    cli(&db, &["key", "rotate", "--key-publish-secs", "3"], "");
    let keys = {
        let out = Command::new(env!("CARGO_BIN_EXE_devicegate"))
            .args(["--database", &db, "key", "list", "--json"])
            .env("DEVICEGATE_LOG", "error")
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let new = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "pending")
        .expect("a pending key")["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    // Published on both within seconds, before it signs.
    for i in inst.iter() {
        let mut seen = false;
        for _ in 0..70 {
            if jwks_kids(&http, i).await.contains(&new) {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "{} never published the new key", i.base);
        assert!(jwks_kids(&http, i).await.contains(&old));
    }
    // Then both sign with it.
    for i in inst.iter() {
        let mut signed = None;
        for _ in 0..20 {
            let t = tokens_at(&http, i).await;
            if kid(t["access_token"].as_str().unwrap()) == new {
                signed = Some(t);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let after = signed.unwrap_or_else(|| panic!("{} never signed with the new key", i.base));
        // Tokens signed before and after the rotation verify on both instances.
        for j in inst.iter() {
            for t in [&before, &after] {
                let token = t["access_token"].as_str().unwrap();
                assert_eq!(userinfo_status(&http, j, token).await, StatusCode::OK);
            }
        }
    }
}

/// What one instance revokes, every other refuses at once: a refresh token revoked at one
/// (with its family's access tokens) is dead at the other; a person revoked from the CLI
/// too.
pub async fn revocation_across_instances(ctx: Arc<Ctx>) {
    let (db, inst, http) = cluster(&ctx, 2).await;
    let t = tokens_at(&http, &inst[0]).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(
        userinfo_status(&http, &inst[1], access).await,
        StatusCode::OK
    );
    let (status, _) = form(
        &http,
        inst[1].url("/oauth2/revoke"),
        &[
            ("client_id", "tv"),
            ("token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for i in inst.iter() {
        assert_eq!(
            userinfo_status(&http, i, access).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, body) = form(
        &http,
        inst[0].url("/oauth2/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "tv"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A resource server asking either instance hears the same.
    let out = Command::new(env!("CARGO_BIN_EXE_devicegate"))
        .args([
            "--database",
            &db,
            "client",
            "create",
            "--id",
            "rs",
            "--name",
            "RS",
            "--secret",
            "--json",
        ])
        .env("DEVICEGATE_LOG", "error")
        .output()
        .unwrap();
    let rs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = rs["client_secret"].as_str().unwrap().to_owned();
    for i in inst.iter() {
        let (status, body) = form(
            &http,
            i.url("/oauth2/introspect"),
            &[
                ("client_id", "rs"),
                ("client_secret", &secret),
                ("token", access),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"active": false}));
    }
    // A person revoked from the CLI: their tokens are refused by both.
    let again = tokens_at(&http, &inst[1]).await;
    for i in inst.iter() {
        let (_, body) = form(
            &http,
            i.url("/oauth2/introspect"),
            &[
                ("client_id", "rs"),
                ("client_secret", &secret),
                ("token", again["access_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(body["active"], true, "{body}");
    }
    cli(&db, &["user", "revoke", "ann"], "");
    for i in inst.iter() {
        assert_eq!(
            userinfo_status(&http, i, again["access_token"].as_str().unwrap()).await,
            StatusCode::UNAUTHORIZED
        );
    }
}
