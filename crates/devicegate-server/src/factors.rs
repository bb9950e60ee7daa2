//! Second factors for password sign-ins: one-time codes (TOTP, RFC 6238: HMAC-SHA1, 6 digits,
//! 30 s steps, one step of skew either way) and single-use recovery codes.
//!
//! A code is accepted for one time step only, and only for a step later than every step
//! accepted before (`Store::use_totp_step`, one conditional update shared by every instance),
//! so a code seen over someone's shoulder cannot be replayed, even within its window.
//! Recovery codes are stored as hashes and used up atomically.

use devicegate_core::secret::random_bytes;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::TotpEnrolment;
use totp_rs::{Algorithm, TOTP};

/// Seconds in a time step.
pub const STEP_SECS: u64 = 30;
/// Steps either side of now whose codes are accepted (clocks and typing take time).
const SKEW_STEPS: i64 = 1;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;

fn totp(secret: &[u8], issuer: &str, account: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        SKEW_STEPS as u8,
        STEP_SECS,
        secret.to_vec(),
        Some(issuer.to_owned()),
        account.to_owned(),
    )
    .ok()
}

/// A new authenticator secret (160 bits, RFC 4226's recommendation).
pub fn new_secret() -> Vec<u8> {
    random_bytes::<20>().to_vec()
}

/// What the person types into their authenticator app: the secret and its `otpauth://` URI,
/// labelled `issuer` and `account` as the app lists it (a colon there would end the label,
/// so none is kept).
pub fn enrolment(secret: &[u8], issuer: &str, account: &str) -> Option<TotpEnrolment> {
    let t = totp(
        secret,
        &issuer.replace(':', " "),
        &account.replace(':', " "),
    )?;
    Some(TotpEnrolment {
        secret: t.get_secret_base32(),
        uri: t.get_url(),
    })
}

/// The time step `code` is right for at `now`, within the skew; `None` for a wrong code.
/// Every candidate is compared in constant time.
pub fn step_of(secret: &[u8], code: &str, now: Timestamp) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "devicegate", "check")?;
    let now_step = now.as_secs() / STEP_SECS as i64;
    let given = SecretHash::of(code.as_bytes());
    let mut found = None;
    for step in now_step - SKEW_STEPS..=now_step + SKEW_STEPS {
        if step < 0 {
            continue;
        }
        let expected = t.generate(step as u64 * STEP_SECS);
        if SecretHash::of(expected.as_bytes()).matches(&given) {
            found = Some(step);
        }
    }
    found
}

/// Ten new recovery codes, as shown once (`xxxx-xxxx-xxxx-xxxx`: 16 characters of 32, 80
/// bits, so that their unsalted hashes resist guessing even out of a stolen database), and
/// their hashes to store.
pub fn new_recovery_codes() -> (Vec<String>, Vec<SecretHash>) {
    // 32 characters: a byte's low five bits pick one without bias.
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz234567890";
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let raw: Vec<char> = random_bytes::<16>()
                .iter()
                .map(|b| ALPHABET[(*b & 31) as usize] as char)
                .collect();
            raw.chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// The stored form of a recovery code as typed (any case, dashes and spaces ignored).
pub fn recovery_hash(typed: &str) -> SecretHash {
    let norm: String = typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SecretHash::of(format!("devicegate-recovery\0{norm}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_appendix_b_sha1_vector_and_one_step_of_skew() {
        // RFC 6238 Appendix B: secret "12345678901234567890", T = 59 s → 94287082 (8
        // digits); the 6-digit code is its last six.
        let secret = b"12345678901234567890";
        let at = Timestamp::from_millis(59_000);
        assert_eq!(step_of(secret, "287082", at), Some(1));
        assert_eq!(step_of(secret, "287 082", at), Some(1));
        // One step later is still accepted (for step 1); two are not.
        assert_eq!(
            step_of(secret, "287082", Timestamp::from_millis(89_000)),
            Some(1)
        );
        assert_eq!(
            step_of(secret, "287082", Timestamp::from_millis(119_000)),
            None
        );
        assert_eq!(step_of(secret, "000000", at), None);
        assert_eq!(step_of(secret, "28708", at), None);
        assert_eq!(step_of(secret, "abcdef", at), None);
    }

    #[test]
    fn enrolment_uris_label_the_app_entry_even_with_colons() {
        let e = enrolment(
            b"12345678901234567890",
            "devicegate",
            "corp:ann@example.com",
        )
        .unwrap();
        assert!(e.uri.starts_with("otpauth://totp/devicegate:"), "{}", e.uri);
        assert_eq!(e.secret, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn recovery_codes_are_ten_distinct_and_typed_loosely() {
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        assert!(
            codes
                .iter()
                .all(|c| c.len() == 19 && c.matches('-').count() == 3)
        );
        let mut distinct = codes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 10);
        assert_eq!(
            recovery_hash(&codes[0].to_uppercase().replace('-', " ")),
            hashes[0]
        );
    }
}
