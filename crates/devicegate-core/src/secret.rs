//! Secrets (device codes, refresh tokens, flow ids, client secrets) and their hashes.
//!
//! A secret is generated from the operating system's RNG with a recognisable prefix (so
//! secret scanners can spot a leaked one), handed to its owner once, and stored only as its
//! SHA-256 hash. The secrets are 256 random bits, so an unsalted fast hash is enough: there
//! is nothing to brute-force. Hashes are compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// Prefixes make each kind of secret recognisable in logs, pastes and scanners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    DeviceCode,
    RefreshToken,
    FlowId,
    ClientSecret,
    /// A browser session of the verification pages.
    BrowserSession,
    /// A sign-on kept for the flows API (`session.resume`).
    ApiSession,
    /// Marks a browser that signed in to an account before (strangers' failures do not slow
    /// its sign-ins).
    KnownBrowser,
    /// The `state` of a round trip to an upstream OpenID provider.
    UpstreamState,
    /// Binds a round trip to an upstream provider to the browser that started it (a cookie).
    UpstreamBinding,
    /// A one-time link an operator gives a person to set up a passkey without a password.
    EnrolmentLink,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            SecretKind::DeviceCode => "dgd_",
            SecretKind::RefreshToken => "dgr_",
            SecretKind::FlowId => "dgf_",
            SecretKind::ClientSecret => "dgs_",
            SecretKind::BrowserSession => "dgb_",
            SecretKind::ApiSession => "dga_",
            SecretKind::KnownBrowser => "dgk_",
            SecretKind::UpstreamState => "dgo_",
            SecretKind::UpstreamBinding => "dgn_",
            SecretKind::EnrolmentLink => "dge_",
        }
    }
}

/// A secret value. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// 256 bits from the OS RNG, base64url, behind the kind's prefix.
    pub fn generate(kind: SecretKind) -> Secret {
        let bytes = random_bytes::<32>();
        Secret(format!(
            "{}{}",
            kind.prefix(),
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// A device code that names its grant: `dgd_<grant id>.<256 random bits>`. The grant id
    /// (not secret) lets the store find the grant by its primary key; the whole code's
    /// SHA-256 is still what is stored and compared, in constant time. No index of random
    /// hashes is needed, which saves a random page write per device authorization.
    pub fn device_code(grant_id: &str) -> Secret {
        let bytes = random_bytes::<32>();
        Secret(format!(
            "{}{grant_id}.{}",
            SecretKind::DeviceCode.prefix(),
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// The grant id a presented device code carries (see [`Secret::device_code`]), if it has
    /// the shape of one; `None` for codes without (issued before device codes named their grant).
    pub fn device_code_selector(presented: &str) -> Option<&str> {
        let (id, secret) = presented
            .strip_prefix(SecretKind::DeviceCode.prefix())?
            .split_once('.')?;
        let ordered = id.len() == ORDERED_ID_LEN
            && id.bytes().take(12).all(|b| b.is_ascii_hexdigit())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (ordered && secret.len() == 43).then_some(id)
    }

    /// Wraps a secret presented by a caller.
    pub fn from_presented(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(self.0.as_bytes())
    }
}

/// SHA-256 of a secret: the only form in which secrets are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

impl SecretHash {
    pub fn of(bytes: &[u8]) -> SecretHash {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        SecretHash(out)
    }

    pub fn from_bytes(b: &[u8]) -> Option<SecretHash> {
        b.try_into().ok().map(SecretHash)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Bytes from the operating system's RNG.
///
/// # Panics
/// When the OS RNG is unavailable; there is no safe way to go on without it.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's RNG is unavailable");
    b
}

/// A random identifier (for records and JWT ids), 128 bits base64url.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// A unique identifier that sorts by creation time: the milliseconds since the epoch in 12
/// hex digits, then 96 random bits base64url. For records inserted at a high rate: a
/// database index of these grows at its right edge instead of at random pages. Not a secret
/// (it tells when the record was made).
/// Characters in an [`ordered_id`].
pub const ORDERED_ID_LEN: usize = 28;

pub fn ordered_id(now: crate::Timestamp) -> String {
    let ms = now.as_millis().clamp(0, 0xffff_ffff_ffff);
    format!("{ms:012x}{}", URL_SAFE_NO_PAD.encode(random_bytes::<12>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_ids_sort_by_time_and_differ_within_a_millisecond() {
        let t = crate::Timestamp::from_millis(1_800_000_000_000);
        let later = crate::Timestamp::from_millis(1_800_000_000_001);
        let (a, b, c) = (ordered_id(t), ordered_id(t), ordered_id(later));
        assert_ne!(a, b);
        assert!(a < c && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), ORDERED_ID_LEN);
    }

    #[test]
    fn device_codes_name_their_grant_and_nothing_else_passes_for_one() {
        let id = ordered_id(crate::Timestamp::from_millis(1_800_000_000_000));
        let code = Secret::device_code(&id);
        assert_eq!(
            Secret::device_code_selector(code.expose()),
            Some(id.as_str())
        );
        assert_ne!(code.hash(), Secret::device_code(&id).hash());
        let legacy = Secret::generate(SecretKind::DeviceCode);
        for bad in [
            legacy.expose().to_owned(),
            format!("dgd_{id}"),
            format!("dgd_{id}."),
            format!("dgr_{}", &code.expose()[4..]),
            format!("dgd_{}.{}", "g1", &code.expose()[33..]),
            format!("dgd_{}%.{}", &id[..27], &code.expose()[33..]),
        ] {
            assert_eq!(Secret::device_code_selector(&bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_secrets_are_prefixed_unique_and_hidden() {
        let a = Secret::generate(SecretKind::DeviceCode);
        let b = Secret::generate(SecretKind::DeviceCode);
        assert!(a.expose().starts_with("dgd_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Secret(***)");
        assert!(a.hash().matches(&Secret::from_presented(a.expose()).hash()));
        assert!(!a.hash().matches(&b.hash()));
    }
}
