//! Rows to records and back, and tokio-postgres errors to sentinel errors.

use devicegate_core::flow::Flow;
use devicegate_core::grant::{DeviceGrant, Requester};
use devicegate_core::keys::Algorithm;
use devicegate_core::scope::Scopes;
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::FlowStatus;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use crate::columns::{claims, domains, flow_result, grant_status};
use crate::records::{
    AuditEvent, BrowserSession, ClientRecord, DevicePolicy, KeyRecord, PasskeyRecord, RefreshToken,
    TenantRecord, TotpFactor, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord,
    WebauthnCeremony,
};
use crate::{Result, StoreError};

pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists,
        // Class 08 (connection exception) and 57 (operator intervention: shutdown).
        Some(db) if db.code().code().starts_with("08") || db.code().code().starts_with("57") => {
            StoreError::Unavailable(db.message().to_owned())
        }
        Some(db) => StoreError::Internal(db.message().to_owned()),
        None => StoreError::Unavailable(e.to_string()),
    }
}

pub(super) fn bad(what: &str) -> StoreError {
    StoreError::Internal(format!("invalid {what} in the database"))
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn opt_ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

fn hash(b: &[u8]) -> Result<SecretHash> {
    SecretHash::from_bytes(b).ok_or_else(|| bad("hash"))
}

fn scopes(s: &str) -> Result<Scopes> {
    Scopes::parse(s).ok_or_else(|| bad("scopes"))
}

pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Internal(e.to_string()))
}

pub(super) fn grant_from_row(r: &Row) -> Result<DeviceGrant> {
    let status = grant_status(
        get(r, 5)?,
        || Ok((get(r, 6)?, ts(get(r, 7)?), get(r, 19)?, get(r, 20)?)),
        || bad("grant status"),
    )?;
    Ok(DeviceGrant {
        id: get(r, 0)?,
        device_code_hash: hash(get(r, 1)?)?,
        user_code: UserCode::from_canonical(get(r, 2)?),
        client_id: get(r, 3)?,
        scopes: scopes(get(r, 4)?)?,
        status,
        created_at: ts(get(r, 8)?),
        expires_at: ts(get(r, 9)?),
        interval_secs: u32::try_from(get::<i64>(r, 10)?).map_err(|_| bad("interval"))?,
        last_poll_at: opt_ts(get(r, 11)?),
        flow_id: get(r, 12)?,
        flow_expires_at: opt_ts(get(r, 13)?),
        requester: Requester {
            ip: get(r, 14)?,
            user_agent: get(r, 15)?,
        },
        version: get(r, 16)?,
        tenant: get(r, 17)?,
        context: get(r, 18)?,
    })
}

pub(super) fn flow_from_row(r: &Row) -> Result<Flow> {
    Ok(Flow {
        id: get(r, 0)?,
        secret_hash: hash(get(r, 1)?)?,
        status: FlowStatus::parse(get(r, 2)?).ok_or_else(|| bad("flow status"))?,
        grant_id: get(r, 3)?,
        user_id: get(r, 4)?,
        signed_on_at: opt_ts(get(r, 5)?),
        failed_attempts: u32::try_from(get::<i64>(r, 6)?).map_err(|_| bad("attempts"))?,
        result: flow_result(get(r, 7)?, || bad("flow result"))?,
        created_at: ts(get(r, 8)?),
        expires_at: ts(get(r, 9)?),
        version: get(r, 10)?,
        tenant: get(r, 11)?,
        idp: get(r, 12)?,
        amr: get(r, 13)?,
        from_link: get(r, 14)?,
    })
}

pub(super) fn client_from_row(r: &Row) -> Result<ClientRecord> {
    let secret: Option<&[u8]> = get(r, 2)?;
    let grant_types: &str = get(r, 4)?;
    let secs = |v: Option<i64>| {
        v.map(|s| u32::try_from(s).map_err(|_| bad("seconds")))
            .transpose()
    };
    Ok(ClientRecord {
        id: get(r, 0)?,
        name: get(r, 1)?,
        secret_hash: secret.map(hash).transpose()?,
        scopes: scopes(get(r, 3)?)?,
        grant_types: grant_types.split_whitespace().map(str::to_owned).collect(),
        device_code_ttl_secs: secs(get(r, 5)?)?,
        poll_interval_secs: secs(get(r, 6)?)?,
        created_at: ts(get(r, 7)?),
        tenant: get(r, 8)?,
        device_policy: DevicePolicy {
            networks: domains(get(r, 9)?),
            refresh_tokens: get(r, 10)?,
            scope_ceiling: get::<Option<&str>>(r, 11)?.map(scopes).transpose()?,
            access_ttl_secs: secs(get(r, 12)?)?,
            proximity: get(r, 13)?,
        },
    })
}

pub(super) fn user_from_row(r: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: get(r, 0)?,
        username: get(r, 1)?,
        password_hash: get(r, 2)?,
        name: get(r, 3)?,
        email: get(r, 4)?,
        created_at: ts(get(r, 5)?),
        tenant: get(r, 6)?,
        disabled: get(r, 7)?,
    })
}

pub(super) fn refresh_from_row(r: &Row) -> Result<RefreshToken> {
    Ok(RefreshToken {
        hash: hash(get(r, 0)?)?,
        family_id: get(r, 1)?,
        client_id: get(r, 2)?,
        subject: get(r, 3)?,
        scopes: scopes(get(r, 4)?)?,
        auth_time: ts(get(r, 5)?),
        created_at: ts(get(r, 6)?),
        expires_at: ts(get(r, 7)?),
        used: get(r, 8)?,
        tenant: get(r, 9)?,
        family_started_at: ts(get(r, 10)?),
        idp: get(r, 11)?,
        amr: get(r, 12)?,
        requester_ip: get(r, 13)?,
        requester_agent: get(r, 14)?,
    })
}

