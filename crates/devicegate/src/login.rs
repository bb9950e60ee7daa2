//! `devicegate login`, `token show`, `token refresh` and `logout`: the device side of the
//! flow, against devicegate or any RFC 8628 server, through `devicegate-client`. None of
//! these open the server's database.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use devicegate_client::{
    Authorization, AuthorizationRequest, Client, ClientAuth, Error, Secret, TokenTypeHint,
};
use serde_json::{Value, json};

use crate::token_store::{self, Entry, TokenFile};

/// Exit codes of the login commands, as the README documents them (0 is success).
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const DENIED: u8 = 3;
    pub const EXPIRED: u8 = 4;
    pub const CANCELLED: u8 = 130;
}

/// The commands of a device signing in to a server (the server is `--issuer`).
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Sign in with the device flow: shows a code to approve in a browser, then stores the
    /// tokens (needs --issuer)
    #[command(
        after_help = "Exit codes: 0 signed in, 1 error, 2 usage, 3 access denied, 4 code expired, 130 cancelled"
    )]
    Login(LoginArgs),
    /// Show or refresh the stored tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Revoke the stored tokens at the server when it supports it, then forget them
    Logout {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        secret: SecretArgs,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The client id registered at the server
    #[arg(long)]
    client_id: String,
    /// Scopes to ask for, space-separated [default: the server's default for the client]
    #[arg(long)]
    scope: Option<String>,
    #[command(flatten)]
    secret: SecretArgs,
    /// Open the verification address in the browser
    #[arg(long)]
    open: bool,
    /// Print JSON lines for scripts: one when the code is issued, one with the outcome
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SecretArgs {
    /// The client secret, for a confidential client
    #[arg(long, env = "DEVICEGATE_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Send the secret in the body (client_secret_post) instead of HTTP Basic
    #[arg(long, requires = "client_secret")]
    client_secret_post: bool,
}

impl SecretArgs {
    fn auth(&self) -> ClientAuth {
        match (&self.client_secret, self.client_secret_post) {
            (None, _) => ClientAuth::None,
            (Some(s), false) => ClientAuth::SecretBasic(Secret::new(s.as_str())),
            (Some(s), true) => ClientAuth::SecretPost(Secret::new(s.as_str())),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Who is signed in, the scope, and when the access token expires
    Show {
        #[command(flatten)]
        select: SelectArgs,
        /// Also print the ID token's claims (decoded, not verified)
        #[arg(long)]
        id_token: bool,
    },
    /// Get new tokens with the stored refresh token
    Refresh {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        secret: SecretArgs,
    },
}

/// Which stored login (by --issuer and --client-id; either may be left out when it is the
/// only one).
#[derive(Debug, Args)]
pub struct SelectArgs {
    #[arg(long)]
    client_id: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Runs an account command; `issuer` is the global `--issuer`.
pub fn run(command: AccountCommand, issuer: Option<&str>) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let path = token_store::path()?;
    match command {
        AccountCommand::Login(args) => {
            let Some(issuer) = issuer else {
                eprintln!(
                    "error: `devicegate login` needs --issuer URL (the server to sign in to)"
                );
                return Ok(ExitCode::from(exit::USAGE));
            };
            rt.block_on(login(issuer.trim_end_matches('/'), &args, &path))
        }
        AccountCommand::Token(TokenCommand::Show { select, id_token }) => {
            show(&TokenFile::load(&path)?, issuer, &select, id_token)
        }
        AccountCommand::Token(TokenCommand::Refresh { select, secret }) => {
            rt.block_on(refresh(pick(&path, issuer, &select, &secret)?))
        }
        AccountCommand::Logout { select, secret } => {
            rt.block_on(logout(pick(&path, issuer, &select, &secret)?))
        }
    }
}

async fn login(issuer: &str, args: &LoginArgs, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let client = Client::discover(issuer, &args.client_id)
        .await?
        .with_auth(args.secret.auth());
    let mut request = AuthorizationRequest::new();
    if let Some(scope) = &args.scope {
        request = request.scope(scope);
    }
    let authorization = client.authorize(&request).await?;
    let tty = std::io::stdout().is_terminal();
    if args.json {
        print_json(&json!({
            "status": "pending",
            "user_code": authorization.user_code(),
            "verification_uri": authorization.verification_uri(),
            "verification_uri_complete": authorization.verification_uri_complete(),
            "expires_in": authorization.expires_in().as_secs(),
        }));
    } else if tty {
        print!("{}", devicegate_client::screen::render_ansi(&authorization));
    } else {
        print!("{}", devicegate_client::screen::render(&authorization));
    }
    let _ = std::io::stdout().flush();
    if args.open {
        open_browser(
            authorization
                .verification_uri_complete()
                .unwrap_or(authorization.verification_uri()),
        );
    }
    let countdown = async {
        if tty && !args.json {
            countdown(&authorization).await
        } else {
            std::future::pending().await
        }
    };
    let result = tokio::select! {
        r = client.poll(&authorization) => r,
        () = countdown => Err(Error::Expired),
        _ = tokio::signal::ctrl_c() => Err(Error::Cancelled),
    };
    if tty && !args.json {
        print!("\r\x1b[K");
    }
    let tokens = match result {
        Ok(t) => t,
        Err(e) => return Ok(failed(&e, args.json)),
    };
    let entry = Entry::new(issuer, &args.client_id, client.endpoints().clone(), tokens);
    let who = identity(&entry);
    let mut file = TokenFile::load(path)?;
    file.upsert(entry.clone());
    file.save(path)?;
    if args.json {
        let mut out = summary(&entry);
        out["status"] = "ok".into();
        out["token_file"] = path.display().to_string().into();
        print_json(&out);
    } else {
        println!(
            "Signed in to {issuer} as {}.",
            who.as_deref().unwrap_or("(the server named no one)")
        );
        println!("Tokens saved to {}.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Redraws "expires in m:ss" once a second; ends when the code has expired.
async fn countdown(authorization: &Authorization) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let left = authorization
            .expires_at()
            .saturating_duration_since(std::time::Instant::now());
        let secs = left.as_secs();
        print!(
            "\r\x1b[KWaiting for approval… the code expires in {}:{:02} (Ctrl-C cancels)",
            secs / 60,
            secs % 60
        );
        let _ = std::io::stdout().flush();
        if left.is_zero() {
            return;
        }
    }
}

/// The exit code and message for a login that did not end with tokens.
fn failed(e: &Error, json: bool) -> ExitCode {
    let (status, code) = match e {
        Error::AccessDenied => ("denied", exit::DENIED),
        Error::Expired => ("expired", exit::EXPIRED),
        Error::Cancelled => ("cancelled", exit::CANCELLED),
        _ => ("error", exit::ERROR),
    };
    if json {
        print_json(&json!({
            "status": status,
            "error": e.oauth_code(),
            "message": e.to_string(),
        }));
    } else {
        match e {
            Error::AccessDenied => println!("The sign-in was denied."),
            Error::Expired => println!("The code expired before anyone approved it."),
            Error::Cancelled => println!("Cancelled."),
            _ => eprintln!("error: {e}"),
        }
    }
    ExitCode::from(code)
}

fn show(
    file: &TokenFile,
    issuer: Option<&str>,
    select: &SelectArgs,
    with_id_token: bool,
) -> anyhow::Result<ExitCode> {
    let entry = &file.entries[file.select(issuer, select.client_id.as_deref())?];
    let claims = id_token_claims(entry);
    if select.json {
        let mut out = summary(entry);
        if with_id_token {
            out["id_token_claims"] = claims.unwrap_or(Value::Null);
        }
        print_json(&out);
        return Ok(ExitCode::SUCCESS);
    }
    println!("issuer         {}", entry.issuer);
    println!("client         {}", entry.client_id);
    if let Some(who) = identity(entry) {
        println!("signed in as   {who}");
    }
    if let Some(scope) = &entry.tokens.scope {
        println!("scope          {scope}");
    }
    println!("access token   {}", expiry(entry.expires_at));
    println!(
        "refresh token  {}",
        if entry.tokens.refresh_token.is_some() {
            "yes"
        } else {
            "no"
        }
    );
    if with_id_token {
        match claims {
            Some(c) => println!("ID token claims (not verified):\n{c:#}"),
            None => println!("no ID token"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A stored login that `token refresh` or `logout` acts on.
struct Picked<'a> {
    path: &'a std::path::Path,
    file: TokenFile,
    /// The entry's index in `file`, and a copy of it.
    i: usize,
    entry: Entry,
    /// A client for the entry's server.
    client: Client,
    json: bool,
}

/// The entry of the token file at `path` that `issuer` and `select` name.
fn pick<'a>(
    path: &'a std::path::Path,
    issuer: Option<&str>,
    select: &SelectArgs,
    secret: &SecretArgs,
) -> anyhow::Result<Picked<'a>> {
    let file = TokenFile::load(path)?;
    let i = file.select(issuer, select.client_id.as_deref())?;
    let entry = file.entries[i].clone();
    let client = Client::new(entry.endpoints.clone(), &entry.client_id).with_auth(secret.auth());
    Ok(Picked {
        path,
        file,
        i,
        entry,
        client,
        json: select.json,
    })
}

async fn refresh(picked: Picked<'_>) -> anyhow::Result<ExitCode> {
    let Picked {
        path,
        mut file,
        entry: old,
        client,
        json,
        ..
    } = picked;
    let refresh_token = old
        .tokens
        .refresh_token
        .clone()
        .context("no refresh token is stored (ask for offline_access); log in again")?;
    let mut tokens = client
        .refresh(&refresh_token)
        .await
        .context("refreshing the tokens")?;
    // OIDC Core §12.2: a refresh response may leave the ID token out; the old one still says
    // who signed in.
    if tokens.id_token.is_none() {
        tokens.id_token = old.tokens.id_token.clone();
    }
    let entry = Entry::new(&old.issuer, &old.client_id, old.endpoints, tokens);
    file.upsert(entry.clone());
    file.save(path)?;
    if json {
        print_json(&summary(&entry));
    } else {
        println!("Refreshed: the access token {}.", expiry(entry.expires_at));
    }
    Ok(ExitCode::SUCCESS)
}

async fn logout(picked: Picked<'_>) -> anyhow::Result<ExitCode> {
    let Picked {
        path,
        mut file,
        i,
        entry,
        client,
        json,
    } = picked;
    let revoked = if entry.endpoints.revocation.is_some() {
        // RFC 7009 §2.1: revoking the refresh token also ends the access tokens of its grant
        // at servers that support it; the access token is revoked too for those that don't.
        if let Some(rt) = &entry.tokens.refresh_token {
            client
                .revoke(rt, TokenTypeHint::RefreshToken)
                .await
                .context("revoking the refresh token; the tokens are kept, try again")?;
        }
        client
            .revoke(&entry.tokens.access_token, TokenTypeHint::AccessToken)
            .await
            .context("revoking the access token; the tokens are kept, try again")?;
        true
    } else {
        false
    };
    file.entries.remove(i);
    file.save(path)?;
    if json {
        print_json(&json!({
            "status": "ok",
            "issuer": entry.issuer,
            "client_id": entry.client_id,
            "revoked": revoked,
        }));
    } else if revoked {
        println!("Revoked the tokens at {} and forgot them.", entry.issuer);
    } else {
        println!(
            "Forgot the tokens; {} offers no revocation, so they stay valid there until they expire.",
            entry.issuer
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn id_token_claims(entry: &Entry) -> Option<Value> {
    let jwt = entry.tokens.id_token.as_ref()?;
    devicegate_client::unverified_claims(jwt.expose()).ok()
}

/// Who signed in, by the ID token's friendliest claim.
fn identity(entry: &Entry) -> Option<String> {
    let c = id_token_claims(entry)?;
    let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = s("preferred_username")
        .or_else(|| s("email"))
        .or_else(|| s("name"));
    let sub = s("sub");
    match (name, sub) {
        (Some(n), Some(sub)) if n != sub => Some(format!("{n} ({sub})")),
        (Some(n), _) => Some(n),
        (None, sub) => sub,
    }
}

/// The machine-readable description of a stored login; never the tokens themselves.
fn summary(entry: &Entry) -> Value {
    let claims = id_token_claims(entry).unwrap_or(Value::Null);
    json!({
        "issuer": entry.issuer,
        "client_id": entry.client_id,
        "subject": claims.get("sub"),
        "username": claims.get("preferred_username"),
        "name": claims.get("name"),
        "email": claims.get("email"),
        "scope": entry.tokens.scope,
        "expires_at": entry.expires_at,
        "has_refresh_token": entry.tokens.refresh_token.is_some(),
    })
}

fn expiry(expires_at: Option<u64>) -> String {
    let Some(at) = expires_at else {
        return "has no stated lifetime".into();
    };
    let now = token_store::unix_now();
    let span = |s: u64| match s {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    };
    if at > now {
        format!("expires in {}", span(at - now))
    } else {
        format!("expired {} ago", span(now - at))
    }
}

fn print_json(v: &Value) {
    println!("{v}");
    let _ = std::io::stdout().flush();
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("could not open a browser ({opener}: {e}); open the address above by hand");
    }
}
