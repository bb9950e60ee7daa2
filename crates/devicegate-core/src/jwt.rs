//! Compact JWS (RFC 7515) encoding and verification, and the claims of the tokens we issue.
//!
//! Access tokens follow RFC 9068 (`typ: at+jwt`); ID tokens follow OpenID Connect Core §2.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::keys::{KeyError, Signer};
use crate::scope::{self, Scopes};
use crate::secret::random_id;
use crate::time::Timestamp;

pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
pub const TYP_JWT: &str = "JWT";

/// How far ahead of the verifier's clock a token's `nbf` may be (RFC 7519 §4.1.5 allows "some
/// small leeway"): instances sharing an issuer read clocks that differ slightly, and a token
/// issued on one is often presented to another within the same second.
pub const NBF_LEEWAY_SECS: i64 = 60;

/// Signs `claims` with `signer`, with the given `typ` header.
pub fn encode(signer: &Signer, typ: &str, claims: &Value) -> Result<String, KeyError> {
    let header = json!({"alg": signer.alg.as_str(), "kid": signer.kid, "typ": typ});
    let mut out = String::with_capacity(512);
    URL_SAFE_NO_PAD.encode_string(
        serde_json::to_vec(&header).map_err(|_| KeyError::Sign)?,
        &mut out,
    );
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(
        serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?,
        &mut out,
    );
    let sig = signer.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("wrong token type")]
    WrongType,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("wrong issuer")]
    WrongIssuer,
}

/// Verifies a compact JWS against `keys`, its `typ`, issuer, expiry and `nbf` (when present,
/// at most [`NBF_LEEWAY_SECS`] ahead of `now`); returns its claims.
pub fn verify(
    keys: &[Signer],
    token: &str,
    typ: &str,
    issuer: &str,
    now: Timestamp,
) -> Result<Map<String, Value>, VerifyError> {
    let mut parts = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(VerifyError::Malformed);
    };
    let decode = |x: &str| {
        URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|_| VerifyError::Malformed)
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&decode(h)?).map_err(|_| VerifyError::Malformed)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(VerifyError::UnknownKey)?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or(VerifyError::UnknownKey)?;
    // The key decides the algorithm; a header asking for another one is refused.
    if header.get("alg").and_then(Value::as_str) != Some(key.alg.as_str()) {
        return Err(VerifyError::BadSignature);
    }
    if !key.verify(&token.as_bytes()[..h.len() + 1 + p.len()], &decode(s)?) {
        return Err(VerifyError::BadSignature);
    }
    if header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(VerifyError::WrongType);
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(p)?).map_err(|_| VerifyError::Malformed)?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(VerifyError::WrongIssuer);
    }
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp > now.as_secs() => {}
        _ => return Err(VerifyError::Expired),
    }
    match claims.get("nbf").map(Value::as_i64) {
        None => Ok(claims),
        Some(Some(nbf)) if nbf <= now.as_secs() + NBF_LEEWAY_SECS => Ok(claims),
        Some(Some(_)) => Err(VerifyError::NotYetValid),
        Some(None) => Err(VerifyError::Malformed),
    }
}

/// What the issuer knows of a user, for ID tokens and userinfo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserClaims {
    pub subject: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl UserClaims {
    /// OpenID Connect Core §5.4: `profile` and `email` scopes select claims.
    pub fn add_scoped(&self, scopes: &Scopes, out: &mut Map<String, Value>) {
        if scopes.contains(scope::PROFILE) {
            out.insert("preferred_username".into(), json!(self.username));
            if let Some(n) = &self.name {
                out.insert("name".into(), json!(n));
            }
        }
        if scopes.contains(scope::EMAIL)
            && let Some(e) = &self.email
        {
            out.insert("email".into(), json!(e));
            // Addresses are set by an operator, not proven by mail; say so.
            out.insert("email_verified".into(), json!(false));
        }
    }
}

/// Everything an issued token set is about.
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    pub issuer: &'a str,
    /// The access token's audience (the ID token's is the client).
    pub audience: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scopes: &'a Scopes,
    pub now: Timestamp,
    pub access_ttl_secs: u64,
    pub auth_time: Timestamp,
}

/// RFC 9068 §2.2 access-token claims; `nbf` (RFC 7519 §4.1.5) is the issue time.
pub fn access_token_claims(i: &Issue<'_>) -> Value {
    json!({
        "iss": i.issuer,
        "sub": i.subject,
        "aud": i.audience,
        "client_id": i.client_id,
        "scope": i.scopes.to_string(),
        "iat": i.now.as_secs(),
        "nbf": i.now.as_secs(),
        "exp": i.now.as_secs() + i.access_ttl_secs as i64,
        "auth_time": i.auth_time.as_secs(),
        "jti": random_id(),
    })
}

