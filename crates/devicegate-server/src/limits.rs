//! Guessing limits of this instance: wrong user codes per client IP and per signed-in
//! account, a global budget weighed by the codes pending (see `devicegate_core::limits`), and
//! failed sign-ons per IP and per account.
//!
//! Both front-ends of the verification flow (pages and flows API) go through these, so a
//! wrong code costs the same wherever it is typed.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use devicegate_core::Timestamp;
use devicegate_core::limits::{FailureWindow, GuessBudget};

/// Wrong user codes allowed per client IP, and per signed-in account, each minute.
pub const WRONG_CODES_PER_MINUTE: u32 = 10;
/// Failed sign-ons allowed per account, and per client IP, each quarter hour.
pub const FAILED_SIGN_ONS_PER_ACCOUNT: u32 = 10;
pub const FAILED_SIGN_ONS_PER_IP: u32 = 30;
const SIGN_ON_WINDOW: Duration = Duration::from_secs(900);
/// The pending-code count is read from the store at most this often.
const PENDING_CACHE: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Limits {
    codes_by_ip: Mutex<FailureWindow>,
    codes_by_account: Mutex<FailureWindow>,
    budget: Mutex<GuessBudget>,
    sign_ons_by_ip: Mutex<FailureWindow>,
    sign_ons_by_account: Mutex<FailureWindow>,
    pending: Mutex<Option<(Timestamp, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limits {
    /// `code_lifetime` is the longest a user code lives: the budget's window.
    pub fn new(code_lifetime: Duration, code_length: usize) -> Limits {
        let minute = Duration::from_secs(60);
        Limits {
            codes_by_ip: Mutex::new(FailureWindow::new(WRONG_CODES_PER_MINUTE, minute)),
            codes_by_account: Mutex::new(FailureWindow::new(WRONG_CODES_PER_MINUTE, minute)),
            budget: Mutex::new(GuessBudget::new(code_lifetime, code_length)),
            sign_ons_by_ip: Mutex::new(FailureWindow::new(FAILED_SIGN_ONS_PER_IP, SIGN_ON_WINDOW)),
            sign_ons_by_account: Mutex::new(FailureWindow::new(
                FAILED_SIGN_ONS_PER_ACCOUNT,
                SIGN_ON_WINDOW,
            )),
            pending: Mutex::new(None),
        }
    }

    /// The cached number of pending codes, if fresh.
    pub fn cached_pending(&self, now: Timestamp) -> Option<u64> {
        lock(&self.pending).and_then(|(at, n)| (now < at.plus(PENDING_CACHE)).then_some(n))
    }

    pub fn cache_pending(&self, n: u64, now: Timestamp) {
        *lock(&self.pending) = Some((now, n));
    }

    /// `Some(retry_after)` if a code may not be tried now.
    pub fn check_code(
        &self,
        ip: IpAddr,
        account: Option<&str>,
        pending: u64,
        now: Timestamp,
    ) -> Option<Duration> {
        let by_ip = lock(&self.codes_by_ip).check(&ip.to_string(), now);
        let by_account = account.and_then(|a| lock(&self.codes_by_account).check(a, now));
        let global = lock(&self.budget).check(pending, now);
        [by_ip, by_account, global].into_iter().flatten().max()
    }

    /// A code that was no pending code; `blind` when it matched no code at all.
    pub fn record_bad_code(
        &self,
        ip: IpAddr,
        account: Option<&str>,
        blind: bool,
        pending: u64,
        now: Timestamp,
    ) {
        lock(&self.codes_by_ip).record(&ip.to_string(), now);
        if let Some(a) = account {
            lock(&self.codes_by_account).record(a, now);
        }
        if blind {
            lock(&self.budget).record(pending, now);
        }
    }

    pub fn check_sign_on(&self, ip: IpAddr, username: &str, now: Timestamp) -> Option<Duration> {
        let by_ip = lock(&self.sign_ons_by_ip).check(&ip.to_string(), now);
        let by_account = lock(&self.sign_ons_by_account).check(username, now);
        by_ip.max(by_account)
    }

    pub fn record_failed_sign_on(&self, ip: IpAddr, username: &str, now: Timestamp) {
        lock(&self.sign_ons_by_ip).record(&ip.to_string(), now);
        lock(&self.sign_ons_by_account).record(username, now);
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_codes_keep_code_entry_open_with_many_codes_pending() {
        let now = Timestamp::from_secs(1_700_000_000);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let window = Duration::from_secs(600);
        // With 8 characters, one guess among 30,000 pending codes already breaks 2^-20.
        assert!(
            Limits::new(window, 8)
                .check_code(ip, None, 30_000, now)
                .is_some()
        );
        // With 12, a million pending codes still leave room for wrong codes.
        let limits = Limits::new(window, 12);
        for _ in 0..5 {
            assert_eq!(limits.check_code(ip, None, 1_000_000, now), None);
            limits.record_bad_code(ip, None, true, 1_000_000, now);
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let inner: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &[]),
            proxy,
            "no trusted proxies by default"
        );
        assert_eq!(client_ip(proxy, &h, &[proxy]), inner);
        assert_eq!(
            client_ip(proxy, &h, &[proxy, inner]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(client_ip(stranger, &h, &[proxy]), stranger);
    }
}
