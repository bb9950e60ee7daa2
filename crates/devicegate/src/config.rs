//! Configuration: a TOML file (`--config`), every key also a `DEVICEGATE_*` environment
//! variable, command-line flags over both, defaults under all.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use devicegate_core::keys::Algorithm;
use devicegate_server::{ConnectionLimits, Settings};
use serde::Deserialize;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            // The URL may hold a password: show only where it points.
            Database::Postgres(url) => {
                let host = url.rsplit('@').next().unwrap_or(url);
                let host = host
                    .trim_start_matches("postgres://")
                    .trim_start_matches("postgresql://");
                write!(f, "postgres://…@{host}")
            }
        }
    }
}

/// Lifetimes above this are refused: they would overflow time arithmetic and are never meant.
const MAX_LIFETIME_SECS: u64 = 10 * 365 * 86_400;

/// Every key of the config file. Each is also an environment variable (`listen` is
/// `DEVICEGATE_LISTEN`) and, for `serve`, a flag (`--listen`).
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    /// Database URL: `sqlite://PATH` or a plain path [default: sqlite://devicegate.db]
    #[arg(long, global = true, env = "DEVICEGATE_DATABASE")]
    pub database: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, global = true, env = "DEVICEGATE_LISTEN")]
    pub listen: Option<String>,
    /// Issuer URL, as devices and browsers reach this server [default: http://localhost:8080]
    #[arg(long, global = true, env = "DEVICEGATE_ISSUER")]
    pub issuer: Option<String>,
    /// Where people enter codes, if a custom UI serves it [default: {issuer}/device]
    #[arg(long, global = true, env = "DEVICEGATE_VERIFICATION_URI")]
    pub verification_uri: Option<String>,
    /// The `aud` of access tokens: the resource servers they are for [default: the issuer]
    #[arg(long, global = true, env = "DEVICEGATE_ACCESS_TOKEN_AUDIENCE")]
    pub access_token_audience: Option<String>,
    /// The shortest user codes, 8 to 12 characters; codes grow longer by themselves as codes
    /// pile up, to keep the guessing odds below 2^-20 [default: 8]
    #[arg(long, global = true, env = "DEVICEGATE_USER_CODE_LENGTH")]
    pub user_code_length: Option<usize>,
    /// Lifetime of device and user codes [default: 600]
    #[arg(long, global = true, env = "DEVICEGATE_DEVICE_CODE_TTL_SECS")]
    pub device_code_ttl_secs: Option<u64>,
    /// Minimum seconds between polls (RFC 8628 interval) [default: 5]
    #[arg(long, global = true, env = "DEVICEGATE_POLL_INTERVAL_SECS")]
    pub poll_interval_secs: Option<u32>,
    /// Lifetime of access and ID tokens [default: 3600]
    #[arg(long, global = true, env = "DEVICEGATE_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,
    /// How long audit events are kept, in days [default: 90]
    #[arg(long, global = true, env = "DEVICEGATE_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u64>,
    /// How long a rotated-in signing key is published before it signs, so that relying
    /// parties' cached key sets hold it first [default: 3600]
    #[arg(long, global = true, env = "DEVICEGATE_KEY_PUBLISH_SECS")]
    pub key_publish_secs: Option<u64>,
    /// Lifetime of refresh tokens, renewed on every rotation [default: 2592000]
    #[arg(long, global = true, env = "DEVICEGATE_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,
    /// Absolute lifetime of a refresh token family: no rotation renews a token past its
    /// first token's issue plus this [default: 7776000]
    #[arg(
        long,
        global = true,
        env = "DEVICEGATE_REFRESH_TOKEN_MAX_LIFETIME_SECS"
    )]
    pub refresh_token_max_lifetime_secs: Option<u64>,
    /// Lifetime of a verification flow [default: 900]
    #[arg(long, global = true, env = "DEVICEGATE_FLOW_TTL_SECS")]
    pub flow_ttl_secs: Option<u64>,
    /// Signing algorithm of new tokens: RS256, ES256 or EdDSA [default: RS256]
    #[arg(long, global = true, env = "DEVICEGATE_SIGNING_ALG")]
    pub signing_alg: Option<String>,
    /// Signing algorithm of access tokens alone, when it should differ from signing_alg (for
    /// example ES256 access tokens beside RS256 ID tokens) [default: signing_alg]
    #[arg(long, global = true, env = "DEVICEGATE_ACCESS_TOKEN_SIGNING_ALG")]
    pub access_token_signing_alg: Option<String>,
    /// Origins allowed to call the flows API from browsers, comma-separated [default: none]
    #[arg(
        long,
        global = true,
        env = "DEVICEGATE_CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_allowed_origins: Option<Vec<String>>,
    /// The WebAuthn relying party id for passkeys: the issuer's host or a parent domain of it
    /// [default: the issuer's host]
    #[arg(long, global = true, env = "DEVICEGATE_WEBAUTHN_RP_ID")]
    pub webauthn_rp_id: Option<String>,
    /// Password hashes computed at once [default: number of CPUs]
    #[arg(long, global = true, env = "DEVICEGATE_MAX_CONCURRENT_HASHES")]
    pub max_concurrent_hashes: Option<usize>,
    /// Proxies whose X-Forwarded-For is believed, comma-separated IPs [default: none]
    #[arg(
        long,
        global = true,
        env = "DEVICEGATE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Option<Vec<String>>,
    /// Lifetime of a browser session on the verification pages [default: 28800]
    #[arg(long, global = true, env = "DEVICEGATE_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u64>,
    /// New device codes one address may hold per code lifetime, per tenant; 0: no cap
    /// [default: 20]
    #[arg(long, global = true, env = "DEVICEGATE_MAX_PENDING_CODES_PER_ADDRESS")]
    pub max_pending_codes_per_address: Option<u32>,
    /// New device codes one client may hold per code lifetime; 0: no cap [default: 10000]
    #[arg(long, global = true, env = "DEVICEGATE_MAX_PENDING_CODES_PER_CLIENT")]
    pub max_pending_codes_per_client: Option<u32>,
    /// Verification flows one address may start per flow lifetime; 0: no cap [default: 100]
    #[arg(long, global = true, env = "DEVICEGATE_MAX_FLOWS_PER_ADDRESS")]
    pub max_flows_per_address: Option<u32>,
    /// Product name on the verification pages [default: devicegate]
    #[arg(long, global = true, env = "DEVICEGATE_PRODUCT_NAME")]
    pub product_name: Option<String>,
    /// Logo on the verification pages: a .png, .svg, .jpg or .webp file [default: built in]
    #[arg(long, global = true, env = "DEVICEGATE_LOGO_FILE")]
    pub logo_file: Option<std::path::PathBuf>,
    /// Accent colour of the verification pages, #rrggbb [default: #2155cd]
    #[arg(long, global = true, env = "DEVICEGATE_ACCENT_COLOR")]
    pub accent_color: Option<String>,
    /// Directory of templates replacing the built-in pages of the same name [default: none]
    #[arg(long, global = true, env = "DEVICEGATE_TEMPLATES_DIR")]
    pub templates_dir: Option<std::path::PathBuf>,
    /// One language for every page and flows-API message, whatever the browser asks for
    /// (en, de, fr, es, pt, ja, or one added in locales_dir) [default: the browser's]
    #[arg(long, global = true, env = "DEVICEGATE_LANGUAGE")]
    pub language: Option<String>,
    /// Directory of <lang>.ftl files whose messages replace the built-in ones, or add a
    /// language [default: none]
    #[arg(long, global = true, env = "DEVICEGATE_LOCALES_DIR")]
    pub locales_dir: Option<std::path::PathBuf>,
    /// A MaxMind-format GeoIP2/GeoLite2 City or Country database: the consent page and the
    /// flows API say where the device and the approver are [default: none]
    #[arg(long, global = true, env = "DEVICEGATE_GEOIP_DATABASE")]
    pub geoip_database: Option<std::path::PathBuf>,
    /// Seconds a client has to send a request head, from connecting or from the request's
    /// first byte; slower clients are disconnected [default: 10]
    #[arg(long, global = true, env = "DEVICEGATE_HEADER_READ_TIMEOUT_SECS")]
    pub header_read_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request body after its head; slower requests get 408
    /// [default: 30]
    #[arg(long, global = true, env = "DEVICEGATE_BODY_READ_TIMEOUT_SECS")]
    pub body_read_timeout_secs: Option<u64>,
    /// Seconds a keep-alive connection may wait for its next request [default: 60]
    #[arg(long, global = true, env = "DEVICEGATE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Open connections per client address, 0 for no cap; a proxy or load balancer in front
    /// is one address, so raise it there [default: 64]
    #[arg(long, global = true, env = "DEVICEGATE_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C before the server
    /// exits anyway [default: 10]
    #[arg(long, global = true, env = "DEVICEGATE_SHUTDOWN_DRAIN_SECS")]
    pub shutdown_drain_secs: Option<u64>,
    /// Log filter, as in RUST_LOG [default: info]
    #[arg(long, global = true, env = "DEVICEGATE_LOG")]
    pub log: Option<String>,
    /// Whether people of the default tenant may sign in with a local password; `serve` applies
    /// it at start (`devicegate tenant passwords` switches it meanwhile) [default: unchanged]
    #[arg(long, global = true, env = "DEVICEGATE_LOCAL_PASSWORDS")]
    pub local_passwords: Option<bool>,
    /// `[[upstream]]` tables, in the config file only: the organisations' OpenID providers
    /// `serve` creates or updates at start.
    #[arg(skip)]
    #[serde(default)]
    pub upstream: Vec<UpstreamKeys>,
}

