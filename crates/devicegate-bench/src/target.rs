//! One server under load: its endpoints (from discovery), the requests of the device flow,
//! how answers are classified, and how a code gets approved without a browser.

use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

pub type Http = Client<HttpConnector, Full<Bytes>>;

/// RFC 8628 §3.2: without `interval` in the answer, clients wait 5 seconds.
const DEFAULT_INTERVAL_SECS: u64 = 5;
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How codes are approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Approver {
    /// devicegate's flows API: create a flow, enter the code, sign on, consent
    Flows,
    /// `POST /bench/approve` of the oidc-provider peer (its provider API, no browser)
    OidcProvider,
    /// No approvals (modes that need them fail)
    None,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub base: String,
    pub device_authorization: String,
    pub token: String,
}

/// A device code this run holds, with its user code and poll interval.
#[derive(Debug)]
pub struct Code {
    pub target: usize,
    pub device_code: String,
    pub user_code: String,
    pub interval_ms: std::sync::atomic::AtomicU64,
    /// Milliseconds since [`epoch`] before which this code may not be polled again.
    pub due_ms: std::sync::atomic::AtomicU64,
}

/// The instant `due_ms` counts from.
pub fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn since_epoch_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// An answer, reduced to what the report counts.
#[derive(Debug)]
pub struct Answer {
    pub outcome: String,
    pub body: Value,
}

pub fn form(url: &str, body: String) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

pub fn json(url: &str, body: &Value) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request")
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sends `req`; the outcome is the OAuth `error`, `tokens` for a complete token set (access,
/// ID and refresh token), `device_code` for a device authorization, `ok` for other 2xx.
pub async fn send(http: &Http, req: http::Request<Full<Bytes>>) -> Answer {
    let res = match http.request(req).await {
        Ok(r) => r,
        Err(_) => {
            return Answer {
                outcome: "transport_error".into(),
                body: Value::Null,
            };
        }
    };
    let status = res.status();
    let body = match res.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Answer {
                outcome: "transport_error".into(),
                body: Value::Null,
            };
        }
    };
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let outcome = if let Some(e) = body.get("error").and_then(Value::as_str) {
        e.to_owned()
    } else if body.get("access_token").is_some() {
        if body.get("id_token").is_some() && body.get("refresh_token").is_some() {
            "tokens".into()
        } else {
            "incomplete_tokens".into()
        }
    } else if body.get("device_code").is_some() {
        "device_code".into()
    } else if status.is_success() {
        "ok".into()
    } else {
        format!("http_{}", status.as_u16())
    };
    Answer { outcome, body }
}

impl Target {
    /// Reads the endpoints from OpenID Connect Discovery at `base`.
    pub async fn discover(http: &Http, base: &str) -> anyhow::Result<Target> {
        let base = base.trim_end_matches('/').to_owned();
        let url = format!("{base}/.well-known/openid-configuration");
        let req = http::Request::get(&url).body(Full::new(Bytes::new()))?;
        let res = http
            .request(req)
            .await
            .with_context(|| format!("GET {url}"))?;
        let body = res.into_body().collect().await?.to_bytes();
        let doc: Value = serde_json::from_slice(&body).context("discovery document")?;
        let field = |name: &str| {
            doc[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("{url} has no {name}"))
        };
        Ok(Target {
            device_authorization: field("device_authorization_endpoint")?,
            token: field("token_endpoint")?,
            base,
        })
    }

    pub fn authorize_request(&self, client_id: &str, scope: &str) -> http::Request<Full<Bytes>> {
        form(
            &self.device_authorization,
            format!("client_id={}&scope={}", enc(client_id), enc(scope)),
        )
    }

    pub fn poll_request(&self, client_id: &str, device_code: &str) -> http::Request<Full<Bytes>> {
        form(
            &self.token,
            format!(
                "grant_type={}&client_id={}&device_code={}",
                enc(DEVICE_CODE_GRANT),
                enc(client_id),
                enc(device_code)
            ),
        )
    }
}

