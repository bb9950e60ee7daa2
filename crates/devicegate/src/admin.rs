//! `devicegate client …`, `user …`, `tenant …` and `upstream …`: administration straight on
//! the store; and what `serve` applies from the config file at start.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use devicegate_core::keys::{Algorithm, KeyMaterial};
use devicegate_core::password::hash_password;
use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_proto::GrantType;
use devicegate_store::{
    ClientRecord, DEFAULT_TENANT, KeyRecord, Store, StoreError, TenantRecord, UpstreamRecord,
    UserRecord,
};
use serde_json::json;

use crate::config::UpstreamKeys;

const DEFAULT_SCOPES: &str = "openid profile email offline_access";
const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; with --secret, its secret is printed once
    #[command(group(ArgGroup::new("kind").required(true).args(["public", "secret"])))]
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// A public client (a CLI, a TV app): no secret
        #[arg(long)]
        public: bool,
        /// A confidential client: generate a secret
        #[arg(long)]
        secret: bool,
        /// Scopes the client may ask for, also its default
        #[arg(long, default_value = DEFAULT_SCOPES)]
        scope: String,
        /// Grant types allowed (repeatable) [default: device_code and refresh_token]
        #[arg(long = "grant-type", value_parser = ["device_code", "refresh_token"])]
        grant_types: Vec<String>,
        /// Device code lifetime for this client, overriding the server's
        #[arg(long)]
        // u64 like the server-wide flag of the same name, which clap merges with this one.
        device_code_ttl_secs: Option<u64>,
        /// Poll interval for this client, overriding the server's
        #[arg(long)]
        poll_interval_secs: Option<u32>,
        #[command(flatten)]
        policy: DevicePolicyArgs,
        /// Print {"client_id":…,"client_secret":…}
        #[arg(long)]
        json: bool,
    },
    /// List clients
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a client, its pending grants and its refresh tokens
    Delete { id: String },
    /// Change a client's name, scopes, grant types or lifetimes (its id and secret stay)
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Scopes the client may ask for
        #[arg(long)]
        scope: Option<String>,
        /// Grant types allowed (repeatable), replacing the present ones
        #[arg(long = "grant-type", value_parser = ["device_code", "refresh_token"])]
        grant_types: Vec<String>,
        /// Device code lifetime for this client (0: the server's)
        #[arg(long)]
        device_code_ttl_secs: Option<u64>,
        /// Poll interval for this client (0: the server's)
        #[arg(long)]
        poll_interval_secs: Option<u32>,
        #[command(flatten)]
        policy: DevicePolicyArgs,
    },
}

/// A client's defences against device-code phishing (RFC 10027); each left out stays as it is.
#[derive(Debug, clap::Args)]
pub struct DevicePolicyArgs {
    /// Networks its devices may ask for codes from, comma-separated CIDRs ("" for anywhere)
    #[arg(long)]
    device_networks: Option<String>,
    /// Whether its device grants get refresh tokens
    #[arg(long)]
    device_refresh_tokens: Option<bool>,
    /// The most a device grant may get ("" for the client's scopes)
    #[arg(long)]
    device_scope: Option<String>,
    /// Access-token lifetime for its devices, at most the server's (0: the server's)
    #[arg(long)]
    device_access_token_ttl_secs: Option<u32>,
    /// An approval from elsewhere than the device: off, warn, or same_network (refused)
    #[arg(long, value_parser = ["off", "warn", "same_network"])]
    proximity: Option<String>,
}

