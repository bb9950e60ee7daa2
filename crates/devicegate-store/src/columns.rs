//! What both backends' tables share: the column list of each table (in the order each
//! backend's row codec reads), and the grant status and flow result as their columns hold
//! them. Only the column names and values live here; the SQL around them stays in each
//! backend.

use devicegate_core::Timestamp;
use devicegate_core::grant::GrantStatus;
use devicegate_proto::FlowResult;

pub(crate) const GRANT_COLUMNS: &str = "id, device_code_hash, user_code, client_id, scopes, status, subject, auth_time, \
     created_at, expires_at, interval_secs, last_poll_at, flow_id, flow_expires_at, requester_ip, requester_agent, \
     version, tenant, context, idp, amr";
pub(crate) const FLOW_COLUMNS: &str = "id, secret_hash, status, grant_id, user_id, signed_on_at, failed_attempts, result, \
     created_at, expires_at, version, tenant, idp, amr, from_link";
pub(crate) const CLIENT_COLUMNS: &str = "id, name, secret_hash, scopes, grant_types, device_code_ttl_secs, poll_interval_secs, \
     created_at, tenant, device_networks, device_refresh_tokens, device_scopes, device_access_ttl_secs, proximity";
pub(crate) const USER_COLUMNS: &str =
    "id, username, password_hash, name, email, created_at, tenant, disabled";
pub(crate) const REFRESH_COLUMNS: &str = "hash, family_id, client_id, subject, scopes, auth_time, created_at, expires_at, used, \
     tenant, family_started_at, idp, amr, requester_ip, requester_agent";
pub(crate) const SESSION_COLUMNS: &str =
    "id_hash, user_id, signed_on_at, flow_hash, created_at, expires_at, tenant, idp, amr";
pub(crate) const KEY_COLUMNS: &str = "id, alg, pkcs8, created_at, tenant, signs_from";
pub(crate) const TENANT_COLUMNS: &str = "id, uuid, created_at, local_passwords, second_factor";
pub(crate) const TOTP_COLUMNS: &str = "tenant, user_id, secret, confirmed, last_step, created_at";
pub(crate) const PASSKEY_COLUMNS: &str = "tenant, id, user_id, credential_id, name, credential, sign_count, \
     backup_eligible, backup_state, created_at, last_used_at";
pub(crate) const AUDIT_COLUMNS: &str =
    "at, tenant, event, actor, client_id, ip, user_agent, grant_id, family_id, detail";
pub(crate) const CEREMONY_COLUMNS: &str = "tenant, key_hash, purpose, user_id, state, expires_at";
pub(crate) const UPSTREAM_COLUMNS: &str = "tenant, id, name, issuer, client_id, client_secret, auth_method, scopes, \
     allowed_domains, require_claims, link_by_email, max_age_secs, force_login, created_at";
pub(crate) const UPSTREAM_LINK_COLUMNS: &str = "tenant, upstream_id, subject, user_id, created_at";
pub(crate) const UPSTREAM_STATE_COLUMNS: &str = "hash, tenant, upstream_id, flow_hash, binding_hash, nonce, pkce_verifier, \
     return_to, created_at, expires_at";

/// An upstream's `allowed_domains` column: space-separated (a domain holds no whitespace).
pub(crate) fn domains_column(domains: &[String]) -> String {
    domains.join(" ")
}

/// An upstream's allowed domains from their column.
pub(crate) fn domains(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}

/// An upstream's `require_claims` column: a JSON array of `[name, value]` pairs, in order,
/// so that any name or value (spaces, `=`, newlines) reads back as it was.
pub(crate) fn claims_column(claims: &[(String, String)]) -> String {
    serde_json::to_string(claims).expect("strings always serialise")
}

/// An upstream's required claims from their column; `bad` is the error for a column that is
/// not such an array.
pub(crate) fn claims<E>(column: &str, bad: impl FnOnce() -> E) -> Result<Vec<(String, String)>, E> {
    serde_json::from_str(column).map_err(|_| bad())
}

/// A grant's `status`, `subject`, `auth_time`, `idp` and `amr` columns.
pub(crate) type GrantStatusColumns<'a> = (
    &'static str,
    Option<&'a str>,
    Option<i64>,
    Option<&'a str>,
    Option<&'a str>,
);

/// What an approved grant's `subject`, `auth_time`, `idp` and `amr` columns hold.
pub(crate) type Approval = (String, Timestamp, Option<String>, Option<String>);

/// A grant's `status`, `subject`, `auth_time`, `idp` and `amr` columns (only an approved
/// grant has the last four).
pub(crate) fn grant_status_columns(s: &GrantStatus) -> GrantStatusColumns<'_> {
    match s {
        GrantStatus::Approved {
            subject,
            auth_time,
            idp,
            amr,
        } => (
            s.name(),
            Some(subject.as_str()),
            Some(auth_time.as_millis()),
            idp.as_deref(),
            amr.as_deref(),
        ),
        _ => (s.name(), None, None, None, None),
    }
}

/// A grant's status from its `status` column; `approved` reads the subject, sign-on time,
/// upstream provider and sign-on methods (only an approved grant has them), `bad` is the
/// error for a status no grant has.
pub(crate) fn grant_status<E>(
    status: &str,
    approved: impl FnOnce() -> Result<Approval, E>,
    bad: impl FnOnce() -> E,
) -> Result<GrantStatus, E> {
    Ok(match status {
        "pending" => GrantStatus::Pending,
        "approved" => {
            let (subject, auth_time, idp, amr) = approved()?;
            GrantStatus::Approved {
                subject,
                auth_time,
                idp,
                amr,
            }
        }
        "denied" => GrantStatus::Denied,
        "redeemed" => GrantStatus::Redeemed,
        _ => return Err(bad()),
    })
}

/// A flow's `result` column.
pub(crate) fn flow_result_column(r: Option<FlowResult>) -> Option<&'static str> {
    r.map(|r| match r {
        FlowResult::Approved => "approved",
        FlowResult::Denied => "denied",
    })
}

/// A flow's result from its `result` column; `bad` is the error for a result no flow has.
pub(crate) fn flow_result<E>(
    column: Option<&str>,
    bad: impl FnOnce() -> E,
) -> Result<Option<FlowResult>, E> {
    match column {
        None => Ok(None),
        Some("approved") => Ok(Some(FlowResult::Approved)),
        Some("denied") => Ok(Some(FlowResult::Denied)),
        Some(_) => Err(bad()),
    }
}
