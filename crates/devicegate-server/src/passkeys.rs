//! Passkeys (WebAuthn) for local accounts, on `webauthn-rs`: registration on the account
//! page, and sign-in without a username (discoverable credentials) on every surface, either
//! as the sign-on itself or as the second factor after a password.
//!
//! The relying party is the issuer's host (or `webauthn_rp_id`), and an assertion is accepted
//! only from the issuer's origin or an origin the operator allowed for custom UIs
//! (`cors_allowed_origins`). A server whose issuer host is an IP address cannot be a relying
//! party: it offers no passkeys, and says so in the log at start.
//!
//! A ceremony's challenge is kept in the store (`WebauthnCeremony`), bound to the flow or
//! browser session that asked for it and taken once, so an assertion cannot be replayed, on
//! this instance or another. The signature counter only goes forward (`Store::use_passkey`,
//! one conditional update): an assertion whose counter is not above the stored one (a
//! cloned authenticator, or a replay racing the original) is refused and logged.

use std::net::IpAddr;
use std::time::Duration;

use devicegate_core::flow::Flow;
use devicegate_core::secret::random_id;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::FlowStatus;
use devicegate_store::{PasskeyRecord, StoreError, UserRecord, WebauthnCeremony};
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::limits;
use crate::tenant::Tenant;
use crate::verification::{self, SignOn, StepError};
use crate::{AppState, Settings, now};

/// How long a ceremony's challenge stands.
const CEREMONY_TTL: Duration = Duration::from_secs(300);
/// The longest name a person may give a passkey.
pub const MAX_NAME_CHARS: usize = 64;

/// The relying party, if this server can be one.
#[derive(Debug)]
pub struct Passkeys {
    webauthn: Option<Webauthn>,
}

impl Passkeys {
    pub fn new(settings: &Settings) -> Passkeys {
        let webauthn = match relying_party(settings) {
            Ok(w) => Some(w),
            Err(why) => {
                tracing::warn!(issuer = %settings.issuer, %why, "passkeys are off");
                None
            }
        };
        Passkeys { webauthn }
    }

    pub fn enabled(&self) -> bool {
        self.webauthn.is_some()
    }

    fn get(&self) -> Result<&Webauthn, StepError> {
        self.webauthn.as_ref().ok_or(StepError::PasskeysOff)
    }
}

