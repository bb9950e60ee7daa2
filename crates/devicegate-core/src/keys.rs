//! Signing keys: generated once, stored as PKCS#8, parsed once into signers.
//!
//! Parsing a key is far costlier than using it (issue 7 measured jsonwebtoken, which parses
//! on every call, at under half the RS256 rate of a key parsed once), so a [`Signer`] keeps
//! the parsed aws-lc-rs key pair for the life of the process.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// JWS algorithms devicegate signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the one OpenID Connect requires.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Rs256, Algorithm::Es256, Algorithm::EdDsa];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key generation failed")]
    Generate,
    #[error("stored key is not a valid {0} key: {1}")]
    Rejected(&'static str, String),
    #[error("signing failed")]
    Sign,
}

/// A key as stored: its algorithm and PKCS#8 private key.
#[derive(Clone)]
pub struct KeyMaterial {
    pub alg: Algorithm,
    pub pkcs8: Vec<u8>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("alg", &self.alg)
            .field("pkcs8", &"***")
            .finish()
    }
}

impl KeyMaterial {
    pub fn generate(alg: Algorithm) -> Result<KeyMaterial, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            Algorithm::Rs256 => {
                use aws_lc_rs::encoding::AsDer;
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
                kp.as_der()
                    .map_err(|_| KeyError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| KeyError::Generate)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Generate)?
                .as_ref()
                .to_vec(),
        };
        Ok(KeyMaterial { alg, pkcs8 })
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A parsed key pair, ready to sign and verify, with its public JWK.
pub struct Signer {
    pub kid: String,
    pub alg: Algorithm,
    pair: Pair,
    public_key: Vec<u8>,
    jwk: Value,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl Signer {
    pub fn from_material(m: &KeyMaterial) -> Result<Signer, KeyError> {
        let reject =
            |e: aws_lc_rs::error::KeyRejected| KeyError::Rejected(m.alg.as_str(), e.to_string());
        let (pair, public_key, members) = match m.alg {
            Algorithm::Rs256 => {
                let kp = RsaKeyPair::from_pkcs8(&m.pkcs8).map_err(reject)?;
                let pk = kp.public_key();
                let n = b64(pk.modulus().big_endian_without_leading_zero());
                let e = b64(pk.exponent().big_endian_without_leading_zero());
                let public_key = pk.as_ref().to_vec();
                // RFC 7638 §3.2: required members only, in lexicographic order.
                let members = json!({"e": e, "kty": "RSA", "n": n});
                (Pair::Rsa(kp), public_key, members)
            }
            Algorithm::Es256 => {
                let kp =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &m.pkcs8)
                        .map_err(reject)?;
                let point = kp.public_key().as_ref().to_vec();
                if point.len() != 65 {
                    return Err(KeyError::Rejected(
                        "ES256",
                        "unexpected public key form".into(),
                    ));
                }
                let members = json!({"crv": "P-256", "kty": "EC", "x": b64(&point[1..33]), "y": b64(&point[33..])});
                (Pair::Ec(kp), point, members)
            }
            Algorithm::EdDsa => {
                let kp = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&m.pkcs8).map_err(reject)?;
                let pk = kp.public_key().as_ref().to_vec();
                let members = json!({"crv": "Ed25519", "kty": "OKP", "x": b64(&pk)});
                (Pair::Ed(kp), pk, members)
            }
        };
        // serde_json's default map is ordered, so this is the RFC 7638 canonical form.
        let canonical = serde_json::to_vec(&members).map_err(|_| KeyError::Generate)?;
        let kid = b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical).as_ref());
        let mut jwk = members;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(m.alg.as_str());
        jwk["use"] = json!("sig");
        Ok(Signer {
            kid,
            alg: m.alg,
            pair,
            public_key,
            jwk,
            rng: SystemRandom::new(),
        })
    }

    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                kp.sign(&signature::RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Pair::Ec(kp) => kp
                .sign(&self.rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            Pair::Ed(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }

    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::EdDsa => &signature::ED25519,
        };
        UnparsedPublicKey::new(alg, &self.public_key)
            .verify(msg, sig)
            .is_ok()
    }

    /// The public JWK (RFC 7517), with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_verifies_and_reloads_with_the_same_kid() {
        for alg in Algorithm::ALL {
            let m = KeyMaterial::generate(alg).unwrap();
            let s = Signer::from_material(&m).unwrap();
            let sig = s.sign(b"hello").unwrap();
            assert!(s.verify(b"hello", &sig), "{alg:?}");
            assert!(!s.verify(b"hellO", &sig), "{alg:?}");
            let again = Signer::from_material(&m).unwrap();
            assert_eq!(again.kid, s.kid);
            assert_eq!(s.jwk()["alg"], alg.as_str());
        }
    }

    #[test]
    fn garbage_key_material_is_rejected_not_panicking() {
        let m = KeyMaterial {
            alg: Algorithm::Rs256,
            pkcs8: vec![1, 2, 3],
        };
        assert!(Signer::from_material(&m).is_err());
    }
}
