//! How the checker gets a device approved or denied: devicegate's flows API, a command the
//! operator gives (for any server: a browser script, a curl walk), or a person.

use std::time::Duration;

use devicegate_proto::DeviceAuthorizationResponse;
use serde_json::{Value, json};

/// What the person does with the device's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Approver {
    /// devicegate's `/api/v1/flows`, signing on as this person.
    FlowsApi { username: String, password: String },
    /// `sh -c` this, with the code and the decision in its environment; it exits 0 once done.
    Command(String),
    /// A person at a browser, told what to do; they press Enter when done.
    Manual,
}

impl Approver {
    /// `flows-api`, `command:…` or `manual`.
    pub fn parse(
        mode: &str,
        username: Option<String>,
        password: Option<String>,
    ) -> anyhow::Result<Approver> {
        if let Some(cmd) = mode.strip_prefix("command:") {
            anyhow::ensure!(!cmd.trim().is_empty(), "--approve command: needs a command");
            return Ok(Approver::Command(cmd.to_owned()));
        }
        match mode {
            "manual" => Ok(Approver::Manual),
            "flows-api" => Ok(Approver::FlowsApi {
                username: username
                    .ok_or_else(|| anyhow::anyhow!("--approve flows-api needs --username"))?,
                password: password
                    .ok_or_else(|| anyhow::anyhow!("--approve flows-api needs --password-stdin"))?,
            }),
            other => {
                anyhow::bail!("--approve {other:?}: expected flows-api, command:\"…\" or manual")
            }
        }
    }

    /// Approves or denies `device`'s request; `Err` says what went wrong.
    pub async fn decide(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        device: &DeviceAuthorizationResponse,
        decision: Decision,
    ) -> Result<(), String> {
        match self {
            Approver::FlowsApi { username, password } => {
                flows_api(http, issuer, device, decision, username, password).await
            }
            Approver::Command(cmd) => {
                // What it prints goes to standard error: standard output is the report's.
                use std::os::fd::AsFd;
                let to_stderr = std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map(std::process::Stdio::from)
                    .unwrap_or_else(|_| std::process::Stdio::null());
                let status = tokio::process::Command::new("sh")
                    .stdin(std::process::Stdio::null())
                    .stdout(to_stderr)
                    .arg("-c")
                    .arg(cmd)
                    .env("DEVICEGATE_CHECK_USER_CODE", &device.user_code)
                    .env(
                        "DEVICEGATE_CHECK_VERIFICATION_URI",
                        &device.verification_uri,
                    )
                    .env(
                        "DEVICEGATE_CHECK_VERIFICATION_URI_COMPLETE",
                        device.verification_uri_complete.as_deref().unwrap_or(""),
                    )
                    .env("DEVICEGATE_CHECK_DECISION", decision.as_str())
                    .env("DEVICEGATE_CHECK_ISSUER", issuer)
                    .status()
                    .await
                    .map_err(|e| format!("could not run the approval command: {e}"))?;
                match status.success() {
                    true => Ok(()),
                    false => Err(format!("the approval command exited with {status}")),
                }
            }
            Approver::Manual => {
                let link = device
                    .verification_uri_complete
                    .as_deref()
                    .unwrap_or(&device.verification_uri);
                eprintln!(
                    "\n>>> Open {link} , enter code {} if asked, and {} it. Press Enter when done.",
                    device.user_code,
                    decision.as_str().to_uppercase()
                );
                tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("could not read stdin: {e}"))?;
                Ok(())
            }
        }
    }
}

/// devicegate's flows API: a flow, the code, a sign-on, the decision.
async fn flows_api(
    http: &reqwest::Client,
    issuer: &str,
    device: &DeviceAuthorizationResponse,
    decision: Decision,
    username: &str,
    password: &str,
) -> Result<(), String> {
    let post = |url: String, body: Value| async move {
        let res = http
            .post(&url)
            .timeout(Duration::from_secs(30))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        match status.is_success() {
            true => Ok(body),
            false => Err(format!("{url}: HTTP {status} {body}")),
        }
    };
    let flow = post(format!("{issuer}/api/v1/flows"), json!({})).await?;
    let id = flow["id"].as_str().ok_or("the flows API gave no flow id")?;
    let at = format!("{issuer}/api/v1/flows/{id}");
    post(
        at.clone(),
        json!({"action": "user_code.verify", "user_code": device.user_code}),
    )
    .await?;
    post(
        at.clone(),
        json!({"action": "sign_on", "username": username, "password": password}),
    )
    .await?;
    post(
        at,
        json!({"action": "consent", "accept": decision == Decision::Approve}),
    )
    .await?;
    Ok(())
}
