//! The rules of devicegate, with no I/O: device grants, verification flows, user codes,
//! scopes, secrets, claims and signing keys.
//!
//! Everything here is pure in the sense that matters for correctness: the current time is a
//! parameter, storage is someone else's job, and no function here speaks HTTP or SQL. The
//! state machines take the stored record and `now` and return a decision; the caller persists
//! the decision with a compare-and-swap so that concurrent requests cannot both win.
//!
//! # Example
//! ```
//! use devicegate_core::grant::{DeviceGrant, PollDecision};
//! use devicegate_core::time::Timestamp;
//! let now = Timestamp::from_millis(1_000_000);
//! let grant = DeviceGrant::example_pending("cli", now);
//! // RFC 8628 §3.5: the first poll is never throttled.
//! assert!(matches!(grant.on_poll("cli", now), PollDecision::Pending { .. }));
//! ```

pub mod flow;
pub mod grant;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod password;
pub mod scope;
pub mod secret;
pub mod time;
pub mod user_code;

pub use secret::{Secret, SecretHash};
pub use time::Timestamp;
