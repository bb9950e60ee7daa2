//! A real server on an ephemeral port with a temporary SQLite file, and helpers that drive it
//! over HTTP the way devices and people do.

use std::time::Duration;

use devicegate_core::keys::Algorithm;
use devicegate_core::password::hash_password;
use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_proto::GrantType;
use devicegate_server::Settings;
use devicegate_store::{ClientRecord, SqliteStore, Store, UserRecord};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub running: Option<devicegate::Running>,
    pub dir: tempfile::TempDir,
    /// The server's store, as the operator's CLI would open it beside the server.
    store: std::sync::Arc<dyn Store>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, tweak).await
    }

    /// On a listener the test bound already (to know the address beforehand).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut settings = Settings {
            issuer: base.clone(),
            signing_alg: Algorithm::Es256,
            ..Settings::default()
        };
        tweak(&mut settings);
        let store: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(SqliteStore::open(dir.path().join("devicegate.db")).unwrap());
        let running = devicegate::start(settings, store.clone(), listener)
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestServer {
            base,
            http,
            running: Some(running),
            dir,
            store,
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// A second server on this one's store (a new instance behind the same load balancer:
    /// tenants read afresh), at `http://{host}:{port}`; returns its base URL.
    pub async fn another_instance(&self, host: &str) -> (String, devicegate::Running) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{host}:{}", listener.local_addr().unwrap().port());
        let settings = Settings {
            issuer: base.clone(),
            signing_alg: Algorithm::Es256,
            ..Settings::default()
        };
        let running = devicegate::start(settings, self.store.clone(), listener)
            .await
            .unwrap();
        (base, running)
    }

    /// A tenant `id` (passwords on, no second factor), with a fixed UUID of its own.
    pub async fn tenant(&self, id: &str) {
        self.store()
            .create_tenant(&devicegate_store::TenantRecord {
                id: id.into(),
                uuid: "1f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b".into(),
                local_passwords: true,
                second_factor: "off".into(),
                created_at: devicegate_server::now(),
            })
            .await
            .unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A public client allowed everything, polling every `interval` seconds.
    pub async fn public_client(&self, id: &str, interval: u32) {
        self.client(ClientRecord {
            poll_interval_secs: Some(interval),
            ..client_record(id, None)
        })
        .await;
    }

    /// A confidential client; returns its secret.
    pub async fn confidential_client(&self, id: &str) -> String {
        let secret = Secret::generate(SecretKind::ClientSecret);
        self.client(client_record(id, Some(secret.hash()))).await;
        secret.expose().to_owned()
    }

    pub async fn client(&self, record: ClientRecord) {
        self.store().create_client(&record).await.unwrap();
    }

    /// A user with [`PASSWORD`]; returns their subject.
    pub async fn user(&self, username: &str) -> String {
        let u = UserRecord {
            id: random_id(),
            tenant: devicegate_store::DEFAULT_TENANT.into(),
            username: username.into(),
            password_hash: hash_password(PASSWORD),
            name: Some(format!("{username} Example")),
            email: Some(format!("{username}@example.com")),
            created_at: devicegate_server::now(),
            disabled: false,
        };
        self.store().create_user(&u).await.unwrap();
        u.id
    }

    pub async fn form(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let res = self
            .http
            .post(self.url(path))
            .form(params)
            .send()
            .await
            .unwrap();
        split(res).await
    }

    pub async fn device_authorization(&self, client_id: &str, scope: Option<&str>) -> Value {
        let mut p = vec![("client_id", client_id)];
        if let Some(s) = scope {
            p.push(("scope", s));
        }
        let (status, _, body) = self.form("/oauth2/device_authorization", &p).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn poll(&self, client_id: &str, device_code: &str) -> (StatusCode, Value) {
        self.poll_at("/oauth2/token", client_id, device_code).await
    }

    /// A device-code token request to the token endpoint at `path` (a tenant's, a dialect's).
    pub async fn poll_at(
        &self,
        path: &str,
        client_id: &str,
        device_code: &str,
    ) -> (StatusCode, Value) {
        let (s, _, b) = self
            .form(
                path,
                &[
                    ("grant_type", GrantType::DeviceCode.as_str()),
                    ("device_code", device_code),
                    ("client_id", client_id),
                ],
            )
            .await;
        (s, b)
    }

    pub async fn new_flow(&self) -> String {
        let (s, _, b) = self.api("POST", "/api/v1/flows", Some(json!({}))).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_str().unwrap().to_owned()
    }

    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let req = match method {
            "GET" => self.http.get(self.url(path)),
            _ => self.http.post(self.url(path)),
        };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        split(req.send().await.unwrap()).await
    }

    pub async fn act(&self, flow: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, b) = self
            .api("POST", &format!("/api/v1/flows/{flow}"), Some(body))
            .await;
        (s, b)
    }

    /// A person approves (or denies) `user_code` through the flows API.
    pub async fn decide(&self, user_code: &str, username: &str, accept: bool) {
        let flow = self.new_flow().await;
        let (s, b) = self
            .act(
                &flow,
                json!({"action": "user_code.verify", "user_code": user_code}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = self
            .act(
                &flow,
                json!({"action": "sign_on", "username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("CONSENT_REQUIRED")),
            "{b}"
        );
        let (s, b) = self
            .act(&flow, json!({"action": "consent", "accept": accept}))
            .await;
        assert_eq!(
            (s, b["status"].as_str()),
            (StatusCode::OK, Some("COMPLETED")),
            "{b}"
        );
    }

    /// Device authorization, approval, and the first successful poll.
    pub async fn tokens(&self, client_id: &str, scope: &str, username: &str) -> Value {
        let d = self.device_authorization(client_id, Some(scope)).await;
        self.decide(d["user_code"].as_str().unwrap(), username, true)
            .await;
        let (s, b) = self
            .poll(client_id, d["device_code"].as_str().unwrap())
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b
    }
}

pub fn client_record(id: &str, secret: Option<devicegate_core::SecretHash>) -> ClientRecord {
    ClientRecord {
        tenant: devicegate_store::DEFAULT_TENANT.into(),
        id: id.into(),
        name: format!("{id} app"),
        secret_hash: secret,
        scopes: Scopes::parse("openid profile email offline_access").unwrap(),
        grant_types: GrantType::all_names(),
        device_code_ttl_secs: None,
        poll_interval_secs: None,
        created_at: devicegate_server::now(),
        device_policy: Default::default(),
    }
}

/// Sends a request and reads its answer as JSON, whatever the status.
pub trait JsonOf {
    async fn json_of<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonOf for reqwest::RequestBuilder {
    async fn json_of<T: serde::de::DeserializeOwned>(self) -> T {
        self.send().await.unwrap().json().await.unwrap()
    }
}

pub async fn split(res: reqwest::Response) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

/// The claims of a JWT, unverified (verification is tested against the JWKS separately).
pub fn claims(jwt: &str) -> (Value, Value) {
    use base64::Engine;
    let dec = |p: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    let mut parts = jwt.split('.');
    (dec(parts.next().unwrap()), dec(parts.next().unwrap()))
}

pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// `(status, body)` of an `api` answer.
pub trait IntoPair {
    fn into_pair(self) -> (StatusCode, Value);
}

impl IntoPair for (StatusCode, reqwest::header::HeaderMap, Value) {
    fn into_pair(self) -> (StatusCode, Value) {
        (self.0, self.2)
    }
}

/// An https front for a server (a proxy terminating TLS on a port of its own and passing the
/// bytes on), for clients that insist on https, as the `oauth2` crate does for RFC 7009
/// revocation. Returns the front's base URL (`https://localhost:PORT`) and the DER of its
/// self-signed certificate, to trust.
pub async fn https_front(backend: std::net::SocketAddr) -> (String, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = certified.cert.der().to_vec();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone().into()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (base, cert)
}

/// A server with [`geoip_database`] that believes `X-Forwarded-For` from 127.0.0.1, with
/// user `ann` and client `tv`, which warns when approved from elsewhere; and the database's
/// directory, to keep.
pub async fn geoip_server() -> (TestServer, tempfile::TempDir) {
    let geo = tempfile::tempdir().unwrap();
    let db = geo.path().join("GeoLite2-City.mmdb");
    geoip_database(&db);
    let s = TestServer::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.geoip_database = Some(db);
    })
    .await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let (ok, _, err) = crate::cli::run(
        s.dir.path(),
        &["client", "update", "tv", "--proximity", "warn"],
        None,
    );
    assert!(ok, "{err}");
    (s, geo)
}

/// A small GeoIP2-City-shaped database in the MaxMind format, built with `mmdb-writer` and
/// read by the server with `maxminddb`, as an operator's GeoLite2 file would be:
/// 198.51.100.0/24 is in Lisbon, 203.0.113.0/24 in Oslo, and so is 127.0.0.0/8 (where the
/// tests' browser is). Names in the six languages devicegate speaks, as MaxMind gives them.
pub fn geoip_database(path: &std::path::Path) {
    use std::collections::BTreeMap;

    #[derive(serde::Serialize)]
    struct Named {
        geoname_id: u32,
        names: BTreeMap<&'static str, &'static str>,
    }
    #[derive(serde::Serialize)]
    struct Country {
        geoname_id: u32,
        iso_code: &'static str,
        names: BTreeMap<&'static str, &'static str>,
    }
    #[derive(serde::Serialize)]
    struct City {
        city: Named,
        country: Country,
    }
    const LANGS: [&str; 6] = ["en", "de", "fr", "es", "pt-BR", "ja"];
    let names = |n: [&'static str; 6]| LANGS.into_iter().zip(n).collect();
    let lisbon = City {
        city: Named {
            geoname_id: 2_267_057,
            names: names([
                "Lisbon",
                "Lissabon",
                "Lisbonne",
                "Lisboa",
                "Lisboa",
                "リスボン",
            ]),
        },
        country: Country {
            geoname_id: 2_264_397,
            iso_code: "PT",
            names: names([
                "Portugal",
                "Portugal",
                "Portugal",
                "Portugal",
                "Portugal",
                "ポルトガル",
            ]),
        },
    };
    let oslo = || City {
        city: Named {
            geoname_id: 3_143_244,
            names: names(["Oslo", "Oslo", "Oslo", "Oslo", "Oslo", "オスロ"]),
        },
        country: Country {
            geoname_id: 3_144_096,
            iso_code: "NO",
            names: names([
                "Norway",
                "Norwegen",
                "Norvège",
                "Noruega",
                "Noruega",
                "ノルウェー",
            ]),
        },
    };
    let mut w = mmdb_writer::Writer::new("GeoIP2-City");
    let net = |n: &str| n.parse::<ipnet::IpNet>().unwrap();
    w.insert(net("198.51.100.0/24"), &lisbon).unwrap();
    w.insert(net("203.0.113.0/24"), &oslo()).unwrap();
    w.insert(net("127.0.0.0/8"), &oslo()).unwrap();
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}
