//! The verification flow as a service: load a flow by its capability, apply a step with
//! compare-and-swap retries and the guessing limits, describe it. The flows API and the HTML
//! pages both call this module; neither holds flow logic of its own.

use std::net::IpAddr;
use std::time::Duration;

use devicegate_core::flow::{Flow, FlowError, Refusal};
use devicegate_core::grant::DeviceGrant;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::{FlowClient, FlowStatus, FlowView, TotpEnrolment};
use devicegate_store::{AuditEvent, BrowserSession, StoreError, TotpFactor, UserRecord};

use crate::audit::Event;
use crate::cas::{self, Cas, Contended};
use crate::error::Failure;
use crate::factors;
use crate::limits::{self, BUDGET_KEY, KnownBrowser, Refused};
use crate::scoped::Held;
use crate::tenant::Tenant;
use crate::{AppState, now};

/// Why a step was refused, for each front-end to render in its own format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("no such flow")]
    NotFound,
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("unknown or ended session; sign on again")]
    InvalidSession,
    /// The tenant signs people on only through its upstream providers.
    #[error("password sign-on is off here; sign on through the organisation's provider")]
    PasswordsOff,
    /// The client's devices must be approved from the device's own network
    /// (`proximity = same_network`), and this approval comes from elsewhere.
    #[error("this device must be approved from the network it is on")]
    FarAway,
    /// The code came in a link, and the person did not confirm it is the one on the device
    /// in front of them.
    #[error("confirm that the code matches the one on your device")]
    CodeNotConfirmed,
    /// This server cannot be a WebAuthn relying party (`passkeys`).
    #[error("passkeys are not available on this server")]
    PasskeysOff,
    /// `sign_on_first`: only the guessing budget refused, which people who sign on first are
    /// not held to.
    #[error("too many failed attempts; try again in {} s", .retry_after.as_secs().max(1))]
    Limited {
        retry_after: Duration,
        sign_on_first: bool,
    },
    #[error("the flow changed too often concurrently")]
    Busy,
    /// The store cannot be reached (`Failure::Unavailable`).
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// Anything else went wrong (`Failure::Internal`); the detail is in the log.
    #[error("the server could not complete the request")]
    Internal,
}

impl From<Refused> for StepError {
    fn from(r: Refused) -> Self {
        StepError::Limited {
            retry_after: r.retry_after,
            sign_on_first: r.sign_on_first,
        }
    }
}

impl From<Contended> for StepError {
    fn from(_: Contended) -> Self {
        StepError::Busy
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        match Failure::from(e) {
            Failure::NotFound => StepError::NotFound,
            Failure::Unavailable => StepError::Unavailable,
            Failure::Internal => StepError::Internal,
        }
    }
}

/// A flow as a person sees it: what is asked, by whom, for whom.
#[derive(Debug, Clone)]
pub struct Described {
    pub flow: Flow,
    pub grant: Option<DeviceGrant>,
    pub client_name: Option<String>,
    /// The client's `proximity` policy (`off`, `warn`, `same_network`).
    pub proximity: String,
    pub username: Option<String>,
}

impl Described {
    pub fn view(&self, flow_id: &str) -> FlowView {
        FlowView {
            id: flow_id.to_owned(),
            status: self.flow.status,
            expires_at: self.flow.expires_at.to_rfc3339(),
            client: self.grant.as_ref().map(|g| FlowClient {
                id: g.client_id.clone(),
                name: self
                    .client_name
                    .clone()
                    .unwrap_or_else(|| g.client_id.clone()),
            }),
            scopes: self.grant.as_ref().map(|g| g.scopes.to_vec()),
            user_code: self.grant.as_ref().map(|g| g.user_code.display()),
            username: self.username.clone(),
            result: self.flow.result,
            session: None,
            authorization_url: None,
            totp_enrolment: None,
            recovery_codes: None,
            second_factors: None,
            device: None,
            webauthn_options: None,
        }
    }
}

