//! The audit trail: who did what to which device, from where. Each event is one JSON log
//! line (target `audit`) and one `audit_events` row, kept `audit_retention_days` and swept.
//!
//! An event that records a change is written in the same transaction as the change (the
//! store methods take the events: `create_grant`, `update_flow`, `redeem_grant`,
//! `revoke_refresh_family`), riding the same group commit on SQLite and the same statement
//! or transaction on PostgreSQL, and logged once committed. An event with no change of its
//! own (a failed sign-in) is queued to one writer task per instance, which appends in
//! batches. Never a secret: ids, names, addresses, user agents.

use std::net::IpAddr;

use devicegate_core::Timestamp;
use devicegate_store::{AuditEvent, Store};
use tokio::sync::mpsc;

use crate::now;
use crate::tenant::Tenant;

/// Events waiting for the writer; past this, new events are logged but not stored (a flood
/// cannot grow memory without bound).
const QUEUE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Audit {
    queue: mpsc::Sender<AuditEvent>,
}

impl Audit {
    /// Starts the writer on the current runtime.
    pub fn start(store: std::sync::Arc<dyn Store>) -> Audit {
        let (queue, mut rx) = mpsc::channel::<AuditEvent>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while rx.recv_many(&mut batch, 512).await > 0 {
                if let Err(e) = store.append_audit(&batch).await {
                    tracing::error!(error = %e, lost = batch.len(), "could not store audit events");
                }
                batch.clear();
            }
        });
        Audit { queue }
    }

    fn send(&self, e: AuditEvent) {
        log(&e);
        if self.queue.try_send(e).is_err() {
            tracing::error!("the audit queue is full: an event was not stored");
        }
    }
}

/// The event's JSON log line (target `audit`).
pub fn log(e: &AuditEvent) {
    tracing::info!(
        target: "audit",
        event = %e.event,
        tenant = %e.tenant,
        actor = e.actor.as_deref().unwrap_or(""),
        client = e.client_id.as_deref().unwrap_or(""),
        ip = e.ip.as_deref().unwrap_or(""),
        user_agent = e.user_agent.as_deref().unwrap_or(""),
        grant = e.grant_id.as_deref().unwrap_or(""),
        family = e.family_id.as_deref().unwrap_or(""),
        detail = e.detail.as_deref().unwrap_or(""),
        "audit"
    );
}

/// One event being described.
#[derive(Debug)]
pub struct Event(AuditEvent);

impl Event {
    pub fn new(tenant: &Tenant, event: &str) -> Event {
        Event(AuditEvent {
            at: now(),
            tenant: tenant.id.clone(),
            event: event.to_owned(),
            ..AuditEvent::default()
        })
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Event {
        self.0.actor = Some(actor.into());
        self
    }

    pub fn client(mut self, client: impl Into<String>) -> Event {
        self.0.client_id = Some(client.into());
        self
    }

    pub fn ip(mut self, ip: IpAddr) -> Event {
        self.0.ip = Some(ip.to_string());
        self
    }

    pub fn user_agent(mut self, ua: Option<&str>) -> Event {
        self.0.user_agent = ua.map(|u| u.chars().take(256).collect());
        self
    }

    pub fn grant(mut self, grant: impl Into<String>) -> Event {
        self.0.grant_id = Some(grant.into());
        self
    }

    pub fn family(mut self, family: impl Into<String>) -> Event {
        self.0.family_id = Some(family.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        self.0.detail = Some(detail.into());
        self
    }

    pub fn at(mut self, at: Timestamp) -> Event {
        self.0.at = at;
        self
    }

    /// Logs the event and queues it for the store: for an event with no change of its own
    /// to ride with (a failed sign-in).
    pub fn record(self, state: &crate::AppState) {
        state.audit.send(self.0);
    }

    /// The event as a record, to store in the same transaction as its change (then
    /// [`log`] it once that committed).
    pub fn done(self) -> AuditEvent {
        self.0
    }
}
