//! `/etc/devicegate/pam.toml`: which issuer and client, which claim names the Unix account,
//! who may sign in, how long to wait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where the configuration is unless the PAM line says `config=PATH`.
pub const DEFAULT_PATH: &str = "/etc/devicegate/pam.toml";

/// The configuration file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The OpenID provider (devicegate, or any RFC 8628 server with discovery).
    pub issuer: String,
    /// A client registered for the device grant.
    pub client_id: String,
    /// A file holding the client's secret, for a confidential client; readable by root only.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to ask for; `openid` is needed for the ID token that names the person.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// The ID token claim that holds the Unix account name.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// A file mapping claim values to Unix accounts, one `claim-value unix-account` per line
    /// (`#` comments); when set, only the accounts it lists can sign in.
    #[serde(default)]
    pub user_map_file: Option<PathBuf>,
    /// The claim holding the person's groups (a list of names).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// When not empty, the person must be in one of these groups.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// The longest a sign-in may take, from the code shown to the answer [default: 300].
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Ask the person to press Enter once they approved. SSH shows the code only with a
    /// prompt after it (OpenSSH holds informational text until the next prompt) [default: true].
    #[serde(default = "default_true")]
    pub press_enter: bool,
}

fn default_scope() -> String {
    "openid profile".into()
}
fn default_user_claim() -> String {
    "preferred_username".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_timeout() -> u64 {
    300
}
fn default_true() -> bool {
    true
}

/// A configuration that cannot be used, and why (shown to the operator, logged).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl Config {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let c: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        // Over plain HTTP anyone on the path could forge the keys and the ID token: only a
        // loopback issuer (a local proxy, tests) may use it.
        let loopback = ["http://127.0.0.1", "http://[::1]", "http://localhost"]
            .iter()
            .any(|p| {
                c.issuer
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
            });
        if !(c.issuer.starts_with("https://") || loopback) {
            return Err(err(format!(
                "issuer {:?} must be an https URL (plain http only on loopback)",
                c.issuer
            )));
        }
        if !c.scope.split_ascii_whitespace().any(|s| s == "openid") {
            return Err(err(
                "scope must include openid: the ID token names the person".into(),
            ));
        }
        if c.timeout_secs == 0 || c.timeout_secs > 3600 {
            return Err(err("timeout_secs must be between 1 and 3600".into()));
        }
        if let Some(f) = &c.client_secret_file {
            c.secret_from(f).map_err(err)?;
        }
        if let Some(f) = &c.user_map_file {
            c.user_map(f).map_err(err)?;
        }
        Ok(c)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The client secret, if configured.
    pub fn secret(&self) -> Result<Option<String>, String> {
        self.client_secret_file
            .as_deref()
            .map(|f| self.secret_from(f))
            .transpose()
    }

    fn secret_from(&self, f: &Path) -> Result<String, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f)
                .map_err(|e| format!("client_secret_file {}: {e}", f.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(format!(
                    "client_secret_file {} is readable by others (mode {:o}); chmod 600 it",
                    f.display(),
                    mode & 0o777
                ));
            }
        }
        let s = std::fs::read_to_string(f)
            .map_err(|e| format!("client_secret_file {}: {e}", f.display()))?;
        Ok(s.trim().to_owned())
    }

    /// The claim value → Unix account map, if configured.
    pub fn users(&self) -> Result<Option<HashMap<String, String>>, String> {
        self.user_map_file
            .as_deref()
            .map(|f| self.user_map(f))
            .transpose()
    }

    fn user_map(&self, f: &Path) -> Result<HashMap<String, String>, String> {
        let text = std::fs::read_to_string(f)
            .map_err(|e| format!("user_map_file {}: {e}", f.display()))?;
        let mut map = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(claim), Some(account), None) => {
                    map.insert(claim.to_owned(), account.to_owned());
                }
                _ => {
                    return Err(format!(
                        "user_map_file {} line {}: expected `claim-value unix-account`",
                        f.display(),
                        n + 1
                    ));
                }
            }
        }
        Ok(map)
    }
}
