//! `pam_devicegate.so`: sign in to a shell (SSH, `sudo`, a console) with the OAuth 2.0 device
//! flow, on `devicegate-client`.
//!
//! During `auth` the module asks the issuer for a device code, shows the address, the code
//! and a QR code through the PAM conversation, polls with RFC 8628's schedule, verifies the
//! ID token against the issuer's JWKS, and succeeds only if the token names the account being
//! signed in to (and any group rule holds). Every failure is one line to the person and one
//! to syslog, within the configured timeout; nothing here can panic across the C boundary
//! (`pam-bindings` catches unwinds and answers `PAM_ABORT`).

pub mod config;
#[cfg(feature = "module")]
#[allow(unsafe_code)]
mod hooks;

use std::time::Duration;

use devicegate_client::{AuthorizationRequest, Client, ClientAuth, Endpoints, Error, Secret};
use serde_json::Value;

pub use config::{Config, ConfigError};

/// What the module says to the person (the PAM conversation, or a test's).
pub trait Conversation {
    /// Text shown as is (`PAM_TEXT_INFO`).
    fn info(&mut self, text: &str);
    /// A prompt whose answer is not used (`PAM_PROMPT_ECHO_OFF`): it makes SSH show the text
    /// before it, and lets the person say they are done.
    fn prompt(&mut self, text: &str);
}

/// Why a sign-in did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the sign-in is not configured correctly: {0}")]
    Config(String),
    #[error("the sign-in service could not be reached: {0}")]
    Unreachable(String),
    #[error("the request was denied")]
    Denied,
    #[error("the code expired before it was approved")]
    Expired,
    #[error("no answer within {0} s")]
    TimedOut(u64),
    /// Shown without the approver's name, which the person at the terminal need not learn.
    #[error("the approval came from an account other than {account:?}")]
    WrongPerson { approved: String, account: String },
    #[error("{0:?} is not in a group allowed to sign in here")]
    NotInGroup(String),
    #[error("the sign-in service's answer could not be verified: {0}")]
    BadToken(String),
}

impl Refusal {
    /// The refusal for the system log: with the approver's name where it matters.
    pub fn for_log(&self) -> String {
        match self {
            Refusal::WrongPerson { approved, account } => {
                format!("approved as {approved:?}, not as the account {account:?}")
            }
            other => other.to_string(),
        }
    }

    /// Whether the failure is the service's (`PAM_AUTHINFO_UNAVAIL`) rather than the
    /// person's (`PAM_AUTH_ERR`): other modules of the stack may then be tried.
    pub fn unavailable(&self) -> bool {
        matches!(self, Refusal::Config(_) | Refusal::Unreachable(_))
    }
}

/// The module's HTTP client: bounded, and deaf to proxy settings from the environment (under
/// sudo they are the invoking user's, who could then answer in the issuer's place).
pub fn http() -> Result<reqwest::Client, Refusal> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Refusal::Config(e.to_string()))
}

/// The issuer's endpoints (discovery), and a client of them as `cfg.client_id`, with its
/// secret when it has one.
pub async fn client(cfg: &Config, http: &reqwest::Client) -> Result<Client, Refusal> {
    let secret = cfg.secret().map_err(Refusal::Config)?;
    let endpoints = Endpoints::discover(http, &cfg.issuer)
        .await
        .map_err(|e| Refusal::Unreachable(e.to_string()))?;
    Ok(Client::new(endpoints, &cfg.client_id)
        .with_http(http.clone())
        .with_auth(match secret {
            Some(s) => ClientAuth::SecretBasic(Secret::new(s)),
            None => ClientAuth::None,
        }))
}

/// Signs `account` in through the device flow; the name the ID token gave on success.
pub fn authenticate(
    cfg: &Config,
    account: &str,
    conv: &mut dyn Conversation,
) -> Result<String, Refusal> {
    let users = cfg.users().map_err(Refusal::Config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Refusal::Config(format!("no runtime: {e}")))?;
    let deadline = tokio::time::Instant::now() + cfg.timeout();
    let timed_out = || Refusal::TimedOut(cfg.timeout_secs);
    let unreachable = |e: Error| Refusal::Unreachable(e.to_string());

    let http = http()?;
    let client = rt
        .block_on(async { tokio::time::timeout_at(deadline, client(cfg, &http)).await })
        .map_err(|_| timed_out())??;
    let request = AuthorizationRequest::new().scope(&cfg.scope);
    let authorization = rt
        .block_on(async { tokio::time::timeout_at(deadline, client.authorize(&request)).await })
        .map_err(|_| timed_out())?
        .map_err(unreachable)?;
    conv.info(&screen(account, &authorization));

    // Poll in the background while the conversation waits for the person.
    let poller = client.clone();
    let a = authorization.clone();
    let polling = rt.spawn(async move { tokio::time::timeout_at(deadline, poller.poll(&a)).await });
    if cfg.press_enter {
        conv.prompt("Press Enter once you have approved: ");
    }
    let tokens = rt
        .block_on(polling)
        .map_err(|e| Refusal::Unreachable(e.to_string()))?
        .map_err(|_| timed_out())?
        .map_err(|e| match e {
            Error::AccessDenied => Refusal::Denied,
            Error::Expired => Refusal::Expired,
            other => Refusal::Unreachable(other.to_string()),
        })?;

    let id_token = tokens.id_token.ok_or_else(|| {
        Refusal::BadToken("no ID token (is openid among the client's scopes?)".into())
    })?;
    let jwks_uri = client
        .endpoints()
        .jwks_uri
        .clone()
        .ok_or_else(|| Refusal::BadToken("the issuer publishes no jwks_uri".into()))?;
    let issuer = client
        .endpoints()
        .issuer
        .clone()
        .unwrap_or_else(|| cfg.issuer.clone());
    let (_, claims) = rt
        .block_on(async {
            tokio::time::timeout_at(
                deadline,
                devicegate_client::verify_id_token(
                    &http,
                    &jwks_uri,
                    &issuer,
                    &cfg.client_id,
                    id_token.expose(),
                ),
            )
            .await
        })
        .map_err(|_| timed_out())?
        .map_err(Refusal::BadToken)?;
    allowed(cfg, users.as_ref(), &claims, account)
}

