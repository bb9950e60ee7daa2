//! The RFC 8628 §3.5 polling schedule, apart from HTTP so that it can be tested without
//! waiting: the loop sees time only through a [`Clock`].

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::{Error, Tokens};

/// RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the default."
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: `slow_down` means "the interval MUST be increased by 5 seconds".
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Connection failures double the wait at most this many times in a row (5 s → 5 min 20 s).
const MAX_BACKOFF_DOUBLINGS: u32 = 6;

/// Where the poll loop reads the time and sleeps. [`TokioClock`] in real use; tests pass one
/// that records the waits and advances a fake time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The real clock: `Instant::now` and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// What one access token request (RFC 8628 §3.4) came back with.
#[derive(Debug)]
pub(crate) enum Outcome {
    Tokens(Tokens),
    /// `authorization_pending`.
    Pending,
    /// `slow_down`, with the interval the server asked for, if it said one.
    SlowDown {
        interval: Option<u64>,
    },
    /// No answer: the connection failed or timed out, or the server was unavailable.
    Unreachable,
    /// Any other answer ends the polling.
    Fatal(Error),
}

/// The interval, the deadline and the connection back-off of one device code.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    interval: Duration,
    deadline: Instant,
    failures: u32,
}

impl Schedule {
    /// `interval` and `expires_in` as the device authorization response (§3.2) gave them,
    /// counted from `issued`, when the response arrived.
    pub(crate) fn new(interval: Option<u64>, expires_in: u64, issued: Instant) -> Schedule {
        Schedule {
            interval: interval.map_or(DEFAULT_INTERVAL, Duration::from_secs),
            deadline: issued + Duration::from_secs(expires_in),
            failures: 0,
        }
    }

    /// How long to wait before the next request, or `None` when that request would fall
    /// after `expires_in` (§3.2): the device code is dead by then and the request could only
    /// hear `expired_token`, so polling stops.
    pub(crate) fn next_wait(&self, now: Instant) -> Option<Duration> {
        // §3.5: "On encountering a connection timeout, clients MUST unilaterally reduce their
        // polling frequency before retrying", by doubling, as the RFC recommends.
        let wait = self.interval * 2u32.pow(self.failures.min(MAX_BACKOFF_DOUBLINGS));
        (now + wait < self.deadline).then_some(wait)
    }

    /// §3.5 `slow_down`: add 5 s, and keep the longer interval for every later request. A
    /// server that names a still longer interval gets it.
    pub(crate) fn slow_down(&mut self, server_interval: Option<u64>) {
        self.answered();
        self.interval += SLOW_DOWN_STEP;
        if let Some(s) = server_interval {
            self.interval = self.interval.max(Duration::from_secs(s));
        }
    }

    /// The server answered: connection back-off ends.
    pub(crate) fn answered(&mut self) {
        self.failures = 0;
    }

    pub(crate) fn unreachable(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }
}

