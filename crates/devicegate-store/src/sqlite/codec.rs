//! Rows to records and back, and rusqlite errors to sentinel errors.

use devicegate_core::flow::Flow;
use devicegate_core::grant::{DeviceGrant, Requester};
use devicegate_core::keys::Algorithm;
use devicegate_core::scope::Scopes;
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::FlowStatus;
use rusqlite::Row;
use rusqlite::types::Type;

use crate::StoreError;
use crate::columns::{claims, domains, flow_result, grant_status};
use crate::records::{
    AuditEvent, BrowserSession, ClientRecord, DevicePolicy, KeyRecord, PasskeyRecord, RefreshToken,
    TenantRecord, TotpFactor, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord,
    WebauthnCeremony,
};

pub(super) fn internal(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Unique-key violations are `AlreadyExists`; everything else is as `internal`.
pub(super) fn constraint(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::AlreadyExists
        }
        _ => internal(e),
    }
}

fn bad(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, format!("invalid {what}").into())
}

fn hash(row: &Row<'_>, col: usize) -> rusqlite::Result<SecretHash> {
    let b: Vec<u8> = row.get(col)?;
    SecretHash::from_bytes(&b).ok_or_else(|| bad(col, "hash"))
}

fn scopes(row: &Row<'_>, col: usize) -> rusqlite::Result<Scopes> {
    let s: String = row.get(col)?;
    Scopes::parse(&s).ok_or_else(|| bad(col, "scopes"))
}

fn ts(row: &Row<'_>, col: usize) -> rusqlite::Result<Timestamp> {
    row.get(col).map(Timestamp::from_millis)
}

fn opt_ts(row: &Row<'_>, col: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<i64>>(col)
        .map(|o| o.map(Timestamp::from_millis))
}

pub(super) fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceGrant> {
    let status: String = row.get(5)?;
    let status = grant_status(
        &status,
        || Ok((row.get(6)?, ts(row, 7)?, row.get(19)?, row.get(20)?)),
        || bad(5, "grant status"),
    )?;
    Ok(DeviceGrant {
        id: row.get(0)?,
        device_code_hash: hash(row, 1)?,
        user_code: UserCode::from_canonical(row.get(2)?),
        client_id: row.get(3)?,
        scopes: scopes(row, 4)?,
        status,
        created_at: ts(row, 8)?,
        expires_at: ts(row, 9)?,
        interval_secs: row.get(10)?,
        last_poll_at: opt_ts(row, 11)?,
        flow_id: row.get(12)?,
        flow_expires_at: opt_ts(row, 13)?,
        requester: Requester {
            ip: row.get(14)?,
            user_agent: row.get(15)?,
        },
        version: row.get(16)?,
        tenant: row.get(17)?,
        context: row.get(18)?,
    })
}

pub(super) fn flow_from_row(row: &Row<'_>) -> rusqlite::Result<Flow> {
    let status: String = row.get(2)?;
    let result: Option<String> = row.get(7)?;
    Ok(Flow {
        id: row.get(0)?,
        secret_hash: hash(row, 1)?,
        status: FlowStatus::parse(&status).ok_or_else(|| bad(2, "flow status"))?,
        grant_id: row.get(3)?,
        user_id: row.get(4)?,
        signed_on_at: opt_ts(row, 5)?,
        failed_attempts: row.get(6)?,
        result: flow_result(result.as_deref(), || bad(7, "flow result"))?,
        created_at: ts(row, 8)?,
        expires_at: ts(row, 9)?,
        version: row.get(10)?,
        tenant: row.get(11)?,
        idp: row.get(12)?,
        amr: row.get(13)?,
        from_link: row.get(14)?,
    })
}

pub(super) fn client_from_row(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    let secret: Option<Vec<u8>> = row.get(2)?;
    let grant_types: String = row.get(4)?;
    Ok(ClientRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        secret_hash: match secret {
            None => None,
            Some(b) => Some(SecretHash::from_bytes(&b).ok_or_else(|| bad(2, "hash"))?),
        },
        scopes: scopes(row, 3)?,
        grant_types: grant_types.split_whitespace().map(str::to_owned).collect(),
        device_code_ttl_secs: row.get(5)?,
        poll_interval_secs: row.get(6)?,
        created_at: ts(row, 7)?,
        tenant: row.get(8)?,
        device_policy: DevicePolicy {
            networks: domains(&row.get::<_, String>(9)?),
            refresh_tokens: row.get(10)?,
            scope_ceiling: match row.get::<_, Option<String>>(11)? {
                None => None,
                Some(s) => Some(Scopes::parse(&s).ok_or_else(|| bad(11, "scopes"))?),
            },
            access_ttl_secs: row.get(12)?,
            proximity: row.get(13)?,
        },
    })
}

pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(0)?,
        username: row.get(1)?,
        password_hash: row.get(2)?,
        name: row.get(3)?,
        email: row.get(4)?,
        created_at: ts(row, 5)?,
        tenant: row.get(6)?,
        disabled: row.get(7)?,
    })
}

