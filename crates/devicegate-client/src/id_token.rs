//! ID token verification against the issuer's JWKS (OpenID Connect Core §3.1.3.7), with
//! `jsonwebtoken`: signature, `iss`, `aud`, `exp`, `iat` and `sub`.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

/// Clock skew allowed on `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// The claims of `id_token` once it verifies against the keys at `jwks_uri`, issued by
/// `issuer` for `audience`; otherwise why not, in one line.
pub async fn verify_id_token(
    http: &reqwest::Client,
    jwks_uri: &str,
    issuer: &str,
    audience: &str,
    id_token: &str,
) -> Result<(Algorithm, Value), String> {
    let jwks: JwkSet = http
        .get(jwks_uri)
        .send()
        .await
        .map_err(|e| format!("{jwks_uri}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{jwks_uri}: not a JWK set: {e}"))?;
    let header = decode_header(id_token).map_err(|e| format!("not a JWS: {e}"))?;
    let jwk = match &header.kid {
        Some(kid) => jwks
            .find(kid)
            .ok_or(format!("no key {kid:?} in the JWKS"))?,
        None if jwks.keys.len() == 1 => &jwks.keys[0],
        None => return Err("no kid, and the JWKS holds several keys".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.leeway = LEEWAY_SECS;
    let data = decode::<Value>(id_token, &key, &v).map_err(|e| format!("refused: {e}"))?;
    Ok((header.alg, data.claims))
}
