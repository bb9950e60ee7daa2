//! Scopes (RFC 6749 §3.3): a space-delimited set of scope tokens.

use std::collections::BTreeSet;

/// The scopes devicegate gives meaning to.
pub const OPENID: &str = "openid";
pub const PROFILE: &str = "profile";
pub const EMAIL: &str = "email";
pub const OFFLINE_ACCESS: &str = "offline_access";
pub const KNOWN: [&str; 4] = [OPENID, PROFILE, EMAIL, OFFLINE_ACCESS];

/// A set of scope tokens, kept in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, separated by spaces.
    pub fn parse(s: &str) -> Option<Scopes> {
        let mut set = BTreeSet::new();
        for token in s.split(' ') {
            if token.is_empty() {
                continue;
            }
            let ok = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return None;
            }
            set.insert(token.to_owned());
        }
        Some(Scopes(set))
    }

    pub fn contains(&self, s: &str) -> bool {
        self.0.contains(s)
    }

    pub fn is_subset(&self, of: &Scopes) -> bool {
        self.0.is_subset(&of.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    /// Scopes of `self` not in `allowed`.
    pub fn not_in<'a>(&'a self, allowed: &'a Scopes) -> impl Iterator<Item = &'a str> {
        self.0.difference(&allowed.0).map(String::as_str)
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sorted_without_duplicates() {
        let s = Scopes::parse("profile openid  profile").unwrap();
        assert_eq!(s.to_string(), "openid profile");
        assert!(Scopes::parse("bad\"quote").is_none());
        assert!(Scopes::parse("tab\there").is_none());
    }

    #[test]
    fn subset_and_difference() {
        let allowed = Scopes::parse("openid profile").unwrap();
        let asked = Scopes::parse("openid admin").unwrap();
        assert!(!asked.is_subset(&allowed));
        assert_eq!(asked.not_in(&allowed).collect::<Vec<_>>(), ["admin"]);
    }
}
