//! `POST /oauth2/device_authorization` (RFC 8628 §3.1–3.2).

use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use devicegate_core::grant::{DeviceGrant, GrantStatus, Requester};
use devicegate_core::limits::code_length;
use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, ordered_id};
use devicegate_core::user_code::UserCode;
use devicegate_proto::{DeviceAuthorizationResponse, ErrorCode, GrantType};
use devicegate_store::{ClientRecord, StoreError};
use http::header::USER_AGENT;
use http::{HeaderMap, StatusCode};

use crate::client_auth::{authenticate_client, ensure_grant_allowed};
use crate::error::OAuthError;
use crate::extract::ClientAddr;
use crate::extract::OAuthForm;
use crate::limits::{self};
use crate::tenant::Tenant;
use crate::{AppState, now};

/// A user-code collision is one in 2^34 per pending code; a handful of retries is plenty.
const USER_CODE_ATTEMPTS: usize = 8;

pub async fn authorize(
    State(state): State<AppState>,
    Extension(tenant): Extension<Arc<Tenant>>,
    ip: ClientAddr,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<DeviceAuthorizationResponse>, OAuthError> {
    let issued = authorize_form(&state, &tenant, ip, &headers, &form).await?;
    Ok(Json(issued.response(&tenant.verification_uri(&state))))
}

/// RFC 8628 §3.1 as every form-encoded front door does it (native, IDCS, PingOne): the
/// client authenticates, may use the grant, asks for allowed scopes, and gets a code.
pub async fn authorize_form(
    state: &AppState,
    tenant: &Tenant,
    ip: ClientAddr,
    headers: &HeaderMap,
    form: &OAuthForm,
) -> Result<Issued, OAuthError> {
    let client = authenticate_client(state, tenant, headers, form).await?;
    ensure_grant_allowed(&client, GrantType::DeviceCode)?;
    let scopes = requested_scopes(&client, form.get("scope"))?;
    issue(
        state,
        tenant,
        &client,
        scopes,
        Asker::new(ip, headers),
        None,
    )
    .await
}

/// Who asked for a code, as the person approving will see it.
#[derive(Debug, Clone)]
pub struct Asker {
    /// The client address behind any trusted proxy, as every limit counts it.
    pub ip: IpAddr,
    pub user_agent: Option<String>,
}

impl Asker {
    pub fn new(ClientAddr(ip): ClientAddr, headers: &HeaderMap) -> Asker {
        Asker {
            ip,
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(256).collect()),
        }
    }
}

/// Whether `ip` is in one of `networks` (CIDR; an address alone is its own network). An
/// unreadable entry matches nothing (the CLI refuses to store one).
pub fn in_networks(ip: IpAddr, networks: &[String]) -> bool {
    let ip = ip.to_canonical();
    networks.iter().any(|n| {
        n.parse::<ipnet::IpNet>()
            .map(|net| net.contains(&ip))
            .or_else(|_| n.parse::<IpAddr>().map(|a| a == ip))
            .unwrap_or(false)
    })
}

/// A device code just issued.
#[derive(Debug)]
pub struct Issued {
    pub device_code: Secret,
    pub grant: DeviceGrant,
    pub ttl: Duration,
}

impl Issued {
    /// RFC 8628 §3.2.
    pub fn response(&self, verification_uri: &str) -> DeviceAuthorizationResponse {
        let user_code = self.grant.user_code.display();
        DeviceAuthorizationResponse {
            device_code: self.device_code.expose().to_owned(),
            verification_uri_complete: Some(format!("{verification_uri}?user_code={user_code}")),
            verification_uri: verification_uri.to_owned(),
            user_code,
            expires_in: self.ttl.as_secs(),
            interval: Some(u64::from(self.grant.interval_secs)),
        }
    }
}

