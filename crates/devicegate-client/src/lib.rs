//! The device half of the OAuth 2.0 Device Authorization Grant ([RFC 8628]), for CLIs and
//! devices, against devicegate or any server that follows the RFC.
//!
//! - Discovery from an issuer ([`Client::discover`]: OpenID Connect Discovery, then RFC 8414),
//!   or explicit [`Endpoints`].
//! - The device authorization request ([`Client::authorize`]) as a public client or with
//!   `client_secret_basic` / `client_secret_post` ([`ClientAuth`]), with scopes and extra
//!   parameters ([`AuthorizationRequest`]).
//! - Polling by RFC 8628 §3.5 ([`Client::poll`]): waits `interval` (5 s when absent) before
//!   every request, adds 5 s on each `slow_down` and keeps it, stops at `expires_in`, backs
//!   off exponentially when the server cannot be reached, and ends with a typed [`Error`]
//!   (`AccessDenied`, `Expired`, `OAuth` for any other code). Dropping the future cancels it;
//!   [`Client::poll_until`] takes a cancel signal.
//! - Refresh ([`Client::refresh`], RFC 6749 §6) and revocation ([`Client::revoke`], RFC 7009)
//!   where the server advertises it.
//! - The login screen for a terminal ([`screen::render`]): the address, the user code in
//!   large letters, and a QR code of `verification_uri_complete`.
//!
//! The wire shapes are `devicegate-proto`'s, the same the server uses; from other servers
//! the lenient `Any*` shapes are read, which accept what RFC 6749 leaves optional.
//!
//! # Example
//!
//! ```
//! use devicegate_client::{AuthorizationRequest, Client};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), devicegate_client::Error> {
//! # let issuer = stand_in::start();
//! let client = Client::discover(&issuer, "my-cli").await?;
//! let request = AuthorizationRequest::new().scope("openid profile offline_access");
//! let authorization = client.authorize(&request).await?;
//! // Show the person where to go and what to type.
//! println!("{}", devicegate_client::screen::render(&authorization));
//! // Waits `interval` seconds before each poll, as RFC 8628 §3.5 asks.
//! let tokens = client.poll(&authorization).await?;
//! assert_eq!(tokens.access_token.expose(), "an-access-token");
//! if let Some(refresh_token) = &tokens.refresh_token {
//!     let _renewed = client.refresh(refresh_token).await?;
//! }
//! # Ok(())
//! # }
//! # // A stand-in authorization server on 127.0.0.1 that approves at once, so that this
//! # // example runs: discovery, a device code with a 1 s interval, and tokens.
//! # mod stand_in {
//! #     use std::io::{BufRead, BufReader, Read, Write};
//! #     pub fn start() -> String {
//! #         let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! #         let base = format!("http://{}", listener.local_addr().unwrap());
//! #         let issuer = base.clone();
//! #         std::thread::spawn(move || {
//! #             for conn in listener.incoming() {
//! #                 let mut conn = BufReader::new(conn.unwrap());
//! #                 let (mut line, mut length) = (String::new(), 0);
//! #                 conn.read_line(&mut line).unwrap();
//! #                 let path = line.split(' ').nth(1).unwrap_or("").to_owned();
//! #                 loop {
//! #                     let mut h = String::new();
//! #                     conn.read_line(&mut h).unwrap();
//! #                     if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
//! #                         length = v.trim().parse().unwrap();
//! #                     }
//! #                     if h == "\r\n" { break; }
//! #                 }
//! #                 conn.read_exact(&mut vec![0; length]).unwrap();
//! #                 let body = match path.as_str() {
//! #                     "/.well-known/openid-configuration" => format!(
//! #                         r#"{{"issuer":"{base}","token_endpoint":"{base}/token","device_authorization_endpoint":"{base}/device_authorization"}}"#),
//! #                     "/device_authorization" => format!(
//! #                         r#"{{"device_code":"dc","user_code":"BDKW-QZTR","verification_uri":"{base}/device","verification_uri_complete":"{base}/device?user_code=BDKW-QZTR","expires_in":600,"interval":1}}"#),
//! #                     _ => r#"{"access_token":"an-access-token","token_type":"Bearer","expires_in":3600,"refresh_token":"r"}"#.to_owned(),
//! #                 };
//! #                 let _ = write!(conn.get_mut(), "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
//! #             }
//! #         });
//! #         issuer
//! #     }
//! # }
//! ```
//!
//! [RFC 8628]: https://www.rfc-editor.org/rfc/rfc8628

