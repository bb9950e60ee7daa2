//! The device grant (RFC 8628) as a state machine.
//!
//! ```text
//! pending ──approve──▶ approved ──poll──▶ redeemed
//!    └──────deny─────▶ denied
//! ```
//! Expiry is a function of time, not a stored state. Every decision returns the next record;
//! the caller stores it with a compare-and-swap on `version`, so two concurrent polls cannot
//! both redeem a code and two polls in the same interval cannot both escape `slow_down`.

use std::time::Duration;

use crate::scope::Scopes;
use crate::secret::SecretHash;
use crate::time::Timestamp;
use crate::user_code::UserCode;

/// RFC 8628 §3.5: each `slow_down` adds 5 seconds to the interval, for good.
pub const SLOW_DOWN_STEP_SECS: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantStatus {
    Pending,
    Approved {
        subject: String,
        auth_time: Timestamp,
        /// The upstream provider the person signed on through, if any (the tokens' `idp`).
        idp: Option<String>,
        /// How the person signed on (RFC 8176 values, space-separated; the tokens' `amr`).
        amr: Option<String>,
    },
    Denied,
    Redeemed,
}

impl GrantStatus {
    pub fn name(&self) -> &'static str {
        match self {
            GrantStatus::Pending => "pending",
            GrantStatus::Approved { .. } => "approved",
            GrantStatus::Denied => "denied",
            GrantStatus::Redeemed => "redeemed",
        }
    }
}

/// Who asked for the code, shown to the person approving it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requester {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGrant {
    pub id: String,
    /// The tenant whose client asked; nothing crosses tenants.
    pub tenant: String,
    pub device_code_hash: SecretHash,
    pub user_code: UserCode,
    pub client_id: String,
    pub scopes: Scopes,
    pub status: GrantStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub interval_secs: u32,
    pub last_poll_at: Option<Timestamp>,
    /// The verification flow that claimed this grant by entering its user code, and when
    /// that flow ends. While it lives, no other flow can claim the grant.
    pub flow_id: Option<String>,
    pub flow_expires_at: Option<Timestamp>,
    pub requester: Requester,
    /// What a dialect remembers with the grant (Ocient's database), opaque to the core.
    pub context: Option<String>,
    /// Bumped by the store on every change; the compare in compare-and-swap.
    pub version: i64,
}

/// What polling a pending grant reads and changes (RFC 8628 §3.5): when it was last polled,
/// and its interval, which every `slow_down` lengthens for good. A store can keep this apart
/// from the rest of the grant and answer pending polls with it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPace {
    pub interval_secs: u32,
    pub last_poll_at: Option<Timestamp>,
}

/// A pending grant's answer to a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paced {
    /// `authorization_pending`.
    Pending,
    /// Polled before the interval passed; the interval is now `interval_secs`.
    SlowDown { interval_secs: u32 },
}

impl PollPace {
    /// Records a poll at `now` and says how to answer it: `slow_down` (and 5 s more interval,
    /// from now on) if it came before the interval since the previous poll had passed.
    pub fn poll(&mut self, now: Timestamp) -> Paced {
        let too_early = self.last_poll_at.is_some_and(|last| {
            last.until(now) < Duration::from_secs(u64::from(self.interval_secs))
        });
        self.last_poll_at = Some(now);
        if too_early {
            self.interval_secs = self.interval_secs.saturating_add(SLOW_DOWN_STEP_SECS);
            Paced::SlowDown {
                interval_secs: self.interval_secs,
            }
        } else {
            Paced::Pending
        }
    }
}

/// What a poll of the token endpoint decides (RFC 8628 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollDecision {
    /// Unknown to this client, or already redeemed.
    InvalidGrant,
    ExpiredToken,
    AccessDenied,
    /// `authorization_pending`; `next` records the poll.
    Pending {
        next: DeviceGrant,
    },
    /// Polled before the interval passed; `next` carries the longer interval.
    SlowDown {
        next: DeviceGrant,
        interval_secs: u32,
    },
    /// Approved: issue tokens once, storing `next` (redeemed).
    Issue {
        next: DeviceGrant,
        subject: String,
        auth_time: Timestamp,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("the user code has expired")]
    Expired,
    #[error("the user code was already used")]
    NotPending,
}

impl DeviceGrant {
    /// The upstream provider its approver signed on through, once approved.
    pub fn idp(&self) -> Option<&str> {
        match &self.status {
            GrantStatus::Approved { idp, .. } => idp.as_deref(),
            _ => None,
        }
    }

    /// How its approver signed on (RFC 8176 `amr` values), once approved.
    pub fn amr(&self) -> Option<&str> {
        match &self.status {
            GrantStatus::Approved { amr, .. } => amr.as_deref(),
            _ => None,
        }
    }

    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// RFC 8628 §3.4–3.5. `client_id` is the authenticated client polling.
    pub fn on_poll(&self, client_id: &str, now: Timestamp) -> PollDecision {
        if self.client_id != client_id {
            return PollDecision::InvalidGrant;
        }
        match &self.status {
            GrantStatus::Redeemed => PollDecision::InvalidGrant,
            GrantStatus::Denied => PollDecision::AccessDenied,
            _ if self.is_expired(now) => PollDecision::ExpiredToken,
            GrantStatus::Approved {
                subject, auth_time, ..
            } => PollDecision::Issue {
                next: DeviceGrant {
                    status: GrantStatus::Redeemed,
                    last_poll_at: Some(now),
                    ..self.clone()
                },
                subject: subject.clone(),
                auth_time: *auth_time,
            },
            GrantStatus::Pending => {
                let mut pace = self.pace();
                let decision = pace.poll(now);
                let next = DeviceGrant {
                    interval_secs: pace.interval_secs,
                    last_poll_at: pace.last_poll_at,
                    ..self.clone()
                };
                match decision {
                    Paced::Pending => PollDecision::Pending { next },
                    Paced::SlowDown { interval_secs } => PollDecision::SlowDown {
                        next,
                        interval_secs,
                    },
                }
            }
        }
    }

