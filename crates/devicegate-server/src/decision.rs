//! Waiting for a person's decision on a grant, without polling the database.
//!
//! A surface that holds a request open until the grant is approved or denied (Ocient's
//! `sso_device_grant_verify`) hands [`wait`] a step that reads the grant and either answers
//! or says it is still pending. Between steps the wait sleeps on the store's grant-change
//! announcements (every instance's, on PostgreSQL) and wakes for the grant's own, so a
//! decision is seen within the announcement's delay, and an idle wait costs nothing.

use std::future::Future;

use devicegate_core::grant::GrantStatus;
use devicegate_store::StoreError;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::tenant::Tenant;

/// One look at the grant.
pub(crate) enum Look<T> {
    /// Decided: the answer.
    Decided(T),
    /// Still pending; wake on changes to this grant.
    Pending { grant_id: String },
}

/// Looks at the grant until it is decided, waking on announcements about it; `None` if
/// `deadline` passed while the person had not decided. Subscribes before the first look, so
/// no decision slips between a look and the wait after it; at the deadline, reads the grant
/// once more, and looks again if it was decided meanwhile.
pub(crate) async fn wait<T, E, F, Fut>(
    tenant: &Tenant,
    deadline: Instant,
    mut look: F,
) -> Result<Option<T>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look<T>, E>>,
    E: From<StoreError>,
{
    let mut changes = tenant.store.subscribe();
    loop {
        let grant_id = match look().await? {
            Look::Decided(out) => return Ok(Some(out)),
            Look::Pending { grant_id } => grant_id,
        };
        let heard = tokio::time::timeout_at(deadline, async {
            loop {
                match changes.recv().await {
                    Ok(c) if c.grant_id == grant_id => return true,
                    Ok(_) => continue,
                    // Announcements were missed: look again to be sure.
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                }
            }
        })
        .await;
        if heard != Ok(true) {
            // The decision may have landed just at the deadline; a grant still undecided
            // (even if it expired meanwhile) timed out.
            let grant = tenant.store.get_grant(&grant_id).await?;
            if grant.status == GrantStatus::Pending {
                return Ok(None);
            }
            return match look().await? {
                Look::Decided(out) => Ok(Some(out)),
                Look::Pending { .. } => Ok(None),
            };
        }
    }
}
