//! `devicegate pam check`: validates the PAM module's configuration against its issuer and
//! prints the PAM line to add.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use devicegate_client::AuthorizationRequest;
use pam_devicegate::config::{Config, DEFAULT_PATH};

#[derive(Debug, Subcommand)]
pub enum PamCommand {
    /// Check pam_devicegate's configuration (--config FILE, by default
    /// /etc/devicegate/pam.toml) against the issuer: discovery, the client allowed the device
    /// grant, the secret file's mode; then print the PAM line to add
    Check,
}

/// `config`: the global `--config`, which here names the module's file.
pub fn run(command: PamCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let PamCommand::Check = command;
    let config = config.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match rt.block_on(check(&config)) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn check(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let cfg = Config::load(path)?;
    let mut out = vec![format!("ok: {} reads", path.display())];
    if let Some(users) = cfg.users().map_err(anyhow::Error::msg)? {
        out.push(format!("ok: the user map names {} account(s)", users.len()));
    }
    // The module's own HTTP client and discovery, so that this checks what it will do.
    let http = pam_devicegate::http()?;
    let client = pam_devicegate::client(&cfg, &http)
        .await
        .map_err(|e| anyhow::anyhow!("discovery at {}: {e}", cfg.issuer))?;
    out.push(format!(
        "ok: {} publishes a device authorization endpoint ({})",
        cfg.issuer,
        client.endpoints().device_authorization
    ));
    anyhow::ensure!(
        client.endpoints().jwks_uri.is_some(),
        "{} publishes no jwks_uri: ID tokens could not be verified",
        cfg.issuer
    );
    // A code nobody will use: it proves the client may use the device grant with these
    // scopes, and expires.
    client
        .authorize(&AuthorizationRequest::new().scope(&cfg.scope))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "client {} may not start a device sign-in with scope {:?}: {e}",
                cfg.client_id,
                cfg.scope
            )
        })?;
    out.push(format!(
        "ok: client {} may use the device grant with scope {:?}",
        cfg.client_id, cfg.scope
    ));
    out.push(String::new());
    out.push("Add to /etc/pam.d/sshd (before @include common-auth) or /etc/pam.d/sudo:".into());
    let arg = match path.to_str() {
        Some(p) if p != DEFAULT_PATH => format!(" config={p}"),
        _ => String::new(),
    };
    out.push(format!(
        "auth [success=done authinfo_unavail=ignore default=die] pam_devicegate.so{arg}"
    ));
    Ok(out)
}