impl DevicePolicyArgs {
    fn apply(self, p: &mut devicegate_store::DevicePolicy) -> anyhow::Result<()> {
        if let Some(nets) = self.device_networks {
            let nets: Vec<String> = nets
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            for n in &nets {
                if n.parse::<ipnet::IpNet>().is_err() && n.parse::<std::net::IpAddr>().is_err() {
                    bail!("{n:?} is not a network (CIDR, like 192.0.2.0/24) or an address");
                }
            }
            p.networks = nets;
        }
        if let Some(r) = self.device_refresh_tokens {
            p.refresh_tokens = r;
        }
        if let Some(scope) = self.device_scope {
            p.scope_ceiling = match scope.trim() {
                "" => None,
                s => Some(Scopes::parse(s).context("the device scope is malformed")?),
            };
        }
        if let Some(ttl) = self.device_access_token_ttl_secs {
            p.access_ttl_secs = (ttl > 0).then_some(ttl);
        }
        if let Some(proximity) = self.proximity {
            p.proximity = proximity;
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a local user; the password is prompted for, or read from stdin
    Create {
        #[arg(long)]
        username: String,
        /// Read the password from standard input (first line)
        #[arg(long)]
        password_stdin: bool,
        /// Display name
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
    },
    /// List users
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a user and revoke their refresh tokens
    Delete { username: String },
    /// Set a user's password
    SetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a one-time link with which the user sets up a passkey without a password (for
    /// tenants with passwords off, or a person who lost every way in); it signs them in to
    /// their security settings only, never to approve a device
    PasskeyLink {
        username: String,
        /// How long the link works
        #[arg(long, default_value_t = 24)]
        hours: u64,
    },
    /// Sign a user out everywhere: every device (refresh token family and the access tokens
    /// issued to it), every browser and kept session, every flow under way; codes they
    /// approved that no device redeemed yet are denied
    Revoke { username: String },
    /// Disable a user: they cannot sign in, and everything of theirs is revoked as by
    /// `user revoke`
    Disable { username: String },
    /// Enable a disabled user again (what was revoked stays revoked)
    Enable { username: String },
    /// Remove a user's passkeys and second factors (authenticator app and recovery codes) and
    /// end their sessions; they enrol again at their next sign-in if the tenant requires one
    ResetFactors { username: String },
}

/// `grant [--tenant T] …`: the devices that hold access.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// The tenant the grants belong to
    #[arg(long, global = true, default_value = DEFAULT_TENANT)]
    pub tenant: String,
    #[command(subcommand)]
    pub cmd: GrantCommand,
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// List the devices holding access (live refresh token families), newest first
    List {
        /// Only this user's (a username)
        #[arg(long)]
        user: Option<String>,
        /// Only this client's
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one (an id from `grant list`): its refresh tokens, and the access tokens issued
    /// to it
    Revoke { id: String },
}

/// `key [--tenant T] …`: signing keys.
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// The tenant whose keys these are
    #[arg(long, global = true, default_value = DEFAULT_TENANT)]
    pub tenant: String,
    #[command(subcommand)]
    pub cmd: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the signing keys and what each does now (pending, signing, published, retired)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a new signing key: published at once, signing after key_publish_secs; the key it
    /// replaces stays published until every token it signed has expired
    Rotate {
        /// Its algorithm [default: signing_alg]
        #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"])]
        alg: Option<String>,
    },
}

fn store_err(e: StoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// `client [--tenant T] …`
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The tenant the client belongs to
    #[arg(long, global = true, default_value = DEFAULT_TENANT)]
    pub tenant: String,
    #[command(subcommand)]
    pub cmd: ClientCommand,
}

/// `user [--tenant T] …`
#[derive(Debug, clap::Args)]
pub struct UserArgs {
    /// The tenant the user belongs to
    #[arg(long, global = true, default_value = DEFAULT_TENANT)]
    pub tenant: String,
    #[command(subcommand)]
    pub cmd: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; its endpoints live under /t/NAME, and PingOne's under /{UUID}
    Create {
        name: String,
        /// The tenant's UUID (PingOne's environment id) [default: random]
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tenants
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant with all its clients, users, keys, grants and tokens
    Delete { name: String },
    /// Switch sign-in with local passwords on or off for a tenant ("default" for the default
    /// one); off, people sign in only through its upstream providers
    Passwords {
        name: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Second factors for password sign-ins in a tenant: off, optional (asked of people who
    /// enrolled an authenticator app) or required (everyone; those without one enrol first)
    SecondFactor {
        name: String,
        #[arg(value_parser = ["off", "optional", "required"])]
        policy: String,
    },
}

const DEFAULT_UPSTREAM_SCOPES: &str = "openid profile email";

/// `upstream [--tenant T] …`
#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// The tenant whose people sign in through the provider
    #[arg(long, global = true, default_value = DEFAULT_TENANT)]
    pub tenant: String,
    #[command(subcommand)]
    pub cmd: UpstreamCommand,
}

#[derive(Debug, Subcommand)]
pub enum UpstreamCommand {
    /// Add an organisation's OpenID provider (Okta, Entra ID, Google, Keycloak…) to sign in
    /// through; prints the redirect URI to register at the provider. Does not contact it.
    Add {
        /// The name in the flows API and in usernames (`corp:ann`): 1–64 of a-z, 0-9, '-'
        #[arg(long)]
        id: String,
        /// What the sign-in page says: "Continue with NAME"
        #[arg(long)]
        name: String,
        /// The provider's issuer URL, exactly as its discovery document says (`--issuer` is
        /// this server's own)
        #[arg(long, value_name = "URL")]
        provider_issuer: String,
        /// The client id the provider gave this server
        #[arg(long)]
        client_id: String,
        /// Read the client secret from standard input (first line); without it, a public
        /// client (PKCE alone)
        #[arg(long)]
        client_secret_stdin: bool,
        /// How the secret is sent [default: client_secret_basic with a secret, none without]
        #[arg(long, value_parser = ["client_secret_basic", "client_secret_post", "none"])]
        auth_method: Option<String>,
        /// The scope asked for; must hold `openid`
        #[arg(long, default_value = DEFAULT_UPSTREAM_SCOPES)]
        scope: String,
        /// Only people whose verified email is in one of these domains (comma-separated, exact
        /// domains: subdomains are not included)
        #[arg(long, value_delimiter = ',')]
        allowed_domains: Vec<String>,
        /// A claim the ID token must have with this value (a string, or a string in an array);
        /// repeatable, every one required
        #[arg(long = "require-claim", value_name = "NAME=VALUE")]
        require_claims: Vec<String>,
        /// Link a first sign-in to the local user with the same verified email
        #[arg(long)]
        link_by_email: bool,
        /// Ask the provider for a sign-in at most this old (`max_age`)
        #[arg(long, visible_alias = "max-age", value_name = "SECS")]
        max_age_secs: Option<u32>,
        /// A fresh sign-in at the provider for every device (`prompt=login`)
        #[arg(long)]
        force_login: bool,
        /// Print the upstream as JSON (never its secret)
        #[arg(long)]
        json: bool,
    },
    /// List the tenant's upstream providers (secrets are never shown)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an upstream provider with its account links (the accounts stay)
    Delete { id: String },
}

/// Tenant `tenant`'s issuer, given the server's.
fn tenant_issuer(issuer: &str, tenant: &str) -> String {
    if tenant == DEFAULT_TENANT {
        issuer.to_owned()
    } else {
        format!("{issuer}/t/{tenant}")
    }
}

/// Where the provider sends browsers back, as `devicegate_server::upstream::redirect_uri`.
fn redirect_uri(issuer: &str, tenant: &str) -> String {
    format!("{}/device/callback", tenant_issuer(issuer, tenant))
}

/// A provider's issuer: an http(s) URL without credentials, query or fragment; https unless
/// the provider runs on this machine.
fn check_provider_issuer(issuer: &str) -> anyhow::Result<()> {
    if issuer.contains(['?', '#']) || issuer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("the provider's issuer {issuer:?} must not have a query, fragment or spaces");
    }
    let uri: axum::http::Uri = issuer
        .parse()
        .with_context(|| format!("the provider's issuer {issuer:?} is not a URL"))?;
    let scheme = uri.scheme_str().unwrap_or("");
    let Some(authority) = uri.authority() else {
        bail!("the provider's issuer {issuer:?} must be an https:// URL");
    };
    if authority.as_str().contains('@') || authority.host().is_empty() {
        bail!("the provider's issuer {issuer:?} must name a host and no credentials");
    }
    let local = matches!(
        authority.host().to_ascii_lowercase().as_str(),
        "localhost" | "127.0.0.1" | "[::1]"
    );
    match scheme {
        "https" => Ok(()),
        "http" if local => Ok(()),
        "http" => bail!(
            "the provider's issuer {issuer:?} must be https:// (http:// only for localhost and 127.0.0.1)"
        ),
        _ => bail!("the provider's issuer {issuer:?} must be an https:// URL"),
    }
}

/// The record an `upstream add` or an `[[upstream]]` table describes, validated, and
/// warnings about it.
pub fn upstream_record(
    tenant: &str,
    u: &UpstreamKeys,
    client_secret: Option<String>,
) -> anyhow::Result<(UpstreamRecord, Vec<String>)> {
    let mut warnings = Vec::new();
    let id = &u.id;
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!("upstream id {id:?} must be 1–64 characters of a-z, 0-9 and '-'");
    }
    let name = u.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        bail!("upstream name must be 1–100 characters without control characters");
    }
    check_provider_issuer(&u.issuer)?;
    let client_id = &u.client_id;
    if client_id.is_empty()
        || client_id.len() > 255
        || client_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        bail!("client id must be 1–255 characters without spaces or control characters");
    }
    if let Some(secret) = &client_secret
        && (secret.is_empty() || secret.chars().any(char::is_control))
    {
        bail!("the client secret is empty or holds control characters");
    }
    let auth_method = match (u.auth_method.as_deref(), client_secret.is_some()) {
        (None, true) => "client_secret_basic",
        (None | Some("none"), false) => "none",
        (Some(m @ ("client_secret_basic" | "client_secret_post")), true) => m,
        (Some("client_secret_basic" | "client_secret_post"), false) => {
            bail!(
                "auth method {:?} needs a client secret",
                u.auth_method.as_deref().unwrap_or("")
            )
        }
        (Some("none"), true) => bail!("auth method \"none\" sends no secret: give none"),
        (Some(m), _) => {
            bail!("unknown auth method {m:?}; use client_secret_basic or client_secret_post")
        }
    };
    let scope = u.scope.as_deref().unwrap_or(DEFAULT_UPSTREAM_SCOPES);
    Scopes::parse(scope).context("the scope is malformed (RFC 6749 §3.3)")?;
    let mut scopes = vec!["openid"];
    for s in scope.split_whitespace() {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if !scope.split_whitespace().any(|s| s == "openid") {
        bail!(
            "the scope {scope:?} must hold openid: the provider signs people in with OpenID Connect"
        );
    }
    let allowed_domains = u
        .allowed_domains
        .iter()
        .map(|d| {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            let ok = !d.is_empty()
                && d.len() <= 253
                && !d.starts_with(['.', '-'])
                && !d.ends_with('.')
                && d.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if ok {
                Ok(d)
            } else {
                bail!(
                    "{:?} is not a domain name (allowed domains are like example.com)",
                    d
                )
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let require_claims = u
        .require_claims
        .iter()
        .map(|c| match c.split_once('=') {
            Some((name, value))
                if !name.is_empty()
                    && !name.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                Ok((name.to_owned(), value.to_owned()))
            }
            _ => bail!("required claims are NAME=VALUE, got {c:?}"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if (!allowed_domains.is_empty() || u.link_by_email) && !scopes.contains(&"email") {
        warnings.push(format!(
            "upstream {id}: allowed domains and link-by-email need the verified email, but the \
             scope {scope:?} has no \"email\"; most providers then send none"
        ));
    }
    let record = UpstreamRecord {
        tenant: tenant.to_owned(),
        id: id.clone(),
        name: name.to_owned(),
        issuer: u.issuer.clone(),
        client_id: client_id.clone(),
        client_secret,
        auth_method: auth_method.to_owned(),
        scopes: scopes.join(" "),
        allowed_domains,
        require_claims,
        link_by_email: u.link_by_email,
        max_age_secs: u.max_age_secs,
        force_login: u.force_login,
        created_at: devicegate_server::now(),
    };
    Ok((record, warnings))
}

/// An upstream as `upstream add --json` and `upstream list --json` show it: never the secret.
fn upstream_json(u: &UpstreamRecord, issuer: &str) -> serde_json::Value {
    json!({
        "tenant": u.tenant,
        "id": u.id,
        "name": u.name,
        "issuer": u.issuer,
        "client_id": u.client_id,
        "client_secret_set": u.client_secret.is_some(),
        "auth_method": u.auth_method,
        "scope": u.scopes,
        "allowed_domains": u.allowed_domains,
        "require_claims": u.require_claims.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>(),
        "link_by_email": u.link_by_email,
        "max_age_secs": u.max_age_secs,
        "force_login": u.force_login,
        "redirect_uri": redirect_uri(issuer, &u.tenant),
    })
}

/// The first line of standard input, for `--client-secret-stdin`.
fn read_secret_line() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    let line = s.lines().next().unwrap_or("").trim().to_owned();
    if line.is_empty() {
        bail!("--client-secret-stdin: standard input holds no secret");
    }
    Ok(line)
}

/// `devicegate upstream …`; `issuer` is this server's, `issuer_configured` whether it was set
/// rather than defaulted.
pub async fn upstream(
    store: &dyn Store,
    args: UpstreamArgs,
    issuer: &str,
    issuer_configured: bool,
) -> anyhow::Result<ExitCode> {
    let tenant = existing_tenant(store, &args.tenant).await?;
    match args.cmd {
        UpstreamCommand::Add {
            id,
            name,
            provider_issuer,
            client_id,
            client_secret_stdin,
            auth_method,
            scope,
            allowed_domains,
            require_claims,
            link_by_email,
            max_age_secs,
            force_login,
            json,
        } => {
            let keys = UpstreamKeys {
                tenant: Some(tenant.clone()),
                id,
                name,
                issuer: provider_issuer,
                client_id,
                auth_method,
                scope: Some(scope),
                allowed_domains,
                require_claims,
                link_by_email,
                max_age_secs,
                force_login,
                ..UpstreamKeys::default()
            };
            // Validate before reading stdin, so that a typo does not swallow the secret.
            upstream_record(&tenant, &keys, client_secret_stdin.then(|| "x".to_owned()))?;
            let secret = client_secret_stdin.then(read_secret_line).transpose()?;
            let (record, warnings) = upstream_record(&tenant, &keys, secret)?;
            match store.create_upstream(&record).await {
                Ok(()) => {}
                Err(StoreError::AlreadyExists) => bail!(
                    "an upstream with id {:?} already exists (`devicegate upstream delete {}` \
                     first; that unlinks the accounts it signed in)",
                    record.id,
                    record.id
                ),
                Err(e) => return Err(store_err(e)),
            }
            for w in warnings {
                eprintln!("warning: {w}");
            }
            if !issuer_configured {
                eprintln!(
                    "warning: no issuer is configured, so the redirect URI uses the default {issuer}; \
                     set the issuer (--issuer, DEVICEGATE_ISSUER or the config file) as `serve` has it"
                );
            }
            let redirect = redirect_uri(issuer, &tenant);
            if json {
                println!("{}", upstream_json(&record, issuer));
            } else {
                println!("added upstream {} ({})", record.id, record.name);
                println!("register this redirect URI at the provider: {redirect}");
            }
        }
        UpstreamCommand::List { json } => {
            let upstreams = store.list_upstreams(&tenant).await.map_err(store_err)?;
            if json {
                let rows: Vec<_> = upstreams.iter().map(|u| upstream_json(u, issuer)).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for u in upstreams {
                    let secret = if u.client_secret.is_some() {
                        "secret set"
                    } else {
                        "no secret"
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{secret}",
                        u.id, u.name, u.issuer, u.client_id, u.auth_method
                    );
                }
            }
        }
        UpstreamCommand::Delete { id } => match store.delete_upstream(&tenant, &id).await {
            Ok(()) => println!("deleted upstream {id} (the accounts it signed in stay, unlinked)"),
            Err(StoreError::NotFound) => bail!("no upstream with id {id:?}"),
            Err(e) => return Err(store_err(e)),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// What `serve` applies from the configuration at start: the default tenant's
/// `local_passwords`, and the `[[upstream]]` tables, created, or replaced when they changed.
/// Everything is validated before anything is written.
pub async fn apply_config(
    store: &dyn Store,
    local_passwords: Option<bool>,
    upstreams: &[UpstreamKeys],
) -> anyhow::Result<()> {
    existing_tenant(store, DEFAULT_TENANT).await?;
    let mut records: Vec<UpstreamRecord> = Vec::new();
    for u in upstreams {
        let what = format!("[[upstream]] {:?}", u.id);
        let tenant = existing_tenant(store, u.tenant.as_deref().unwrap_or(DEFAULT_TENANT))
            .await
            .with_context(|| what.clone())?;
        let secret = match (&u.client_secret_env, &u.client_secret) {
            (Some(_), Some(_)) => {
                bail!("{what}: give client_secret_env or client_secret, not both")
            }
            (Some(var), None) => Some(
                std::env::var(var)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .with_context(|| {
                        format!(
                            "{what}: the environment variable {var} (client_secret_env) is not set"
                        )
                    })?,
            ),
            (None, Some(s)) => {
                tracing::warn!(
                    "{what}: the client secret is inline in the config file; prefer \
                     client_secret_env = \"VAR\""
                );
                Some(s.clone())
            }
            (None, None) => None,
        };
        let (record, warnings) =
            upstream_record(&tenant, u, secret).with_context(|| what.clone())?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        if records
            .iter()
            .any(|r| r.tenant == record.tenant && r.id == record.id)
        {
            bail!("{what} appears twice for tenant {tenant}");
        }
        records.push(record);
    }
    if let Some(on) = local_passwords {
        store
            .set_local_passwords(DEFAULT_TENANT, on)
            .await
            .map_err(store_err)?;
    }
    for mut record in records {
        match store.get_upstream(&record.tenant, &record.id).await {
            Ok(existing) => {
                record.created_at = existing.created_at;
                if existing == record {
                    continue;
                }
                if existing.issuer != record.issuer {
                    // A subject is unique only within its issuer: another issuer's `sub` must
                    // never sign in as the accounts the old one linked.
                    store
                        .delete_upstream(&record.tenant, &record.id)
                        .await
                        .map_err(store_err)?;
                    store.create_upstream(&record).await.map_err(store_err)?;
                    tracing::warn!(upstream = %record.id, tenant = %record.tenant, "upstream's issuer changed: its accounts are unlinked");
                    continue;
                }
                // Updated in place: the accounts it signed in stay linked.
                store.update_upstream(&record).await.map_err(store_err)?;
                tracing::info!(upstream = %record.id, tenant = %record.tenant, "upstream updated from the config");
            }
            Err(StoreError::NotFound) => {
                store.create_upstream(&record).await.map_err(store_err)?;
                tracing::info!(upstream = %record.id, tenant = %record.tenant, "upstream applied from the config");
            }
            Err(e) => return Err(store_err(e)),
        }
    }
    Ok(())
}

/// The tenant named on the command line, which must exist (the default one always does).
async fn existing_tenant(store: &dyn Store, tenant: &str) -> anyhow::Result<String> {
    devicegate_server::tenant::ensure_default(store)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match store.get_tenant(tenant).await {
        Ok(t) => Ok(t.id),
        Err(StoreError::NotFound) => {
            bail!("no tenant named {tenant:?} (see `devicegate tenant list`)")
        }
        Err(e) => Err(store_err(e)),
    }
}

fn valid_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

pub async fn tenant(store: &dyn Store, cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    devicegate_server::tenant::ensure_default(store)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match cmd {
        TenantCommand::Create { name, id, json } => {
            let ok_name = !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok_name || name == DEFAULT_TENANT {
                bail!(
                    "tenant names are 1–63 characters of a-z, 0-9 and '-', and not {DEFAULT_TENANT:?}"
                );
            }
            let uuid = match id {
                Some(u) if valid_uuid(&u) => u.to_ascii_lowercase(),
                Some(u) => bail!("{u:?} is not a UUID"),
                None => devicegate_server::tenant::new_uuid(),
            };
            let record = TenantRecord {
                second_factor: "off".into(),
                id: name.clone(),
                uuid: uuid.clone(),
                local_passwords: true,
                created_at: devicegate_server::now(),
            };
            match store.create_tenant(&record).await {
                Ok(()) => {}
                Err(StoreError::AlreadyExists) => {
                    bail!("a tenant named {name:?} or with id {uuid} already exists")
                }
                Err(e) => return Err(store_err(e)),
            }
            if json {
                println!("{}", json!({"name": name, "id": uuid}));
            } else {
                println!(
                    "created tenant {name} (id {uuid}): endpoints under /t/{name}, PingOne's under /{uuid}"
                );
            }
        }
        TenantCommand::List { json } => {
            let tenants = store.list_tenants().await.map_err(store_err)?;
            if json {
                let rows: Vec<_> = tenants
                    .iter()
                    .map(|t| json!({"name": t.id, "id": t.uuid, "local_passwords": t.local_passwords}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for t in tenants {
                    let passwords = if t.local_passwords { "on" } else { "off" };
                    println!("{}\t{}\tpasswords {passwords}", t.id, t.uuid);
                }
            }
        }
        TenantCommand::SecondFactor { name, policy } => {
            match store.set_second_factor(&name, &policy).await {
                Ok(()) => println!("second factor {policy} for tenant {name}"),
                Err(StoreError::NotFound) => bail!("no tenant named {name:?}"),
                Err(e) => return Err(store_err(e)),
            }
        }
        TenantCommand::Passwords { name, state } => {
            let on = state == "on";
            match store.set_local_passwords(&name, on).await {
                Ok(()) => {}
                Err(StoreError::NotFound) => bail!("no tenant named {name:?}"),
                Err(e) => return Err(store_err(e)),
            }
            println!("local passwords {state} for tenant {name}");
            if !on
                && store
                    .list_upstreams(&name)
                    .await
                    .map_err(store_err)?
                    .is_empty()
            {
                eprintln!(
                    "warning: tenant {name} has no upstream provider: nobody can sign in until \
                     one is added (`devicegate upstream add --tenant {name} …`)"
                );
            }
        }
        TenantCommand::Delete { name } => {
            if name == DEFAULT_TENANT {
                bail!("the default tenant cannot be deleted");
            }
            match store.delete_tenant(&name).await {
                Ok(()) => println!("deleted tenant {name}"),
                Err(StoreError::NotFound) => bail!("no tenant named {name:?}"),
                Err(e) => return Err(store_err(e)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn client(store: &dyn Store, args: ClientArgs) -> anyhow::Result<ExitCode> {
    let tenant = existing_tenant(store, &args.tenant).await?;
    match args.cmd {
        ClientCommand::Create {
            id,
            name,
            public: _,
            secret,
            scope,
            grant_types,
            device_code_ttl_secs,
            poll_interval_secs,
            policy,
            json,
        } => {
            if id.is_empty()
                || id.len() > 128
                || !id.bytes().all(|b| b.is_ascii_graphic() && b != b':')
            {
                bail!("client id must be 1–128 printable ASCII characters without ':' or spaces");
            }
            let scopes = Scopes::parse(&scope).context("the scope is malformed (RFC 6749 §3.3)")?;
            if device_code_ttl_secs == Some(0) || poll_interval_secs == Some(0) {
                bail!("device code lifetime and poll interval must be at least 1 second");
            }
            let device_code_ttl_secs = device_code_ttl_secs
                .map(|s| u32::try_from(s).ok().filter(|s| *s <= 86_400))
                .map(|s| s.context("the device code lifetime must be at most 86400 seconds"))
                .transpose()?;
            let grant_types = if grant_types.is_empty() {
                GrantType::all_names()
            } else {
                grant_type_names(&grant_types)
            };
            let generated = secret.then(|| Secret::generate(SecretKind::ClientSecret));
            let mut device_policy = devicegate_store::DevicePolicy::default();
            policy.apply(&mut device_policy)?;
            let record = ClientRecord {
                device_policy,
                tenant: tenant.clone(),
                id: id.clone(),
                name,
                secret_hash: generated.as_ref().map(Secret::hash),
                scopes,
                grant_types,
                device_code_ttl_secs,
                poll_interval_secs,
                created_at: devicegate_server::now(),
            };
            match store.create_client(&record).await {
                Ok(()) => {}
                Err(StoreError::AlreadyExists) => bail!("a client with id {id:?} already exists"),
                Err(e) => return Err(store_err(e)),
            }
            let secret = generated.as_ref().map(|s| s.expose().to_owned());
            if json {
                println!("{}", json!({"client_id": id, "client_secret": secret}));
            } else {
                println!("created client {id}");
                if let Some(s) = secret {
                    println!("client secret (shown once, store it now): {s}");
                }
            }
        }
        ClientCommand::List { json } => {
            let clients = store.list_clients(&tenant).await.map_err(store_err)?;
            if json {
                let rows: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        let p = &c.device_policy;
                        json!({"client_id": c.id, "name": c.name, "public": c.secret_hash.is_none(),
                               "scope": c.scopes.to_string(), "grant_types": c.grant_types,
                               "device_code_ttl_secs": c.device_code_ttl_secs, "poll_interval_secs": c.poll_interval_secs,
                               "device_networks": p.networks, "device_refresh_tokens": p.refresh_tokens,
                               "device_scope": p.scope_ceiling.as_ref().map(|s| s.to_string()),
                               "device_access_token_ttl_secs": p.access_ttl_secs, "proximity": p.proximity})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for c in clients {
                    let kind = if c.secret_hash.is_some() {
                        "confidential"
                    } else {
                        "public"
                    };
                    let p = &c.device_policy;
                    let nets = if p.networks.is_empty() {
                        "anywhere".to_owned()
                    } else {
                        p.networks.join(",")
                    };
                    println!(
                        "{}\t{}\t{kind}\t{}\tdevices from {nets}, refresh tokens {}, proximity {}",
                        c.id,
                        c.name,
                        c.scopes,
                        if p.refresh_tokens { "on" } else { "off" },
                        p.proximity
                    );
                }
            }
        }
        ClientCommand::Delete { id } => match store.delete_client(&tenant, &id).await {
            Ok(()) => println!("deleted client {id}"),
            Err(StoreError::NotFound) => bail!("no client with id {id:?}"),
            Err(e) => return Err(store_err(e)),
        },
        ClientCommand::Update {
            id,
            name,
            scope,
            grant_types,
            device_code_ttl_secs,
            poll_interval_secs,
            policy,
        } => {
            let mut c = match store.get_client(&tenant, &id).await {
                Ok(c) => c,
                Err(StoreError::NotFound) => bail!("no client with id {id:?}"),
                Err(e) => return Err(store_err(e)),
            };
            if let Some(name) = name {
                c.name = name;
            }
            if let Some(scope) = scope {
                c.scopes =
                    Scopes::parse(&scope).context("the scope is malformed (RFC 6749 §3.3)")?;
            }
            if !grant_types.is_empty() {
                c.grant_types = grant_type_names(&grant_types);
            }
            if let Some(ttl) = device_code_ttl_secs {
                c.device_code_ttl_secs = match ttl {
                    0 => None,
                    s => Some(
                        u32::try_from(s)
                            .ok()
                            .filter(|s| *s <= 86_400)
                            .context("the device code lifetime must be at most 86400 seconds")?,
                    ),
                };
            }
            if let Some(interval) = poll_interval_secs {
                c.poll_interval_secs = (interval > 0).then_some(interval);
            }
            policy.apply(&mut c.device_policy)?;
            match store.update_client(&c).await {
                Ok(()) => println!("updated client {id}"),
                Err(StoreError::NotFound) => bail!("no client with id {id:?}"),
                Err(e) => return Err(store_err(e)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The grant types' names as stored, from the command line's short names.
fn grant_type_names(short: &[String]) -> Vec<String> {
    short
        .iter()
        .map(|g| match g.as_str() {
            "device_code" => GrantType::DeviceCode.as_str().to_owned(),
            _ => GrantType::RefreshToken.as_str().to_owned(),
        })
        .collect()
}

/// Everything of `username` taken back (and with `disable`, the person disabled): their
/// access tokens issued up to now are refused until the last of them would have expired.
async fn revoke_user(
    store: &dyn Store,
    tenant: &str,
    username: &str,
    disable: bool,
    access_ttl: std::time::Duration,
) -> anyhow::Result<()> {
    let now = devicegate_server::now();
    // Access tokens say when they were issued to the second (`iat`): every token of this
    // second counts as issued before, so none slips through (one issued later in the same
    // second is refused too).
    let issued_before = devicegate_core::Timestamp::from_millis((now.as_secs() + 1) * 1000);
    match store
        .revoke_user(
            tenant,
            username,
            disable,
            issued_before,
            now.plus(access_ttl),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::NotFound) => bail!("no user named {username:?}"),
        Err(e) => Err(store_err(e)),
    }
}

/// `grant list|revoke`.
pub async fn grant(
    store: &dyn Store,
    args: GrantArgs,
    access_ttl: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let tenant = existing_tenant(store, &args.tenant).await?;
    let now = devicegate_server::now();
    match args.cmd {
        GrantCommand::List { user, client, json } => {
            let subject = match &user {
                None => None,
                Some(name) => match store.get_user_by_username(&tenant, name).await {
                    Ok(u) => Some(u.id),
                    Err(StoreError::NotFound) => bail!("no user named {name:?}"),
                    Err(e) => return Err(store_err(e)),
                },
            };
            let families = store
                .list_families(&tenant, subject.as_deref(), client.as_deref(), now)
                .await
                .map_err(store_err)?;
            let mut names = std::collections::HashMap::new();
            for f in &families {
                if !names.contains_key(&f.subject) {
                    let name = match store.get_user(&f.subject).await {
                        Ok(u) => u.username,
                        Err(_) => f.subject.clone(),
                    };
                    names.insert(f.subject.clone(), name);
                }
            }
            if json {
                let rows: Vec<_> = families
                    .iter()
                    .map(|f| {
                        json!({"id": f.family_id, "user": names[&f.subject], "subject": f.subject,
                               "client_id": f.client_id, "scope": f.scopes.to_string(),
                               "approved_at": f.family_started_at.to_rfc3339(),
                               "last_refreshed_at": (f.created_at != f.family_started_at).then(|| f.created_at.to_rfc3339()),
                               "expires_at": f.expires_at.to_rfc3339(),
                               "ip": f.requester_ip, "user_agent": f.requester_agent})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for f in &families {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        f.family_id,
                        names[&f.subject],
                        f.client_id,
                        f.family_started_at.to_rfc3339(),
                        f.requester_ip.as_deref().unwrap_or("-"),
                        f.scopes
                    );
                }
            }
        }
        GrantCommand::Revoke { id } => {
            let event = devicegate_store::AuditEvent {
                at: now,
                tenant: tenant.clone(),
                event: "revoked".into(),
                actor: Some("admin".into()),
                family_id: Some(id.clone()),
                detail: Some("grant revoke".into()),
                ..Default::default()
            };
            let n = store
                .revoke_refresh_family(&tenant, &id, now.plus(access_ttl), &[event])
                .await
                .map_err(store_err)?;
            if n == 0 {
                bail!("no device holds access as {id:?}");
            }
            println!("revoked {id}: its refresh tokens and access tokens");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `key list|rotate`.
pub async fn key(
    store: &dyn Store,
    args: KeyArgs,
    signing_alg: Algorithm,
    publish: std::time::Duration,
    token_ttl: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let tenant = existing_tenant(store, &args.tenant).await?;
    let now = devicegate_server::now();
    match args.cmd {
        KeyCommand::List { json } => {
            let keys = store.list_keys(&tenant).await.map_err(store_err)?;
            let state = |k: &KeyRecord| {
                use devicegate_server::keys::{retired, signing};
                if retired(k, &keys, token_ttl, now) {
                    "retired"
                } else if k.signs_from > now {
                    "pending"
                } else if signing(&keys, k.alg, now).is_some_and(|s| s.id == k.id) {
                    "signing"
                } else {
                    "published"
                }
            };
            // The `kid` as the JWKS and the tokens' headers name the key.
            let kid = |k: &KeyRecord| {
                devicegate_core::keys::Signer::from_material(&KeyMaterial {
                    alg: k.alg,
                    pkcs8: k.pkcs8.clone(),
                })
                .map(|s| s.kid)
                .unwrap_or_else(|_| "(unreadable)".to_owned())
            };
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({"kid": kid(k), "alg": k.alg.as_str(), "state": state(k),
                               "created_at": k.created_at.to_rfc3339(),
                               "signs_from": k.signs_from.to_rfc3339()})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for k in &keys {
                    println!(
                        "{}\t{}\t{}\tsigns from {}",
                        kid(k),
                        k.alg.as_str(),
                        state(k),
                        k.signs_from.to_rfc3339()
                    );
                }
            }
        }
        KeyCommand::Rotate { alg } => {
            let alg = match alg {
                Some(a) => Algorithm::parse(&a).context("unknown algorithm")?,
                None => signing_alg,
            };
            let material = tokio::task::spawn_blocking(move || KeyMaterial::generate(alg))
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = KeyRecord {
                id: random_id(),
                tenant: tenant.clone(),
                alg,
                pkcs8: material.pkcs8,
                created_at: now,
                signs_from: now.plus(publish),
            };
            store.insert_key(&key).await.map_err(store_err)?;
            println!(
                "new {} key: published now, signs from {}",
                alg.as_str(),
                key.signs_from.to_rfc3339()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A new password from stdin (`--password-stdin`) or an interactive prompt.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.lines().next().unwrap_or("").to_owned()
    } else if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("password: ")?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    } else {
        bail!(
            "standard input is not a terminal: pass --password-stdin to read the password from it"
        );
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must have at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok(password)
}

pub async fn user(
    store: &dyn Store,
    args: UserArgs,
    issuer: &str,
    access_ttl: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let tenant = existing_tenant(store, &args.tenant).await?;
    match args.cmd {
        UserCommand::Create {
            username,
            password_stdin,
            name,
            email,
        } => {
            if username.is_empty() || username.len() > 128 || username.chars().any(char::is_control)
            {
                bail!("username must be 1–128 characters without control characters");
            }
            let password = read_password(password_stdin)?;
            let record = UserRecord {
                id: random_id(),
                tenant: tenant.clone(),
                username: username.clone(),
                password_hash: tokio::task::spawn_blocking(move || hash_password(&password))
                    .await?,
                name,
                email,
                created_at: devicegate_server::now(),
                disabled: false,
            };
            match store.create_user(&record).await {
                Ok(()) => println!("created user {username} (subject {})", record.id),
                Err(StoreError::AlreadyExists) => bail!("a user named {username:?} already exists"),
                Err(e) => return Err(store_err(e)),
            }
        }
        UserCommand::List { json } => {
            let users = store.list_users(&tenant).await.map_err(store_err)?;
            if json {
                let rows: Vec<_> = users
                    .iter()
                    .map(|u| json!({"username": u.username, "subject": u.id, "name": u.name, "email": u.email}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for u in users {
                    println!(
                        "{}\t{}\t{}\t{}",
                        u.username,
                        u.id,
                        u.name.as_deref().unwrap_or("-"),
                        u.email.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        UserCommand::Delete { username } => match store.delete_user(&tenant, &username).await {
            Ok(()) => println!("deleted user {username}"),
            Err(StoreError::NotFound) => bail!("no user named {username:?}"),
            Err(e) => return Err(store_err(e)),
        },
        UserCommand::PasskeyLink { username, hours } => {
            if !(1..=24 * 14).contains(&hours) {
                bail!("--hours must be 1 to 336");
            }
            let user = match store.get_user_by_username(&tenant, &username).await {
                Ok(u) => u,
                Err(StoreError::NotFound) => bail!("no user named {username:?}"),
                Err(e) => return Err(store_err(e)),
            };
            let secret = Secret::generate(SecretKind::EnrolmentLink);
            let now = devicegate_server::now();
            store
                .create_session(&devicegate_store::BrowserSession {
                    tenant: tenant.clone(),
                    id_hash: secret.hash(),
                    user_id: Some(user.id),
                    signed_on_at: None,
                    flow_hash: None,
                    created_at: now,
                    expires_at: now.plus(std::time::Duration::from_secs(hours * 3600)),
                    idp: None,
                    amr: None,
                })
                .await
                .map_err(store_err)?;
            println!(
                "{}/account/enroll?token={} (works once, for {hours} h)",
                tenant_issuer(issuer, &tenant),
                secret.expose()
            );
        }
        UserCommand::Revoke { username } => {
            revoke_user(store, &tenant, &username, false, access_ttl).await?;
            println!("signed {username} out everywhere");
        }
        UserCommand::Disable { username } => {
            revoke_user(store, &tenant, &username, true, access_ttl).await?;
            println!("disabled {username} and signed them out everywhere");
        }
        UserCommand::Enable { username } => match store.enable_user(&tenant, &username).await {
            Ok(()) => println!("enabled {username}"),
            Err(StoreError::NotFound) => bail!("no user named {username:?}"),
            Err(e) => return Err(store_err(e)),
        },
        UserCommand::ResetFactors { username } => {
            let user = match store.get_user_by_username(&tenant, &username).await {
                Ok(u) => u,
                Err(StoreError::NotFound) => bail!("no user named {username:?}"),
                Err(e) => return Err(store_err(e)),
            };
            let passkeys = store
                .list_passkeys(&tenant, &user.id)
                .await
                .map_err(store_err)?
                .len();
            store
                .delete_factors(&tenant, &user.id)
                .await
                .map_err(store_err)?;
            // Whatever signed in with them is signed out.
            let ended = store
                .end_sessions(&tenant, &user.id, None)
                .await
                .map_err(store_err)?;
            println!(
                "authenticator, recovery codes and {passkeys} passkey(s) removed for {username}; \
                 {ended} session(s) ended"
            );
        }
        UserCommand::SetPassword {
            username,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let hash = tokio::task::spawn_blocking(move || hash_password(&password)).await?;
            match store.set_password(&tenant, &username, &hash).await {
                Ok(()) => println!("password set for {username}"),
                Err(StoreError::NotFound) => bail!("no user named {username:?}"),
                Err(e) => return Err(store_err(e)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub const DEMO_CLIENT: &str = "demo-cli";
pub const DEMO_USER: &str = "demo";

/// `serve --demo`: a public client and a user, the password printed once.
pub async fn seed_demo(store: &dyn Store) -> anyhow::Result<()> {
    existing_tenant(store, DEFAULT_TENANT).await?;
    let client = ClientRecord {
        tenant: DEFAULT_TENANT.into(),
        id: DEMO_CLIENT.into(),
        name: "Demo CLI".into(),
        secret_hash: None,
        scopes: Scopes::parse(DEFAULT_SCOPES).unwrap_or_default(),
        grant_types: GrantType::all_names(),
        device_code_ttl_secs: None,
        poll_interval_secs: None,
        created_at: devicegate_server::now(),
        device_policy: Default::default(),
    };
    match store.create_client(&client).await {
        Ok(()) => eprintln!("demo: created public client {DEMO_CLIENT}"),
        Err(StoreError::AlreadyExists) => eprintln!("demo: client {DEMO_CLIENT} already exists"),
        Err(e) => return Err(store_err(e)),
    }
    let password = Secret::generate(SecretKind::ClientSecret).expose()[4..20].to_owned();
    let hash = {
        let p = password.clone();
        tokio::task::spawn_blocking(move || hash_password(&p)).await?
    };
    let user = UserRecord {
        id: random_id(),
        tenant: DEFAULT_TENANT.into(),
        username: DEMO_USER.into(),
        password_hash: hash,
        name: Some("Demo User".into()),
        email: Some("demo@example.com".into()),
        created_at: devicegate_server::now(),
        disabled: false,
    };
    match store.create_user(&user).await {
        Ok(()) => {
            eprintln!("demo: created user {DEMO_USER} with password {password}  (shown once)")
        }
        Err(StoreError::AlreadyExists) => eprintln!(
            "demo: user {DEMO_USER} already exists; its password was printed when it was created \
             (change it with `devicegate user set-password {DEMO_USER}`)"
        ),
        Err(e) => return Err(store_err(e)),
    }
    Ok(())
}

/// The audit event of an administrative command line, if it changes something: the tenant
/// it acts on, `admin` (or `key_rotated`), and the command line itself with every value that
/// could be a secret left out (passwords and secrets arrive on stdin or from the
/// environment; a database URL may hold a password).
pub fn change_from_args(args: &[String]) -> Option<devicegate_store::AuditEvent> {
    const COMMANDS: [&str; 6] = ["client", "user", "tenant", "upstream", "grant", "key"];
    // Global options that take a value, wherever they stand.
    let valued = |a: &str| {
        a.starts_with("--")
            && !a.contains('=')
            && !matches!(
                a,
                "--json"
                    | "--public"
                    | "--secret"
                    | "--password-stdin"
                    | "--link-by-email"
                    | "--force-login"
                    | "--demo"
            )
    };
    let mut words = Vec::new();
    let mut shown = Vec::new();
    let mut tenant = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.starts_with("--") {
            let name = a.split('=').next().unwrap_or(a);
            let secret = ["secret", "password", "database", "config"]
                .iter()
                .any(|s| name.contains(s));
            let value = if a.contains('=') {
                a.split_once('=').map(|(_, v)| v.to_owned())
            } else if valued(a) {
                i += 1;
                args.get(i).cloned()
            } else {
                None
            };
            if name == "--tenant" {
                tenant = value.clone();
            }
            if !matches!(name, "--database" | "--config" | "--log") {
                match (value, secret) {
                    (Some(_), true) => shown.push(format!("{name}=***")),
                    (Some(v), false) => shown.push(format!("{name}={v}")),
                    (None, _) => shown.push(name.to_owned()),
                }
            }
        } else {
            words.push(a.clone());
            shown.push(a.clone());
        }
        i += 1;
    }
    let command = words.first()?;
    if !COMMANDS.contains(&command.as_str()) {
        return None;
    }
    let sub = words.get(1).map(String::as_str).unwrap_or("");
    if matches!(sub, "list" | "show" | "") {
        return None;
    }
    let tenant = match (command.as_str(), tenant) {
        (_, Some(t)) => t,
        ("tenant", None) => words
            .get(2)
            .cloned()
            .unwrap_or_else(|| DEFAULT_TENANT.into()),
        _ => DEFAULT_TENANT.into(),
    };
    let event = if (command.as_str(), sub) == ("key", "rotate") {
        "key_rotated"
    } else {
        "admin"
    };
    Some(devicegate_store::AuditEvent {
        at: devicegate_server::now(),
        tenant,
        event: event.into(),
        actor: Some("admin".into()),
        detail: Some(shown.join(" ")),
        ..Default::default()
    })
}

/// `audit [--tenant T] [--since 1h] [--user U] [--client C] [--event E] [--json]`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[arg(long, default_value = DEFAULT_TENANT)]
    pub tenant: String,
    /// Only events this recent: 90s, 15m, 1h, 7d
    #[arg(long)]
    pub since: Option<String>,
    /// Only events this user did (a username, or `admin`)
    #[arg(long)]
    pub user: Option<String>,
    /// Only events of this client
    #[arg(long)]
    pub client: Option<String>,
    /// Only events of this kind (code_issued, sign_in, approved, redeemed, revoked, …)
    #[arg(long)]
    pub event: Option<String>,
    /// At most this many (the newest)
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

fn parse_age(s: &str) -> anyhow::Result<std::time::Duration> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .context("--since is a number and a unit: 90s, 15m, 1h, 7d")?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--since is a number and a unit: 90s, 15m, 1h, 7d"),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// `audit`: the tenant's security events, oldest first.
pub async fn audit(store: &dyn Store, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let tenant = existing_tenant(store, &args.tenant).await?;
    let since = match &args.since {
        None => None,
        Some(s) => {
            let age = parse_age(s)?;
            let now = devicegate_server::now();
            Some(devicegate_core::Timestamp::from_millis(
                now.as_millis() - age.as_millis() as i64,
            ))
        }
    };
    let actor = match args.user.as_deref() {
        None => None,
        Some("admin") => Some("admin".to_owned()),
        Some(name) => match store.get_user_by_username(&tenant, name).await {
            Ok(u) => Some(u.id),
            Err(StoreError::NotFound) => bail!("no user named {name:?}"),
            Err(e) => return Err(store_err(e)),
        },
    };
    let query = devicegate_store::AuditQuery {
        since,
        actor,
        client_id: args.client,
        event: args.event,
        limit: args.limit,
    };
    let events = store.list_audit(&tenant, &query).await.map_err(store_err)?;
    if args.json {
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                json!({"at": e.at.to_rfc3339(), "event": e.event, "actor": e.actor,
                       "client_id": e.client_id, "ip": e.ip, "user_agent": e.user_agent,
                       "grant_id": e.grant_id, "family_id": e.family_id, "detail": e.detail})
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for e in &events {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                e.at.to_rfc3339(),
                e.event,
                dash(&e.actor),
                dash(&e.client_id),
                dash(&e.ip),
                dash(&e.detail)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