/// What the person sees: where to go, the code, and a QR code of the complete address.
fn screen(account: &str, a: &devicegate_client::Authorization) -> String {
    let mut out = format!(
        "To sign in as {account}, open {} and enter the code {}",
        a.verification_uri(),
        a.user_code()
    );
    if let Some(complete) = a.verification_uri_complete() {
        out.push_str(&format!("\nor open {complete}\nor scan:\n"));
        if let Some(qr) = devicegate_client::screen::qr_code(complete) {
            out.push_str(&qr);
        }
    }
    out
}

/// Whether the verified `claims` may sign in as `account`: the mapped claim names it, and
/// any group rule holds.
pub fn allowed(
    cfg: &Config,
    users: Option<&std::collections::HashMap<String, String>>,
    claims: &Value,
    account: &str,
) -> Result<String, Refusal> {
    let named = claims[&cfg.user_claim].as_str().ok_or_else(|| {
        Refusal::BadToken(format!("the ID token has no {} claim", cfg.user_claim))
    })?;
    let maps_to = match users {
        Some(map) => map.get(named).map(String::as_str),
        None => Some(named),
    };
    // An email names a person only once the issuer has verified it.
    if cfg.user_claim == "email" && claims["email_verified"] != Value::Bool(true) {
        return Err(Refusal::BadToken("the email is not verified".into()));
    }
    if maps_to != Some(account) {
        return Err(Refusal::WrongPerson {
            approved: named.to_owned(),
            account: account.to_owned(),
        });
    }
    if !cfg.allowed_groups.is_empty() {
        let groups: Vec<&str> = claims[&cfg.groups_claim]
            .as_array()
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !cfg
            .allowed_groups
            .iter()
            .any(|a| groups.contains(&a.as_str()))
        {
            return Err(Refusal::NotInGroup(named.to_owned()));
        }
    }
    Ok(named.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pam.toml");
        std::fs::write(
            &path,
            format!("issuer = \"http://127.0.0.1:1\"\nclient_id = \"ssh\"\n{extra}"),
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        (dir, c)
    }

    #[test]
    fn the_claim_must_name_the_account() {
        let (_d, c) = config("");
        let claims = json!({"preferred_username": "ann"});
        assert_eq!(allowed(&c, None, &claims, "ann").unwrap(), "ann");
        assert!(matches!(
            allowed(&c, None, &claims, "root"),
            Err(Refusal::WrongPerson { .. })
        ));
        assert!(matches!(
            allowed(&c, None, &json!({}), "ann"),
            Err(Refusal::BadToken(_))
        ));
    }

    #[test]
    fn a_map_decides_which_account_and_only_listed_people_get_one() {
        let (_d, c) = config("");
        let map = [("ann@example.com".to_owned(), "ann".to_owned())].into();
        let claims = json!({"preferred_username": "ann@example.com"});
        assert!(allowed(&c, Some(&map), &claims, "ann").is_ok());
        assert!(allowed(&c, Some(&map), &json!({"preferred_username": "ann"}), "ann").is_err());
    }

    #[test]
    fn an_email_counts_only_once_verified() {
        let (_d, c) = config("user_claim = \"email\"\n");
        let unverified = json!({"email": "ann", "email_verified": false});
        let verified = json!({"email": "ann", "email_verified": true});
        assert!(allowed(&c, None, &unverified, "ann").is_err());
        assert!(allowed(&c, None, &json!({"email": "ann"}), "ann").is_err());
        assert!(allowed(&c, None, &verified, "ann").is_ok());
    }

    #[test]
    fn groups_restrict_when_listed() {
        let (_d, c) = config("allowed_groups = [\"ops\"]\n");
        let ops = json!({"preferred_username": "ann", "groups": ["dev", "ops"]});
        let dev = json!({"preferred_username": "ann", "groups": ["dev"]});
        assert!(allowed(&c, None, &ops, "ann").is_ok());
        assert!(matches!(
            allowed(&c, None, &dev, "ann"),
            Err(Refusal::NotInGroup(_))
        ));
        assert!(allowed(&c, None, &json!({"preferred_username": "ann"}), "ann").is_err());
    }

    #[test]
    fn bad_configurations_are_refused_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pam.toml");
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Config::load(&path).unwrap_err().to_string()
        };
        assert!(load("client_id = \"x\"").contains("issuer"));
        assert!(load("issuer = \"ftp://x\"\nclient_id = \"x\"").contains("https"));
        assert!(load("issuer = \"http://idp.example.com\"\nclient_id = \"x\"").contains("https"));
        assert!(
            load("issuer = \"http://127.0.0.1.evil.com\"\nclient_id = \"x\"").contains("https")
        );
        assert!(
            load("issuer = \"https://x\"\nclient_id = \"x\"\nscope = \"profile\"")
                .contains("openid")
        );
        assert!(load("issuer = \"https://x\"\nclient_id = \"x\"\nisuser = 1").contains("isuser"));
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let with_secret = format!(
            "issuer = \"https://x\"\nclient_id = \"x\"\nclient_secret_file = \"{}\"",
            secret.display()
        );
        assert!(load(&with_secret).contains("readable by others"));
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, &with_secret).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.secret().unwrap().as_deref(), Some("s3cret"));
    }
}