/// Reads a device authorization answer into a [`Code`].
pub fn code_from(target: usize, answer: &Answer) -> Option<Code> {
    let b = &answer.body;
    let interval = b
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_INTERVAL_SECS);
    Some(Code {
        target,
        device_code: b.get("device_code")?.as_str()?.to_owned(),
        user_code: b.get("user_code")?.as_str()?.to_owned(),
        interval_ms: (interval * 1000).into(),
        due_ms: 0.into(),
    })
}

/// One approving person: their address (sent as `X-Forwarded-For`, so that a server trusting
/// the bench as its proxy counts each person apart, as behind a load balancer) and the
/// session their first sign-on kept.
#[derive(Debug, Clone, Default)]
pub struct Person {
    pub address: String,
    pub session: Option<String>,
}

impl Person {
    /// The `n`th person, at an address of the benchmarking range 198.18.0.0/15.
    pub fn new(n: usize) -> Person {
        Person {
            address: std::net::Ipv4Addr::from(0xc612_0000u32 | (n as u32 & 0xffff)).to_string(),
            session: None,
        }
    }
}

/// A JSON POST from `person`.
fn json_from(url: &str, body: &Value, person: &Person) -> http::Request<Full<Bytes>> {
    let mut req = json(url, body);
    if let Ok(v) = http::HeaderValue::from_str(&person.address) {
        req.headers_mut().insert("x-forwarded-for", v);
    }
    req
}

/// What approving takes: the way, and for the flows API whose account.
#[derive(Debug, Clone)]
pub struct Approval {
    pub approver: Approver,
    pub username: String,
    pub password: String,
}

impl Approval {
    /// Approves `code` at `target`, or says which step failed. Through the flows API the
    /// person signs on once and keeps the session in `session` for the next approvals
    /// (`session.resume`), as a custom UI would.
    pub async fn approve(
        &self,
        http: &Http,
        target: &Target,
        code: &Code,
        person: &mut Person,
    ) -> anyhow::Result<()> {
        match self.approver {
            Approver::None => bail!("no approver given (--approve)"),
            Approver::OidcProvider => {
                let url = format!("{}/bench/approve", target.base);
                let a = send(
                    http,
                    form(&url, format!("user_code={}", enc(&code.user_code))),
                )
                .await;
                if a.outcome != "ok" {
                    bail!("{url}: {}", a.outcome);
                }
                Ok(())
            }
            Approver::Flows => {
                let flows = format!("{}/api/v1/flows", target.base);
                let a = send(http, json_from(&flows, &serde_json::json!({}), person)).await;
                let id = a.body["id"]
                    .as_str()
                    .with_context(|| format!("creating a flow: {}", a.outcome))?
                    .to_owned();
                let url = format!("{flows}/{id}");
                let verify =
                    serde_json::json!({"action": "user_code.verify", "user_code": code.user_code});
                let a = send(http, json_from(&url, &verify, person)).await;
                if a.outcome != "ok" {
                    bail!("flow step user_code.verify: {}", a.outcome);
                }
                let resumed = match person.session.as_deref() {
                    Some(s) => {
                        let resume = serde_json::json!({"action": "session.resume", "session": s});
                        send(http, json_from(&url, &resume, person)).await.outcome == "ok"
                    }
                    None => false,
                };
                if !resumed {
                    let sign_on = serde_json::json!({"action": "sign_on", "username": self.username, "password": self.password});
                    // Every person signs on to the one bench account at once, and a server
                    // may hold sign-ons in flight for one account to a few dozen (a password
                    // check is paid for before it is made): wait and retry, as a person would.
                    let mut a = send(http, json_from(&url, &sign_on, person)).await;
                    for _ in 0..10 {
                        if a.outcome != "slow_down" {
                            break;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        a = send(http, json_from(&url, &sign_on, person)).await;
                    }
                    if a.outcome != "ok" {
                        bail!("flow step sign_on: {}", a.outcome);
                    }
                    person.session = a.body["session"].as_str().map(str::to_owned);
                }
                let steps = [serde_json::json!({"action": "consent", "accept": true})];
                for step in &steps {
                    let a = send(http, json_from(&url, step, person)).await;
                    if a.outcome != "ok" {
                        bail!("flow step {}: {}", step["action"], a.outcome);
                    }
                }
                Ok(())
            }
        }
    }
}
