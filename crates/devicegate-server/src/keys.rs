//! The signing keys in memory, read again with the tenant (`tenant::CACHE_FOR`): of the
//! configured algorithm, the newest key whose `signs_from` has come signs; every key is
//! published (in the JWKS) and verifies from its creation, so a rotated-in key is in relying
//! parties' cached key sets before it signs; a key another one replaced leaves once every
//! token it signed has expired (`retired`).
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
        signs_from: now,
    };
    // Instances starting together on one database agree on a single key.
    let records = store.ensure_key(&candidate).await?;
    if records.iter().any(|r| r.id == candidate.id) {
        tracing::info!(tenant, alg = alg.as_str(), "created a signing key");
    }
    Ok(records)
}

/// How long after its successor began signing a key may still have signed somewhere: the
/// other instances read the keys again within `tenant::CACHE_FOR`; this leaves room for it.
const SWITCH_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `key` has left: a newer key of its algorithm has signed for longer than any
/// token lives (`token_ttl`), so every token `key` signed has expired.
pub fn retired(
    key: &KeyRecord,
    all: &[KeyRecord],
    token_ttl: std::time::Duration,
    now: Timestamp,
) -> bool {
    all.iter().any(|n| {
        n.alg == key.alg
            && n.id != key.id
            && (n.signs_from, &n.created_at) > (key.signs_from, &key.created_at)
            && n.signs_from.plus(token_ttl).plus(SWITCH_MARGIN) <= now
    })
}

/// The key of `alg` that signs at `now`: the newest whose `signs_from` has come; while none
/// has (the first key, made by another instance starting at the same moment with a clock a
/// little ahead), the earliest.
pub fn signing(all: &[KeyRecord], alg: Algorithm, now: Timestamp) -> Option<&KeyRecord> {
    let of_alg = || all.iter().filter(|k| k.alg == alg);
    of_alg()
        .filter(|k| k.signs_from <= now)
        .max_by_key(|k| (k.signs_from, k.created_at))
        .or_else(|| of_alg().min_by_key(|k| (k.signs_from, k.created_at)))
}

impl KeySet {
    /// Loads the stored keys still published; creates and stores a key of `alg` (ID
    /// tokens), and of `access_alg` (access tokens) when it differs, where none signs yet.
    pub async fn load_or_create(
        store: &TenantStore,
        alg: Algorithm,
        access_alg: Algorithm,
        token_ttl: std::time::Duration,
        now: Timestamp,
    ) -> Result<KeySet, crate::StartError> {
        let mut records = store.list_keys().await?;
        for alg in [alg, access_alg] {
            if !records.iter().any(|r| r.alg == alg) {
                records = create_key(store, alg, now).await?;
            }
        }
        let published: Vec<KeyRecord> = records
            .iter()
            .filter(|k| !retired(k, &records, token_ttl, now))
            .cloned()
            .collect();
        let mut signers = Vec::with_capacity(published.len());
        for r in &published {
            signers.push(Signer::from_material(&KeyMaterial {
                alg: r.alg,
                pkcs8: r.pkcs8.clone(),
            })?);
        }
        let newest = |alg: Algorithm| {
            let key = signing(&published, alg, now)
                .ok_or(crate::StartError::Store(StoreError::NotFound))?;
            published
                .iter()
                .position(|r| r.id == key.id)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(id: &str, alg: Algorithm, signs_from_secs: i64) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            tenant: "default".into(),
            alg,
            pkcs8: Vec::new(),
            created_at: Timestamp::from_millis(0),
            signs_from: Timestamp::from_millis(signs_from_secs * 1000),
        }
    }

    #[test]
    fn the_newest_key_that_may_sign_signs_and_a_replaced_one_leaves_after_its_tokens() {
        let ttl = Duration::from_secs(3600);
        let keys = [
            key("old", Algorithm::Rs256, 0),
            key("new", Algorithm::Rs256, 10_000),
            key("next", Algorithm::Rs256, 20_000),
            key("ec", Algorithm::Es256, 0),
        ];
        let at = |secs: i64| Timestamp::from_millis(secs * 1000);
        // Before `new` may sign, `old` signs; `new` and `next` are published already.
        assert_eq!(
            signing(&keys, Algorithm::Rs256, at(9_999)).unwrap().id,
            "old"
        );
        assert_eq!(
            signing(&keys, Algorithm::Rs256, at(10_000)).unwrap().id,
            "new"
        );
        assert_eq!(
            signing(&keys, Algorithm::Es256, at(30_000)).unwrap().id,
            "ec"
        );
        // Only keys yet to sign (another instance's first key, its clock ahead): the earliest.
        assert_eq!(
            signing(&keys[1..3], Algorithm::Rs256, at(0)).unwrap().id,
            "new"
        );
        assert!(!retired(&keys[1], &keys, ttl, at(0)));
        // `old` stays while tokens it signed may live (plus the margin), then leaves.
        let leaves = 10_000 + 3600 + SWITCH_MARGIN.as_secs() as i64;
        assert!(!retired(&keys[0], &keys, ttl, at(leaves - 1)));
        assert!(retired(&keys[0], &keys, ttl, at(leaves)));
        // Another algorithm's rotation retires nothing of this one.
        assert!(!retired(&keys[3], &keys, ttl, at(1_000_000)));
        // The newest never retires.
        assert!(!retired(&keys[2], &keys, ttl, at(1_000_000)));
    }
}
