//! The `devicegate` binary: `serve`, `migrate`, and the `client`, `user`, `tenant` and
//! `upstream` administration commands, over the configured store (SQLite or PostgreSQL); and `login`,
//! `token`, `logout`, the device side, which never open it.
//!
//! `main` calls [`run`]; tests and the benchmark start servers through [`start`].

mod admin;
pub mod check;
pub mod config;
mod login;
mod pam;
pub mod temp_postgres;
mod token_store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::Database;
use devicegate_server::{AppState, Settings};
use devicegate_store::{PostgresStore, SqliteStore, Store};

pub use admin::{ClientCommand, TenantCommand, UpstreamCommand, UserCommand};

#[derive(Debug, Parser)]
#[command(
    name = "devicegate",
    version,
    about = "OAuth 2.0 Device Authorization Grant server with OpenID Connect"
)]
pub struct Cli {
    /// TOML config file; its keys are the long flags below, with `_` for `-`
    #[arg(long, global = true, env = "DEVICEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub keys: config::Keys,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (drains in-flight requests on SIGTERM or Ctrl-C, for at most
    /// shutdown_drain_secs)
    Serve {
        /// Create a public client `demo-cli` and a user `demo` (password printed once)
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit
    Migrate,
    /// Manage OAuth clients
    Client(admin::ClientArgs),
    /// Manage local users
    User(admin::UserArgs),
    /// The devices holding access: list them, revoke one
    Grant(admin::GrantArgs),
    /// Signing keys: list them, rotate
    Key(admin::KeyArgs),
    /// The audit trail: security events, newest last
    Audit(admin::AuditArgs),
    /// Manage tenants (isolated clients, users, keys and issuer)
    #[command(subcommand)]
    Tenant(admin::TenantCommand),
    /// Manage the organisations' OpenID providers people sign in through
    Upstream(admin::UpstreamArgs),
    #[command(flatten)]
    Account(login::AccountCommand),
    /// SSH and sudo sign-in with the device flow (the PAM module pam_devicegate.so)
    #[command(subcommand)]
    Pam(pam::PamCommand),
    /// Check any RFC 8628 server's device flow against the specifications: PASS, WARN
    /// (a SHOULD not met), FAIL (a MUST broken) or SKIP per rule; exit status 1 on a FAIL
    Check(check::CheckArgs),
}

/// Parses the command line and runs it.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // `pam check --config FILE` names the PAM module's file, not the server's.
    if let Command::Pam(c) = cli.command {
        return pam::run(c, cli.config);
    }
    let file = match &cli.config {
        Some(p) => config::Keys::from_file(p)?,
        None => config::Keys::default(),
    };
    let keys = cli.keys.over(file);
    init_logging(keys.log.as_deref().unwrap_or("info"));
    let command = match cli.command {
        Command::Account(c) => return login::run(c, keys.issuer.as_deref()),
        Command::Check(args) => return check::run(args),
        server_side => server_side,
    };
    let db = keys.database()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let change = admin::change_from_args(&std::env::args().skip(1).collect::<Vec<_>>());
    let outcome = dispatch(command, &keys, &db, &rt);
    // Every administrative change that succeeded is in the audit trail.
    if let (Ok(ExitCode::SUCCESS), Some(event)) = (&outcome, change) {
        devicegate_server::audit::log(&event);
        rt.block_on(async {
            open_store(&db)
                .await?
                .append_audit(&[event])
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .map_err(|e| {
            anyhow::anyhow!("the change is made, but its audit event could not be stored: {e}")
        })?;
    }
    outcome
}

fn dispatch(
    command: Command,
    keys: &config::Keys,
    db: &Database,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let db = db.clone();
    match command {
        Command::Account(_) | Command::Check(_) | Command::Pam(_) => {
            unreachable!("handled above")
        }
        Command::Migrate => {
            let n = match &db {
                Database::Sqlite(path) => {
                    SqliteStore::migrate(path).map_err(|e| anyhow::anyhow!("{e}"))?
                }
                // Connecting applies the migrations (under a lock shared by every instance).
                Database::Postgres(_) => {
                    rt.block_on(open_store(&db))?;
                    0
                }
            };
            println!("applied {n} migration(s) to {db}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(cmd) => {
            rt.block_on(async { admin::client(open_store(&db).await?.as_ref(), cmd).await })
        }
        Command::User(cmd) => {
            let issuer = keys.issuer()?;
            let ttl = keys.settings()?.access_token_ttl;
            rt.block_on(async {
                admin::user(open_store(&db).await?.as_ref(), cmd, &issuer, ttl).await
            })
        }
        Command::Key(cmd) => {
            let settings = keys.settings()?;
            let publish = keys.key_publish();
            rt.block_on(async {
                admin::key(
                    open_store(&db).await?.as_ref(),
                    cmd,
                    settings.signing_alg,
                    publish,
                    settings.access_token_ttl,
                )
                .await
            })
        }
        Command::Audit(cmd) => {
            rt.block_on(async { admin::audit(open_store(&db).await?.as_ref(), cmd).await })
        }
        Command::Grant(cmd) => {
            let ttl = keys.settings()?.access_token_ttl;
            rt.block_on(async { admin::grant(open_store(&db).await?.as_ref(), cmd, ttl).await })
        }
        Command::Tenant(cmd) => {
            rt.block_on(async { admin::tenant(open_store(&db).await?.as_ref(), cmd).await })
        }
        Command::Upstream(cmd) => {
            let issuer = keys.issuer()?;
            rt.block_on(async {
                let store = open_store(&db).await?;
                admin::upstream(store.as_ref(), cmd, &issuer, keys.issuer.is_some()).await
            })
        }
        Command::Serve { demo } => rt.block_on(serve(keys, &db, demo)),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Opens the store and applies its pending migrations.
pub async fn open_store(db: &Database) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match db {
        Database::Sqlite(path) => Arc::new(
            SqliteStore::open(path)
                .map_err(|e| anyhow::anyhow!("opening database {}: {e}", path.display()))?,
        ),
        Database::Postgres(url) => Arc::new(
            PostgresStore::connect(url)
                .await
                .map_err(|e| anyhow::anyhow!("opening database {db}: {e}"))?,
        ),
    })
}

async fn serve(keys: &config::Keys, db: &Database, demo: bool) -> anyhow::Result<ExitCode> {
    let settings = keys.settings()?;
    let store = open_store(db).await?;
    admin::apply_config(store.as_ref(), keys.local_passwords, &keys.upstream).await?;
    if demo {
        admin::seed_demo(store.as_ref()).await?;
    }
    let listener = tokio::net::TcpListener::bind(keys.listen())
        .await
        .with_context(|| format!("binding {}", keys.listen()))?;
    let drain = settings.connections.shutdown_drain;
    let server = start(settings, store, listener).await?;
    eprintln!(
        "devicegate listening on http://{}  issuer {}  database {}",
        server.addr, server.issuer, db
    );
    shutdown_signal().await;
    eprintln!(
        "shutting down: draining in-flight requests for at most {} s",
        drain.as_secs()
    );
    server.stop().await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending::<()>().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A server running in this process.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub issuer: String,
    pub state: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests (closing what is left after the settings'
    /// `connections.shutdown_drain`), and waits for the server to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        Ok(())
    }
}

/// Starts serving `store` on `listener`.
pub async fn start(
    settings: Settings,
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let issuer = settings.issuer.clone();
    let state = AppState::new(settings, store).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(devicegate_server::serve(
        listener,
        state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Running {
        addr,
        issuer,
        state,
        stop,
        task,
    })
}
