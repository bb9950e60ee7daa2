//! Hearing the other instances: one self-reconnecting `LISTEN` connection per instance, for
//! grant changes (`devicegate_grants`, re-broadcast to `Store::subscribe` and invalidating the
//! [`SharedCache`]) and the others' poll pace (`devicegate_polls`).
//!
//! Every instance hears its own heartbeat at least once a second (`pace.rs`), so a listener
//! that hears nothing for 4 s (`HEARTBEAT * 4`) reconnects, even when TCP has not noticed a
//! dead connection. While not listening the cache is deaf and answers no poll.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devicegate_core::SecretHash;
use devicegate_core::grant::DeviceGrant;
use tokio::sync::broadcast;
use tokio_postgres::NoTls;

use super::pace::{HEARTBEAT, POLLS_CHANNEL, decode_paces};
use crate::GrantChanged;
use crate::pending::SharedCache;

pub(super) const CHANNEL: &str = "devicegate_grants";
/// The `CHANNEL` payload that says grants were deleted in bulk.
pub(super) const ALL_GRANTS: &str = "*";

/// The `CHANNEL` payload for a change to grant `g`.
pub(super) fn grant_payload(g: &DeviceGrant) -> String {
    format!(
        "{} {}",
        g.id,
        URL_SAFE_NO_PAD.encode(g.device_code_hash.as_bytes())
    )
}

/// What the listener serves: the subscribers, the pending index, and who this instance is.
pub(super) struct Listening {
    pub(super) out: broadcast::Sender<GrantChanged>,
    pub(super) pending: Arc<SharedCache>,
    pub(super) instance: String,
}

impl Listening {
    fn heard(&self, channel: &str, payload: &str) {
        if channel == POLLS_CHANNEL {
            for (hash, pace) in decode_paces(&self.instance, payload) {
                self.pending.merge_remote(hash, pace);
            }
            return;
        }
        if payload == ALL_GRANTS {
            self.pending.invalidate_all();
            return;
        }
        let (grant_id, hash) = payload.split_once(' ').unwrap_or((payload, ""));
        match URL_SAFE_NO_PAD
            .decode(hash)
            .ok()
            .and_then(|b| SecretHash::from_bytes(&b))
        {
            Some(hash) => self.pending.invalidate(&hash),
            None => self.pending.invalidate_all(),
        }
        let _ = self.out.send(GrantChanged {
            grant_id: grant_id.to_owned(),
        });
    }
}

/// One LISTEN connection per instance, forwarding announcements; reconnects forever.
/// Announcements made while it is disconnected are lost: waiters re-read the grant after
/// a timeout, as they must anyway, and the pending index stops answering until each grant
/// is read again.
pub(super) async fn listen_forever(
    config: tokio_postgres::Config,
    listening: Listening,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    use futures_util::StreamExt;
    loop {
        if let Ok((client, mut conn)) = config.connect(NoTls).await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
            let driver = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message {
                        let _ = tx.send((n.channel().to_owned(), n.payload().to_owned()));
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {POLLS_CHANNEL}"))
                .await
                .is_ok()
            {
                // Whatever was announced while not listening is unknown here.
                listening.pending.set_listening(true);
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                // Every instance hears its own heartbeat at least every `HEARTBEAT`: silence
                // means a dead connection, even one TCP has not noticed yet.
                while let Ok(Some((channel, payload))) =
                    tokio::time::timeout(HEARTBEAT * 4, rx.recv()).await
                {
                    listening.heard(&channel, &payload);
                }
            }
            listening.pending.set_listening(false);
            driver.abort();
            tracing::warn!("lost the PostgreSQL LISTEN connection; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