/// OpenID Connect Core §2 ID-token claims, with `profile`/`email` claims by scope, and `nbf`
/// (RFC 7519 §4.1.5) at the issue time.
pub fn id_token_claims(i: &Issue<'_>, user: &UserClaims) -> Value {
    let mut m = Map::new();
    m.insert("iss".into(), json!(i.issuer));
    m.insert("sub".into(), json!(i.subject));
    m.insert("aud".into(), json!(i.client_id));
    m.insert("azp".into(), json!(i.client_id));
    m.insert("iat".into(), json!(i.now.as_secs()));
    m.insert("nbf".into(), json!(i.now.as_secs()));
    m.insert(
        "exp".into(),
        json!(i.now.as_secs() + i.access_ttl_secs as i64),
    );
    m.insert("auth_time".into(), json!(i.auth_time.as_secs()));
    user.add_scoped(i.scopes, &mut m);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, KeyMaterial};

    fn signer() -> Signer {
        Signer::from_material(&KeyMaterial::generate(Algorithm::Es256).unwrap()).unwrap()
    }

    /// Tokens issued at `now` by and for `http://x`, to `u1` through `cli`.
    fn issue(scopes: &Scopes, now: Timestamp, access_ttl_secs: u64) -> Issue<'_> {
        Issue {
            issuer: "http://x",
            audience: "http://x",
            client_id: "cli",
            subject: "u1",
            scopes,
            now,
            access_ttl_secs,
            auth_time: now,
        }
    }

    #[test]
    fn encoded_tokens_verify_and_tampering_is_caught() {
        let (s, now) = (signer(), Timestamp::from_secs(1_700_000_000));
        let scopes = Scopes::parse("openid email").unwrap();
        let i = issue(&scopes, now, 60);
        let t = encode(&s, TYP_ACCESS_TOKEN, &access_token_claims(&i)).unwrap();
        let keys = [s];
        let c = verify(&keys, &t, TYP_ACCESS_TOKEN, "http://x", now).unwrap();
        assert_eq!(c["scope"], "email openid");
        assert_eq!(
            verify(&keys, &t, TYP_JWT, "http://x", now),
            Err(VerifyError::WrongType)
        );
        assert_eq!(
            verify(&keys, &t, TYP_ACCESS_TOKEN, "http://y", now),
            Err(VerifyError::WrongIssuer)
        );
        let later = Timestamp::from_secs(1_700_000_060);
        assert_eq!(
            verify(&keys, &t, TYP_ACCESS_TOKEN, "http://x", later),
            Err(VerifyError::Expired)
        );
        let mut forged = t.clone();
        forged.insert(forged.find('.').unwrap() + 2, 'A');
        assert!(verify(&keys, &forged, TYP_ACCESS_TOKEN, "http://x", now).is_err());
        assert_eq!(
            verify(&keys, "a.b", TYP_ACCESS_TOKEN, "http://x", now),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn rfc7519_4_1_5_tokens_are_not_accepted_before_nbf() {
        let (s, now) = (signer(), Timestamp::from_secs(1_700_000_000));
        let scopes = Scopes::parse("openid").unwrap();
        let i = issue(&scopes, now, 600);
        let claims = access_token_claims(&i);
        assert_eq!(claims["nbf"], claims["iat"]);
        let id = id_token_claims(&i, &UserClaims::default());
        assert_eq!(id["nbf"], id["iat"]);
        let keys = [s];
        let with_nbf = |nbf: Value| {
            let mut c = claims.clone();
            c["nbf"] = nbf;
            encode(&keys[0], TYP_ACCESS_TOKEN, &c).unwrap()
        };
        let verify_at = |t: &str| verify(&keys, t, TYP_ACCESS_TOKEN, "http://x", now);
        assert!(verify_at(&with_nbf(json!(now.as_secs()))).is_ok());
        // A verifier whose clock is a little behind the issuer's still accepts a new token.
        assert!(verify_at(&with_nbf(json!(now.as_secs() + NBF_LEEWAY_SECS))).is_ok());
        assert_eq!(
            verify_at(&with_nbf(json!(now.as_secs() + NBF_LEEWAY_SECS + 1))),
            Err(VerifyError::NotYetValid)
        );
        assert_eq!(
            verify_at(&with_nbf(json!("soon"))),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn id_token_claims_follow_scopes() {
        let now = Timestamp::from_secs(1);
        let user = UserClaims {
            subject: "u1".into(),
            username: "ann".into(),
            name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
        };
        let only_openid = Scopes::parse("openid").unwrap();
        let mut i = Issue {
            issuer: "http://x",
            audience: "http://x",
            client_id: "cli",
            subject: "u1",
            scopes: &only_openid,
            now,
            access_ttl_secs: 60,
            auth_time: now,
        };
        let c = id_token_claims(&i, &user);
        assert!(c.get("email").is_none() && c.get("name").is_none());
        let all = Scopes::parse("openid profile email").unwrap();
        i.scopes = &all;
        let c = id_token_claims(&i, &user);
        assert_eq!(
            (c["email"].as_str(), c["name"].as_str()),
            (Some("ann@example.com"), Some("Ann"))
        );
    }
}
