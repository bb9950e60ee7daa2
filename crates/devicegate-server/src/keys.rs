//! The signing keys in memory: parsed once at start, the newest key of the configured
//! algorithm signs, and every stored key verifies and is published.

use devicegate_core::Timestamp;
use devicegate_core::jwt;
use devicegate_core::keys::{Algorithm, KeyError, KeyMaterial, Signer};
use devicegate_core::secret::random_id;
use devicegate_store::{KeyRecord, Store, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug)]
pub struct KeySet {
    signers: Arc<[Signer]>,
    active: usize,
}

impl KeySet {
    /// Loads every stored key; creates and stores a key of `alg` when there is none.
    pub async fn load_or_create(
        store: &dyn Store,
        tenant: &str,
        alg: Algorithm,
        now: Timestamp,
    ) -> Result<KeySet, crate::StartError> {
        let mut records = store.list_keys(tenant).await?;
        if !records.iter().any(|r| r.alg == alg) {
            let material = tokio::task::spawn_blocking(move || KeyMaterial::generate(alg))
                .await
                .map_err(|_| KeyError::Generate)??;
            let candidate = KeyRecord {
                tenant: tenant.to_owned(),
                id: random_id(),
                alg,
                pkcs8: material.pkcs8,
                created_at: now,
            };
            // Instances starting together on one database agree on a single key.
            records = store.ensure_key(&candidate).await?;
            if records.iter().any(|r| r.id == candidate.id) {
                tracing::info!(tenant, alg = alg.as_str(), "created a signing key");
            }
        }
        let mut signers = Vec::with_capacity(records.len());
        for r in &records {
            signers.push(Signer::from_material(&KeyMaterial {
                alg: r.alg,
                pkcs8: r.pkcs8.clone(),
            })?);
        }
        // Records come oldest first: the last key of the algorithm is the newest.
        let active = records
            .iter()
            .rposition(|r| r.alg == alg)
            .ok_or(crate::StartError::Store(StoreError::NotFound))?;
        Ok(KeySet {
            signers: signers.into(),
            active,
        })
    }

    pub fn active(&self) -> &Signer {
        &self.signers[self.active]
    }

    pub fn all(&self) -> &[Signer] {
        &self.signers
    }

    pub fn sign(&self, typ: &str, claims: &Value) -> Result<String, KeyError> {
        jwt::encode(self.active(), typ, claims)
    }

    /// Signs every `(typ, claims)` with the active key. RSA signatures (about 0.2 ms each)
    /// run on the blocking pool, so that the async workers go on answering polls meanwhile;
    /// ES256 and EdDSA (microseconds) sign in place, where the hop would cost more than the
    /// signature.
    pub async fn sign_all(
        &self,
        jobs: Vec<(&'static str, Value)>,
    ) -> Result<Vec<String>, KeyError> {
        let (signers, active) = (self.signers.clone(), self.active);
        let sign = move || {
            jobs.iter()
                .map(|(typ, claims)| jwt::encode(&signers[active], typ, claims))
                .collect()
        };
        if self.active().alg == Algorithm::Rs256 {
            tokio::task::spawn_blocking(sign)
                .await
                .map_err(|_| KeyError::Sign)?
        } else {
            sign()
        }
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
