//! A throw-away PostgreSQL server for tests and benchmarks: `initdb` into a temporary
//! directory, `pg_ctl start` on a free port on 127.0.0.1, stopped and deleted on drop.
//!
//! Uses Debian's `postgresql` package (`/usr/lib/postgresql/*/bin`) or binaries on `PATH`.
//! As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

#[derive(Debug)]
pub struct TempPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    /// Start options, kept for restarts.
    options: String,
}

fn find_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("pg_ctl").exists() && p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some(newest) = versions.pop() {
        return Ok(newest);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()?;
    let initdb = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    match initdb.parent() {
        Some(dir) if out.status.success() && dir.join("pg_ctl").exists() => Ok(dir.to_path_buf()),
        _ => bail!(
            "PostgreSQL's server binaries are not installed (./scripts/test installs Debian's postgresql)"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl TempPostgres {
    /// A server tuned for tests: no fsync (its data is thrown away anyway).
    pub fn start_for_tests() -> anyhow::Result<TempPostgres> {
        Self::start_with("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    }

    /// A server with PostgreSQL's durable defaults, for benchmarks.
    pub fn start_durable() -> anyhow::Result<TempPostgres> {
        Self::start_with("")
    }

    fn start_with(extra: &str) -> anyhow::Result<TempPostgres> {
        let bin = find_bin()?;
        let dir = tempfile::tempdir()?;
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let pg = TempPostgres {
            options: format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {extra}",
                dir.path().display()
            ),
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = pg.data();
        pg.run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        pg.start()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        run(cmd.args(args))
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn start(&self) -> anyhow::Result<()> {
        let log = self.dir.path().join("log").display().to_string();
        self.run_pg(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &self.options,
                "-w",
                "start",
            ],
        )
    }

    /// Stops the server (fast shutdown: running transactions are rolled back).
    pub fn stop(&self) -> anyhow::Result<()> {
        self.run_pg("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database; returns its URL.
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let port = self.port.to_string();
        self.run_pg(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        )?;
        Ok(self.url(name))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self.run_pg(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
