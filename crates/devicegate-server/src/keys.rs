//! The signing keys in memory: parsed once at start, the newest key of the configured
//! algorithm signs, and every stored key verifies and is published.
//!
//! RSA signatures (about 0.2 ms each) run on the blocking pool; ES256 and EdDSA sign in place.

use devicegate_core::Timestamp;
use devicegate_core::jwt;
use devicegate_core::keys::{Algorithm, KeyError, KeyMaterial, Signer};
use devicegate_core::secret::random_id;
use devicegate_store::{KeyRecord, StoreError};

use crate::scoped::TenantStore;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
pub struct KeySet {
    signers: Arc<[Signer]>,
    /// Signs ID tokens (and everything else but access tokens).
    active: usize,
    /// Signs access tokens: the same key unless `access_token_signing_alg` differs.
    access: usize,
}

/// Stores a new key of `alg` unless another instance just did; returns every key.
async fn create_key(
    store: &TenantStore,
    alg: Algorithm,
    now: Timestamp,
) -> Result<Vec<KeyRecord>, crate::StartError> {
    let material = tokio::task::spawn_blocking(move || KeyMaterial::generate(alg))
        .await
        .map_err(|_| KeyError::Generate)??;
    let tenant = store.tenant_id();
    let candidate = KeyRecord {
        tenant: tenant.to_owned(),
        id: random_id(),
        alg,
        pkcs8: material.pkcs8,
        created_at: now,
    };
    // Instances starting together on one database agree on a single key.
    let records = store.ensure_key(&candidate).await?;
    if records.iter().any(|r| r.id == candidate.id) {
        tracing::info!(tenant, alg = alg.as_str(), "created a signing key");
    }
    Ok(records)
}

impl KeySet {
    /// Loads every stored key; creates and stores a key of `alg` (ID tokens), and of
    /// `access_alg` (access tokens) when it differs, where there is none.
    pub async fn load_or_create(
        store: &TenantStore,
        alg: Algorithm,
        access_alg: Algorithm,
        now: Timestamp,
    ) -> Result<KeySet, crate::StartError> {
        let mut records = store.list_keys().await?;
        for alg in [alg, access_alg] {
            if !records.iter().any(|r| r.alg == alg) {
                records = create_key(store, alg, now).await?;
            }
        }
        let mut signers = Vec::with_capacity(records.len());
        for r in &records {
            signers.push(Signer::from_material(&KeyMaterial {
                alg: r.alg,
                pkcs8: r.pkcs8.clone(),
            })?);
        }
        // Records come oldest first: the last key of an algorithm is its newest.
        let newest = |alg: Algorithm| {
            records
                .iter()
                .rposition(|r| r.alg == alg)
                .ok_or(crate::StartError::Store(StoreError::NotFound))
        };
        Ok(KeySet {
            active: newest(alg)?,
            access: newest(access_alg)?,
            signers: signers.into(),
        })
    }

    pub fn active(&self) -> &Signer {
        &self.signers[self.active]
    }

    pub fn all(&self) -> &[Signer] {
        &self.signers
    }

    /// Signs an access token with the access-token key.
    pub fn sign_access(&self, claims: &Value) -> Result<String, KeyError> {
        jwt::encode(&self.signers[self.access], jwt::TYP_ACCESS_TOKEN, claims)
    }

    /// Signs a token set: the access token with the access-token key, the ID token (if any)
    /// with the active key. RSA signatures (about 0.2 ms each) run on the blocking pool, so
    /// that the async workers go on answering polls meanwhile; ES256 and EdDSA (microseconds)
    /// sign in place, where the hop would cost more than the signature.
    pub async fn sign_token_set(
        &self,
        access: Value,
        id: Option<Value>,
    ) -> Result<(String, Option<String>), KeyError> {
        let (signers, active, access_key) = (self.signers.clone(), self.active, self.access);
        let rsa = signers[access_key].alg == Algorithm::Rs256
            || (id.is_some() && signers[active].alg == Algorithm::Rs256);
        let sign = move || {
            let access = jwt::encode(&signers[access_key], jwt::TYP_ACCESS_TOKEN, &access)?;
            let id = id
                .map(|claims| jwt::encode(&signers[active], jwt::TYP_JWT, &claims))
                .transpose()?;
            Ok((access, id))
        };
        if rsa {
            tokio::task::spawn_blocking(sign)
                .await
                .map_err(|_| KeyError::Sign)?
        } else {
            sign()
        }
    }

    /// Algorithms that sign ID tokens: the active key's, and those of older keys still
    /// published (not the access-token key's, if it differs).
    pub fn id_token_algorithms(&self) -> Vec<String> {
        let access_only = self.signers[self.access].alg;
        let id_alg = self.active().alg;
        self.algorithms()
            .into_iter()
            .filter(|a| *a == id_alg.as_str() || *a != access_only.as_str())
            .collect()
    }

    /// RFC 7517 JWK Set of every key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.signers.iter().map(Signer::jwk).collect::<Vec<_>>() })
    }

    /// Algorithms of the keys we hold.
    pub fn algorithms(&self) -> Vec<String> {
        let mut algs: Vec<String> = Vec::new();
        for s in self.signers.iter() {
            let a = s.alg.as_str().to_owned();
            if !algs.contains(&a) {
                algs.push(a);
            }
        }
        algs
    }
}
