//! Client authentication (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`, or a
//! public client naming itself with `client_id`.
//!
//! Client records are read through a one-second cache (`ClientCache`, `CLIENT_CACHE_FOR`): a
//! deleted client or a changed secret takes effect within a second, and a request saves a
//! database read.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use devicegate_core::Secret;
use devicegate_proto::{ErrorCode, GrantType};
use devicegate_store::{ClientRecord, StoreError};
use http::HeaderMap;
use http::header::AUTHORIZATION;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::AppState;
use crate::error::OAuthError;
use crate::extract::{OAuthForm, single_header};
use crate::tenant::Tenant;

struct Presented {
    id: String,
    secret: Option<Secret>,
    basic: bool,
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
fn decode_component(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn presented(headers: &HeaderMap, form: &OAuthForm) -> Result<Presented, OAuthError> {
    let authorization = single_header(headers, &AUTHORIZATION)
        .map_err(|_| OAuthError::invalid_request("the Authorization header is repeated"))?;
    let basic = match authorization {
        None => None,
        Some(v) => {
            let v = v.to_str().map_err(|_| OAuthError::invalid_client(true))?;
            let Some((scheme, creds)) = v.split_once(' ') else {
                return Err(OAuthError::invalid_client(true));
            };
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(OAuthError::invalid_request(
                    "only Basic authorization is accepted here",
                ));
            }
            let raw = STANDARD
                .decode(creds.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| OAuthError::invalid_client(true))?;
            let (id, secret) = raw
                .split_once(':')
                .ok_or_else(|| OAuthError::invalid_client(true))?;
            let id = decode_component(id).ok_or_else(|| OAuthError::invalid_client(true))?;
            let secret =
                decode_component(secret).ok_or_else(|| OAuthError::invalid_client(true))?;
            Some((id, secret))
        }
    };
    match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not several",
        )),
        (Some((id, _)), Some(form_id), None) if form_id != id => Err(OAuthError::invalid_request(
            "client_id does not match the authenticated client",
        )),
        (Some((id, secret)), _, None) => Ok(Presented {
            id,
            secret: Some(Secret::from_presented(secret)),
            basic: true,
        }),
        (None, Some(id), secret) => Ok(Presented {
            id: id.to_owned(),
            secret: secret.map(Secret::from_presented),
            basic: false,
        }),
        (None, None, _) => Err(OAuthError::invalid_request(
            "parameter `client_id` is missing",
        )),
    }
}

/// Clients as recently read: every device-flow request names its client, and clients change
/// rarely, so a second of staleness (a deleted client or a new secret taking effect up to a
/// second late) buys a database read per request.
#[derive(Debug, Default)]
pub struct ClientCache(Mutex<HashMap<(String, String), (Instant, ClientRecord)>>);

const CLIENT_CACHE_FOR: Duration = Duration::from_secs(1);
const CLIENT_CACHE_MAX: usize = 10_000;

impl ClientCache {
    pub(crate) async fn get(&self, tenant: &Tenant, id: &str) -> Result<ClientRecord, StoreError> {
        let key = (tenant.id.clone(), id.to_owned());
        {
            let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, c)) = cache.get(&key)
                && at.elapsed() < CLIENT_CACHE_FOR
            {
                return Ok(c.clone());
            }
        }
        let client = tenant.store.get_client(id).await?;
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CLIENT_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), client.clone()));
        Ok(client)
    }
}

/// Who is calling: an authenticated confidential client or a public client.
pub async fn authenticate_client(
    state: &AppState,
    tenant: &Tenant,
    headers: &HeaderMap,
    form: &OAuthForm,
) -> Result<ClientRecord, OAuthError> {
    let p = presented(headers, form)?;
    let client = match state.clients.get(tenant, &p.id).await {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Err(OAuthError::invalid_client(p.basic)),
        Err(e) => return Err(e.into()),
    };
    let ok = match (&client.secret_hash, &p.secret) {
        (Some(stored), Some(given)) => stored.matches(&given.hash()),
        (None, None) => true,
        // A confidential client without its secret, or a public client claiming one.
        _ => false,
    };
    if ok {
        Ok(client)
    } else {
        Err(OAuthError::invalid_client(p.basic))
    }
}

/// RFC 6749 §5.2 `unauthorized_client`: the client may not use this grant type.
pub fn ensure_grant_allowed(client: &ClientRecord, grant: GrantType) -> Result<(), OAuthError> {
    if client.grant_types.iter().any(|g| g == grant.as_str()) {
        Ok(())
    } else {
        Err(OAuthError::bad(
            ErrorCode::UnauthorizedClient,
            format!("this client may not use the {} grant", grant.as_str()),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc6749_2_3_1_basic_credentials_are_form_decoded() {
        assert_eq!(
            super::decode_component("a%26b+c%2B").as_deref(),
            Some("a&b c+")
        );
        assert_eq!(super::decode_component("%FF"), None);
    }
}
