//! The verification flow: one person's walk through code entry, sign-on and consent.
//!
//! Both front-ends, the JSON flows API and the HTML pages, drive this one machine. The flow id
//! handed to the caller is a capability (a [`crate::Secret`]); the record keeps only its hash
//! and a separate, non-secret `id` that grants point back to.
//!
//! ```text
//! USER_CODE_REQUIRED ─code─▶ SIGN_ON_REQUIRED ─sign on─▶ CONSENT_REQUIRED ─consent─▶ COMPLETED
//!        │  ▲ (signed on first)                              ▲
//!        │  └──────────── sign on ◀── USER_CODE_REQUIRED ────┘ (code after sign on)
//!        └─ 5 wrong codes ─▶ FAILED
//! ```
//!
//! A flow started for a browser elsewhere (PingOne's sign-on link) is taken over with
//! [`Flow::adopt`] while still fresh: under a new capability, so the link names it no more.

use devicegate_proto::{FlowResult, FlowStatus};

use crate::grant::{DecideError, DeviceGrant, GrantStatus};
use crate::secret::SecretHash;
use crate::time::Timestamp;

/// Wrong user codes a flow may try before it fails.
pub const MAX_WRONG_CODES: u32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub id: String,
    pub tenant: String,
    pub secret_hash: SecretHash,
    pub status: FlowStatus,
    pub grant_id: Option<String>,
    pub user_id: Option<String>,
    /// When `user_id` signed on: the ID token's `auth_time`.
    pub signed_on_at: Option<Timestamp>,
    /// The upstream provider `user_id` signed on through, if any: the tokens' `idp`.
    pub idp: Option<String>,
    /// How `user_id` signed on so far (RFC 8176 values, space-separated): the tokens' `amr`.
    pub amr: Option<String>,
    pub failed_attempts: u32,
    pub result: Option<FlowResult>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub version: i64,
    /// The code was entered from a link (`verification_uri_complete`), the usual phishing
    /// vector: approving asks the person to confirm the code on the device in front of them.
    pub from_link: bool,
}

/// Why a flow step was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("the flow has expired")]
    Expired,
    #[error("this action is not allowed while the flow is {0:?}")]
    WrongStatus(FlowStatus),
    #[error("the user code is not valid, {attempts_left} attempts left")]
    WrongCode { attempts_left: u32 },
    #[error("the user code has expired")]
    CodeExpired,
    #[error("the user code has already been used")]
    CodeUsed,
    #[error("the user code is being approved in another session")]
    CodeClaimed,
    #[error("the flow is already being walked elsewhere")]
    Held,
}

/// A refused step, with the flow to store when the refusal changed it (a counted wrong code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: FlowError,
    pub next: Option<Box<Flow>>,
}

impl From<FlowError> for Refusal {
    fn from(error: FlowError) -> Self {
        Refusal { error, next: None }
    }
}

impl From<DecideError> for FlowError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::Expired => FlowError::CodeExpired,
            DecideError::NotPending => FlowError::CodeUsed,
        }
    }
}

impl Flow {
    pub fn new(
        tenant: &str,
        id: String,
        secret_hash: SecretHash,
        now: Timestamp,
        ttl: std::time::Duration,
    ) -> Flow {
        Flow {
            amr: None,
            id,
            tenant: tenant.to_owned(),
            secret_hash,
            status: FlowStatus::UserCodeRequired,
            grant_id: None,
            user_id: None,
            signed_on_at: None,
            idp: None,
            failed_attempts: 0,
            result: None,
            created_at: now,
            expires_at: now.plus(ttl),
            version: 0,
            from_link: false,
        }
    }

    /// Completed and failed flows stay readable after expiry (until swept); live ones end.
    pub fn ensure_live(&self, now: Timestamp) -> Result<(), FlowError> {
        let finished = matches!(self.status, FlowStatus::Completed | FlowStatus::Failed);
        if now >= self.expires_at && !finished {
            return Err(FlowError::Expired);
        }
        Ok(())
    }