pub(super) fn refresh_from_row(row: &Row<'_>) -> rusqlite::Result<RefreshToken> {
    Ok(RefreshToken {
        hash: hash(row, 0)?,
        family_id: row.get(1)?,
        client_id: row.get(2)?,
        subject: row.get(3)?,
        scopes: scopes(row, 4)?,
        auth_time: ts(row, 5)?,
        created_at: ts(row, 6)?,
        expires_at: ts(row, 7)?,
        used: row.get(8)?,
        tenant: row.get(9)?,
        family_started_at: ts(row, 10)?,
        idp: row.get(11)?,
        amr: row.get(12)?,
        requester_ip: row.get(13)?,
        requester_agent: row.get(14)?,
    })
}

pub(super) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<BrowserSession> {
    let flow: Option<Vec<u8>> = row.get(3)?;
    Ok(BrowserSession {
        id_hash: hash(row, 0)?,
        user_id: row.get(1)?,
        signed_on_at: opt_ts(row, 2)?,
        flow_hash: match flow {
            None => None,
            Some(b) => Some(SecretHash::from_bytes(&b).ok_or_else(|| bad(3, "hash"))?),
        },
        created_at: ts(row, 4)?,
        expires_at: ts(row, 5)?,
        tenant: row.get(6)?,
        idp: row.get(7)?,
        amr: row.get(8)?,
    })
}

pub(super) fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    let alg: String = row.get(1)?;
    Ok(KeyRecord {
        id: row.get(0)?,
        alg: Algorithm::parse(&alg).ok_or_else(|| bad(1, "algorithm"))?,
        pkcs8: row.get(2)?,
        created_at: ts(row, 3)?,
        tenant: row.get(4)?,
        signs_from: opt_ts(row, 5)?.unwrap_or(ts(row, 3)?),
    })
}

pub(super) fn tenant_from_row(row: &Row<'_>) -> rusqlite::Result<TenantRecord> {
    Ok(TenantRecord {
        id: row.get(0)?,
        uuid: row.get(1)?,
        created_at: ts(row, 2)?,
        local_passwords: row.get(3)?,
        second_factor: row.get(4)?,
    })
}

pub(super) fn totp_from_row(row: &Row<'_>) -> rusqlite::Result<TotpFactor> {
    Ok(TotpFactor {
        tenant: row.get(0)?,
        user_id: row.get(1)?,
        secret: row.get(2)?,
        confirmed: row.get(3)?,
        last_step: row.get(4)?,
        created_at: ts(row, 5)?,
    })
}

pub(super) fn passkey_from_row(row: &Row<'_>) -> rusqlite::Result<PasskeyRecord> {
    Ok(PasskeyRecord {
        tenant: row.get(0)?,
        id: row.get(1)?,
        user_id: row.get(2)?,
        credential_id: row.get(3)?,
        name: row.get(4)?,
        credential: row.get(5)?,
        sign_count: row.get(6)?,
        backup_eligible: row.get(7)?,
        backup_state: row.get(8)?,
        created_at: ts(row, 9)?,
        last_used_at: opt_ts(row, 10)?,
    })
}

pub(super) fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        at: ts(row, 0)?,
        tenant: row.get(1)?,
        event: row.get(2)?,
        actor: row.get(3)?,
        client_id: row.get(4)?,
        ip: row.get(5)?,
        user_agent: row.get(6)?,
        grant_id: row.get(7)?,
        family_id: row.get(8)?,
        detail: row.get(9)?,
    })
}

pub(super) fn ceremony_from_row(row: &Row<'_>) -> rusqlite::Result<WebauthnCeremony> {
    Ok(WebauthnCeremony {
        tenant: row.get(0)?,
        key_hash: hash(row, 1)?,
        purpose: row.get(2)?,
        user_id: row.get(3)?,
        state: row.get(4)?,
        expires_at: ts(row, 5)?,
    })
}

pub(super) fn upstream_from_row(row: &Row<'_>) -> rusqlite::Result<UpstreamRecord> {
    let allowed: String = row.get(8)?;
    let required: String = row.get(9)?;
    Ok(UpstreamRecord {
        tenant: row.get(0)?,
        id: row.get(1)?,
        name: row.get(2)?,
        issuer: row.get(3)?,
        client_id: row.get(4)?,
        client_secret: row.get(5)?,
        auth_method: row.get(6)?,
        scopes: row.get(7)?,
        allowed_domains: domains(&allowed),
        require_claims: claims(&required, || bad(9, "required claims"))?,
        link_by_email: row.get(10)?,
        max_age_secs: row.get(11)?,
        force_login: row.get(12)?,
        created_at: ts(row, 13)?,
    })
}

pub(super) fn upstream_link_from_row(row: &Row<'_>) -> rusqlite::Result<UpstreamLink> {
    Ok(UpstreamLink {
        tenant: row.get(0)?,
        upstream_id: row.get(1)?,
        subject: row.get(2)?,
        user_id: row.get(3)?,
        created_at: ts(row, 4)?,
    })
}

pub(super) fn upstream_state_from_row(row: &Row<'_>) -> rusqlite::Result<UpstreamState> {
    Ok(UpstreamState {
        hash: hash(row, 0)?,
        tenant: row.get(1)?,
        upstream_id: row.get(2)?,
        flow_hash: hash(row, 3)?,
        binding_hash: hash(row, 4)?,
        nonce: row.get(5)?,
        pkce_verifier: row.get(6)?,
        return_to: row.get(7)?,
        created_at: ts(row, 8)?,
        expires_at: ts(row, 9)?,
    })
}