mod poll;
pub mod screen;
mod secret;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devicegate_proto::{
    AnyErrorResponse, AnyServerMetadata, AnyTokenResponse, DeviceAuthorizationResponse, ErrorCode,
    GrantType,
};
use serde::{Deserialize, Serialize};

mod id_token;
pub use id_token::verify_id_token;
pub use poll::{Clock, DEFAULT_INTERVAL, SLOW_DOWN_STEP, TokioClock};
pub use secret::Secret;

/// Everything that can go wrong, typed where a caller acts on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RFC 8628 §3.5 `access_denied`: the person said no.
    #[error("access denied: the request was declined")]
    AccessDenied,
    /// RFC 8628 §3.5 `expired_token`, or `expires_in` passed while polling.
    #[error("the device code expired before it was approved")]
    Expired,
    /// The cancel signal given to [`Client::poll_until`] fired.
    #[error("cancelled")]
    Cancelled,
    /// Any other OAuth error (RFC 6749 §5.2), with the code as the server sent it.
    #[error("the server refused: {error}{}", describe(.description))]
    OAuth {
        error: String,
        description: Option<String>,
    },
    /// The request did not reach the server, or its answer could not be read.
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something the specifications do not allow.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol { url: String, detail: String },
    /// The server does not offer what was asked for (no revocation endpoint, no device
    /// authorization endpoint in its metadata, no refresh token).
    #[error("not supported by this server: {0}")]
    Unsupported(&'static str),
    /// A JWT that cannot be decoded.
    #[error("malformed JWT: {0}")]
    Jwt(&'static str),
}

fn describe(d: &Option<String>) -> String {
    d.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
}

impl Error {
    /// The OAuth error code, for errors that carry one.
    pub fn oauth_code(&self) -> Option<&str> {
        match self {
            Error::AccessDenied => Some(ErrorCode::AccessDenied.as_str()),
            Error::Expired => Some(ErrorCode::ExpiredToken.as_str()),
            Error::OAuth { error, .. } => Some(error),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The endpoints a device flow needs. `device_authorization` and `token` are required; the
/// others enable revocation, userinfo and ID token checks when the server has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The issuer, when known (from discovery, RFC 8414 §2).
    pub issuer: Option<String>,
    pub device_authorization: String,
    pub token: String,
    pub revocation: Option<String>,
    pub userinfo: Option<String>,
    pub jwks_uri: Option<String>,
}

impl Endpoints {
    /// Explicit endpoints, for a server without discovery.
    pub fn new(device_authorization: impl Into<String>, token: impl Into<String>) -> Endpoints {
        Endpoints {
            issuer: None,
            device_authorization: device_authorization.into(),
            token: token.into(),
            revocation: None,
            userinfo: None,
            jwks_uri: None,
        }
    }

    /// The endpoints of `issuer`, from `/.well-known/openid-configuration` (OpenID Connect
    /// Discovery 1.0 §4), else `/.well-known/oauth-authorization-server` (RFC 8414 §3).
    pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Endpoints> {
        let issuer = issuer.trim_end_matches('/');
        let mut last = None;
        for url in well_known_urls(issuer) {
            match get_metadata(http, &url).await {
                Ok(Some(meta)) => return Endpoints::from_metadata(issuer, &url, meta),
                Ok(None) => last = Some(url),
                Err(e) => return Err(e),
            }
        }
        Err(Error::Protocol {
            url: last.unwrap_or_default(),
            detail: "no discovery document at either well-known address".into(),
        })
    }

    fn from_metadata(issuer: &str, url: &str, meta: AnyServerMetadata) -> Result<Endpoints> {
        // RFC 8414 §3.3 and OIDC Discovery §4.3: the document must name the issuer it was
        // fetched for, or it could send the tokens of one issuer to another.
        if meta.issuer.trim_end_matches('/') != issuer {
            return Err(Error::Protocol {
                url: url.into(),
                detail: format!(
                    "the document names issuer {:?}, not {issuer:?}",
                    meta.issuer
                ),
            });
        }
        let device_authorization = meta
            .device_authorization_endpoint
            .ok_or(Error::Unsupported("device_authorization_endpoint"))?;
        Ok(Endpoints {
            issuer: Some(meta.issuer),
            device_authorization,
            token: meta.token_endpoint,
            revocation: meta.revocation_endpoint,
            userinfo: meta.userinfo_endpoint,
            jwks_uri: meta.jwks_uri,
        })
    }
}

/// Where `issuer`'s metadata may be: OpenID Connect appends its well-known path to the
/// issuer; RFC 8414 §3.1 inserts its own between the host and the issuer's path.
pub fn well_known_urls(issuer: &str) -> [String; 2] {
    let openid = format!("{issuer}/.well-known/openid-configuration");
    let after_scheme = issuer.find("://").map_or(0, |i| i + 3);
    let (origin, path) = match issuer[after_scheme..].find('/') {
        Some(i) => issuer.split_at(after_scheme + i),
        None => (issuer, ""),
    };
    [
        openid,
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
    ]
}

/// `Ok(None)` when the server has no document at `url`.
async fn get_metadata(http: &reqwest::Client, url: &str) -> Result<Option<AnyServerMetadata>> {
    let http_err = |source| Error::Http {
        url: url.into(),
        source,
    };
    let res = http.get(url).send().await.map_err(http_err)?;
    if matches!(res.status().as_u16(), 404 | 410 | 405 | 400) {
        return Ok(None);
    }
    if !res.status().is_success() {
        return Err(Error::Protocol {
            url: url.into(),
            detail: format!("HTTP {}", res.status()),
        });
    }
    let text = res.text().await.map_err(http_err)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Protocol {
            url: url.into(),
            detail: format!("metadata is not valid JSON: {e}"),
        })
}

/// How the client authenticates at the device authorization, token and revocation
/// endpoints (RFC 6749 §2.3.1; RFC 8628 §3.1 requires it of confidential clients).
#[derive(Debug, Clone, Default)]
pub enum ClientAuth {
    /// A public client: `client_id` in the body, nothing else.
    #[default]
    None,
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret.
    SecretBasic(Secret),
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    SecretPost(Secret),
}

/// What to ask for in the device authorization request (RFC 8628 §3.1).
#[derive(Debug, Clone, Default)]
pub struct AuthorizationRequest {
    scopes: Vec<String>,
    params: Vec<(String, String)>,
}

impl AuthorizationRequest {
    pub fn new() -> AuthorizationRequest {
        AuthorizationRequest::default()
    }

    /// Adds scopes; a space-separated list is split (RFC 6749 §3.3).
    pub fn scope(mut self, scopes: &str) -> Self {
        for s in scopes.split_ascii_whitespace() {
            if !self.scopes.iter().any(|have| have == s) {
                self.scopes.push(s.to_owned());
            }
        }
        self
    }

    /// An extra parameter, such as `audience`, `resource` or `prompt`, for servers that take
    /// one. The parameters the grant itself sets (`client_id`, `scope`) cannot be overridden.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

/// A device authorization response (RFC 8628 §3.2), with the time it arrived. The device code
/// is a secret: `Debug` hides it.
#[derive(Clone)]
pub struct Authorization {
    response: DeviceAuthorizationResponse,
    received: Instant,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("device_code", &"***")
            .field("user_code", &self.response.user_code)
            .field("verification_uri", &self.response.verification_uri)
            .field("expires_in", &self.response.expires_in)
            .field("interval", &self.response.interval)
            .finish()
    }
}

impl Authorization {
    /// Builds one from a response obtained elsewhere; `received` is when it arrived.
    pub fn from_response(response: DeviceAuthorizationResponse, received: Instant) -> Self {
        Authorization { response, received }
    }

    pub fn user_code(&self) -> &str {
        &self.response.user_code
    }

    pub fn verification_uri(&self) -> &str {
        &self.response.verification_uri
    }

    /// RFC 8628 §3.3.1: the address with the code in it, for a QR code or a link.
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.response.verification_uri_complete.as_deref()
    }

    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.response.expires_in)
    }

    /// When the codes stop working.
    pub fn expires_at(&self) -> Instant {
        self.received + self.expires_in()
    }

    /// The poll interval the server asked for, or RFC 8628's default of 5 s.
    pub fn interval(&self) -> Duration {
        self.response
            .interval
            .map_or(DEFAULT_INTERVAL, Duration::from_secs)
    }

    /// The response as the server sent it (the device code included).
    pub fn response(&self) -> &DeviceAuthorizationResponse {
        &self.response
    }
}