/// Starts a flow for `ip` (within its cap of flows); the returned secret is the flow's id and
/// the only way to drive it.
pub async fn start(
    state: &AppState,
    tenant: &Tenant,
    ip: IpAddr,
) -> Result<(Secret, Flow), StepError> {
    let _paid = limits::pay_for_row(state, limits::Row::Flow, ip, now()).await??;
    let secret = Secret::generate(SecretKind::FlowId);
    let flow = Flow::new(
        &tenant.id,
        random_id(),
        secret.hash(),
        now(),
        state.settings.flow_ttl,
    );
    tenant.store.create_flow(&flow).await?;
    Ok((secret, flow))
}

/// The flow behind a capability's hash; `Expired` once its time is up.
pub async fn load(tenant: &Tenant, key: &SecretHash, now: Timestamp) -> Result<Flow, StepError> {
    let flow = match tenant.store.get_flow(key).await {
        Ok(f) => f,
        Err(StoreError::NotFound) => return Err(StepError::NotFound),
        Err(e) => return Err(e.into()),
    };
    flow.ensure_live(now)?;
    Ok(flow)
}

pub async fn describe(tenant: &Tenant, flow: Flow) -> Result<Described, StepError> {
    let grant = match &flow.grant_id {
        None => None,
        Some(id) => match tenant.store.get_grant(id).await {
            Ok(g) => Some(g),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let client = match &grant {
        None => None,
        Some(g) => match tenant.store.get_client(&g.client_id).await {
            Ok(c) => Some(c),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let proximity = client
        .as_ref()
        .map_or_else(|| "off".to_owned(), |c| c.device_policy.proximity.clone());
    let client_name = client.map(|c| c.name);
    let username = match &flow.user_id {
        None => None,
        Some(id) => match tenant.store.get_user(id).await {
            Ok(u) => Some(u.username),
            Err(StoreError::NotFound) => None,
            Err(e) => return Err(e.into()),
        },
    };
    Ok(Described {
        flow,
        grant,
        client_name,
        proximity,
        username,
    })
}

/// Stores a step's result, with its audit events in the same transaction (logged once it
/// committed); [`Cas::Lost`] means another request changed the flow first.
async fn commit(
    tenant: &Tenant,
    flow: &Flow,
    grant: Option<&DeviceGrant>,
    audit: &[AuditEvent],
) -> Result<Cas<()>, StepError> {
    match tenant.store.update_flow(flow, grant, audit).await {
        Ok(()) => {
            audit.iter().for_each(crate::audit::log);
            Ok(Cas::Done(()))
        }
        Err(StoreError::Conflict) => Ok(Cas::Lost),
        // The grant went (swept, or its client deleted) between our read and our write.
        Err(StoreError::NotFound) if grant.is_some() => Err(FlowError::CodeExpired.into()),
        Err(StoreError::NotFound) => Err(StepError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// A user code was typed from `ip`. Codes are normalised (any case, dashes, spaces). Every
/// attempt is paid for before the code is looked up (per address, per signed-in account, and
/// the guessing budget: `limits`), so while a limit is reached every code is refused, right or
/// wrong, and the refusal tells nothing about the code; a right code gets its payment back.
/// A wrong one also counts against the flow, which fails at its fifth.
pub async fn verify_user_code(
    state: &AppState,
    tenant: &Tenant,
    key: &SecretHash,
    input: &str,
    ip: IpAddr,
    from_link: bool,
) -> Result<Flow, StepError> {
    let code = UserCode::parse(input);
    let now = now();
    let flow = load(tenant, key, now).await?;
    if flow.status != FlowStatus::UserCodeRequired {
        return Err(FlowError::WrongStatus(flow.status).into());
    }
    // User ids are unique across tenants, so they key the account limit as they are.
    let paid =
        limits::pay_for_code(state, ip, flow.user_id.as_deref(), code.as_ref(), now).await??;
    let result = enter_code(state, tenant, key, code.as_ref(), ip, from_link).await;
    match &result {
        Err(StepError::Flow(FlowError::WrongCode { .. })) => {}
        // A code that exists was no blind guess, but still a code not to be entered here.
        Err(StepError::Flow(FlowError::CodeExpired | FlowError::CodeUsed)) => {
            paid.refund_only(state, BUDGET_KEY).await
        }
        _ => paid.refund(state).await,
    }
    result
}

/// Binds the grant with `code` to the flow, or counts a wrong code against the flow.
async fn enter_code(
    state: &AppState,
    tenant: &Tenant,
    key: &SecretHash,
    code: Option<&UserCode>,
    ip: IpAddr,
    from_link: bool,
) -> Result<Flow, StepError> {
    cas::retry(|| async move {
        let now = now();
        let flow = load(tenant, key, now).await?;
        let found = match code {
            None => None,
            Some(c) => match tenant.store.get_grant_by_user_code(c).await {
                Ok(g) => Some(g),
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e.into()),
            },
        };
        match flow.verify_user_code(found.as_ref(), now) {
            Ok((mut next, grant)) => {
                next.from_link = from_link;
                let stored = commit(tenant, &next, Some(&grant), &[]).await?;
                if matches!(stored, Cas::Done(())) {
                    state.metrics.code_verified();
                }
                Ok(stored.then(next))
            }
            Err(Refusal { error, next }) => match next {
                Some(next) => {
                    // The wrong code counts against the flow, and is in the trail with it.
                    let mut e = Event::new(tenant, "wrong_code").ip(ip);
                    if let Some(user) = &next.user_id {
                        e = e.actor(user);
                    }
                    match commit(tenant, &next, None, &[e.done()]).await? {
                        Cas::Lost => Ok(Cas::Lost),
                        Cas::Done(()) => Err(error.into()),
                    }
                }
                None => Err(error.into()),
            },
        }
    })
    .await
}

/// Username and password from `ip`. Unknown users and wrong passwords take the same path and
/// time. The attempt is paid for before the password is checked (`limits`): per account from
/// this address, per address and per account from anywhere, or, when the browser is `known`
/// to this account, from its own bucket alone; a right password gets it back.
pub async fn sign_on(
    state: &AppState,
    tenant: &Tenant,
    key: &SecretHash,
    username: &str,
    password: &str,
    ip: IpAddr,
    known: Option<&KnownBrowser>,
) -> Result<Flow, StepError> {
    if !tenant.local_passwords {
        return Err(StepError::PasswordsOff);
    }
    let now = now();
    load(tenant, key, now).await?.ensure_can_sign_on(now)?;
    let user = match tenant.store.get_user_by_username(username).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let known = known.filter(|k| user.as_ref().is_some_and(|u| u.id == k.user_id));
    let account: String = username.chars().take(128).collect();
    let paid = limits::pay_for_sign_on(state, &tenant.id, &account, ip, known, now).await??;
    // Always one argon2 verification: against the dummy hash when the user is unknown.
    // An account without a password (made by an upstream sign-in) is checked like an
    // unknown one: against the dummy hash, and refused.
    let phc = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .filter(|h| !h.is_empty());
    let user = user.filter(|u| !u.password_hash.is_empty());
    let matches = state.passwords.verify(phc, password.to_owned()).await;
    let user = match user {
        Some(u) if matches => u,
        _ => {
            Event::new(tenant, "sign_in_failed")
                .ip(ip)
                .detail(format!("method=password username={account}"))
                .record(state);
            return Err(StepError::InvalidCredentials);
        }
    };
    paid.refund(state).await;
    let signed_in = Event::new(tenant, "sign_in")
        .actor(&user.id)
        .ip(ip)
        .detail("method=password")
        .done();
    if second_factor_owed(tenant, &user.id).await? {
        return transition(
            tenant,
            key,
            |flow, now| flow.sign_on_pending(&user.id, now, now),
            std::slice::from_ref(&signed_in),
        )
        .await;
    }
    resume_session(
        tenant,
        key,
        SignOn {
            user_id: &user.id,
            auth_time: now,
            idp: None,
            amr: Some("pwd"),
        },
        std::slice::from_ref(&signed_in),
    )
    .await
}

/// The person of `on` (a browser session's, or a sign-in just made, whose `audit` event goes
/// with the flow's change) signs the flow behind `key` on.
pub async fn resume_session(
    tenant: &Tenant,
    key: &SecretHash,
    on: SignOn<'_>,
    audit: &[AuditEvent],
) -> Result<Flow, StepError> {
    transition(
        tenant,
        key,
        |flow, now| flow.sign_on_at(on.user_id, on.auth_time, on.idp, on.amr, now),
        audit,
    )
    .await
}

/// Keeps the sign-on of `flow` (just signed on) as a session for the flows API: a custom UI
/// presents it with `session.resume` to walk later flows as the same person, the way a
/// browser's cookie does on the pages. Stored like a browser session, as a hash; it ends with
/// the session lifetime.
pub async fn keep_sign_on(
    state: &AppState,
    tenant: &Tenant,
    flow: &Flow,
) -> Result<Secret, StepError> {
    let held = Held {
        user_id: flow.user_id.clone(),
        signed_on_at: flow.signed_on_at,
        idp: flow.idp.clone(),
        amr: flow.amr.clone(),
        flow_hash: None,
    };
    let (secret, _) = new_session(state, tenant, SecretKind::ApiSession, held).await?;
    Ok(secret)
}

/// Stores a new session of `kind` holding `held`, for the session lifetime: a page's or a
/// kept API session.
pub async fn new_session(
    state: &AppState,
    tenant: &Tenant,
    kind: SecretKind,
    held: Held,
) -> Result<(Secret, BrowserSession), StoreError> {
    let ttl = state.settings.session_ttl;
    tenant.store.start_session(kind, held, ttl, now()).await
}

/// The live kept session `presented` names, whose sign-on still carries over, and its
/// person; `InvalidSession` otherwise.
async fn kept_sign_on(
    tenant: &Tenant,
    presented: &str,
) -> Result<(BrowserSession, UserRecord), StepError> {
    let Some(session) = kept_session(tenant, presented)
        .await?
        .filter(|s| s.expires_at > now())
    else {
        return Err(StepError::InvalidSession);
    };
    let Some(on) = SignOn::of(&session) else {
        return Err(StepError::InvalidSession);
    };
    if !carries_over(tenant, on, now()).await? {
        return Err(StepError::InvalidSession);
    }
    // The person must still exist here (deleting a user or setting a password also deletes
    // their sessions).
    let user = match tenant.store.get_user(on.user_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound) => return Err(StepError::InvalidSession),
        Err(e) => return Err(e.into()),
    };
    Ok((session, user))
}

/// The person of a kept session (`keep_sign_on`), for the account API.
pub async fn kept_person(tenant: &Tenant, presented: &str) -> Result<UserRecord, StepError> {
    kept_sign_on(tenant, presented).await.map(|(_, u)| u)
}

/// Signs the flow behind `key` on as the person of a kept session (`keep_sign_on`).
pub async fn resume_kept(
    tenant: &Tenant,
    key: &SecretHash,
    presented: &str,
) -> Result<Flow, StepError> {
    let (session, _) = kept_sign_on(tenant, presented).await?;
    let on = SignOn::of(&session).ok_or(StepError::InvalidSession)?;
    resume_session(tenant, key, on, &[]).await
}

/// Ends a kept session (`POST /api/v1/sessions/end`); unknown ones are already ended.
pub async fn end_kept(tenant: &Tenant, presented: &str) -> Result<(), StepError> {
    let Some(session) = kept_session(tenant, presented).await? else {
        return Ok(());
    };
    match tenant.store.delete_session(&session).await {
        Ok(()) | Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The kept session `presented` names in this tenant, expired or not. Only kept sessions: a
/// browser's cookie is not one, nor the other way round.
async fn kept_session(
    tenant: &Tenant,
    presented: &str,
) -> Result<Option<BrowserSession>, StepError> {
    if !presented.starts_with(SecretKind::ApiSession.prefix()) {
        return Ok(None);
    }
    match tenant
        .store
        .get_session(&Secret::from_presented(presented).hash())
        .await
    {
        Ok(s) => Ok(Some(s)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Who signed on, when, and how (the tokens' `auth_time`, `idp` and `amr`).
#[derive(Debug, Clone, Copy)]
pub struct SignOn<'a> {
    pub user_id: &'a str,
    pub auth_time: Timestamp,
    pub idp: Option<&'a str>,
    pub amr: Option<&'a str>,
}

impl<'a> SignOn<'a> {
    /// The sign-on a session (a browser's or a kept one) holds, if it holds one.
    pub fn of(session: &'a BrowserSession) -> Option<SignOn<'a>> {
        Some(SignOn {
            user_id: session.user_id.as_deref()?,
            auth_time: session.signed_on_at?,
            idp: session.idp.as_deref(),
            amr: session.amr.as_deref(),
        })
    }

    /// Whether the sign-on was made with RFC 8176 `method` (or is marked with it: `mfa`,
    /// `link`).
    pub fn had(&self, method: &str) -> bool {
        self.amr
            .is_some_and(|a| a.split_whitespace().any(|m| m == method))
    }
}

/// Loads the flow behind `key`, applies the core's transition `step` and stores the result
/// (with `audit`), reading again while another request changes the flow first.
async fn transition(
    tenant: &Tenant,
    key: &SecretHash,
    step: impl Fn(Flow, Timestamp) -> Result<Flow, FlowError>,
    audit: &[AuditEvent],
) -> Result<Flow, StepError> {
    let step = &step;
    cas::retry(|| async move {
        let now = now();
        let next = step(load(tenant, key, now).await?, now)?;
        Ok(commit(tenant, &next, None, audit).await?.then(next))
    })
    .await
}

/// A browser takes over the flow behind `link` (PingOne's sign-on link), if it is fresh (see
/// [`Flow::adopt`]). Returns the flow under its new key, which the caller keeps in the
/// browser's session and nowhere else: afterwards `link` names no flow, so a second browser,
/// or the flows API with the link's flow id, finds nothing.
pub async fn adopt(tenant: &Tenant, link: &SecretHash) -> Result<Flow, StepError> {
    // A browser adopting the flow at the same time wins or loses the compare-and-swap; the
    // loser reads again and finds no flow behind the link.
    transition_plain(tenant, link, |flow, now| {
        flow.adopt(Secret::generate(SecretKind::FlowId).hash(), now)
    })
    .await
}

/// Approve (`accept`) or deny the grant this flow bound, from `ip`. A flow whose code came in
/// a link is approved only with `code_confirmed` (the person said the code is the one on the
/// device in front of them): never approved from a link alone.
pub async fn consent(
    state: &AppState,
    tenant: &Tenant,
    key: &SecretHash,
    accept: bool,
    ip: IpAddr,
    code_confirmed: bool,
) -> Result<Flow, StepError> {
    cas::retry(|| async move {
        let now = now();
        let flow = load(tenant, key, now).await?;
        let Some(grant_id) = flow
            .grant_id
            .clone()
            .filter(|_| flow.status == FlowStatus::ConsentRequired)
        else {
            return Err(FlowError::WrongStatus(flow.status).into());
        };
        let grant = match tenant.store.get_grant(&grant_id).await {
            Ok(g) => g,
            Err(StoreError::NotFound) => return Err(FlowError::CodeExpired.into()),
            Err(e) => return Err(e.into()),
        };
        // Is the approver near the device (RFC 10027)? Per client: `same_network` refuses an
        // approval from elsewhere; every approval from elsewhere is logged and audited.
        if accept && flow.from_link && !code_confirmed {
            return Err(StepError::CodeNotConfirmed);
        }
        let relation = crate::proximity::relate(grant.requester.ip.as_deref(), ip);
        if accept && relation == crate::proximity::Relation::Elsewhere {
            let policy = match tenant.store.get_client(&grant.client_id).await {
                Ok(c) => c.device_policy.proximity,
                Err(StoreError::NotFound) => return Err(FlowError::CodeExpired.into()),
                Err(e) => return Err(e.into()),
            };
            tracing::warn!(
                grant = %grant.id,
                client = %grant.client_id,
                device = grant.requester.ip.as_deref().unwrap_or(""),
                approver = %ip,
                refused = policy == "same_network",
                "an approval from elsewhere than the device"
            );
            if policy == "same_network" {
                return Err(StepError::FarAway);
            }
        }
        let (next, grant) = flow.consent(&grant, accept, now)?;
        let mut event = Event::new(tenant, if accept { "approved" } else { "denied" })
            .client(&grant.client_id)
            .ip(ip)
            .grant(&grant.id)
            .detail(decision_detail(
                state,
                grant.requester.ip.as_deref(),
                ip,
                relation,
            ));
        if let Some(user) = &next.user_id {
            event = event.actor(user);
        }
        let stored = commit(tenant, &next, Some(&grant), &[event.done()]).await?;
        if matches!(stored, Cas::Done(())) {
            state.metrics.code_decided(accept, grant.created_at, now);
        }
        Ok(stored.then(next))
    })
    .await
}

/// Where an approval or denial came from, for the audit trail: "device at 198.51.100.7 in
/// Lisbon, PT; approver in Oslo, NO; approver elsewhere" (places when the GeoIP database
/// knows them).
fn decision_detail(
    state: &AppState,
    device: Option<&str>,
    approver: IpAddr,
    relation: crate::proximity::Relation,
) -> String {
    let place = |ip: IpAddr| {
        let p = state.geoip.locate(ip, "en")?;
        let country = p.country_code.or(p.country)?;
        Some(match p.city {
            Some(city) => format!("{city}, {country}"),
            None => country,
        })
    };
    let mut out = format!("device at {}", device.unwrap_or("an unknown address"));
    if let Some(p) = device.and_then(|d| d.parse().ok()).and_then(place) {
        out.push_str(&format!(" in {p}"));
    }
    if let Some(p) = place(approver) {
        out.push_str(&format!("; approver in {p}"));
    }
    out.push_str(&format!("; approver {}", relation.as_str()));
    out
}

/// Whether a password sign-on of `user_id` owes a second factor: under `optional` when the
/// person has one (an authenticator or a passkey), under `required` always (those without
/// one enrol).
async fn second_factor_owed(tenant: &Tenant, user_id: &str) -> Result<bool, StepError> {
    if tenant.second_factor == "off" {
        return Ok(false);
    }
    let held = person_factors(tenant, user_id).await?;
    Ok(held.totp || held.passkeys || tenant.second_factor == "required")
}

/// Which second factors a person holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct PersonFactors {
    /// A confirmed one-time-code authenticator.
    pub totp: bool,
    pub passkeys: bool,
}

pub async fn person_factors(tenant: &Tenant, user_id: &str) -> Result<PersonFactors, StepError> {
    let totp = totp_confirmed(tenant, user_id).await?;
    let passkeys = !tenant.store.list_passkeys(user_id).await?.is_empty();
    Ok(PersonFactors { totp, passkeys })
}

/// Whether the person has a confirmed one-time-code authenticator.
pub async fn totp_confirmed(tenant: &Tenant, user_id: &str) -> Result<bool, StepError> {
    match tenant.store.get_totp(user_id).await {
        Ok(t) => Ok(t.confirmed),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The second factors a flow waiting for one may be answered with: `totp` and
/// `recovery_code` for a person with an authenticator, `webauthn` for one with a passkey,
/// `totp.enroll` for one with neither.
pub async fn factors_offered(tenant: &Tenant, flow: &Flow) -> Result<Vec<String>, StepError> {
    let Some(user_id) = flow
        .user_id
        .as_deref()
        .filter(|_| flow.status == FlowStatus::SecondFactorRequired)
    else {
        return Ok(Vec::new());
    };
    let held = person_factors(tenant, user_id).await?;
    let mut offered = Vec::new();
    if held.totp {
        offered.extend(["totp".to_owned(), "recovery_code".to_owned()]);
    }
    if held.passkeys {
        offered.push("webauthn".to_owned());
    }
    if offered.is_empty() {
        offered.push("totp.enroll".to_owned());
    }
    Ok(offered)
}

/// The person of a flow waiting for a second factor, with a check that they may enrol
/// (none confirmed yet).
async fn factor_person(
    tenant: &Tenant,
    key: &SecretHash,
    now: Timestamp,
) -> Result<(Flow, UserRecord), StepError> {
    let flow = load(tenant, key, now).await?;
    let Some(user_id) = flow
        .user_id
        .clone()
        .filter(|_| flow.status == FlowStatus::SecondFactorRequired)
    else {
        return Err(FlowError::WrongStatus(flow.status).into());
    };
    let user = tenant.store.get_user(&user_id).await?;
    Ok((flow, user))
}

/// `totp.enroll`: a new authenticator secret for the person of a flow waiting for a second
/// factor who has none confirmed; replaces an enrolment not finished.
pub async fn totp_enroll(
    tenant: &Tenant,
    key: &SecretHash,
) -> Result<(Flow, TotpEnrolment), StepError> {
    let (flow, user) = factor_person(tenant, key, now()).await?;
    match enroll_totp_for(tenant, &user).await? {
        Some(enrolment) => Ok((flow, enrolment)),
        // Enrolled already: answer with a code, not a new secret.
        None => Err(FlowError::WrongStatus(flow.status).into()),
    }
}

/// A new authenticator secret for `user` (replacing an enrolment not finished); `None` when
/// the person has one confirmed already.
pub async fn enroll_totp_for(
    tenant: &Tenant,
    user: &UserRecord,
) -> Result<Option<TotpEnrolment>, StepError> {
    let now = now();
    let secret = factors::new_secret();
    match tenant
        .store
        .put_totp(&TotpFactor {
            tenant: tenant.id.clone(),
            user_id: user.id.clone(),
            secret: secret.clone(),
            confirmed: false,
            last_step: 0,
            created_at: now,
        })
        .await
    {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let enrolment =
        factors::enrolment(&secret, &tenant.issuer, &user.username).ok_or(StepError::Internal)?;
    Ok(Some(enrolment))
}

/// `totp.verify`: a one-time code from `ip`, paid for like a password (`limits`). It
/// confirms an enrolment (then ten recovery codes are made, returned once) or completes the
/// second factor; a code for a step already used is refused like a wrong one.
pub async fn totp_verify(
    state: &AppState,
    tenant: &Tenant,
    key: &SecretHash,
    code: &str,
    ip: IpAddr,
) -> Result<(Flow, Option<Vec<String>>), StepError> {
    let (_, user) = factor_person(tenant, key, now()).await?;
    let recovery = match check_totp_for(state, tenant, &user, code, ip).await {
        Ok(r) => r,
        Err(e) => {
            if e == StepError::InvalidCredentials {
                Event::new(tenant, "sign_in_failed")
                    .actor(&user.id)
                    .ip(ip)
                    .detail("method=otp")
                    .record(state);
            }
            return Err(e);
        }
    };
    let signed_in = Event::new(tenant, "sign_in")
        .actor(&user.id)
        .ip(ip)
        .detail("method=otp")
        .done();
    let flow = second_factor(tenant, key, "otp", std::slice::from_ref(&signed_in)).await?;
    Ok((flow, recovery))
}

/// A one-time code of `user` from `ip`, paid for like a password (`limits`): it confirms an
/// enrolment (then ten recovery codes are made, returned once) or is simply right; a code
/// for a step already used is refused like a wrong one (`InvalidCredentials`).
pub async fn check_totp_for(
    state: &AppState,
    tenant: &Tenant,
    user: &UserRecord,
    code: &str,
    ip: IpAddr,
) -> Result<Option<Vec<String>>, StepError> {
    let now = now();
    let paid = limits::pay_for_sign_on(state, &tenant.id, &user.username, ip, None, now).await??;
    let totp = match tenant.store.get_totp(&user.id).await {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Err(StepError::InvalidCredentials),
        Err(e) => return Err(e.into()),
    };
    let confirming = !totp.confirmed;
    let accepted = match factors::step_of(&totp.secret, code, now) {
        Some(step) => {
            tenant
                .store
                .use_totp_step(&user.id, step, confirming)
                .await?
        }
        None => false,
    };
    if !accepted {
        return Err(StepError::InvalidCredentials);
    }
    paid.refund(state).await;
    Ok(if confirming {
        Some(new_recovery_codes(tenant, &user.id).await?)
    } else {
        None
    })
}

/// Ten new recovery codes for `user_id`, replacing the old ones; shown once.
pub async fn new_recovery_codes(tenant: &Tenant, user_id: &str) -> Result<Vec<String>, StepError> {
    let (codes, hashes) = factors::new_recovery_codes();
    tenant
        .store
        .put_recovery_codes(user_id, &hashes, now())
        .await?;
    Ok(codes)
}

/// `recovery_code.verify`: a recovery code in place of a one-time code, paid for like a
/// password; each works once.
pub async fn recovery_verify(
    state: &AppState,
    tenant: &Tenant,
    key: &SecretHash,
    code: &str,
    ip: IpAddr,
) -> Result<Flow, StepError> {
    let now = now();
    let (_, user) = factor_person(tenant, key, now).await?;
    let paid = limits::pay_for_sign_on(state, &tenant.id, &user.username, ip, None, now).await??;
    let used = tenant
        .store
        .use_recovery_code(&user.id, &factors::recovery_hash(code), now)
        .await?;
    if !used {
        Event::new(tenant, "sign_in_failed")
            .actor(&user.id)
            .ip(ip)
            .detail("method=recovery_code")
            .record(state);
        return Err(StepError::InvalidCredentials);
    }
    paid.refund(state).await;
    let signed_in = Event::new(tenant, "sign_in")
        .actor(&user.id)
        .ip(ip)
        .detail("method=recovery_code")
        .done();
    second_factor(tenant, key, "otp", std::slice::from_ref(&signed_in)).await
}

/// The second factor owed by the flow behind `key` was given, by RFC 8176 `method`.
pub async fn second_factor(
    tenant: &Tenant,
    key: &SecretHash,
    method: &str,
    audit: &[AuditEvent],
) -> Result<Flow, StepError> {
    transition(
        tenant,
        key,
        |flow, now| flow.second_factor_done(method, now),
        audit,
    )
    .await
}

/// [`transition`] without an audit event.
async fn transition_plain(
    tenant: &Tenant,
    key: &SecretHash,
    step: impl Fn(Flow, Timestamp) -> Result<Flow, FlowError>,
) -> Result<Flow, StepError> {
    transition(tenant, key, step, &[]).await
}

/// Whether an earlier sign-on (a browser's or a kept session) may still sign a new flow on:
/// an upstream's while `upstream::still_good` says so; a password's while the tenant allows
/// passwords and, when a second factor is owed now, the sign-on had one.
pub async fn carries_over(
    tenant: &Tenant,
    on: SignOn<'_>,
    now: Timestamp,
) -> Result<bool, StepError> {
    if on.idp.is_some() {
        return Ok(crate::upstream::still_good(tenant, on.idp, on.auth_time, now).await?);
    }
    // An operator's enrolment link signs in to the account page only.
    if on.had("link") {
        return Ok(false);
    }
    // A passkey sign-on (no password in it) stands whatever the password rules.
    if (on.had("hwk") || on.had("swk")) && !on.had("pwd") {
        return Ok(true);
    }
    if !tenant.local_passwords {
        return Ok(false);
    }
    Ok(on.had("mfa") || !second_factor_owed(tenant, on.user_id).await?)
}