    fn ensure_status(&self, allowed: &[FlowStatus]) -> Result<(), FlowError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(FlowError::WrongStatus(self.status))
        }
    }

    /// The status after a step, from what the flow now knows.
    fn advance(mut self) -> Flow {
        self.status = match (&self.grant_id, &self.user_id) {
            (None, _) => FlowStatus::UserCodeRequired,
            (Some(_), None) => FlowStatus::SignOnRequired,
            (Some(_), Some(_)) => FlowStatus::ConsentRequired,
        };
        self
    }

    /// A user code was entered. `found` is the grant with that code, if any. On success the
    /// caller stores both the flow and the grant, now bound to this flow, in one transaction.
    pub fn verify_user_code(
        &self,
        found: Option<&DeviceGrant>,
        now: Timestamp,
    ) -> Result<(Flow, DeviceGrant), Refusal> {
        self.ensure_live(now)?;
        self.ensure_status(&[FlowStatus::UserCodeRequired])?;
        // Another tenant's code is no code here.
        let Some(grant) = found.filter(|g| g.tenant == self.tenant) else {
            let mut next = self.clone();
            next.failed_attempts += 1;
            let attempts_left = MAX_WRONG_CODES.saturating_sub(next.failed_attempts);
            if attempts_left == 0 {
                next.status = FlowStatus::Failed;
            }
            return Err(Refusal {
                error: FlowError::WrongCode { attempts_left },
                next: Some(Box::new(next)),
            });
        };
        if grant.status != GrantStatus::Pending {
            return Err(FlowError::CodeUsed.into());
        }
        if grant.is_expired(now) {
            return Err(FlowError::CodeExpired.into());
        }
        // The first flow to enter a code holds it while that flow lives: a code seen on a
        // screen cannot be taken over by someone else's browser.
        let held_elsewhere = grant.flow_id.as_ref().is_some_and(|f| *f != self.id)
            && grant.flow_expires_at.is_some_and(|until| now < until);
        if held_elsewhere {
            return Err(FlowError::CodeClaimed.into());
        }
        let flow = Flow {
            grant_id: Some(grant.id.clone()),
            ..self.clone()
        }
        .advance();
        let grant = DeviceGrant {
            flow_id: Some(self.id.clone()),
            flow_expires_at: Some(self.expires_at),
            ..grant.clone()
        };
        Ok((flow, grant))
    }

    /// A browser takes over a flow it did not start (PingOne's sign-on link) under a new
    /// capability, `key`, that only its session holds: the flow id in the link then names
    /// nothing, for any other browser or caller. Only a fresh flow can be taken, one where no
    /// code was entered and nobody signed on; whoever walks a flow (a browser, or a custom UI
    /// on the flows API) keeps it.
    pub fn adopt(&self, key: SecretHash, now: Timestamp) -> Result<Flow, FlowError> {
        self.ensure_live(now)?;
        let fresh = self.status == FlowStatus::UserCodeRequired
            && self.grant_id.is_none()
            && self.user_id.is_none();
        if !fresh {
            return Err(FlowError::Held);
        }
        Ok(Flow {
            secret_hash: key,
            ..self.clone()
        })
    }

    /// The person proved who they are (`user_id` is the authenticated user).
    pub fn sign_on(&self, user_id: &str, now: Timestamp) -> Result<Flow, FlowError> {
        self.sign_on_at(user_id, now, None, Some("pwd"), now)
    }

    /// A password proved the first factor; a second is owed (`SecondFactorRequired`) before
    /// the flow goes on.
    pub fn sign_on_pending(
        &self,
        user_id: &str,
        auth_time: Timestamp,
        now: Timestamp,
    ) -> Result<Flow, FlowError> {
        let mut next = self.sign_on_at(user_id, auth_time, None, Some("pwd"), now)?;
        next.status = FlowStatus::SecondFactorRequired;
        Ok(next)
    }

    /// The owed second factor was given (RFC 8176 `method`, `otp`): the flow goes on where a
    /// sign-on leads, and its `amr` says both factors.
    pub fn second_factor_done(&self, method: &str, now: Timestamp) -> Result<Flow, FlowError> {
        self.ensure_live(now)?;
        self.ensure_status(&[FlowStatus::SecondFactorRequired])?;
        Ok(Flow {
            amr: Some(format!("pwd {method} mfa")),
            ..self.clone()
        }
        .advance())
    }

    /// A person already signed on at `auth_time` (a browser session) starts on this flow.
    pub fn sign_on_at(
        &self,
        user_id: &str,
        auth_time: Timestamp,
        idp: Option<&str>,
        amr: Option<&str>,
        now: Timestamp,
    ) -> Result<Flow, FlowError> {
        self.ensure_live(now)?;
        self.ensure_status(&[FlowStatus::UserCodeRequired, FlowStatus::SignOnRequired])?;
        if self.user_id.is_some() {
            return Err(FlowError::WrongStatus(self.status));
        }
        Ok(Flow {
            user_id: Some(user_id.to_owned()),
            signed_on_at: Some(auth_time),
            idp: idp.map(str::to_owned),
            amr: amr.map(str::to_owned),
            ..self.clone()
        }
        .advance())
    }

    /// Checks that a sign-on may be attempted now, before the (costly) password check.
    pub fn ensure_can_sign_on(&self, now: Timestamp) -> Result<(), FlowError> {
        self.sign_on("", now).map(|_| ())
    }

    /// The person approved or denied. `grant` is the grant this flow bound.
    pub fn consent(
        &self,
        grant: &DeviceGrant,
        accept: bool,
        now: Timestamp,
    ) -> Result<(Flow, DeviceGrant), FlowError> {
        self.ensure_live(now)?;
        self.ensure_status(&[FlowStatus::ConsentRequired])?;
        let (Some(grant_id), Some(user_id), Some(signed_on_at)) =
            (&self.grant_id, &self.user_id, self.signed_on_at)
        else {
            return Err(FlowError::WrongStatus(self.status));
        };
        // A code verified in one flow cannot be consented in another.
        if &grant.id != grant_id || grant.flow_id.as_deref() != Some(self.id.as_str()) {
            return Err(FlowError::CodeUsed);
        }
        let (grant, result) = if accept {
            (
                grant.approve(
                    user_id,
                    signed_on_at,
                    self.idp.as_deref(),
                    self.amr.as_deref(),
                    now,
                )?,
                FlowResult::Approved,
            )
        } else {
            (grant.deny(now)?, FlowResult::Denied)
        };
        let flow = Flow {
            status: FlowStatus::Completed,
            result: Some(result),
            ..self.clone()
        };
        Ok((flow, grant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(1_700_000_000 + s)
    }

    fn flow(id: &str) -> Flow {
        Flow::new(
            "default",
            id.into(),
            SecretHash::of(id.as_bytes()),
            t(0),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn code_then_sign_on_then_consent_approves() {
        let grant = DeviceGrant::example_pending("cli", t(0));
        let (f, g) = flow("f1").verify_user_code(Some(&grant), t(1)).unwrap();
        assert_eq!(f.status, FlowStatus::SignOnRequired);
        assert_eq!(g.flow_id.as_deref(), Some("f1"));
        let f = f.sign_on("u1", t(2)).unwrap();
        assert_eq!(f.status, FlowStatus::ConsentRequired);
        let (f, g) = f.consent(&g, true, t(3)).unwrap();
        assert_eq!(
            (f.status, f.result),
            (FlowStatus::Completed, Some(FlowResult::Approved))
        );
        assert!(matches!(g.status, GrantStatus::Approved { ref subject, .. } if subject == "u1"));
    }

    #[test]
    fn sign_on_first_then_code_goes_to_consent() {
        let grant = DeviceGrant::example_pending("cli", t(0));
        let f = flow("f1").sign_on("u1", t(1)).unwrap();
        assert_eq!(f.status, FlowStatus::UserCodeRequired);
        assert_eq!(
            f.sign_on("u1", t(1)),
            Err(FlowError::WrongStatus(FlowStatus::UserCodeRequired))
        );
        let (f, g) = f.verify_user_code(Some(&grant), t(2)).unwrap();
        assert_eq!(f.status, FlowStatus::ConsentRequired);
        let (f, g) = f.consent(&g, false, t(3)).unwrap();
        assert_eq!(f.result, Some(FlowResult::Denied));
        assert_eq!(g.status, GrantStatus::Denied);
    }

    #[test]
    fn five_wrong_codes_fail_the_flow() {
        let mut f = flow("f1");
        for left in (0..MAX_WRONG_CODES).rev() {
            let r = f.verify_user_code(None, t(1)).unwrap_err();
            assert_eq!(
                r.error,
                FlowError::WrongCode {
                    attempts_left: left
                }
            );
            f = *r.next.unwrap();
        }
        assert_eq!(f.status, FlowStatus::Failed);
        let grant = DeviceGrant::example_pending("cli", t(0));
        assert_eq!(
            f.verify_user_code(Some(&grant), t(2)).unwrap_err().error,
            FlowError::WrongStatus(FlowStatus::Failed)
        );
    }

    #[test]
    fn a_code_held_by_one_live_flow_cannot_be_taken_or_consented_by_another() {
        let grant = DeviceGrant {
            expires_at: t(3600),
            ..DeviceGrant::example_pending("cli", t(0))
        };
        let (a, g) = flow("a")
            .sign_on("u1", t(1))
            .unwrap()
            .verify_user_code(Some(&grant), t(2))
            .unwrap();
        let b = Flow::new(
            "default",
            "b".into(),
            SecretHash::of(b"b"),
            t(500),
            Duration::from_secs(900),
        )
        .sign_on("u2", t(501))
        .unwrap();
        let refused = b.verify_user_code(Some(&g), t(3)).unwrap_err();
        assert_eq!(
            (refused.error, refused.next),
            (FlowError::CodeClaimed, None)
        );
        // Even a flow that somehow holds the grant id cannot consent to a grant it does not hold.
        let forged = Flow {
            grant_id: Some(g.id.clone()),
            status: FlowStatus::ConsentRequired,
            ..b.clone()
        };
        assert_eq!(forged.consent(&g, true, t(3)), Err(FlowError::CodeUsed));
        // Once the holding flow has ended, another may take the code.
        let (b, g2) = b.verify_user_code(Some(&g), a.expires_at).unwrap();
        assert_eq!(g2.flow_id.as_deref(), Some("b"));
        assert!(b.consent(&g2, true, t(1000)).is_ok());
    }

    #[test]
    fn only_a_fresh_flow_is_adopted_and_under_a_new_key() {
        let key = SecretHash::of(b"new");
        let f = flow("f");
        let adopted = f.adopt(key, t(1)).unwrap();
        assert_eq!((adopted.secret_hash, adopted.status), (key, f.status));
        let signed_on = f.sign_on("u1", t(1)).unwrap();
        assert_eq!(signed_on.adopt(key, t(2)), Err(FlowError::Held));
        let grant = DeviceGrant::example_pending("cli", t(0));
        let (with_code, _) = f.verify_user_code(Some(&grant), t(1)).unwrap();
        assert_eq!(with_code.adopt(key, t(2)), Err(FlowError::Held));
        assert_eq!(f.adopt(key, t(900)), Err(FlowError::Expired));
    }

    #[test]
    fn another_tenants_code_is_a_wrong_code() {
        let grant = DeviceGrant {
            tenant: "acme".into(),
            ..DeviceGrant::example_pending("cli", t(0))
        };
        let refused = flow("f").verify_user_code(Some(&grant), t(1)).unwrap_err();
        assert_eq!(refused.error, FlowError::WrongCode { attempts_left: 4 });
    }

    #[test]
    fn auth_time_is_the_sign_on_not_the_consent() {
        let grant = DeviceGrant::example_pending("cli", t(0));
        let f = flow("f").sign_on("u1", t(10)).unwrap();
        let (f, g) = f.verify_user_code(Some(&grant), t(20)).unwrap();
        let (_, g) = f.consent(&g, true, t(30)).unwrap();
        assert!(matches!(g.status, GrantStatus::Approved { auth_time, .. } if auth_time == t(10)));
    }

    #[test]
    fn used_expired_codes_and_expired_flows_are_told_apart() {
        let grant = DeviceGrant::example_pending("cli", t(0));
        let used = grant.deny(t(1)).unwrap();
        let f = flow("f");
        assert_eq!(
            f.verify_user_code(Some(&used), t(2)).unwrap_err().error,
            FlowError::CodeUsed
        );
        assert_eq!(
            f.verify_user_code(Some(&grant), t(600)).unwrap_err().error,
            FlowError::CodeExpired
        );
        assert_eq!(
            f.verify_user_code(Some(&grant), t(900)).unwrap_err().error,
            FlowError::Expired
        );
    }
}