/// Tokens from the token endpoint (RFC 6749 §5.1). Secrets hide in `Debug`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: Secret,
    pub token_type: String,
    /// Seconds the access token lives, counted from the response, if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret>,
    /// The granted scope, when the server said it (RFC 6749 §5.1: omitted when it is the
    /// requested one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl From<AnyTokenResponse> for Tokens {
    fn from(r: AnyTokenResponse) -> Self {
        Tokens {
            access_token: r.access_token.into(),
            token_type: r.token_type,
            expires_in: r.expires_in,
            refresh_token: r.refresh_token.map(Secret::from),
            id_token: r.id_token.map(Secret::from),
            scope: r.scope,
        }
    }
}

/// RFC 7009 §2.1 `token_type_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

impl TokenTypeHint {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenTypeHint::AccessToken => "access_token",
            TokenTypeHint::RefreshToken => "refresh_token",
        }
    }
}

/// How one token endpoint request ended.
enum Answer {
    Tokens(Tokens),
    Refused(AnyErrorResponse),
    /// An answer that is neither tokens nor an OAuth error.
    Malformed(Error),
    /// Transport failure, timeout, or a 5xx/429: worth retrying later.
    Unreachable(Error),
}

/// A device-flow client for one client id at one server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
    client_id: String,
    auth: ClientAuth,
    clock: Arc<dyn Clock>,
}

