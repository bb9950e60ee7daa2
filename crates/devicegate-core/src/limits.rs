//! Limits on guessing: wrong user codes and failed sign-ons, per key (a client IP, an
//! account) and globally.
//!
//! These count failures only and can be checked without counting, so that a request can be
//! refused *before* it is tried: a correct code sent while limited is refused too, and the
//! limit answers nothing about the code. (Request-rate limiters such as governor's GCRA
//! consume a cell on every check, which is the wrong shape for this.)
//!
//! ## The global guessing budget
//!
//! There are `N = 20^8 ≈ 2^34.58` user codes. With `P` codes pending, one blind guess hits
//! one of them with probability `P / N`. Over the lifetime of a code `T`, guesses made at
//! times `t_i` with `P(t_i)` codes pending succeed with probability at most
//! `Σ P(t_i) / N`. Keeping that below `2^-20` means keeping `Σ P(t_i)` over any window of
//! length `T` below `N / 2^20 = 20^8 / 2^20 ≈ 24,414`. So the budget is counted in
//! *pending-code-guesses*: with one code pending about 24,000 wrong codes per lifetime are
//! allowed, with 1,000 pending about 24, with more than 24,414 pending none at all. Each
//! failure is weighed by the number of codes pending when it happened.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::time::Timestamp;
use crate::user_code::{ALPHABET, LENGTH};

/// `N / 2^20` for 8-character codes: the most pending-code-guesses allowed per code lifetime
/// (see module docs).
pub fn guess_budget() -> u64 {
    guess_budget_for(LENGTH)
}

/// `N / 2^20` for codes of `len` characters. Longer codes are how a deployment with more than
/// 24,414 codes pending at once keeps accepting codes: 12 characters allow 3.9·10^9
/// pending-code-guesses per lifetime, some 3,900 wrong codes with a million codes pending.
pub fn guess_budget_for(len: usize) -> u64 {
    (ALPHABET.len() as u64).pow(len as u32) >> 20
}

/// Failures per key in a sliding window.
#[derive(Debug)]
pub struct FailureWindow {
    max: usize,
    window: Duration,
    keys: HashMap<String, VecDeque<Timestamp>>,
}

impl FailureWindow {
    pub fn new(max: u32, window: Duration) -> FailureWindow {
        FailureWindow {
            max: max.max(1) as usize,
            window,
            keys: HashMap::new(),
        }
    }

    fn forget_old(q: &mut VecDeque<Timestamp>, window: Duration, now: Timestamp) {
        while q.front().is_some_and(|t| t.plus(window) <= now) {
            q.pop_front();
        }
    }

    /// `Some(retry_after)` while `key` has used up its failures; counts nothing.
    pub fn check(&mut self, key: &str, now: Timestamp) -> Option<Duration> {
        let q = self.keys.get_mut(key)?;
        Self::forget_old(q, self.window, now);
        if q.len() < self.max {
            return None;
        }
        q.front().map(|oldest| now.until(oldest.plus(self.window)))
    }

    pub fn record(&mut self, key: &str, now: Timestamp) {
        if self.keys.len() > 100_000 {
            let window = self.window;
            self.keys.retain(|_, q| {
                Self::forget_old(q, window, now);
                !q.is_empty()
            });
        }
        let q = self.keys.entry(key.to_owned()).or_default();
        Self::forget_old(q, self.window, now);
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }
}

/// The global budget of wrong codes, weighed by the codes pending at each failure.
#[derive(Debug)]
pub struct GuessBudget {
    window: Duration,
    budget: u64,
    spent: u64,
    failures: VecDeque<(Timestamp, u64)>,
}

impl GuessBudget {
    /// `window` is the longest lifetime a code can have; codes are `code_length` long.
    pub fn new(window: Duration, code_length: usize) -> GuessBudget {
        GuessBudget::with_budget(window, guess_budget_for(code_length))
    }

    pub fn with_budget(window: Duration, budget: u64) -> GuessBudget {
        GuessBudget {
            window,
            budget,
            spent: 0,
            failures: VecDeque::new(),
        }
    }

    fn forget_old(&mut self, now: Timestamp) {
        while let Some(&(t, weight)) = self.failures.front() {
            if t.plus(self.window) > now {
                break;
            }
            self.spent -= weight;
            self.failures.pop_front();
        }
    }

    /// `Some(retry_after)` when one more guess with `pending` codes pending would exceed the
    /// budget; counts nothing.
    pub fn check(&mut self, pending: u64, now: Timestamp) -> Option<Duration> {
        self.forget_old(now);
        if self.spent + pending.max(1) <= self.budget {
            return None;
        }
        // Wait until enough old failures have left the window; at least a second.
        let mut freed = self.budget.saturating_sub(self.spent);
        for &(t, weight) in &self.failures {
            freed += weight;
            if freed >= pending.max(1) {
                return Some(now.until(t.plus(self.window)).max(Duration::from_secs(1)));
            }
        }
        Some(self.window)
    }

    pub fn record(&mut self, pending: u64, now: Timestamp) {
        self.forget_old(now);
        let weight = pending.max(1);
        self.spent += weight;
        self.failures.push_back((now, weight));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn the_budget_keeps_the_guessing_chance_below_2_to_the_minus_20() {
        let n = 20f64.powi(8);
        assert_eq!(guess_budget(), 24_414);
        assert_eq!(guess_budget_for(12), 3_906_250_000);
        // The budget spent at the worst moment: every failure with P pending.
        for pending in [1u64, 10, 1000, 24_414] {
            let guesses = guess_budget() / pending;
            let chance = guesses as f64 * pending as f64 / n;
            assert!(chance <= 2f64.powi(-20), "{pending}: {chance}");
        }
    }

    #[test]
    fn failure_window_limits_after_max_and_forgets_in_time() {
        let mut w = FailureWindow::new(3, Duration::from_secs(60));
        for i in 0..3 {
            assert_eq!(w.check("ip", t(i)), None);
            w.record("ip", t(i));
        }
        assert_eq!(w.check("ip", t(10)), Some(Duration::from_secs(50)));
        assert_eq!(w.check("other", t(10)), None, "keys are separate");
        assert_eq!(
            w.check("ip", t(60)),
            None,
            "the first failure left the window"
        );
    }

    #[test]
    fn guess_budget_weighs_failures_by_pending_codes() {
        let mut b = GuessBudget::with_budget(Duration::from_secs(600), 100);
        b.record(60, t(0));
        assert_eq!(b.check(40, t(1)), None);
        b.record(40, t(1));
        assert_eq!(b.check(1, t(2)), Some(Duration::from_secs(598)));
        assert_eq!(b.check(1, t(600)), None, "the first failure expired");
    }
}
