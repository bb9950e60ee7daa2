//! The tokens `devicegate login` keeps: one JSON file, one entry per (issuer, client id),
//! readable only by the user, replaced atomically on every change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use devicegate_client::{Endpoints, Tokens};
use serde::{Deserialize, Serialize};

/// Overrides the token file's path (tests, several accounts).
pub const PATH_ENV: &str = "DEVICEGATE_TOKEN_FILE";

/// `$DEVICEGATE_TOKEN_FILE`, else `devicegate/tokens.json` in the user's config directory
/// (`$XDG_CONFIG_HOME` or `~/.config` on Linux).
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(PATH_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let dir = dirs::config_dir()
        .context("no config directory for this user; set DEVICEGATE_TOKEN_FILE")?;
    Ok(dir.join("devicegate").join("tokens.json"))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TokenFile {
    #[serde(default)]
    pub entries: Vec<Entry>,
}

/// What one login left: where the tokens work, and the tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub issuer: String,
    pub client_id: String,
    pub endpoints: Endpoints,
    pub tokens: Tokens,
    /// Unix seconds at which the access token expires, if the server said its lifetime.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Unix seconds of the login or the last refresh.
    pub updated_at: u64,
}

impl Entry {
    pub fn new(issuer: &str, client_id: &str, endpoints: Endpoints, tokens: Tokens) -> Entry {
        let now = unix_now();
        Entry {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            endpoints,
            expires_at: tokens.expires_in.map(|s| now.saturating_add(s)),
            tokens,
            updated_at: now,
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenFile {
    /// The file at `path`; an empty one if it does not exist yet.
    pub fn load(path: &Path) -> anyhow::Result<TokenFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("reading token file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading token file {}", path.display())),
        }
    }

    /// Writes a temporary file beside `path` with mode 0600, syncs it, and renames it over
    /// `path`, so a crash leaves the old file or the new one, never half of one.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir {
            create_private_dir(dir)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = private_file(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(self)?)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::Error::new(e).context(format!("writing token file {}", path.display()))
        })
    }

    /// Adds `entry`, replacing the one for the same issuer and client.
    pub fn upsert(&mut self, entry: Entry) {
        self.entries
            .retain(|e| !(e.issuer == entry.issuer && e.client_id == entry.client_id));
        self.entries.push(entry);
    }

    /// The entry matching the filters; with none given, the only entry there is.
    pub fn select(&self, issuer: Option<&str>, client_id: Option<&str>) -> anyhow::Result<usize> {
        let matches: Vec<usize> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| issuer.is_none_or(|i| e.issuer == i.trim_end_matches('/')))
            .filter(|(_, e)| client_id.is_none_or(|c| e.client_id == c))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => bail!(
                "not logged in{}; run `devicegate login`",
                describe(issuer, client_id)
            ),
            _ => bail!(
                "logged in to several servers or clients{}; choose with --issuer and --client-id",
                describe(issuer, client_id)
            ),
        }
    }
}

fn describe(issuer: Option<&str>, client_id: Option<&str>) -> String {
    match (issuer, client_id) {
        (Some(i), Some(c)) => format!(" to {i} as client {c}"),
        (Some(i), None) => format!(" to {i}"),
        (None, Some(c)) => format!(" as client {c}"),
        (None, None) => String::new(),
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use devicegate_client::Secret;

    use super::*;

    fn entry(issuer: &str, client: &str, token: &str) -> Entry {
        Entry::new(
            issuer,
            client,
            Endpoints::new(format!("{issuer}/d"), format!("{issuer}/t")),
            Tokens {
                access_token: Secret::new(token),
                token_type: "Bearer".into(),
                expires_in: Some(60),
                refresh_token: None,
                id_token: None,
                scope: None,
            },
        )
    }

    #[test]
    fn one_entry_per_issuer_and_client_saved_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("tokens.json");
        let mut f = TokenFile::load(&path).unwrap();
        f.upsert(entry("https://a", "cli", "1"));
        f.upsert(entry("https://a", "cli", "2"));
        f.upsert(entry("https://b", "cli", "3"));
        f.save(&path).unwrap();
        let back = TokenFile::load(&path).unwrap();
        assert_eq!(back.entries.len(), 2);
        let i = back.select(Some("https://a/"), None).unwrap();
        assert_eq!(back.entries[i].tokens.access_token.expose(), "2");
        assert!(back.select(None, Some("cli")).is_err(), "ambiguous");
        assert!(back.select(Some("https://c"), None).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left beside it.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