impl Client {
    /// A client of `endpoints` as `client_id`, public until [`Client::with_auth`].
    pub fn new(endpoints: Endpoints, client_id: impl Into<String>) -> Client {
        Client {
            http: default_http(),
            endpoints,
            client_id: client_id.into(),
            auth: ClientAuth::None,
            clock: Arc::new(TokioClock),
        }
    }

    /// Discovers `issuer`'s endpoints (see [`Endpoints::discover`]).
    pub async fn discover(issuer: &str, client_id: impl Into<String>) -> Result<Client> {
        let http = default_http();
        let endpoints = Endpoints::discover(&http, issuer).await?;
        Ok(Client {
            http,
            ..Client::new(endpoints, client_id)
        })
    }

    pub fn with_auth(mut self, auth: ClientAuth) -> Client {
        self.auth = auth;
        self
    }

    /// Uses this HTTP client (proxies, timeouts, TLS roots).
    pub fn with_http(mut self, http: reqwest::Client) -> Client {
        self.http = http;
        self
    }

    /// Uses this clock for polling (tests use a fake one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Client {
        self.clock = clock;
        self
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// RFC 8628 §3.1: asks for a device code and a user code.
    pub async fn authorize(&self, request: &AuthorizationRequest) -> Result<Authorization> {
        let mut form = Vec::new();
        if !request.scopes.is_empty() {
            form.push(("scope".to_owned(), request.scopes.join(" ")));
        }
        for (k, v) in &request.params {
            if !matches!(k.as_str(), "client_id" | "client_secret" | "scope") {
                form.push((k.clone(), v.clone()));
            }
        }
        let url = &self.endpoints.device_authorization;
        let res = self.post(url, form).await?;
        let received = self.clock.now();
        let status = res.status();
        let text = res.text().await.map_err(|source| Error::Http {
            url: url.clone(),
            source,
        })?;
        if !status.is_success() {
            return Err(refused(url, status, &text));
        }
        let response: DeviceAuthorizationResponse =
            serde_json::from_str(&text).map_err(|e| Error::Protocol {
                url: url.clone(),
                detail: format!("not a device authorization response: {e}"),
            })?;
        Ok(Authorization { response, received })
    }

    /// RFC 8628 §3.4–3.5: polls the token endpoint until the person approves or denies, or
    /// the code expires. Cancel by dropping the future (a `tokio::select!` arm, a timeout).
    pub async fn poll(&self, authorization: &Authorization) -> Result<Tokens> {
        let r = &authorization.response;
        let schedule = poll::Schedule::new(r.interval, r.expires_in, authorization.received);
        let form = || {
            vec![
                (
                    "grant_type".to_owned(),
                    GrantType::DeviceCode.as_str().to_owned(),
                ),
                ("device_code".to_owned(), r.device_code.clone()),
            ]
        };
        poll::run(self.clock.as_ref(), schedule, || async {
            match self.token_request(form()).await {
                Answer::Tokens(t) => poll::Outcome::Tokens(t),
                Answer::Unreachable(_) => poll::Outcome::Unreachable,
                Answer::Malformed(e) => poll::Outcome::Fatal(e),
                Answer::Refused(e) => match e.code() {
                    Some(ErrorCode::AuthorizationPending) => poll::Outcome::Pending,
                    Some(ErrorCode::SlowDown) => poll::Outcome::SlowDown {
                        interval: e.interval,
                    },
                    Some(ErrorCode::AccessDenied) => poll::Outcome::Fatal(Error::AccessDenied),
                    Some(ErrorCode::ExpiredToken) => poll::Outcome::Fatal(Error::Expired),
                    _ => poll::Outcome::Fatal(oauth_error(e)),
                },
            }
        })
        .await
    }

