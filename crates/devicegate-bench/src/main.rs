//! devicegate-bench: a load tool that drives any RFC 8628 server over HTTP, and the helpers
//! `scripts/bench-compare` needs to measure devicegate beside node oidc-provider.
//!
//! ```text
//! devicegate-bench load --target http://127.0.0.1:8080 --client-id bench \
//!     --mode authorize,poll,tokens,flows,devices --server-pid 1234 --label devicegate
//! devicegate-bench trivial          # a trivial axum handler, the ceiling
//! devicegate-bench pg-server        # a throw-away durable PostgreSQL; prints its URL
//! devicegate-bench table FILE       # the markdown table, with ratios, of `load --out FILE`
//! ```
//! Servers run as their own processes, so the CPU seconds and resident memory read from
//! `/proc` for `--server-pid` are the server's alone. Every load is bounded in time
//! (`--seconds`) and in count (`--codes`).

mod load;
mod procfs;
mod report;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "devicegate-bench", about = "Load tool for RFC 8628 servers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Drive a running server and print one JSON line per mode
    Load(Box<load::LoadArgs>),
    /// Serve a trivial axum handler (the ceiling); prints `listening URL`
    Trivial {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Start a throw-away PostgreSQL with durable defaults; prints `url URL` per database
    /// and `pid PID`, then runs until SIGTERM or Ctrl-C and deletes it
    PgServer {
        #[arg(long, default_value = "devicegate", value_delimiter = ',')]
        database: Vec<String>,
    },
    /// Print the markdown table, with ratios, of the JSON lines `load --out` wrote
    Table { file: PathBuf },
    /// Print a TCP port free on 127.0.0.1 (for a server that must know its issuer URL)
    FreePort,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Load(args) => rt.block_on(load::run(*args)),
        Command::Trivial { listen } => rt.block_on(trivial(listen)),
        Command::PgServer { database } => rt.block_on(pg_server(&database)),
        Command::Table { file } => report::table(&file),
        Command::FreePort => {
            println!(
                "{}",
                std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port()
            );
            Ok(())
        }
    }
}

/// A handler that answers like a pending poll without doing anything: what axum and the
/// loopback cost on this machine.
async fn trivial(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|| async {
            (
                [("content-type", "application/json")],
                r#"{"error":"authorization_pending"}"#,
            )
        }),
    );
    println!("listening http://{}/", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn pg_server(databases: &[String]) -> anyhow::Result<()> {
    let pg = devicegate::temp_postgres::TempPostgres::start_durable()?;
    for name in databases {
        println!("url {}", pg.create_database(name)?);
    }
    let pid = std::fs::read_to_string(pg.dir().join("data/postmaster.pid"))?;
    println!("pid {}", pid.lines().next().unwrap_or_default());
    shutdown().await;
    // Dropping `pg` stops the server and deletes its directory.
    drop(pg);
    Ok(())
}

async fn shutdown() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
