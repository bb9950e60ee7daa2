//! Compare-and-swap with retries: the one loop every read-decide-write step runs in.
//!
//! A step reads a record, lets core decide, and writes only if the stored version is still
//! the one it read (the store answers `Conflict` otherwise). Losing means another request
//! changed the record in between, so the step reads again and decides anew. Honest clients
//! cause a retry or two; a step that loses [`ATTEMPTS`] (16) times in a row gives up with
//! [`Contended`], which each surface answers in its own format (a 503: try again).

use std::future::Future;

/// Attempts before giving up. Each lost attempt means another request changed the record; a
/// handful is far beyond what honest clients cause.
pub(crate) const ATTEMPTS: usize = 16;

/// One attempt's outcome.
pub(crate) enum Cas<T> {
    /// Decided and stored (or decided without a write).
    Done(T),
    /// The write lost to another request: read again.
    Lost,
}

impl Cas<()> {
    /// The attempt's answer, once stored.
    pub(crate) fn then<T>(self, out: T) -> Cas<T> {
        match self {
            Cas::Done(()) => Cas::Done(out),
            Cas::Lost => Cas::Lost,
        }
    }
}

/// Every attempt lost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Contended;

/// Runs `attempt` until it is [`Cas::Done`] or fails, at most [`ATTEMPTS`] times.
pub(crate) async fn retry<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Cas<T>, E>>,
    E: From<Contended>,
{
    for _ in 0..ATTEMPTS {
        if let Cas::Done(out) = attempt().await? {
            return Ok(out);
        }
    }
    Err(Contended.into())
}
