//! `devicegate client …` and `devicegate user …`: administration straight on the store.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use devicegate_core::password::hash_password;
use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_proto::GrantType;
use devicegate_store::{ClientRecord, DEFAULT_TENANT, Store, StoreError, TenantRecord, UserRecord};
use serde_json::json;

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
                    .map(|t| json!({"name": t.id, "id": t.uuid}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for t in tenants {
                    println!("{}\t{}", t.id, t.uuid);
                }
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
                grant_types
                    .iter()
                    .map(|g| match g.as_str() {
                        "device_code" => GrantType::DeviceCode.as_str().to_owned(),
                        _ => GrantType::RefreshToken.as_str().to_owned(),
                    })
                    .collect()
            };
            let generated = secret.then(|| Secret::generate(SecretKind::ClientSecret));
            let record = ClientRecord {
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
                        json!({"client_id": c.id, "name": c.name, "public": c.secret_hash.is_none(),
                               "scope": c.scopes.to_string(), "grant_types": c.grant_types,
                               "device_code_ttl_secs": c.device_code_ttl_secs, "poll_interval_secs": c.poll_interval_secs})
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
                    println!("{}\t{}\t{kind}\t{}", c.id, c.name, c.scopes);
                }
            }
        }
        ClientCommand::Delete { id } => match store.delete_client(&tenant, &id).await {
            Ok(()) => println!("deleted client {id}"),
            Err(StoreError::NotFound) => bail!("no client with id {id:?}"),
            Err(e) => return Err(store_err(e)),
        },
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

pub async fn user(store: &dyn Store, args: UserArgs) -> anyhow::Result<ExitCode> {
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