/// Creates a pending grant for `client` (every front door shares this): a device code and a
/// fresh user code, the client's or the server's lifetime and interval. The requester's
/// address and the client each have a cap of codes per lifetime (`limits`); beyond it the
/// answer is 429 with `Retry-After`. The user code is as long as the codes pending need to
/// keep the guessing bound (`devicegate_core::limits`).
pub async fn issue(
    state: &AppState,
    tenant: &Tenant,
    client: &ClientRecord,
    scopes: Scopes,
    asker: Asker,
    context: Option<String>,
) -> Result<Issued, OAuthError> {
    // RFC 10027 mitigations, per client: where its devices may ask from, and the most a
    // device grant may get.
    let policy = &client.device_policy;
    if !policy.networks.is_empty() && !in_networks(asker.ip, &policy.networks) {
        return Err(OAuthError::bad(
            ErrorCode::UnauthorizedClient,
            "this client's devices may not ask for a code from this network",
        ));
    }
    if let Some(ceiling) = &policy.scope_ceiling {
        let refused: Vec<&str> = scopes.not_in(ceiling).collect();
        if !refused.is_empty() {
            return Err(OAuthError::bad(
                ErrorCode::InvalidScope,
                format!(
                    "scope not allowed for this client's devices: {}",
                    refused.join(" ")
                ),
            ));
        }
    }
    let ttl = client
        .device_code_ttl_secs
        .map(|s| Duration::from_secs(u64::from(s)))
        .unwrap_or(state.settings.device_code_ttl);
    let interval_secs = client
        .poll_interval_secs
        .unwrap_or(state.settings.poll_interval_secs);
    let now = now();
    let ip = asker.ip;
    let requester = Requester {
        ip: Some(ip.to_string()),
        user_agent: asker.user_agent,
    };
    if let Err(refused) =
        limits::pay_for_device_code(state, &tenant.id, &client.id, ip, ttl, now).await?
    {
        let mut err = OAuthError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::SlowDown,
            format!(
                "too many pending codes from this address or for this client; retry in {} s",
                refused.retry_after.as_secs().max(1)
            ),
        );
        err.retry_after = Some(refused.retry_after.as_secs().max(1));
        return Err(err);
    }
    let pending = limits::pending(state, now).await?;
    let code_length = code_length(state.settings.user_code_length, |l| pending.of_length(l));
    for _ in 0..USER_CODE_ATTEMPTS {
        let id = ordered_id(now);
        let device_code = Secret::device_code(&id);
        let grant = DeviceGrant {
            id,
            tenant: tenant.id.clone(),
            device_code_hash: device_code.hash(),
            user_code: UserCode::generate_len(code_length),
            client_id: client.id.clone(),
            scopes: scopes.clone(),
            status: GrantStatus::Pending,
            created_at: now,
            expires_at: now.plus(ttl),
            interval_secs,
            last_poll_at: None,
            flow_id: None,
            flow_expires_at: None,
            requester: requester.clone(),
            context: context.clone(),
            version: 0,
        };
        // The event rides the grant's own write (the same group commit on SQLite, the same
        // statement on PostgreSQL).
        let event = crate::audit::Event::new(tenant, "code_issued")
            .actor(&grant.client_id)
            .client(&grant.client_id)
            .ip(ip)
            .user_agent(grant.requester.user_agent.as_deref())
            .grant(&grant.id)
            .done();
        match tenant
            .store
            .create_grant(&grant, std::slice::from_ref(&event))
            .await
        {
            Ok(()) => {
                state.limits.issued(code_length, ttl);
                state.metrics.code_issued();
                crate::audit::log(&event);
                return Ok(Issued {
                    device_code,
                    grant,
                    ttl,
                });
            }
            Err(StoreError::AlreadyExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    tracing::error!("could not find a free user code");
    Err(OAuthError::internal())
}

/// RFC 6749 §3.3: no `scope` means the client's default scopes; every scope asked for must
/// be allowed for the client.
pub fn requested_scopes(client: &ClientRecord, scope: Option<&str>) -> Result<Scopes, OAuthError> {
    // The client's scopes, within its device grants' ceiling.
    let default = || match &client.device_policy.scope_ceiling {
        None => client.scopes.clone(),
        Some(ceiling) => {
            let within: Vec<&str> = client
                .scopes
                .iter()
                .filter(|s| ceiling.contains(s))
                .collect();
            Scopes::parse(&within.join(" ")).unwrap_or_default()
        }
    };
    let Some(raw) = scope else {
        return Ok(default());
    };
    let asked = Scopes::parse(raw).ok_or_else(|| {
        OAuthError::bad(ErrorCode::InvalidScope, "the scope parameter is malformed")
    })?;
    // Only spaces: as good as no scope parameter.
    if asked.is_empty() {
        return Ok(default());
    }
    let refused: Vec<&str> = asked.not_in(&client.scopes).collect();
    if !refused.is_empty() {
        return Err(OAuthError::bad(
            ErrorCode::InvalidScope,
            format!("scope not allowed for this client: {}", refused.join(" ")),
        ));
    }
    Ok(asked)
}
