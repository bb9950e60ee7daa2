//! Tenants as the HTTP layer sees them: each with its issuer, its path prefix, its signing
//! keys and discovery documents. The default tenant keeps the unprefixed paths; another
//! tenant's endpoints live under `/t/{tenant}/…` (and PingOne's under `/{envID}/…`).
//!
//! A middleware resolves the tenant of every request and puts it in the request's extensions;
//! handlers take `Extension<Arc<Tenant>>` and read and write only through its
//! [`Tenant::store`], which treats another tenant's records as absent (`scoped`).
//!
//! A loaded tenant is trusted for 5 s (`CACHE_FOR`), so a tenant deleted from the CLI
//! disappears from running servers within that, and a key rotation is followed as soon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use devicegate_core::secret::random_bytes;
use devicegate_proto::ErrorCode;
use devicegate_store::{DEFAULT_TENANT, StoreError, TenantRecord};

use crate::error::OAuthError;
use crate::metadata::Documents;
use crate::scoped::TenantStore;
use crate::{AppState, KeySet, StartError, now};

/// How long a loaded tenant is trusted before it is looked up again (a tenant deleted from
/// the CLI disappears from running servers within this, and its keys are read again).
pub(crate) const CACHE_FOR: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub uuid: String,
    pub issuer: String,
    /// Path prefix of this tenant's native endpoints: "" or "/t/{id}".
    pub base: String,
    pub keys: KeySet,
    pub(crate) discovery: Documents,
    /// Everything of this tenant is read and written through this (`scoped`).
    pub(crate) store: TenantStore,
    /// Whether people may sign in with a local password (else only through upstreams).
    pub local_passwords: bool,
    /// Second factors for password sign-ins: `off`, `optional`, `required`.
    pub second_factor: String,
}

impl Tenant {
    pub fn is_default(&self) -> bool {
        self.id == DEFAULT_TENANT
    }

    /// Where people enter codes for this tenant.
    pub fn verification_uri(&self, state: &AppState) -> String {
        match &state.settings.verification_uri {
            Some(uri) if self.is_default() => uri.clone(),
            _ => format!("{}/device", self.issuer),
        }
    }
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Loaded tenants, by id.
#[derive(Debug, Default)]
pub struct Tenants {
    cache: Mutex<HashMap<String, (Instant, Arc<Tenant>)>>,
}

impl Tenants {
    fn cached(&self, id: &str) -> Option<Arc<Tenant>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(id)
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, t)| t.clone())
    }

    fn remember(&self, t: Arc<Tenant>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(t.id.clone(), (Instant::now(), t));
    }
}

/// Makes sure the default tenant exists (with a UUID of its own).
pub async fn ensure_default(store: &dyn devicegate_store::Store) -> Result<(), StartError> {
    let record = TenantRecord {
        second_factor: "off".into(),
        id: DEFAULT_TENANT.into(),
        uuid: new_uuid(),
        local_passwords: true,
        created_at: now(),
    };
    match store.create_tenant(&record).await {
        Ok(()) | Err(StoreError::AlreadyExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Builds a tenant's HTTP context from its record: issuer, keys, documents.
pub async fn load(state: &AppState, record: TenantRecord) -> Result<Arc<Tenant>, StartError> {
    let (issuer, base) = if record.id == DEFAULT_TENANT {
        (state.settings.issuer.clone(), String::new())
    } else {
        (
            format!("{}/t/{}", state.settings.issuer, record.id),
            format!("/t/{}", record.id),
        )
    };
    let store = state.store.tenant(&record.id);
    let keys = KeySet::load_or_create(
        &store,
        state.settings.signing_alg,
        state
            .settings
            .access_token_signing_alg
            .unwrap_or(state.settings.signing_alg),
        state.settings.access_token_ttl,
        now(),
    )
    .await?;
    let discovery = Documents::new(&issuer, &keys);
    let tenant = Arc::new(Tenant {
        id: record.id,
        uuid: record.uuid,
        issuer,
        base,
        keys,
        discovery,
        store,
        local_passwords: record.local_passwords,
        second_factor: record.second_factor,
    });
    state.tenants.remember(tenant.clone());
    Ok(tenant)
}

fn unknown() -> OAuthError {
    OAuthError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such tenant")
}

fn failed(e: StartError) -> OAuthError {
    match e {
        StartError::Store(s) => s.into(),
        other => {
            tracing::error!(error = %other, "loading a tenant failed");
            OAuthError::internal()
        }
    }
}

impl AppState {
    pub async fn tenant(&self, id: &str) -> Result<Arc<Tenant>, OAuthError> {
        if let Some(t) = self.tenants.cached(id) {
            return Ok(t);
        }
        match self.store.get_tenant(id).await {
            Ok(record) => load(self, record).await.map_err(failed),
            Err(StoreError::NotFound) => Err(unknown()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn tenant_by_uuid(&self, uuid: &str) -> Result<Arc<Tenant>, OAuthError> {
        match self.store.get_tenant_by_uuid(uuid).await {
            Ok(record) => {
                if let Some(t) = self.tenants.cached(&record.id) {
                    return Ok(t);
                }
                load(self, record).await.map_err(failed)
            }
            Err(StoreError::NotFound) => Err(unknown()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Runs the request as `tenant`'s, or answers why there is none.
async fn within(tenant: Result<Arc<Tenant>, OAuthError>, mut req: Request, next: Next) -> Response {
    match tenant {
        Ok(t) => {
            req.extensions_mut().insert(t);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Middleware for the unprefixed routes: the default tenant.
pub async fn default_tenant(State(state): State<AppState>, req: Request, next: Next) -> Response {
    within(state.tenant(DEFAULT_TENANT).await, req, next).await
}

/// Middleware for `/t/{tenant}/…` (the tenant by name) and PingOne's `/{envID}/…` (the
/// tenant whose UUID is `envID`).
pub async fn from_path(
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let tenant = match (params.get("tenant"), params.get("env")) {
        (Some(id), _) => state.tenant(id).await,
        (None, Some(env)) => state.tenant_by_uuid(env).await,
        (None, None) => Err(unknown()),
    };
    within(tenant, req, next).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_version_4() {
        let u = super::new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        assert_ne!(u, super::new_uuid());
    }
}
