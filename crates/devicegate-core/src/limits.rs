//! The guessing bound, and the code lengths that keep it without refusing honest people.
//!
//! RFC 8628 §5.1: the chance that any pending code is guessed during its lifetime `T` must be
//! at most 2^-20. A guess of length `L` (the alphabet has 20 letters) hits one of the `P_L`
//! pending codes of that length with chance `P_L / 20^L`. Counted in units of `20^-12`, a
//! guess weighs `w = P_L · 20^(12-L)` and the guesses of any window `T` must weigh at most
//! `B = 20^12 / 2^20 = 3,906,250,000`. The budget is a bucket of capacity `T` where a guess
//! costs `w · 2T / B`: a bucket admits at most twice its capacity in any window of its
//! length, so the guesses of any window `T` weigh at most `B`.
//!
//! New codes grow longer as codes pile up, so that the budget is never spent by honest
//! traffic: a code gets the shortest length `L` (from `user_code_length`, 8 by default) whose
//! pending codes number fewer than `cap_L = 20^L / 2^20 / G`, with `G` = 1,000 guesses per
//! lifetime. Then every guess weighs at most `B / G`, so whatever is pending the budget takes
//! 500 wrong codes at once and 500 more each lifetime (`G` per window at most): `cap_8` = 24, `cap_9` = 488, `cap_10` = 9,765,
//! `cap_11` = 195,312, `cap_12` = 3,906,250. Past that (or with a stale count) guesses weigh
//! more and the budget holds them back. When the budget is spent, anonymous code entry
//! pauses: people who sign in first still enter codes, limited per account, and their wrong
//! codes are counted in the budget without being refused by it.

use std::time::Duration;

use crate::user_code::{ALPHABET, LENGTH, MAX_LENGTH, UserCode};

/// `G`: wrong codes each code lifetime can take at worst (module docs).
pub const GUESSES_PER_LIFETIME: u64 = 1_000;
/// `B = 20^12 / 2^20`: the weight of all guesses allowed per lifetime, in units of `20^-12`.
const BUDGET: u128 = 3_906_250_000;

/// `cap_L`: pending codes of `len` characters before new codes get longer.
pub fn length_cap(len: usize) -> u64 {
    (ALPHABET.len() as u64).pow(len as u32) / (1 << 20) / GUESSES_PER_LIFETIME
}

/// The length of the next code: the shortest from `min` whose pending codes
/// (`pending_of_length`) are under their cap; the longest when all are full.
pub fn code_length(min: usize, pending_of_length: impl Fn(usize) -> u64) -> usize {
    (min.clamp(LENGTH, MAX_LENGTH)..=MAX_LENGTH)
        .find(|&len| pending_of_length(len) < length_cap(len))
        .unwrap_or(MAX_LENGTH)
}

/// What one guess of `code`, with `pending` codes of its length pending, costs the budget
/// bucket of capacity `lifetime`: `w · 2T / B` milliseconds, rounded up. At least one code is
/// assumed pending, since a count may lag.
pub fn guess_cost_ms(code: &UserCode, pending: u64, lifetime: Duration) -> i64 {
    let len = code.canonical().len();
    let weight = u128::from(pending.max(1)) * 20u128.pow(MAX_LENGTH.saturating_sub(len) as u32);
    let cost = (weight * 2 * lifetime.as_millis()).div_ceil(BUDGET);
    cost.min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_keep_every_guess_under_its_share_of_2_to_the_minus_20() {
        assert_eq!(
            (8..=12).map(length_cap).collect::<Vec<_>>(),
            [24, 488, 9_765, 195_312, 3_906_250]
        );
        for len in 8..=12 {
            // A guess among a full length's codes: chance cap / 20^len.
            let chance = length_cap(len) as f64 / 20f64.powi(len as i32);
            let share = 2f64.powi(-20) / GUESSES_PER_LIFETIME as f64;
            assert!(chance <= share, "{len}: {chance} > {share}");
        }
    }

    #[test]
    fn codes_grow_longer_as_codes_pile_up() {
        assert_eq!(code_length(8, |_| 0), 8);
        assert_eq!(code_length(8, |l| if l == 8 { 23 } else { 0 }), 8);
        assert_eq!(code_length(8, |l| if l == 8 { 24 } else { 0 }), 9);
        assert_eq!(code_length(10, |_| 0), 10, "the configured minimum");
        assert_eq!(code_length(8, length_cap), 12);
    }

    #[test]
    fn the_budget_admits_the_guesses_of_g_per_lifetime_and_no_more() {
        // With every length full, a guess weighs B / G: the bucket (capacity T, admitting
        // at most 2T of cost per window T) lets at most G through per lifetime.
        let t = Duration::from_secs(600);
        for len in 8..=12 {
            let code = UserCode::generate_len(len);
            let cost = guess_cost_ms(&code, length_cap(len), t);
            let fit = (2 * t.as_millis() as i64 / cost) as f64;
            assert!(fit >= GUESSES_PER_LIFETIME as f64 * 0.99, "{len}: {fit}");
            let chance = fit * length_cap(len) as f64 / 20f64.powi(len as i32);
            assert!(chance <= 2f64.powi(-20), "{len}: {chance}");
        }
        // 3,000 pending 8-character codes (the finding's flood, were codes not to grow) would
        // leave room for 8 guesses of that length per lifetime, not 1,000.
        let code = UserCode::generate_len(8);
        assert_eq!(2 * t.as_millis() as i64 / guess_cost_ms(&code, 3_000, t), 8);
    }
}