/// An `[[upstream]]` table of the config file: an organisation's OpenID provider, with the
/// fields of `devicegate upstream add` (`issuer` is the provider's). `serve` creates or updates
/// it at start; removing the table does not delete it (`devicegate upstream delete` does).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamKeys {
    /// The tenant it signs people in to [default: default]
    pub tenant: Option<String>,
    pub id: String,
    pub name: String,
    /// The provider's issuer URL, exactly as its discovery document says.
    pub issuer: String,
    pub client_id: String,
    /// The environment variable holding the client secret (the way to give one).
    pub client_secret_env: Option<String>,
    /// The client secret inline: accepted with a warning, since config files get copied.
    pub client_secret: Option<String>,
    /// `client_secret_basic` or `client_secret_post` [default: client_secret_basic with a
    /// secret, `none` without]
    pub auth_method: Option<String>,
    /// Space-separated, with `openid` [default: openid profile email]
    pub scope: Option<String>,
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// `NAME=VALUE` strings, every one required.
    #[serde(default)]
    pub require_claims: Vec<String>,
    #[serde(default)]
    pub link_by_email: bool,
    pub max_age_secs: Option<u32>,
    #[serde(default)]
    pub force_login: bool,
}

impl std::fmt::Debug for UpstreamKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamKeys")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret_env", &self.client_secret_env)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Values from `self` (flags and environment) over values from `file`.
    pub fn over(self, file: Keys) -> Keys {
        Keys {
            database: self.database.or(file.database),
            listen: self.listen.or(file.listen),
            issuer: self.issuer.or(file.issuer),
            verification_uri: self.verification_uri.or(file.verification_uri),
            user_code_length: self.user_code_length.or(file.user_code_length),
            access_token_audience: self.access_token_audience.or(file.access_token_audience),
            device_code_ttl_secs: self.device_code_ttl_secs.or(file.device_code_ttl_secs),
            poll_interval_secs: self.poll_interval_secs.or(file.poll_interval_secs),
            access_token_ttl_secs: self.access_token_ttl_secs.or(file.access_token_ttl_secs),
            key_publish_secs: self.key_publish_secs.or(file.key_publish_secs),
            audit_retention_days: self.audit_retention_days.or(file.audit_retention_days),
            refresh_token_ttl_secs: self.refresh_token_ttl_secs.or(file.refresh_token_ttl_secs),
            refresh_token_max_lifetime_secs: self
                .refresh_token_max_lifetime_secs
                .or(file.refresh_token_max_lifetime_secs),
            flow_ttl_secs: self.flow_ttl_secs.or(file.flow_ttl_secs),
            signing_alg: self.signing_alg.or(file.signing_alg),
            access_token_signing_alg: self
                .access_token_signing_alg
                .or(file.access_token_signing_alg),
            cors_allowed_origins: self.cors_allowed_origins.or(file.cors_allowed_origins),
            webauthn_rp_id: self.webauthn_rp_id.or(file.webauthn_rp_id),
            max_concurrent_hashes: self.max_concurrent_hashes.or(file.max_concurrent_hashes),
            trusted_proxies: self.trusted_proxies.or(file.trusted_proxies),
            session_ttl_secs: self.session_ttl_secs.or(file.session_ttl_secs),
            max_pending_codes_per_address: self
                .max_pending_codes_per_address
                .or(file.max_pending_codes_per_address),
            max_pending_codes_per_client: self
                .max_pending_codes_per_client
                .or(file.max_pending_codes_per_client),
            max_flows_per_address: self.max_flows_per_address.or(file.max_flows_per_address),
            product_name: self.product_name.or(file.product_name),
            logo_file: self.logo_file.or(file.logo_file),
            accent_color: self.accent_color.or(file.accent_color),
            templates_dir: self.templates_dir.or(file.templates_dir),
            language: self.language.or(file.language),
            locales_dir: self.locales_dir.or(file.locales_dir),
            geoip_database: self.geoip_database.or(file.geoip_database),
            header_read_timeout_secs: self
                .header_read_timeout_secs
                .or(file.header_read_timeout_secs),
            body_read_timeout_secs: self.body_read_timeout_secs.or(file.body_read_timeout_secs),
            idle_timeout_secs: self.idle_timeout_secs.or(file.idle_timeout_secs),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address),
            shutdown_drain_secs: self.shutdown_drain_secs.or(file.shutdown_drain_secs),
            log: self.log.or(file.log),
            local_passwords: self.local_passwords.or(file.local_passwords),
            upstream: if self.upstream.is_empty() {
                file.upstream
            } else {
                self.upstream
            },
        }
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Keys> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// The database the URL names: `sqlite://PATH` (or a plain path), or `postgres://…`.
    pub fn database(&self) -> anyhow::Result<Database> {
        let url = self.database.as_deref().unwrap_or("sqlite://devicegate.db");
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() {
            bail!("the database URL {url:?} names no file");
        }
        Ok(Database::Sqlite(path.into()))
    }

    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or("127.0.0.1:8080")
    }

    fn branding(&self) -> anyhow::Result<devicegate_server::Branding> {
        let d = devicegate_server::Branding::default();
        let accent_color = self.accent_color.clone().unwrap_or(d.accent_color);
        let hex = accent_color.strip_prefix('#').unwrap_or("");
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("accent_color must look like #2155cd, got {accent_color:?}");
        }
        let logo = match &self.logo_file {
            None => None,
            Some(path) => {
                let ext = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let media_type = match ext.as_str() {
                    "png" => "image/png",
                    "svg" => "image/svg+xml",
                    "jpg" | "jpeg" => "image/jpeg",
                    "webp" => "image/webp",
                    _ => bail!("logo_file must be a .png, .svg, .jpg or .webp file"),
                };
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading logo_file {}", path.display()))?;
                Some((bytes, media_type.to_owned()))
            }
        };
        Ok(devicegate_server::Branding {
            product_name: self.product_name.clone().unwrap_or(d.product_name),
            logo,
            accent_color,
        })
    }

    /// This server's issuer, validated, as `serve` uses it (the default tenant's; tenant T's
    /// is `{issuer}/t/T`).
    /// How long a rotated-in key is published before it signs.
    pub fn key_publish(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.key_publish_secs.unwrap_or(3600))
    }

    pub fn issuer(&self) -> anyhow::Result<String> {
        let issuer = self
            .issuer
            .clone()
            .unwrap_or_else(|| Settings::default().issuer);
        let issuer = issuer.trim_end_matches('/').to_owned();
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
            bail!("issuer must be an http:// or https:// URL, got {issuer:?}");
        }
        if issuer.contains(['?', '#']) {
            bail!("issuer must not have a query or fragment (RFC 8414 §2)");
        }
        Ok(issuer)
    }

    /// Validated server settings.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let d = Settings::default();
        let c = &d.connections;
        let issuer = self.issuer()?;
        let alg = |key: &str, v: &str| {
            Algorithm::parse(v)
                .with_context(|| format!("unknown {key} {v:?}; use RS256, ES256 or EdDSA"))
        };
        let signing_alg = match &self.signing_alg {
            None => d.signing_alg,
            Some(s) => alg("signing_alg", s)?,
        };
        let access_token_signing_alg = match &self.access_token_signing_alg {
            None => None,
            Some(s) => Some(alg("access_token_signing_alg", s)?),
        };
        let secs = |v: Option<u64>, default: Duration, name: &str| -> anyhow::Result<Duration> {
            match v {
                Some(0) => bail!("{name} must be at least 1"),
                Some(s) if s > MAX_LIFETIME_SECS => {
                    bail!("{name} must be at most {MAX_LIFETIME_SECS} (ten years)")
                }
                Some(s) => Ok(Duration::from_secs(s)),
                None => Ok(default),
            }
        };
        let poll_interval_secs = self.poll_interval_secs.unwrap_or(d.poll_interval_secs);
        if poll_interval_secs == 0 {
            bail!("poll_interval_secs must be at least 1");
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        if let Some(uri) = &self.verification_uri
            && !(uri.starts_with("http://") || uri.starts_with("https://"))
        {
            bail!("verification_uri must be an http:// or https:// URL, got {uri:?}");
        }
        let user_code_length = self.user_code_length.unwrap_or(d.user_code_length);
        if !(devicegate_core::user_code::LENGTH..=devicegate_core::user_code::MAX_LENGTH)
            .contains(&user_code_length)
        {
            bail!("user_code_length must be 8 to 12, got {user_code_length}");
        }
        Ok(Settings {
            user_code_length,
            verification_uri: self.verification_uri.clone(),
            access_token_audience: self.access_token_audience.clone(),
            issuer,
            device_code_ttl: secs(
                self.device_code_ttl_secs,
                d.device_code_ttl,
                "device_code_ttl_secs",
            )?,
            poll_interval_secs,
            access_token_ttl: secs(
                self.access_token_ttl_secs,
                d.access_token_ttl,
                "access_token_ttl_secs",
            )?,
            refresh_token_ttl: secs(
                self.refresh_token_ttl_secs,
                d.refresh_token_ttl,
                "refresh_token_ttl_secs",
            )?,
            refresh_token_max_lifetime: secs(
                self.refresh_token_max_lifetime_secs,
                d.refresh_token_max_lifetime,
                "refresh_token_max_lifetime_secs",
            )?,
            flow_ttl: secs(self.flow_ttl_secs, d.flow_ttl, "flow_ttl_secs")?,
            signing_alg,
            access_token_signing_alg,
            cors_allowed_origins: self.cors_allowed_origins.clone().unwrap_or_default(),
            webauthn_rp_id: self.webauthn_rp_id.clone(),
            audit_retention: std::time::Duration::from_secs(
                self.audit_retention_days
                    .unwrap_or(90)
                    .saturating_mul(86_400),
            ),
            max_concurrent_hashes: self.max_concurrent_hashes.unwrap_or(cpus).max(1),
            max_body_bytes: d.max_body_bytes,
            trusted_proxies: self
                .trusted_proxies
                .iter()
                .flatten()
                .map(|p| {
                    p.trim()
                        .parse()
                        .with_context(|| format!("trusted_proxies: {p:?} is not an IP address"))
                })
                .collect::<anyhow::Result<_>>()?,
            session_ttl: secs(self.session_ttl_secs, d.session_ttl, "session_ttl_secs")?,
            limits: devicegate_server::limits::LimitSettings {
                max_pending_codes_per_address: self
                    .max_pending_codes_per_address
                    .unwrap_or(d.limits.max_pending_codes_per_address),
                max_pending_codes_per_client: self
                    .max_pending_codes_per_client
                    .unwrap_or(d.limits.max_pending_codes_per_client),
                max_flows_per_address: self
                    .max_flows_per_address
                    .unwrap_or(d.limits.max_flows_per_address),
            },
            branding: self.branding()?,
            templates_dir: match &self.templates_dir {
                Some(dir) if !dir.is_dir() => {
                    bail!("templates_dir {} is not a directory", dir.display())
                }
                other => other.clone(),
            },
            language: self.language.clone(),
            locales_dir: match &self.locales_dir {
                Some(dir) if !dir.is_dir() => {
                    bail!("locales_dir {} is not a directory", dir.display())
                }
                other => other.clone(),
            },
            geoip_database: self.geoip_database.clone(),
            connections: ConnectionLimits {
                header_read_timeout: secs(
                    self.header_read_timeout_secs,
                    c.header_read_timeout,
                    "header_read_timeout_secs",
                )?,
                body_read_timeout: secs(
                    self.body_read_timeout_secs,
                    c.body_read_timeout,
                    "body_read_timeout_secs",
                )?,
                idle_timeout: secs(self.idle_timeout_secs, c.idle_timeout, "idle_timeout_secs")?,
                max_per_address: self
                    .max_connections_per_address
                    .unwrap_or(c.max_per_address),
                shutdown_drain: secs(
                    self.shutdown_drain_secs,
                    c.shutdown_drain,
                    "shutdown_drain_secs",
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_env_override_the_file() {
        let file: Keys =
            toml::from_str("listen = \"0.0.0.0:1\"\nissuer = \"https://a\"\n").unwrap();
        let flags = Keys {
            listen: Some("127.0.0.1:2".into()),
            ..Keys::default()
        };
        let k = flags.over(file);
        assert_eq!(k.listen(), "127.0.0.1:2");
        assert_eq!(k.settings().unwrap().issuer, "https://a");
        let file: Keys = toml::from_str("refresh_token_max_lifetime_secs = 86400\n").unwrap();
        let k = Keys::default().over(file);
        assert_eq!(
            k.settings().unwrap().refresh_token_max_lifetime,
            Duration::from_secs(86_400)
        );
        assert_eq!(
            Keys::default()
                .settings()
                .unwrap()
                .refresh_token_max_lifetime,
            Duration::from_secs(90 * 86_400)
        );
    }

    #[test]
    fn connection_limits_come_from_their_keys_with_defaults_under_them() {
        let file: Keys = toml::from_str(
            "header_read_timeout_secs = 2\nidle_timeout_secs = 5\nmax_connections_per_address = 0\n",
        )
        .unwrap();
        let flags = Keys {
            shutdown_drain_secs: Some(1),
            ..Keys::default()
        };
        let c = flags.over(file).settings().unwrap().connections;
        assert_eq!(
            c,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(5),
                max_per_address: 0,
                shutdown_drain: Duration::from_secs(1),
                ..ConnectionLimits::default()
            }
        );
        assert_eq!(
            Keys::default().settings().unwrap().connections,
            ConnectionLimits::default()
        );
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        let k = Keys {
            access_token_ttl_secs: Some(u64::MAX),
            ..Keys::default()
        };
        assert!(k.settings().unwrap_err().to_string().contains("at most"));
        let k = Keys {
            refresh_token_max_lifetime_secs: Some(0),
            ..Keys::default()
        };
        let e = k.settings().unwrap_err().to_string();
        assert!(e.contains("refresh_token_max_lifetime_secs"), "{e}");
        assert!(toml::from_str::<Keys>("lisen = \"x\"").is_err());
        let k = Keys {
            signing_alg: Some("HS256".into()),
            ..Keys::default()
        };
        assert!(k.settings().unwrap_err().to_string().contains("HS256"));
        let k = Keys {
            issuer: Some("ftp://x".into()),
            ..Keys::default()
        };
        assert!(k.settings().is_err());
        let k = Keys {
            header_read_timeout_secs: Some(0),
            ..Keys::default()
        };
        assert!(
            k.settings()
                .unwrap_err()
                .to_string()
                .contains("header_read_timeout_secs")
        );
        let k = Keys {
            database: Some("postgres://x".into()),
            ..Keys::default()
        };
        assert_eq!(
            k.database().unwrap(),
            Database::Postgres("postgres://x".into())
        );
        let k = Keys {
            database: Some("sqlite:///tmp/a.db".into()),
            ..Keys::default()
        };
        assert_eq!(k.database().unwrap(), Database::Sqlite("/tmp/a.db".into()));
    }
}
