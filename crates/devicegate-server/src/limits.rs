//! Every limit on abuse, in one place, drawn from buckets the store shares between instances
//! (`devicegate_store::limits`): N instances allow no more than one.
//!
//! | what | bucket | default |
//! |---|---|---|
//! | new device codes per source address | `pend:ip:{tenant}:{ip}` | `max_pending_codes_per_address` per code lifetime |
//! | new device codes per client | `pend:client:{tenant}:{client}` | `max_pending_codes_per_client` per code lifetime |
//! | verification flows per address | `flow:ip:{ip}` | `max_flows_per_address` per flow lifetime |
//! | browser sessions stored per address | `session:ip:{ip}` | `max_flows_per_address` per flow lifetime |
//! | upstream sign-ins started or called back per address | `upstream:ip:{ip}` | `max_flows_per_address` per flow lifetime |
//! | wrong user codes per address, per signed-in account | `code:ip:{ip}`, `code:acct:{user}` | 10 a minute |
//! | guessing budget (anonymous code entry) | `code:guess` | weighed, see below |
//! | failed sign-ons per account from one address | `signon:acct-ip:{tenant}/{name}:{ip}` | 10 per quarter hour |
//! | failed sign-ons per address | `signon:ip:{ip}` | 30 per quarter hour |
//! | failed sign-ons per account, any address | `signon:acct:{tenant}/{name}` | 50 at once, then one per 30 s |
//! | failed sign-ons of a browser known to the account (instead of the three above) | `signon:known:{mark}` | 10 per quarter hour |
//! | failed passkey assertions per address (with failed sign-ons) | `signon:ip:{ip}` | 30 per quarter hour |
//!
//! The two caps on device codes are drawn by each instance in leases of 1% when that is at
//! least two codes (a client's 10,000 by default; an address's 20 is drawn code by code).
//!
//! Attempts are paid for *before* they are tried, in one atomic draw, and the draw is given
//! back when the attempt was right: a burst of parallel attempts gets exactly the bucket's
//! size through, and a right answer costs nothing. Failures from one address lock only that
//! address out of an account; failures from everywhere slow the account to one attempt per
//! 30 s instead of locking it, and a browser that signed in to the account before counts
//! only its own failures (OWASP: throttle, don't lock).
//!
//! The count of pending codes by length that picks a new code's length is this instance's:
//! the store's count, re-read in the background at most once a second (`PENDING_CACHE`),
//! plus the codes issued here since.
//!
//! The guessing bound and how code lengths keep it: `devicegate_core::limits`.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use devicegate_core::Timestamp;
use devicegate_core::limits::guess_cost_ms;
use devicegate_core::user_code::{LENGTH, MAX_LENGTH, UserCode};
use devicegate_store::{Admission, LimitTake, PendingCodes, StoreError};

use crate::AppState;

/// Wrong user codes allowed per client IP, and per signed-in account, each minute.
pub const WRONG_CODES_PER_MINUTE: u32 = 10;
/// Failed sign-ons allowed per account from one address, and per address, each quarter hour.
pub const FAILED_SIGN_ONS_PER_ACCOUNT_AND_ADDRESS: u32 = 10;
pub const FAILED_SIGN_ONS_PER_ADDRESS: u32 = 30;
const SIGN_ON_WINDOW: Duration = Duration::from_secs(900);
/// Failures from anywhere against one account: this many at once, then one per 30 s. Above
/// the per-address limit, so that one address alone never slows the account for others.
pub const ACCOUNT_THROTTLE_BURST: u32 = 50;
const ACCOUNT_THROTTLE_WINDOW: Duration = Duration::from_secs(1500);
/// The pending-code count is read from the store at most this often.
const PENDING_CACHE: Duration = Duration::from_secs(1);

/// The configurable caps; 0 switches one off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    pub max_pending_codes_per_address: u32,
    pub max_pending_codes_per_client: u32,
    pub max_flows_per_address: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_pending_codes_per_address: 20,
            max_pending_codes_per_client: 10_000,
            max_flows_per_address: 100,
        }
    }
}

/// Why an attempt was refused before it was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
    /// Only the guessing budget refused: code entry is open to people who sign in first.
    pub sign_on_first: bool,
}

/// An attempt paid for; `refund` when it turned out right.
#[must_use]
#[derive(Debug)]
pub struct Paid {
    takes: Vec<LimitTake>,
}