pub(super) fn key_from_row(r: &Row) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: get(r, 0)?,
        alg: Algorithm::parse(get(r, 1)?).ok_or_else(|| bad("algorithm"))?,
        pkcs8: get(r, 2)?,
        created_at: ts(get(r, 3)?),
        tenant: get(r, 4)?,
        signs_from: opt_ts(get(r, 5)?).unwrap_or(ts(get(r, 3)?)),
    })
}

pub(super) fn session_from_row(r: &Row) -> Result<BrowserSession> {
    let flow: Option<&[u8]> = get(r, 3)?;
    Ok(BrowserSession {
        id_hash: hash(get(r, 0)?)?,
        user_id: get(r, 1)?,
        signed_on_at: opt_ts(get(r, 2)?),
        flow_hash: flow.map(hash).transpose()?,
        created_at: ts(get(r, 4)?),
        expires_at: ts(get(r, 5)?),
        tenant: get(r, 6)?,
        idp: get(r, 7)?,
        amr: get(r, 8)?,
    })
}

pub(super) fn tenant_from_row(r: &Row) -> Result<TenantRecord> {
    Ok(TenantRecord {
        id: get(r, 0)?,
        uuid: get(r, 1)?,
        created_at: ts(get(r, 2)?),
        local_passwords: get(r, 3)?,
        second_factor: get(r, 4)?,
    })
}

pub(super) fn totp_from_row(r: &Row) -> Result<TotpFactor> {
    Ok(TotpFactor {
        tenant: get(r, 0)?,
        user_id: get(r, 1)?,
        secret: get(r, 2)?,
        confirmed: get(r, 3)?,
        last_step: get(r, 4)?,
        created_at: ts(get(r, 5)?),
    })
}

pub(super) fn passkey_from_row(r: &Row) -> Result<PasskeyRecord> {
    let sign_count: i64 = get(r, 6)?;
    Ok(PasskeyRecord {
        tenant: get(r, 0)?,
        id: get(r, 1)?,
        user_id: get(r, 2)?,
        credential_id: get(r, 3)?,
        name: get(r, 4)?,
        credential: get(r, 5)?,
        sign_count: u32::try_from(sign_count).map_err(|_| bad("sign_count"))?,
        backup_eligible: get(r, 7)?,
        backup_state: get(r, 8)?,
        created_at: ts(get(r, 9)?),
        last_used_at: opt_ts(get(r, 10)?),
    })
}

pub(super) fn audit_from_row(r: &Row) -> Result<AuditEvent> {
    Ok(AuditEvent {
        at: ts(get(r, 0)?),
        tenant: get(r, 1)?,
        event: get(r, 2)?,
        actor: get(r, 3)?,
        client_id: get(r, 4)?,
        ip: get(r, 5)?,
        user_agent: get(r, 6)?,
        grant_id: get(r, 7)?,
        family_id: get(r, 8)?,
        detail: get(r, 9)?,
    })
}

pub(super) fn ceremony_from_row(r: &Row) -> Result<WebauthnCeremony> {
    Ok(WebauthnCeremony {
        tenant: get(r, 0)?,
        key_hash: hash(&get::<Vec<u8>>(r, 1)?)?,
        purpose: get(r, 2)?,
        user_id: get(r, 3)?,
        state: get(r, 4)?,
        expires_at: ts(get(r, 5)?),
    })
}

pub(super) fn upstream_from_row(r: &Row) -> Result<UpstreamRecord> {
    let max_age: Option<i64> = get(r, 11)?;
    Ok(UpstreamRecord {
        tenant: get(r, 0)?,
        id: get(r, 1)?,
        name: get(r, 2)?,
        issuer: get(r, 3)?,
        client_id: get(r, 4)?,
        client_secret: get(r, 5)?,
        auth_method: get(r, 6)?,
        scopes: get(r, 7)?,
        allowed_domains: domains(get(r, 8)?),
        require_claims: claims(get(r, 9)?, || bad("required claims"))?,
        link_by_email: get(r, 10)?,
        max_age_secs: max_age
            .map(|s| u32::try_from(s).map_err(|_| bad("max_age")))
            .transpose()?,
        force_login: get(r, 12)?,
        created_at: ts(get(r, 13)?),
    })
}

pub(super) fn upstream_link_from_row(r: &Row) -> Result<UpstreamLink> {
    Ok(UpstreamLink {
        tenant: get(r, 0)?,
        upstream_id: get(r, 1)?,
        subject: get(r, 2)?,
        user_id: get(r, 3)?,
        created_at: ts(get(r, 4)?),
    })
}

pub(super) fn upstream_state_from_row(r: &Row) -> Result<UpstreamState> {
    Ok(UpstreamState {
        hash: hash(get(r, 0)?)?,
        tenant: get(r, 1)?,
        upstream_id: get(r, 2)?,
        flow_hash: hash(get(r, 3)?)?,
        binding_hash: hash(get(r, 4)?)?,
        nonce: get(r, 5)?,
        pkce_verifier: get(r, 6)?,
        return_to: get(r, 7)?,
        created_at: ts(get(r, 8)?),
        expires_at: ts(get(r, 9)?),
    })
}