    /// [`Client::poll`], ended with [`Error::Cancelled`] as soon as `cancel` completes.
    pub async fn poll_until(
        &self,
        authorization: &Authorization,
        cancel: impl Future<Output = ()>,
    ) -> Result<Tokens> {
        tokio::select! {
            r = self.poll(authorization) => r,
            () = cancel => Err(Error::Cancelled),
        }
    }

    /// RFC 6749 §6: new tokens for a refresh token. When the server issues no new refresh
    /// token, the old one stays in the result (it is still the one to use).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens> {
        let form = vec![
            (
                "grant_type".to_owned(),
                GrantType::RefreshToken.as_str().to_owned(),
            ),
            (
                "refresh_token".to_owned(),
                refresh_token.expose().to_owned(),
            ),
        ];
        match self.token_request(form).await {
            Answer::Tokens(mut t) => {
                t.refresh_token.get_or_insert_with(|| refresh_token.clone());
                Ok(t)
            }
            Answer::Refused(e) => Err(oauth_error(e)),
            Answer::Unreachable(e) | Answer::Malformed(e) => Err(e),
        }
    }

    /// RFC 7009 §2: asks the server to revoke `token`. [`Error::Unsupported`] when it has no
    /// revocation endpoint.
    pub async fn revoke(&self, token: &Secret, hint: TokenTypeHint) -> Result<()> {
        let url = self
            .endpoints
            .revocation
            .as_ref()
            .ok_or(Error::Unsupported("revocation_endpoint"))?;
        let form = vec![
            ("token".to_owned(), token.expose().to_owned()),
            ("token_type_hint".to_owned(), hint.as_str().to_owned()),
        ];
        let res = self.post(url, form).await?;
        let status = res.status();
        // §2.2: 200 whether or not the token was valid; an error body otherwise (§2.2.1).
        if status.is_success() {
            return Ok(());
        }
        let text = res.text().await.unwrap_or_default();
        Err(refused(url, status, &text))
    }

    async fn token_request(&self, form: Vec<(String, String)>) -> Answer {
        let url = &self.endpoints.token;
        let res = match self.post(url, form).await {
            Ok(r) => r,
            Err(e) => return Answer::Unreachable(e),
        };
        let status = res.status();
        let text = match res.text().await {
            Ok(t) => t,
            Err(source) => {
                return Answer::Unreachable(Error::Http {
                    url: url.clone(),
                    source,
                });
            }
        };
        if status.is_server_error() || status.as_u16() == 429 {
            return Answer::Unreachable(refused(url, status, &text));
        }
        if status.is_success() {
            return match serde_json::from_str::<AnyTokenResponse>(&text) {
                Ok(t) => Answer::Tokens(t.into()),
                Err(e) => Answer::Malformed(Error::Protocol {
                    url: url.clone(),
                    detail: format!("not a token response: {e}"),
                }),
            };
        }
        match serde_json::from_str::<AnyErrorResponse>(&text) {
            Ok(e) => Answer::Refused(e),
            Err(_) => Answer::Malformed(Error::Protocol {
                url: url.clone(),
                detail: format!("HTTP {status} without an OAuth error body"),
            }),
        }
    }

    /// A form POST with the client's authentication (RFC 6749 §2.3.1).
    async fn post(&self, url: &str, mut form: Vec<(String, String)>) -> Result<reqwest::Response> {
        let req = self.http.post(url).header("accept", "application/json");
        let req = authenticate(req, &self.client_id, &self.auth, &mut form);
        req.form(&form).send().await.map_err(|source| Error::Http {
            url: url.to_owned(),
            source,
        })
    }
}