impl Paid {
    /// Gives back every draw: the attempt was right and counts for nothing.
    pub async fn refund(self, state: &AppState) {
        give_back(state, &self.takes).await;
    }

    /// Gives back the draws on keys starting with `prefix`.
    pub async fn refund_only(self, state: &AppState, prefix: &str) {
        let back: Vec<LimitTake> = self
            .takes
            .into_iter()
            .filter(|t| t.key.starts_with(prefix))
            .collect();
        give_back(state, &back).await;
    }
}

async fn give_back(state: &AppState, takes: &[LimitTake]) {
    if takes.is_empty() {
        return;
    }
    if let Err(e) = state.store.give_back_limits(takes).await {
        // A draw not given back only counts one more failure against the caller.
        tracing::warn!(error = %e, "could not give back a limit draw");
    }
}

async fn draw(
    state: &AppState,
    takes: Vec<LimitTake>,
    now: Timestamp,
    budget_at: Option<usize>,
) -> Result<Result<Paid, Refused>, StoreError> {
    if takes.is_empty() {
        return Ok(Ok(Paid { takes }));
    }
    match state.store.take_limits(&takes, now).await? {
        Admission::Admitted => Ok(Ok(Paid { takes })),
        Admission::Refused {
            refused,
            retry_after,
        } => Ok(Err(Refused {
            retry_after: retry_after.max(Duration::from_secs(1)),
            sign_on_first: budget_at.is_some_and(|i| refused == [i]),
        })),
    }
}

/// This instance's view of how many codes are pending: the store's count, at most a second
/// old, plus the codes this instance issued since.
///
/// It also holds leases: draws of many takes at once from a large shared bucket, spent here
/// one take at a time (see `pay_for_device_code`).
#[derive(Debug, Default)]
pub struct Limits {
    read: Mutex<Option<(Timestamp, PendingCodes)>>,
    issued_since: [AtomicU64; MAX_LENGTH - LENGTH + 1],
    /// The longest lifetime of a code this instance issued (milliseconds).
    longest_issued_ms: AtomicI64,
    refreshing: AtomicBool,
    leases: Mutex<std::collections::HashMap<String, Lease>>,
    /// Held while leases are drawn, so that concurrent requests wait for one draw instead of
    /// each drawing a lease of their own.
    refill: tokio::sync::Mutex<()>,
}

/// Takes drawn from a shared bucket ahead of use: `left` may be spent here until `until`,
/// and what is left then goes back to the bucket.
#[derive(Debug, Clone)]
struct Lease {
    left: u32,
    until: Timestamp,
    take: LimitTake,
}

/// What a lease said to one more take.
enum Spend {
    Spent,
    Missing,
    /// The lease ran out of time: these are its takes to give back.
    Lapsed(LimitTake),
}