    /// The poll bookkeeping of this grant.
    pub fn pace(&self) -> PollPace {
        PollPace {
            interval_secs: self.interval_secs,
            last_poll_at: self.last_poll_at,
        }
    }

    fn ensure_decidable(&self, now: Timestamp) -> Result<(), DecideError> {
        if self.status != GrantStatus::Pending {
            return Err(DecideError::NotPending);
        }
        if self.is_expired(now) {
            return Err(DecideError::Expired);
        }
        Ok(())
    }

    /// Approval by `subject`, who authenticated at `auth_time` (OIDC Core §2 `auth_time`:
    /// the sign-on, not the consent).
    /// Approved by `subject`, who signed on at `auth_time` (through upstream `idp`, if any).
    pub fn approve(
        &self,
        subject: &str,
        auth_time: Timestamp,
        idp: Option<&str>,
        amr: Option<&str>,
        now: Timestamp,
    ) -> Result<DeviceGrant, DecideError> {
        self.ensure_decidable(now)?;
        Ok(DeviceGrant {
            status: GrantStatus::Approved {
                subject: subject.to_owned(),
                auth_time,
                idp: idp.map(str::to_owned),
                amr: amr.map(str::to_owned),
            },
            ..self.clone()
        })
    }

    pub fn deny(&self, now: Timestamp) -> Result<DeviceGrant, DecideError> {
        self.ensure_decidable(now)?;
        Ok(DeviceGrant {
            status: GrantStatus::Denied,
            ..self.clone()
        })
    }

    /// A pending grant for doc examples and tests.
    pub fn example_pending(client_id: &str, now: Timestamp) -> DeviceGrant {
        DeviceGrant {
            id: "g1".into(),
            tenant: "default".into(),
            device_code_hash: SecretHash::of(b"dgd_example"),
            user_code: UserCode::from_canonical("BCDFGHJK".into()),
            client_id: client_id.into(),
            scopes: Scopes::parse("openid").unwrap_or_default(),
            status: GrantStatus::Pending,
            created_at: now,
            expires_at: now.plus(Duration::from_secs(600)),
            interval_secs: 5,
            last_poll_at: None,
            flow_id: None,
            flow_expires_at: None,
            requester: Requester::default(),
            context: None,
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + ms)
    }

    fn poll(g: &DeviceGrant, ms: i64) -> (PollDecision, DeviceGrant) {
        let d = g.on_poll("cli", t(ms));
        let next = match &d {
            PollDecision::Pending { next }
            | PollDecision::SlowDown { next, .. }
            | PollDecision::Issue { next, .. } => next.clone(),
            _ => g.clone(),
        };
        (d, next)
    }

    #[test]
    fn rfc8628_3_5_first_poll_is_never_throttled() {
        let g = DeviceGrant::example_pending("cli", t(0));
        assert!(matches!(poll(&g, 0).0, PollDecision::Pending { .. }));
    }

    #[test]
    fn rfc8628_3_5_early_poll_slows_down_and_the_interval_stays_longer() {
        let g = DeviceGrant::example_pending("cli", t(0));
        let (_, g) = poll(&g, 0);
        let (d, g) = poll(&g, 4_999);
        assert!(matches!(
            d,
            PollDecision::SlowDown {
                interval_secs: 10,
                ..
            }
        ));
        // Five seconds after the slow_down is now too early: the interval is 10 s.
        let (d, g) = poll(&g, 9_999);
        assert!(matches!(
            d,
            PollDecision::SlowDown {
                interval_secs: 15,
                ..
            }
        ));
        assert_eq!(g.interval_secs, 15);
        let (d, _) = poll(&g, 9_999 + 15_000);
        assert!(matches!(d, PollDecision::Pending { .. }));
    }

    #[test]
    fn another_clients_code_is_invalid_grant() {
        let g = DeviceGrant::example_pending("cli", t(0));
        assert_eq!(g.on_poll("other", t(0)), PollDecision::InvalidGrant);
    }

    #[test]
    fn approved_issues_once_then_invalid_grant() {
        let g = DeviceGrant::example_pending("cli", t(0))
            .approve("user-1", t(5), None, None, t(10))
            .unwrap();
        let (d, g) = poll(&g, 20);
        assert!(
            matches!(d, PollDecision::Issue { ref subject, auth_time, .. } if subject == "user-1" && auth_time == t(5))
        );
        assert_eq!(poll(&g, 30_000).0, PollDecision::InvalidGrant);
    }

    #[test]
    fn denied_expired_and_decisions_on_decided_grants() {
        let g = DeviceGrant::example_pending("cli", t(0));
        let denied = g.deny(t(1)).unwrap();
        assert_eq!(poll(&denied, 2).0, PollDecision::AccessDenied);
        assert_eq!(
            denied.approve("u", t(3), None, None, t(3)),
            Err(DecideError::NotPending)
        );
        assert_eq!(poll(&g, 600_000).0, PollDecision::ExpiredToken);
        assert_eq!(
            g.approve("u", t(0), None, None, t(600_000)),
            Err(DecideError::Expired)
        );
        let approved = g.approve("u", t(1), None, None, t(1)).unwrap();
        assert_eq!(poll(&approved, 600_001).0, PollDecision::ExpiredToken);
    }
}
