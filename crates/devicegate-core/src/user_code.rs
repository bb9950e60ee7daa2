//! User codes: what a person types from the device's screen.
//!
//! 8 characters of `BCDFGHJKLMNPQRSTVWXZ` (RFC 8628 §6.1: no vowels, so no words; no digits
//! or look-alikes), shown as `XXXX-XXXX`, typed in any case, with or without dash or spaces.
//! 20^8 ≈ 2^34.6 codes. Deployments with very many codes pending at once need more entropy
//! per code (see `limits`): the length is configurable from 8 to 12 (`XXXX-XXXX-XXXX`).

use crate::secret::random_bytes;

pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// The default length, and the shortest allowed.
pub const LENGTH: usize = 8;
/// The longest allowed length.
pub const MAX_LENGTH: usize = 12;

/// A user code in canonical form: 8 upper-case alphabet characters, no dash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserCode(String);

impl UserCode {
    /// Uniformly random over the alphabet, by rejection sampling of OS RNG bytes.
    pub fn generate() -> UserCode {
        Self::generate_len(LENGTH)
    }

    /// A code of `len` characters (clamped to 8–12).
    pub fn generate_len(len: usize) -> UserCode {
        let len = len.clamp(LENGTH, MAX_LENGTH);
        let mut out = String::with_capacity(len);
        while out.len() < len {
            for b in random_bytes::<16>() {
                // 240 = 12 × 20: bytes at or above it would bias the first characters.
                if b < 240 && out.len() < len {
                    out.push(ALPHABET[(b % 20) as usize] as char);
                }
            }
        }
        UserCode(out)
    }

    /// Accepts any case, dashes and whitespace, and any length from 8 to 12; refuses anything
    /// else.
    pub fn parse(input: &str) -> Option<UserCode> {
        let mut out = String::with_capacity(MAX_LENGTH);
        for c in input.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let c = c.to_ascii_uppercase();
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) || out.len() == MAX_LENGTH {
                return None;
            }
            out.push(c);
        }
        (out.len() >= LENGTH).then_some(UserCode(out))
    }

    /// A code as it arrived to be filled in (a link's `user_code`), made safe to put back in
    /// a page or a URL: its display form when it is a code, else only letters, digits and
    /// dashes, at most 16, for the person to correct. The one rule for every surface that
    /// carries a code along.
    pub fn prefill(input: &str) -> String {
        match UserCode::parse(input) {
            Some(code) => code.display(),
            None => input
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(16)
                .collect(),
        }
    }

    /// Trusted input, such as a value read back from storage.
    pub fn from_canonical(s: String) -> UserCode {
        UserCode(s)
    }

    pub fn canonical(&self) -> &str {
        &self.0
    }

    /// `XXXX-XXXX`; `XXXX-XXXX-XXXX` for 12; two halves for other lengths.
    pub fn display(&self) -> String {
        if self.0.len() == 12 {
            let (a, rest) = self.0.split_at(4);
            let (b, c) = rest.split_at(4);
            return format!("{a}-{b}-{c}");
        }
        let (a, b) = self.0.split_at(self.0.len() / 2);
        format!("{a}-{b}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_case_dash_and_spaces() {
        let c = UserCode::parse(" bcdf ghjk ").unwrap();
        assert_eq!(c.canonical(), "BCDFGHJK");
        assert_eq!(c.display(), "BCDF-GHJK");
        assert_eq!(UserCode::parse("bcdf-GHJK"), Some(c));
    }

    #[test]
    fn prefill_normalises_codes_and_strips_anything_else() {
        assert_eq!(UserCode::prefill("bcdf ghjk"), "BCDF-GHJK");
        assert_eq!(UserCode::prefill("bcdf\"><script>"), "bcdfscript");
        assert_eq!(UserCode::prefill(&"A".repeat(40)).len(), 16);
    }

    #[test]
    fn parse_refuses_other_characters_and_lengths() {
        for bad in [
            "BCDF-GHJA",
            "BCDF-GHJ",
            "BCDF-GHJK-LMNPQ",
            "",
            "BCDF_GHJK",
            "ВCDF-GHJK",
        ] {
            assert_eq!(UserCode::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_codes_use_the_alphabet_evenly() {
        let mut counts = [0u32; 20];
        for _ in 0..2000 {
            let c = UserCode::generate();
            assert_eq!(UserCode::parse(&c.display()).as_ref(), Some(&c));
            for b in c.canonical().bytes() {
                counts[ALPHABET.iter().position(|&a| a == b).unwrap()] += 1;
            }
        }
        // 16000 draws, 800 expected per letter; a biased generator falls far outside.
        assert!(
            counts.iter().all(|&n| (650..950).contains(&n)),
            "{counts:?}"
        );
    }
}

#[cfg(test)]
mod length_tests {
    use super::*;

    #[test]
    fn longer_codes_generate_parse_and_group_in_fours() {
        let c = UserCode::generate_len(12);
        assert_eq!(c.canonical().len(), 12);
        let shown = c.display();
        assert_eq!(
            (shown.len(), &shown[4..5], &shown[9..10]),
            (14, "-", "-"),
            "{shown}"
        );
        assert_eq!(UserCode::parse(&shown.to_lowercase()), Some(c));
        assert_eq!(
            UserCode::generate_len(99).canonical().len(),
            MAX_LENGTH,
            "clamped"
        );
    }
}