/// A cap on device codes is drawn in leases of a hundredth of it: a popular client's cap
/// costs the shared store one write per hundred codes, not one per code.
const LEASE_DIVISOR: u32 = 100;
/// A lease lapses after this, and its unspent takes are given back (until then they count:
/// a lease can only make a cap refuse sooner, never admit more).
const LEASE_TTL: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Limits {
    fn with_issued(&self, mut counts: PendingCodes) -> PendingCodes {
        for (i, n) in self.issued_since.iter().enumerate() {
            counts.by_length[i] += n.load(Ordering::Relaxed);
        }
        counts
    }

    fn issued_so_far(&self) -> [u64; MAX_LENGTH - LENGTH + 1] {
        std::array::from_fn(|i| self.issued_since[i].load(Ordering::Relaxed))
    }

    /// Keeps a count read from the store; `before` is what this instance had issued when the
    /// read began (codes issued during the read may be counted twice, never not at all).
    fn store_read(
        &self,
        counts: PendingCodes,
        before: [u64; MAX_LENGTH - LENGTH + 1],
        now: Timestamp,
    ) {
        *lock(&self.read) = Some((now, counts));
        for (n, b) in self.issued_since.iter().zip(before) {
            n.fetch_sub(b, Ordering::Relaxed);
        }
    }

    /// Puts back a take spent from `key`'s lease for a request that was refused after all.
    fn unspend_lease(&self, key: &str) {
        if let Some(l) = lock(&self.leases).get_mut(key) {
            l.left += 1;
        }
    }

    /// Spends one take of `key`'s lease, if it has one left.
    fn spend_lease(&self, key: &str, now: Timestamp) -> Spend {
        let mut leases = lock(&self.leases);
        let Some(l) = leases.get_mut(key) else {
            return Spend::Missing;
        };
        if now < l.until && l.left > 0 {
            l.left -= 1;
            return Spend::Spent;
        }
        let l = leases.remove(key).expect("looked up above");
        // Long lapsed: the bucket has refilled since, and taking the takes back now would
        // take back other instances' takes.
        if l.left == 0 || now >= l.until.plus(LEASE_TTL) {
            return Spend::Missing;
        }
        Spend::Lapsed(LimitTake {
            cost_ms: l.take.cost_ms.saturating_mul(i64::from(l.left)),
            ..l.take
        })
    }

    fn keep_lease(&self, take: LimitTake, left: u32, now: Timestamp) {
        let mut leases = lock(&self.leases);
        leases.insert(
            take.key.clone(),
            Lease {
                left,
                until: now.plus(LEASE_TTL),
                take,
            },
        );
    }

    /// A code of `len` characters, living `lifetime`, was issued here.
    pub fn issued(&self, len: usize, lifetime: Duration) {
        self.longest_issued_ms
            .fetch_max(lifetime.as_millis() as i64, Ordering::Relaxed);
        if let Some(n) = len
            .checked_sub(LENGTH)
            .and_then(|i| self.issued_since.get(i))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Pending codes by length: a stale count is refreshed in the background, so only the very
/// first read of a process waits for the store.
pub async fn pending(state: &AppState, now: Timestamp) -> Result<PendingCodes, StoreError> {
    let limits = &state.limits;
    let cached = *lock(&limits.read);
    match cached {
        Some((at, counts)) => {
            if now >= at.plus(PENDING_CACHE) && !limits.refreshing.swap(true, Ordering::AcqRel) {
                let state = state.clone();
                tokio::spawn(async move {
                    let now = crate::now();
                    let before = state.limits.issued_so_far();
                    match state.store.count_pending_grants(now).await {
                        Ok(c) => state.limits.store_read(c, before, now),
                        Err(e) => tracing::warn!(error = %e, "could not count pending codes"),
                    }
                    state.limits.refreshing.store(false, Ordering::Release);
                });
            }
            Ok(limits.with_issued(counts))
        }
        None => {
            let before = limits.issued_so_far();
            let counts = state.store.count_pending_grants(now).await?;
            limits.store_read(counts, before, now);
            Ok(limits.with_issued(counts))
        }
    }
}

/// The budget bucket's refill period: at least the longest any pending code lives (clients
/// may give their codes longer lifetimes than the server's), so that no code outlives the
/// window the bound is counted over.
fn budget_window(state: &AppState, pending: &PendingCodes) -> Duration {
    let longest = pending
        .longest_lifetime_ms
        .max(state.limits.longest_issued_ms.load(Ordering::Relaxed))
        .max(0) as u64;
    state
        .settings
        .device_code_ttl
        .max(Duration::from_secs(3600))
        .max(Duration::from_millis(longest))
}

/// Pays for typing `code` from `ip`, before it is looked up: per address, per signed-in
/// account, and (weighed by the codes pending) the guessing budget, which refuses only
/// anonymous entry.
pub async fn pay_for_code(
    state: &AppState,
    ip: IpAddr,
    account: Option<&str>,
    code: Option<&UserCode>,
    now: Timestamp,
) -> Result<Result<Paid, Refused>, StoreError> {
    let ip = client_key(ip);
    let minute = Duration::from_secs(60);
    let mut takes = vec![LimitTake::per(
        format!("code:ip:{ip}"),
        WRONG_CODES_PER_MINUTE,
        minute,
    )];
    if let Some(a) = account {
        takes.push(LimitTake::per(
            format!("code:acct:{a}"),
            WRONG_CODES_PER_MINUTE,
            minute,
        ));
    }
    let mut budget_at = None;
    if let Some(code) = code {
        let pending = pending(state, now).await?;
        let window = budget_window(state, &pending);
        let take = LimitTake {
            key: "code:guess".into(),
            cost_ms: guess_cost_ms(code, pending.of_length(code.canonical().len()), window),
            capacity_ms: window.as_millis() as i64,
            enforce: account.is_none(),
        };
        budget_at = Some(takes.len());
        takes.push(take);
    }
    draw(state, takes, now, budget_at).await
}

/// The prefix of the budget's key, for refunding only it (a code that exists but is used or
/// expired was no blind guess).
pub const BUDGET_KEY: &str = "code:guess";

/// A browser that signed in to an account before: its mark's id (not secret: a hash prefix)
/// and whose account it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBrowser {
    pub mark: String,
    pub user_id: String,
}

/// Pays for a password check of `tenant`'s `username` from `ip`. A browser `known` to this
/// account draws from its own bucket only: strangers' failures, at its address or anywhere,
/// never slow it, and its own are limited like an address's.
pub async fn pay_for_sign_on(
    state: &AppState,
    tenant: &str,
    username: &str,
    ip: IpAddr,
    known: Option<&KnownBrowser>,
    now: Timestamp,
) -> Result<Result<Paid, Refused>, StoreError> {
    let ip = client_key(ip);
    let account = format!("{tenant}/{username}");
    let takes = match known {
        Some(k) => vec![LimitTake::per(
            format!("signon:known:{}", k.mark),
            FAILED_SIGN_ONS_PER_ACCOUNT_AND_ADDRESS,
            SIGN_ON_WINDOW,
        )],
        None => vec![
            LimitTake::per(
                format!("signon:acct-ip:{account}:{ip}"),
                FAILED_SIGN_ONS_PER_ACCOUNT_AND_ADDRESS,
                SIGN_ON_WINDOW,
            ),
            LimitTake::per(
                format!("signon:ip:{ip}"),
                FAILED_SIGN_ONS_PER_ADDRESS,
                SIGN_ON_WINDOW,
            ),
            LimitTake::per(
                format!("signon:acct:{account}"),
                ACCOUNT_THROTTLE_BURST,
                ACCOUNT_THROTTLE_WINDOW,
            ),
        ],
    };
    draw(state, takes, now, None).await
}

/// Pays for a passkey assertion from `ip`, out of the address's failed sign-ons: a passkey
/// names no account before it is checked, so only the address can be held to account.
pub async fn pay_for_passkey(
    state: &AppState,
    ip: IpAddr,
    now: Timestamp,
) -> Result<Result<Paid, Refused>, StoreError> {
    let ip = client_key(ip);
    let take = LimitTake::per(
        format!("signon:ip:{ip}"),
        FAILED_SIGN_ONS_PER_ADDRESS,
        SIGN_ON_WINDOW,
    );
    draw(state, vec![take], now, None).await
}

/// Pays for a new device code from `ip` for `client`: caps on codes per address (refilled
/// over the server's code lifetime: clients with their own lifetimes share the bucket) and
/// per client (over the client's code lifetime, `client_lifetime`).
pub async fn pay_for_device_code(
    state: &AppState,
    tenant: &str,
    client: &str,
    ip: IpAddr,
    client_lifetime: Duration,
    now: Timestamp,
) -> Result<Result<Paid, Refused>, StoreError> {
    let ip = client_key(ip);
    let caps = &state.settings.limits;
    let mut buckets = Vec::with_capacity(2);
    if caps.max_pending_codes_per_address > 0 {
        buckets.push(LimitTake::per(
            format!("pend:ip:{tenant}:{ip}"),
            caps.max_pending_codes_per_address,
            state.settings.device_code_ttl,
        ));
    }
    if caps.max_pending_codes_per_client > 0 {
        buckets.push(LimitTake::per(
            format!("pend:client:{tenant}:{client}"),
            caps.max_pending_codes_per_client,
            client_lifetime,
        ));
    }
    // Large buckets are spent from this instance's lease while it lasts, else drawn a whole
    // lease at a time (one draw per instance, the others wait for it); small ones take by take.
    let mut exact = Vec::with_capacity(2);
    let mut misses = Vec::with_capacity(2);
    let mut lapsed = Vec::new();
    let mut spent = Vec::new();
    for take in buckets {
        // A hundredth of what the bucket holds (a take costs at least a millisecond, so a
        // huge cap holds fewer takes than it says).
        let size = (take.capacity_ms / take.cost_ms / i64::from(LEASE_DIVISOR)).min(1 << 20) as u32;
        if size < 2 {
            exact.push(take);
            continue;
        }
        match state.limits.spend_lease(&take.key, now) {
            Spend::Spent => spent.push(take.key),
            Spend::Missing => misses.push((take, size)),
            Spend::Lapsed(back) => {
                lapsed.push(back);
                misses.push((take, size));
            }
        }
    }
    give_back(state, &lapsed).await;
    let paid = draw_leased(state, exact, misses, now).await;
    if !matches!(paid, Ok(Ok(_))) {
        // Refused (or failed) after all: what this request spent from leases goes back.
        for key in &spent {
            state.limits.unspend_lease(key);
        }
    }
    paid
}

/// Draws the `exact` takes and, for each missing lease, a whole lease (or, when there is no
/// room for one, a single take).
async fn draw_leased(
    state: &AppState,
    exact: Vec<LimitTake>,
    misses: Vec<(LimitTake, u32)>,
    now: Timestamp,
) -> Result<Result<Paid, Refused>, StoreError> {
    if misses.is_empty() {
        return draw(state, exact, now, None).await;
    }
    let _refilling = state.limits.refill.lock().await;
    let mut still = Vec::with_capacity(misses.len());
    for (take, size) in misses {
        match state.limits.spend_lease(&take.key, now) {
            Spend::Spent => {}
            Spend::Missing => still.push((take, size)),
            Spend::Lapsed(back) => {
                give_back(state, std::slice::from_ref(&back)).await;
                still.push((take, size));
            }
        }
    }
    let mut wholes = exact.clone();
    let mut singles = exact;
    for (take, size) in &still {
        wholes.push(LimitTake {
            cost_ms: take.cost_ms.saturating_mul(i64::from(*size)),
            ..take.clone()
        });
        singles.push(take.clone());
    }
    match draw(state, wholes, now, None).await? {
        Ok(paid) => {
            for (take, size) in still {
                state.limits.keep_lease(take, size - 1, now);
            }
            Ok(Ok(paid))
        }
        // No room for a whole lease (or a small cap refused): take by take, exactly.
        Err(refused) if still.is_empty() => Ok(Err(refused)),
        Err(_) => draw(state, singles, now, None).await,
    }
}

/// A row a client's request stores, each kind under its own cap per address.
#[derive(Debug, Clone, Copy)]
pub enum Row {
    /// A new verification flow.
    Flow,
    /// A browser session stored at a pre-session's first POST, so that replaying one
    /// pre-session cookie cannot write rows without bound.
    Session,
    /// A round trip to an upstream provider: started (a row written) or ended at the
    /// callback (a row taken), so that neither floods the store.
    Upstream,
}

/// Pays for one row of `kind` written for `ip`: `max_flows_per_address` of each kind per
/// flow lifetime.
pub async fn pay_for_row(
    state: &AppState,
    kind: Row,
    ip: IpAddr,
    now: Timestamp,
) -> Result<Result<Paid, Refused>, StoreError> {
    let ip = client_key(ip);
    let cap = state.settings.limits.max_flows_per_address;
    if cap == 0 {
        return Ok(Ok(Paid { takes: Vec::new() }));
    }
    let kind = match kind {
        Row::Flow => "flow",
        Row::Session => "session",
        Row::Upstream => "upstream",
    };
    let take = LimitTake::per(format!("{kind}:ip:{ip}"), cap, state.settings.flow_ttl);
    draw(state, vec![take], now, None).await
}

/// The address a client's limits are kept under: an IPv6 client by its /64 (which one
/// subscriber usually holds whole, so that it cannot step around a limit by changing
/// addresses), an IPv4-mapped one as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    crate::conn::address_key(ip)
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    // Walk from the nearest hop outwards. A hop that cannot be read ends the walk at the last
    // trusted one: what lies beyond it was written by whoever the proxy could not describe,
    // and skipping it would let that client name any address it likes.
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|v| {
            let hops: Vec<Option<IpAddr>> = match v.to_str() {
                Ok(v) => v.split(',').rev().map(|h| parse_hop(h.trim())).collect(),
                Err(_) => vec![None],
            };
            hops
        });
    for hop in hops {
        let Some(ip) = hop else { break };
        client = ip;
        if !trusted.contains(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`ip:port`,
/// `[v6]:port`), as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_and_a_mapped_one_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(
            client_key(a),
            client_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap()
        );
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
        // A hop the proxy wrote with a port is read; one that cannot be read stops the walk
        // there, so what a client wrote beyond it is not believed.
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.1:4711".parse().unwrap(),
        );
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        h.insert("x-forwarded-for", "203.0.113.9, unknown".parse().unwrap());
        assert_eq!(client_ip(proxy, &h, &[proxy]), proxy);
        // A proxy seen through an IPv4-mapped IPv6 peer address is still the proxy.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        assert_eq!(
            client_ip(mapped, &h, &[proxy]),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }
}