/// Polls until tokens, a final error, or the deadline. Dropping the future stops it.
pub(crate) async fn run<F, Fut>(
    clock: &dyn Clock,
    mut schedule: Schedule,
    mut request: F,
) -> Result<Tokens, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    loop {
        let Some(wait) = schedule.next_wait(clock.now()) else {
            return Err(Error::Expired);
        };
        // §3.5: "the client MUST wait at least the number of seconds specified by the
        // interval parameter" before each request, the first included.
        clock.sleep(wait).await;
        match request().await {
            Outcome::Tokens(t) => return Ok(t),
            Outcome::Pending => schedule.answered(),
            Outcome::SlowDown { interval } => schedule.slow_down(interval),
            Outcome::Unreachable => schedule.unreachable(),
            Outcome::Fatal(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::Secret;

    /// A clock whose sleeps return at once, advance the fake time and are recorded.
    #[derive(Debug)]
    struct FakeClock {
        start: Instant,
        elapsed: Mutex<Duration>,
        waits: Mutex<Vec<u64>>,
    }

    impl FakeClock {
        fn new() -> FakeClock {
            FakeClock {
                start: Instant::now(),
                elapsed: Mutex::new(Duration::ZERO),
                waits: Mutex::new(Vec::new()),
            }
        }
        fn waits(&self) -> Vec<u64> {
            self.waits.lock().unwrap().clone()
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Instant {
            self.start + *self.elapsed.lock().unwrap()
        }
        fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            *self.elapsed.lock().unwrap() += d;
            self.waits.lock().unwrap().push(d.as_secs());
            Box::pin(std::future::ready(()))
        }
    }

    fn tokens() -> Tokens {
        Tokens {
            access_token: Secret::new("at"),
            token_type: "Bearer".into(),
            expires_in: Some(60),
            refresh_token: None,
            id_token: None,
            scope: None,
        }
    }

    /// Runs the loop against scripted answers; returns the result, the waits and the number
    /// of requests made.
    fn check(
        interval: Option<u64>,
        expires_in: u64,
        script: Vec<Outcome>,
    ) -> (Result<Tokens, Error>, Vec<u64>, usize) {
        let clock = FakeClock::new();
        let schedule = Schedule::new(interval, expires_in, clock.now());
        let script = Mutex::new(VecDeque::from(script));
        let mut requests = 0;
        let result = futures_executor(run(&clock, schedule, || {
            requests += 1;
            let next = script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Outcome::Pending);
            std::future::ready(next)
        }));
        (result, clock.waits(), requests)
    }

    fn futures_executor<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn rfc8628_3_2_interval_defaults_to_5_seconds() {
        let (r, waits, _) = check(None, 600, vec![Outcome::Pending, Outcome::Tokens(tokens())]);
        assert!(r.is_ok());
        assert_eq!(waits, [5, 5]);
    }

    #[test]
    fn rfc8628_3_5_slow_down_adds_5_seconds_and_keeps_them() {
        let (r, waits, _) = check(
            Some(2),
            600,
            vec![
                Outcome::Pending,
                Outcome::SlowDown { interval: None },
                Outcome::Pending,
                Outcome::SlowDown { interval: None },
                Outcome::Pending,
                Outcome::Tokens(tokens()),
            ],
        );
        assert!(r.is_ok());
        assert_eq!(waits, [2, 2, 7, 7, 12, 12]);
    }

    #[test]
    fn rfc8628_3_5_slow_down_takes_a_longer_interval_the_server_names() {
        let (_, waits, _) = check(
            Some(1),
            600,
            vec![
                Outcome::SlowDown { interval: Some(30) },
                Outcome::SlowDown { interval: Some(3) },
                Outcome::Tokens(tokens()),
            ],
        );
        assert_eq!(waits, [1, 30, 35]);
    }

    #[test]
    fn rfc8628_3_5_polling_stops_at_expires_in() {
        let (r, waits, requests) = check(Some(5), 22, vec![]);
        assert!(matches!(r, Err(Error::Expired)), "{r:?}");
        // Requests at 5, 10, 15 and 20 s; the next would land at 25 s, past the 22 s lifetime.
        assert_eq!((waits, requests), (vec![5, 5, 5, 5], 4));
    }

    #[test]
    fn rfc8628_3_5_connection_failures_back_off_exponentially_until_an_answer() {
        let (r, waits, _) = check(
            Some(1),
            600,
            vec![
                Outcome::Unreachable,
                Outcome::Unreachable,
                Outcome::Unreachable,
                Outcome::Pending,
                Outcome::Tokens(tokens()),
            ],
        );
        assert!(r.is_ok());
        assert_eq!(waits, [1, 2, 4, 8, 1]);
    }

    #[test]
    fn rfc8628_3_5_denied_and_expired_end_polling_with_their_errors() {
        let (r, _, n) = check(
            Some(1),
            600,
            vec![Outcome::Pending, Outcome::Fatal(Error::AccessDenied)],
        );
        assert!(matches!(r, Err(Error::AccessDenied)) && n == 2, "{r:?}");
        let (r, _, _) = check(Some(1), 600, vec![Outcome::Fatal(Error::Expired)]);
        assert!(matches!(r, Err(Error::Expired)), "{r:?}");
    }
}
