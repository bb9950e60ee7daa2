//! The pace of this instance's polls, told to the other instances: every `PACE_EVERY`
//! (10 ms), the poll state the [`SharedCache`] gathered goes out as `NOTIFY devicegate_polls`
//! payloads (binary records in base64, `PACES_PER_NOTIFY` = 120 per payload, under
//! PostgreSQL's 8,000 bytes), and lengthened intervals are written to the database. With
//! nothing to tell, an instance still notifies once every `HEARTBEAT` (1 s), so that
//! listeners can tell a quiet channel from a dead connection. The listener (`listen.rs`)
//! hears the others' and merges them (the later poll, the longer interval).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deadpool_postgres::Pool;
use devicegate_core::grant::PollPace;
use devicegate_core::{SecretHash, Timestamp};

use super::codec::pg;
use crate::pending::{SharedCache, Unwritten};
use crate::{Result, StoreError};

/// Instances' poll pace: `<instance> <base64 of records>` (see [`encode_paces`]).
pub(super) const POLLS_CHANNEL: &str = "devicegate_polls";
/// How often an instance tells the others of its polls.
const PACE_EVERY: Duration = Duration::from_millis(10);
/// How often an instance notifies at least once (a pace payload with no records), so that
/// its listener can tell a quiet channel from a dead connection.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);
/// Pace records per `NOTIFY` (payloads stay under PostgreSQL's 8,000 bytes).
const PACES_PER_NOTIFY: usize = 120;
const PACE_RECORD: usize = 32 + 8 + 4;

/// Poll pace as `NOTIFY` payloads: per grant, its device code hash, last poll (ms) and
/// interval, in base64.
fn encode_paces(instance: &str, paces: &[Unwritten]) -> Vec<String> {
    if paces.is_empty() {
        // A heartbeat.
        return vec![format!("{instance} ")];
    }
    paces
        .chunks(PACES_PER_NOTIFY)
        .map(|chunk| {
            let mut bytes = Vec::with_capacity(chunk.len() * PACE_RECORD);
            for u in chunk {
                bytes.extend_from_slice(u.hash.as_bytes());
                let last = u.pace.last_poll_at.map_or(i64::MIN, Timestamp::as_millis);
                bytes.extend_from_slice(&last.to_be_bytes());
                bytes.extend_from_slice(&u.pace.interval_secs.to_be_bytes());
            }
            format!("{instance} {}", URL_SAFE_NO_PAD.encode(bytes))
        })
        .collect()
}

/// The records of a pace payload, unless it is this instance's own or malformed.
pub(super) fn decode_paces(instance: &str, payload: &str) -> Vec<(SecretHash, PollPace)> {
    let Some((from, data)) = payload.split_once(' ') else {
        return Vec::new();
    };
    if from == instance {
        return Vec::new();
    }
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(data) else {
        return Vec::new();
    };
    bytes
        .chunks_exact(PACE_RECORD)
        .filter_map(|r| {
            let hash = SecretHash::from_bytes(&r[..32])?;
            let last = i64::from_be_bytes(r[32..40].try_into().ok()?);
            let interval_secs = u32::from_be_bytes(r[40..44].try_into().ok()?);
            let last_poll_at = (last != i64::MIN).then(|| Timestamp::from_millis(last));
            Some((
                hash,
                PollPace {
                    interval_secs,
                    last_poll_at,
                },
            ))
        })
        .collect()
}

/// Every `PACE_EVERY`: tells the other instances the pace of this one's polls, and writes
/// lengthened intervals to the database. On the relaxed pool: losing a batch in a crash
/// spares at most one `slow_down`.
pub(super) async fn pace_forever(polls: Pool, pending: Arc<SharedCache>, instance: String) {
    let mut tick = tokio::time::interval(PACE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = std::time::Instant::now();
    let mut last_sent = std::time::Instant::now();
    loop {
        tick.tick().await;
        if last_prune.elapsed() > Duration::from_secs(10) {
            last_prune = std::time::Instant::now();
            // Expired an hour ago: the sweep deletes such grants from the database.
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            pending.prune(Timestamp::from_millis(now_ms - 3_600_000));
        }
        let paces = pending.take_all_dirty();
        if paces.is_empty() && last_sent.elapsed() < HEARTBEAT {
            continue;
        }
        last_sent = std::time::Instant::now();
        if let Err(e) = send_paces(&polls, &instance, &paces).await {
            tracing::debug!(error = %e, "could not send poll pace");
        }
    }
}

async fn send_paces(polls: &Pool, instance: &str, paces: &[Unwritten]) -> Result<()> {
    let client = polls
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let payloads = encode_paces(instance, paces);
    client
        .execute(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
            &[&POLLS_CHANNEL, &payloads],
        )
        .await
        .map_err(pg)?;
    let lengthened: Vec<&Unwritten> = paces.iter().filter(|u| u.lengthened).collect();
    if !lengthened.is_empty() {
        let hashes: Vec<&[u8]> = lengthened
            .iter()
            .map(|u| u.hash.as_bytes().as_slice())
            .collect();
        let intervals: Vec<i64> = lengthened
            .iter()
            .map(|u| i64::from(u.pace.interval_secs))
            .collect();
        let lasts: Vec<Option<i64>> = lengthened
            .iter()
            .map(|u| u.pace.last_poll_at.map(Timestamp::as_millis))
            .collect();
        client
            .execute(
                "UPDATE device_grants AS g SET interval_secs = GREATEST(g.interval_secs, u.i), \
                 last_poll_at = GREATEST(g.last_poll_at, u.l) \
                 FROM unnest($1::bytea[], $2::bigint[], $3::bigint[]) AS u(h, i, l) \
                 WHERE g.device_code_hash = u.h",
                &[&hashes, &intervals, &lasts],
            )
            .await
            .map_err(pg)?;
    }
    Ok(())
}
