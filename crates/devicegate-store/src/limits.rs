//! Shared limits: leaky buckets that every instance on one store draws from.
//!
//! A bucket is the generic cell rate algorithm (GCRA) kept as one number per key, its
//! *theoretical arrival time* `tat` in milliseconds. A take of `cost` milliseconds from a
//! bucket of `capacity` milliseconds succeeds when `max(tat, now) + cost - now <= capacity`,
//! and then moves `tat` there. So a bucket admits `capacity / cost` takes at once and refills
//! at one take per `cost`: "10 failures per 15 minutes" is `capacity` 15 min, `cost` 90 s.
//! In any window of length `capacity` it admits at most twice its burst; callers that need a
//! hard bound per window (the guessing budget) halve the burst.
//!
//! The take is atomic and all-or-nothing over the takes of one call, on every backend: a
//! burst of parallel requests cannot slip past a limit between a check and a count, on one
//! instance or many (SQLite: one mutex in the owning process; PostgreSQL: one conditional
//! upsert, every instance on the same rows).

use std::time::Duration;

use devicegate_core::Timestamp;

/// One draw from the bucket `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitTake {
    pub key: String,
    /// Milliseconds of the bucket this take uses (at least 1).
    pub cost_ms: i64,
    /// The bucket's size in milliseconds: its refill period.
    pub capacity_ms: i64,
    /// `false` records the take without ever refusing it (counted, never refused).
    pub enforce: bool,
}

impl LimitTake {
    /// A bucket admitting `burst` takes at once, refilled at `burst` per `period`.
    pub fn per(key: String, burst: u32, period: Duration) -> LimitTake {
        let capacity_ms = (period.as_millis() as i64).max(1);
        LimitTake {
            key,
            cost_ms: (capacity_ms / i64::from(burst.max(1))).max(1),
            capacity_ms,
            enforce: true,
        }
    }

    /// Counted, never refused.
    pub fn recorded_only(mut self) -> LimitTake {
        self.enforce = false;
        self
    }

    /// The new `tat` if this take fits a bucket at `tat`, else how long until it would. A
    /// recorded-only take fills the bucket at most to the brim: however many are recorded,
    /// the bucket empties again within its capacity.
    pub fn apply(&self, tat: Option<i64>, now: i64) -> Result<i64, Duration> {
        let next = tat.unwrap_or(now).max(now).saturating_add(self.cost_ms);
        let over = next.saturating_sub(now).saturating_sub(self.capacity_ms);
        if !self.enforce {
            return Ok(next.min(now.saturating_add(self.capacity_ms)));
        }
        if over > 0 {
            return Err(Duration::from_millis(over as u64));
        }
        Ok(next)
    }
}

/// The answer to a call of takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Every take was made.
    Admitted,
    /// None was made: `refused` lists the indices of the takes that did not fit, and
    /// `retry_after` is when the last of them would.
    Refused {
        refused: Vec<usize>,
        retry_after: Duration,
    },
}

impl Admission {
    pub fn is_admitted(&self) -> bool {
        matches!(self, Admission::Admitted)
    }
}

/// Buckets in this process's memory, for a backend whose data one process owns (SQLite).
#[derive(Debug, Default)]
pub(crate) struct LocalBuckets {
    tats: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl LocalBuckets {
    pub(crate) fn take(&self, takes: &[LimitTake], now: Timestamp) -> Admission {
        let now = now.as_millis();
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Vec::with_capacity(takes.len());
        let mut refused = Vec::new();
        let mut retry_after = Duration::ZERO;
        for (i, t) in takes.iter().enumerate() {
            match t.apply(tats.get(&t.key).copied(), now) {
                Ok(tat) => next.push(tat),
                Err(wait) => {
                    refused.push(i);
                    retry_after = retry_after.max(wait);
                }
            }
        }
        if !refused.is_empty() {
            return Admission::Refused {
                refused,
                retry_after,
            };
        }
        for (t, tat) in takes.iter().zip(next) {
            tats.insert(t.key.clone(), tat);
        }
        Admission::Admitted
    }

    pub(crate) fn give_back(&self, takes: &[LimitTake]) {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        for t in takes {
            if let Some(tat) = tats.get_mut(&t.key) {
                *tat -= t.cost_ms;
            }
        }
    }

    /// Forgets buckets that are full again: they hold nothing a new bucket would not.
    pub(crate) fn sweep(&self, now: Timestamp) -> u64 {
        let mut tats = self.tats.lock().unwrap_or_else(|p| p.into_inner());
        let before = tats.len();
        tats.retain(|_, tat| *tat > now.as_millis());
        (before - tats.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_one_per_cost() {
        let b = LocalBuckets::default();
        let take = LimitTake::per("k".into(), 3, Duration::from_secs(30));
        let t0 = Timestamp::from_millis(1_000_000);
        for _ in 0..3 {
            assert!(b.take(std::slice::from_ref(&take), t0).is_admitted());
        }
        assert_eq!(
            b.take(std::slice::from_ref(&take), t0),
            Admission::Refused {
                refused: vec![0],
                retry_after: Duration::from_secs(10)
            }
        );
        let later = Timestamp::from_millis(1_010_000);
        assert!(b.take(std::slice::from_ref(&take), later).is_admitted());
    }

    #[test]
    fn takes_are_all_or_nothing_and_can_be_given_back() {
        let b = LocalBuckets::default();
        let t0 = Timestamp::from_millis(1_000_000);
        let small = LimitTake::per("small".into(), 1, Duration::from_secs(60));
        let big = LimitTake::per("big".into(), 10, Duration::from_secs(60));
        assert!(b.take(&[small.clone(), big.clone()], t0).is_admitted());
        // `small` is spent, so `big` is not drawn either.
        assert!(!b.take(&[big.clone(), small.clone()], t0).is_admitted());
        b.give_back(&[small.clone(), big.clone()]);
        assert!(
            b.take(&[small, big.clone().recorded_only()], t0)
                .is_admitted()
        );
        // Recorded takes never push a bucket past its brim.
        for _ in 0..1000 {
            assert!(b.take(&[big.clone().recorded_only()], t0).is_admitted());
        }
        let later = Timestamp::from_millis(1_000_000 + 60_000);
        assert!(
            b.take(&[big], later).is_admitted(),
            "empty again after its capacity"
        );
    }
}