/// Adds a client's authentication (RFC 6749 §2.3.1) to a form request: `client_id` (and
/// `client_secret`) first in `form`, or an HTTP Basic header.
pub fn authenticate(
    req: reqwest::RequestBuilder,
    client_id: &str,
    auth: &ClientAuth,
    form: &mut Vec<(String, String)>,
) -> reqwest::RequestBuilder {
    match auth {
        ClientAuth::None => {
            form.insert(0, ("client_id".into(), client_id.to_owned()));
            req
        }
        ClientAuth::SecretPost(secret) => {
            form.insert(0, ("client_id".into(), client_id.to_owned()));
            form.insert(1, ("client_secret".into(), secret.expose().to_owned()));
            req
        }
        ClientAuth::SecretBasic(secret) => {
            // §2.3.1: both are form-urlencoded before they go into the Basic header.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect();
            req.basic_auth::<String, String>(enc(client_id), Some(enc(secret.expose())))
        }
    }
}

fn default_http() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

fn oauth_error(e: AnyErrorResponse) -> Error {
    Error::OAuth {
        error: e.error,
        description: e.error_description,
    }
}

fn refused(url: &str, status: reqwest::StatusCode, text: &str) -> Error {
    match serde_json::from_str::<AnyErrorResponse>(text) {
        Ok(e) if e.code() == Some(ErrorCode::AccessDenied) => Error::AccessDenied,
        Ok(e) => oauth_error(e),
        Err(_) => Error::Protocol {
            url: url.to_owned(),
            detail: format!("HTTP {status}"),
        },
    }
}

/// The claims of a JWT, decoded but **not verified**: for showing what a token says, never
/// for trusting it. Verify ID tokens against the issuer's JWKS before relying on them.
pub fn unverified_claims(jwt: &str) -> Result<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).ok_or(Error::Jwt("no payload"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| Error::Jwt("payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| Error::Jwt("payload is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8414_3_1_well_known_goes_between_host_and_path() {
        assert_eq!(
            well_known_urls("https://a.example/tenant/1"),
            [
                "https://a.example/tenant/1/.well-known/openid-configuration".to_owned(),
                "https://a.example/.well-known/oauth-authorization-server/tenant/1".to_owned(),
            ]
        );
        assert_eq!(
            well_known_urls("http://127.0.0.1:8080")[1],
            "http://127.0.0.1:8080/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn rfc8414_3_3_metadata_for_another_issuer_is_refused() {
        let meta: AnyServerMetadata = serde_json::from_str(
            r#"{"issuer":"https://evil.example","token_endpoint":"https://evil.example/t","device_authorization_endpoint":"https://evil.example/d"}"#,
        )
        .unwrap();
        let e = Endpoints::from_metadata("https://good.example", "u", meta).unwrap_err();
        assert!(matches!(e, Error::Protocol { .. }), "{e}");
    }

    #[test]
    fn scopes_are_split_and_deduplicated() {
        let r = AuthorizationRequest::new()
            .scope("openid  profile")
            .scope("openid email");
        assert_eq!(r.scopes(), ["openid", "profile", "email"]);
    }

    #[test]
    fn authorization_debug_hides_the_device_code() {
        let a = Authorization::from_response(
            DeviceAuthorizationResponse {
                device_code: "dgd_secret".into(),
                user_code: "BDKW-QZTR".into(),
                verification_uri: "https://i/device".into(),
                verification_uri_complete: None,
                expires_in: 600,
                interval: None,
            },
            Instant::now(),
        );
        let d = format!("{a:?}");
        assert!(!d.contains("dgd_secret") && d.contains("BDKW-QZTR"), "{d}");
        assert_eq!(a.interval(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn poll_until_ends_with_cancelled_when_the_signal_fires() {
        let a = Authorization::from_response(
            DeviceAuthorizationResponse {
                device_code: "dc".into(),
                user_code: "BDKW-QZTR".into(),
                verification_uri: "http://127.0.0.1:9/device".into(),
                verification_uri_complete: None,
                expires_in: 600,
                interval: Some(1),
            },
            Instant::now(),
        );
        let client = Client::new(
            Endpoints::new("http://127.0.0.1:9/d", "http://127.0.0.1:9/t"),
            "cli",
        );
        let started = Instant::now();
        let r = client.poll_until(&a, std::future::ready(())).await;
        assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn unverified_claims_decodes_the_payload() {
        // {"alg":"none"}.{"sub":"ann"}.
        let c = unverified_claims("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbm4ifQ.").unwrap();
        assert_eq!(c["sub"], "ann");
        assert!(unverified_claims("nope").is_err());
    }
}
