//! devicegate-client and `devicegate login` against a server nobody here wrote: node's
//! `oidc-provider` with its device flow, approved by posting the provider's own pages (the
//! user-code form, its login and consent interactions) the way a browser would.
//!
//! `./scripts/test` installs node and the fixture's packages (`npm ci`); without them these
//! tests fail and say so, rather than skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

use crate::support::JsonOf;
use devicegate_client::{AuthorizationRequest, Client, TokenTypeHint};
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
use openidconnect::{ClientId, IssuerUrl, Nonce};
use serde_json::Value;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oidc-provider")
}

/// `node server.js` on a free port; killed on drop.
pub struct OidcProvider {
    pub issuer: String,
    child: Child,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OidcProvider {
    fn start() -> OidcProvider {
        Self::start_with(&[])
    }

    /// With extra environment, such as `UPSTREAM_REDIRECT_URIS` (server.js).
    pub fn start_with(env: &[(&str, &str)]) -> OidcProvider {
        let dir = fixture_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the oidc-provider fixture is not installed: run ./scripts/test, which installs \
             node and runs `npm ci` in {}",
            dir.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("node")
            .arg("server.js")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` ({e}): run ./scripts/test, which installs it")
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(issuer) = line.strip_prefix("listening ") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("oidc-provider did not start within 30 s; its stderr:\n{stderr}")
            });
        OidcProvider { issuer, child }
    }
}

/// A `<form>` of an HTML page: where it posts and its named inputs.
#[derive(Debug)]
pub struct Form {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

impl Form {
    pub fn set(&mut self, name: &str, value: &str) {
        self.fields.retain(|(n, _)| n != name);
        self.fields.push((name.into(), value.into()));
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(
        tag[start..start + len]
            .replace("&amp;", "&")
            .replace("&#x2F;", "/")
            .replace("&quot;", "\""),
    )
}

/// The forms of `html`, read just well enough for the provider's own pages.
pub fn forms(html: &str) -> Vec<Form> {
    html.split("<form")
        .skip(1)
        .map(|chunk| {
            let body = chunk.split("</form>").next().unwrap_or(chunk);
            let open = &body[..body.find('>').unwrap_or(body.len())];
            let fields = body
                .split("<input")
                .skip(1)
                .filter_map(|input| {
                    let tag = &input[..input.find('>').unwrap_or(input.len())];
                    Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default()))
                })
                .collect();
            Form {
                action: attr(open, "action").unwrap_or_default(),
                fields,
            }
        })
        .collect()
}

/// A person in a browser: opens `verification_uri_complete`, confirms the code, signs in as
/// `login` and consents, through the provider's own forms, keeping its cookies.
async fn approve_in_browser(issuer: &str, verification_uri_complete: &str, login: &str) {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let absolute = |action: &str| {
        if action.starts_with('/') {
            format!("{issuer}{action}")
        } else {
            action.to_owned()
        }
    };
    let get = browser.get(verification_uri_complete).send().await.unwrap();
    let mut page = get.text().await.unwrap();
    // The pages in order: the auto-submitted code form, the "confirm device" form, the
    // login interaction, the consent interaction.
    for step in ["code", "confirm", "login", "consent"] {
        let mut form = forms(&page)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no form at the {step} step:\n{page}"));
        if step == "login" {
            form.set("login", login);
            form.set("password", "any password the dev interactions accept");
        }
        let res = browser
            .post(absolute(&form.action))
            .form(&form.fields)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{step}: {}", res.status());
        page = res.text().await.unwrap();
    }
    assert!(page.contains("Sign-in Success"), "{page}");
}

async fn verified_id_token_claims(issuer: &str, jwks_uri: &str, id_token: &str) -> Value {
    let jwks: CoreJsonWebKeySet = reqwest::get(jwks_uri).await.unwrap().json().await.unwrap();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new("cli".into()),
        IssuerUrl::new(issuer.into()).unwrap(),
        jwks,
    );
    let token = CoreIdToken::from_str(id_token).unwrap();
    let claims = token
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .expect("the ID token verifies against the provider's JWKS");
    serde_json::to_value(claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_completes_the_device_flow_at_oidc_provider() {
    let op = OidcProvider::start();
    let client = Client::discover(&op.issuer, "cli").await.unwrap();
    let endpoints = client.endpoints().clone();
    assert!(endpoints.revocation.is_some(), "{endpoints:?}");
    let request = AuthorizationRequest::new()
        .scope("openid profile email offline_access")
        // oidc-provider grants offline_access only with an explicit consent prompt.
        .param("prompt", "consent");
    let a = client.authorize(&request).await.unwrap();
    // oidc-provider sends no interval: RFC 8628's default of 5 s applies.
    assert_eq!(a.interval(), Duration::from_secs(5));
    let complete = a.verification_uri_complete().unwrap().to_owned();
    let issuer = op.issuer.clone();
    let browser = tokio::spawn(async move { approve_in_browser(&issuer, &complete, "ann").await });
    let tokens = client.poll(&a).await.unwrap();
    browser.await.unwrap();

    let claims = verified_id_token_claims(
        &op.issuer,
        endpoints.jwks_uri.as_deref().unwrap(),
        tokens.id_token.as_ref().unwrap().expose(),
    )
    .await;
    assert_eq!(claims["sub"], "ann");
    assert_eq!(claims["email"], "ann@example.com");
    assert_eq!(claims["aud"], Value::from(vec!["cli"]));
    assert!(tokens.expires_in.unwrap() > 0);
    let refresh = tokens
        .refresh_token
        .clone()
        .expect("offline_access granted");

    // Its userinfo accepts the access token.
    let me: Value = reqwest::Client::new()
        .get(endpoints.userinfo.as_deref().unwrap())
        .bearer_auth(tokens.access_token.expose())
        .json_of()
        .await;
    assert_eq!(me["sub"], "ann");

    let renewed = client.refresh(&refresh).await.unwrap();
    assert_ne!(renewed.access_token, tokens.access_token);
    let current = renewed.refresh_token.clone().unwrap();

    // RFC 7009: after revocation the refresh token no longer works.
    client
        .revoke(&current, TokenTypeHint::RefreshToken)
        .await
        .unwrap();
    let e = client.refresh(&current).await.unwrap_err();
    assert_eq!(e.oauth_code(), Some("invalid_grant"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_logs_in_and_out_at_oidc_provider() {
    let op = OidcProvider::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let mut login = Command::new(env!("CARGO_BIN_EXE_devicegate"))
        .args(["login", "--issuer", &op.issuer, "--client-id", "cli"])
        .args(["--scope", "openid profile email", "--json"])
        .env("DEVICEGATE_TOKEN_FILE", &file)
        .env("DEVICEGATE_LOG", "warn")
        .env_remove("DEVICEGATE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(login.stdout.take().unwrap());
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        (line, stdout)
    });
    let (line, mut stdout) = first.await.unwrap();
    let pending: Value = serde_json::from_str(&line).unwrap();
    approve_in_browser(
        &op.issuer,
        pending["verification_uri_complete"].as_str().unwrap(),
        "bob",
    )
    .await;
    let (status, rest) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        (login.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    assert!(status.success(), "{rest}");
    let done: Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(
        (done["status"].as_str(), done["subject"].as_str()),
        (Some("ok"), Some("bob"))
    );
    assert_eq!(done["email"], "bob@example.com");

    let out = Command::new(env!("CARGO_BIN_EXE_devicegate"))
        .args(["logout", "--json"])
        .env("DEVICEGATE_TOKEN_FILE", &file)
        .env_remove("DEVICEGATE_ISSUER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        gone["revoked"], true,
        "oidc-provider offers RFC 7009 revocation"
    );
}