fn relying_party(settings: &Settings) -> Result<Webauthn, String> {
    let origin = Url::parse(&settings.issuer).map_err(|e| e.to_string())?;
    let host = origin
        .host_str()
        .ok_or("the issuer has no host")?
        .to_owned();
    let rp_id = settings.webauthn_rp_id.clone().unwrap_or(host);
    if rp_id.parse::<IpAddr>().is_ok() || rp_id.starts_with('[') {
        return Err(format!(
            "a relying party id must be a domain name, not the address {rp_id}; \
             set webauthn_rp_id or use a host name in the issuer"
        ));
    }
    let mut builder = WebauthnBuilder::new(&rp_id, &origin)
        .map_err(|e| format!("{rp_id} cannot serve {origin}: {e}"))?
        .rp_name(&settings.branding.product_name);
    for extra in &settings.cors_allowed_origins {
        match Url::parse(extra) {
            Ok(url) => builder = builder.append_allowed_origin(&url),
            Err(e) => tracing::warn!(origin = %extra, error = %e, "not a passkey origin"),
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// What a ceremony is bound to: a flow (sign-in) or a browser session (registration). The
/// store key is derived, so it names neither.
#[derive(Debug, Clone, Copy)]
pub enum Bound<'a> {
    Flow(&'a SecretHash),
    Session(&'a SecretHash),
}

impl Bound<'_> {
    fn key(&self) -> SecretHash {
        let (kind, hash) = match self {
            Bound::Flow(h) => ("flow", h),
            Bound::Session(h) => ("session", h),
        };
        let mut input = format!("devicegate-webauthn\0{kind}\0").into_bytes();
        input.extend_from_slice(hash.as_bytes());
        SecretHash::of(&input)
    }
}

/// The WebAuthn user handle of a person: derived from the tenant and the user id, so that it
/// needs no storage and tells an authenticator nothing of either.
fn user_handle(tenant: &str, user_id: &str) -> Uuid {
    let h = SecretHash::of(format!("devicegate-webauthn-user\0{tenant}\0{user_id}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.as_bytes()[..16]);
    Uuid::from_bytes(b)
}

async fn put(
    tenant: &Tenant,
    bound: Bound<'_>,
    purpose: &str,
    user_id: Option<&str>,
    state: String,
) -> Result<(), StepError> {
    tenant
        .store
        .put_ceremony(&WebauthnCeremony {
            tenant: tenant.id.clone(),
            key_hash: bound.key(),
            purpose: purpose.to_owned(),
            user_id: user_id.map(str::to_owned),
            state,
            expires_at: now().plus(CEREMONY_TTL),
        })
        .await?;
    Ok(())
}

/// Takes the ceremony of `purpose` bound to `bound`; a missing, expired or other one is a
/// refusal (the page or UI asks for new options).
async fn take(
    tenant: &Tenant,
    bound: Bound<'_>,
    purpose: &str,
) -> Result<WebauthnCeremony, StepError> {
    match tenant.store.take_ceremony(&bound.key(), now()).await {
        Ok(c) if c.purpose == purpose => Ok(c),
        Ok(_) | Err(StoreError::NotFound) => Err(StepError::InvalidCredentials),
        Err(e) => Err(e.into()),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StepError> {
    serde_json::to_string(value).map_err(|e| {
        tracing::error!(error = %e, "could not serialise WebAuthn state");
        StepError::Internal
    })
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StepError> {
    serde_json::from_str(s).map_err(|e| {
        tracing::error!(error = %e, "could not read stored WebAuthn state");
        StepError::Internal
    })
}

/// The counter and backup flags the library keeps inside a passkey.
fn facts(passkey: &Passkey) -> (u32, bool, bool) {
    let v = serde_json::to_value(passkey).unwrap_or_default();
    let cred = &v["cred"];
    (
        cred["counter"].as_u64().unwrap_or(0) as u32,
        cred["backup_eligible"].as_bool().unwrap_or(false),
        cred["backup_state"].as_bool().unwrap_or(false),
    )
}

/// Options for registering a new passkey for `user`, bound to the browser session `session`:
/// a discoverable credential (so that it signs in without a username), with user
/// verification, none of the person's present passkeys again.
pub async fn register_options(
    state: &AppState,
    tenant: &Tenant,
    user: &UserRecord,
    session: &SecretHash,
) -> Result<serde_json::Value, StepError> {
    let webauthn = state.passkeys.get()?;
    let existing = tenant.store.list_passkeys(&user.id).await?;
    let exclude = existing
        .iter()
        .map(|p| p.credential_id.clone().into())
        .collect::<Vec<_>>();
    let display = user.name.clone().unwrap_or_else(|| user.username.clone());
    let (options, reg) = webauthn
        .start_passkey_registration(
            user_handle(&tenant.id, &user.id),
            &user.username,
            &display,
            Some(exclude),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "could not start a passkey registration");
            StepError::Internal
        })?;
    // Discoverable: the passkey itself names the account at sign-in. (The library asks for
    // none, for security keys' sake; it checks nothing of it at the end.)
    let mut options = serde_json::to_value(&options).map_err(|_| StepError::Internal)?;
    if let Some(sel) = options["publicKey"]["authenticatorSelection"].as_object_mut() {
        sel.insert("residentKey".into(), "required".into());
        sel.insert("requireResidentKey".into(), true.into());
    }
    put(
        tenant,
        Bound::Session(session),
        "register",
        Some(&user.id),
        to_json(&reg)?,
    )
    .await?;
    Ok(options)
}

/// Finishes a registration the browser session `session` started for `user_id`: the new
/// passkey, named `name`, is stored.
pub async fn register_finish(
    state: &AppState,
    tenant: &Tenant,
    user_id: &str,
    session: &SecretHash,
    credential: &RegisterPublicKeyCredential,
    name: &str,
) -> Result<PasskeyRecord, StepError> {
    let webauthn = state.passkeys.get()?;
    let ceremony = take(tenant, Bound::Session(session), "register").await?;
    if ceremony.user_id.as_deref() != Some(user_id) {
        return Err(StepError::InvalidCredentials);
    }
    let reg: PasskeyRegistration = from_json(&ceremony.state)?;
    let passkey = webauthn
        .finish_passkey_registration(credential, &reg)
        .map_err(|e| {
            tracing::info!(error = %e, "passkey registration refused");
            StepError::InvalidCredentials
        })?;
    let (sign_count, backup_eligible, backup_state) = facts(&passkey);
    let now = now();
    let record = PasskeyRecord {
        tenant: tenant.id.clone(),
        id: random_id(),
        user_id: user_id.to_owned(),
        credential_id: passkey.cred_id().as_ref().to_vec(),
        name: clean_name(name),
        credential: to_json(&passkey)?,
        sign_count,
        backup_eligible,
        backup_state,
        created_at: now,
        last_used_at: None,
    };
    match tenant.store.create_passkey(&record).await {
        Ok(()) => Ok(record),
        // The authenticator registered this credential here before.
        Err(StoreError::AlreadyExists) => Err(StepError::InvalidCredentials),
        Err(e) => Err(e.into()),
    }
}

/// A passkey's name as given, trimmed and cut to [`MAX_NAME_CHARS`]; "Passkey" for none.
pub fn clean_name(name: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        "Passkey".to_owned()
    } else {
        name
    }
}

/// Options for signing the flow behind `flow` on with a passkey (any of the tenant's: the
/// authenticator offers the person's own).
pub async fn sign_in_options(
    state: &AppState,
    tenant: &Tenant,
    flow: &SecretHash,
) -> Result<RequestChallengeResponse, StepError> {
    let webauthn = state.passkeys.get()?;
    let f = verification::load(tenant, flow, now()).await?;
    ensure_can_use(&f)?;
    let (options, auth) = webauthn.start_discoverable_authentication().map_err(|e| {
        tracing::error!(error = %e, "could not start a passkey sign-in");
        StepError::Internal
    })?;
    put(tenant, Bound::Flow(flow), "sign_in", None, to_json(&auth)?).await?;
    Ok(options)
}

/// A passkey may sign a flow on (waiting for a code with nobody signed on, or for sign-on),
/// or be the second factor after a password.
fn ensure_can_use(flow: &Flow) -> Result<(), StepError> {
    match flow.status {
        FlowStatus::UserCodeRequired | FlowStatus::SignOnRequired if flow.user_id.is_none() => {
            Ok(())
        }
        FlowStatus::SecondFactorRequired => Ok(()),
        status => Err(devicegate_core::flow::FlowError::WrongStatus(status).into()),
    }
}

/// An assertion for the flow behind `flow`, from `ip`: checks it against the ceremony (taken
/// once), the passkey's public key, the relying party and origin, and the counter; then signs
/// the flow on as the passkey's person (`amr` `hwk` or `swk` with `mfa`), or completes the
/// second factor of the same person. A failure is paid for like a failed password from this
/// address (`limits`).
pub async fn sign_in_finish(
    state: &AppState,
    tenant: &Tenant,
    flow: &SecretHash,
    credential: &PublicKeyCredential,
    ip: IpAddr,
) -> Result<Flow, StepError> {
    let webauthn = state.passkeys.get()?;
    let now = now();
    let f = verification::load(tenant, flow, now).await?;
    ensure_can_use(&f)?;
    let paid = limits::pay_for_passkey(state, ip, now).await??;
    let passkey = match check_assertion(webauthn, tenant, flow, credential, now).await {
        Ok(p) => p,
        Err(e) => {
            if e == StepError::InvalidCredentials {
                crate::audit::Event::new(tenant, "sign_in_failed")
                    .ip(ip)
                    .detail("method=passkey")
                    .record(state);
            }
            return Err(e);
        }
    };
    // The person must still be here, and not disabled.
    match tenant.store.get_user(&passkey.user_id).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(StepError::InvalidCredentials),
        Err(e) => return Err(e.into()),
    }
    paid.refund(state).await;
    let signed_in = crate::audit::Event::new(tenant, "sign_in")
        .actor(&passkey.user_id)
        .ip(ip)
        .detail(format!("method=passkey passkey={}", passkey.id))
        .done();
    let audit = std::slice::from_ref(&signed_in);
    let method = if passkey.backup_eligible {
        "swk"
    } else {
        "hwk"
    };
    if f.status == FlowStatus::SecondFactorRequired {
        if f.user_id.as_deref() != Some(passkey.user_id.as_str()) {
            tracing::warn!(
                passkey = %passkey.id,
                "a passkey of another person offered as a second factor"
            );
            return Err(StepError::InvalidCredentials);
        }
        return verification::second_factor(tenant, flow, method, audit).await;
    }
    let amr = format!("{method} mfa");
    verification::resume_session(
        tenant,
        flow,
        SignOn {
            user_id: &passkey.user_id,
            auth_time: now,
            idp: None,
            amr: Some(&amr),
        },
        audit,
    )
    .await
}

async fn check_assertion(
    webauthn: &Webauthn,
    tenant: &Tenant,
    flow: &SecretHash,
    credential: &PublicKeyCredential,
    now: Timestamp,
) -> Result<PasskeyRecord, StepError> {
    let ceremony = take(tenant, Bound::Flow(flow), "sign_in").await?;
    let auth: DiscoverableAuthentication = from_json(&ceremony.state)?;
    let (handle, cred_id) = webauthn
        .identify_discoverable_authentication(credential)
        .map_err(|_| StepError::InvalidCredentials)?;
    let record = match tenant.store.get_passkey(cred_id).await {
        Ok(r) => r,
        Err(StoreError::NotFound) => return Err(StepError::InvalidCredentials),
        Err(e) => return Err(e.into()),
    };
    if handle != user_handle(&tenant.id, &record.user_id) {
        return Err(StepError::InvalidCredentials);
    }
    let mut passkey: Passkey = from_json(&record.credential)?;
    let result = match webauthn.finish_discoverable_authentication(
        credential,
        auth,
        &[DiscoverableKey::from(&passkey)],
    ) {
        Ok(r) => r,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            tracing::warn!(
                tenant = %tenant.id,
                user = %record.user_id,
                passkey = %record.id,
                "passkey refused: its counter went backwards (a cloned authenticator?)"
            );
            return Err(StepError::InvalidCredentials);
        }
        Err(e) => {
            tracing::info!(error = %e, passkey = %record.id, "passkey assertion refused");
            return Err(StepError::InvalidCredentials);
        }
    };
    passkey.update_credential(&result);
    let stored = tenant
        .store
        .use_passkey(
            cred_id,
            result.counter(),
            result.backup_state(),
            &to_json(&passkey)?,
            now,
        )
        .await;
    match stored {
        Ok(true) => Ok(PasskeyRecord {
            sign_count: result.counter(),
            backup_state: result.backup_state(),
            ..record
        }),
        Ok(false) => {
            tracing::warn!(
                tenant = %tenant.id,
                user = %record.user_id,
                passkey = %record.id,
                "passkey refused: another sign-in already used this counter (a cloned authenticator?)"
            );
            Err(StepError::InvalidCredentials)
        }
        Err(StoreError::NotFound) => Err(StepError::InvalidCredentials),
        Err(e) => Err(e.into()),
    }
}
