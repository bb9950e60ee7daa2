//! The pending index's upkeep: loading every pending grant's poll state from the file,
//! writing held poll state back (lengthened intervals every `FLUSH_EVERY`, 25 ms, the rest
//! when the store closes), and reloading the index when another process changed the file
//! (`PRAGMA data_version`, looked at every `FLUSH_EVERY` too). A `kill -9` forgets the poll
//! times not yet written, which spares at most a `slow_down`, never a decision.

use std::sync::atomic::Ordering;

use devicegate_core::grant::PollPace;
use devicegate_core::{SecretHash, Timestamp};
use rusqlite::{Connection, params};

use super::codec::internal;
use super::writer::{Job, Reply};
use super::{Inner, lock};
use crate::pending::{Loaded, Unwritten};
use crate::{Result, StoreError};

/// How often lengthened intervals are written, and another process's writes looked for.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(25);

/// Every pending grant with its poll state, for the [`OwnerIndex`](crate::pending::OwnerIndex).
pub(super) fn load_pending(conn: &Connection) -> Result<Vec<Loaded>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT device_code_hash, version, tenant, client_id, expires_at, last_poll_at, \
             interval_secs, rowid FROM device_grants WHERE status = 'pending'",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map([], |r| {
            let hash: Vec<u8> = r.get(0)?;
            Ok((
                hash,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .map_err(internal)?;
    let mut out = Vec::new();
    for row in rows {
        let (hash, version, tenant, client_id, expires_at, last_poll_at, interval_secs, row) =
            row.map_err(internal)?;
        let hash = SecretHash::from_bytes(&hash)
            .ok_or_else(|| StoreError::Internal("a device code hash is not 32 bytes".into()))?;
        out.push(Loaded {
            hash,
            row,
            version,
            tenant,
            client_id,
            expires_at: Timestamp::from_millis(expires_at),
            pace: PollPace {
                interval_secs,
                last_poll_at: last_poll_at.map(Timestamp::from_millis),
            },
        });
    }
    Ok(out)
}

/// Writes held poll state back, without bumping versions (nothing was decided).
pub(super) fn write_pace(conn: &Connection, unwritten: &[Unwritten]) -> bool {
    let mut ok = true;
    for u in unwritten {
        let written = conn
            .prepare_cached(
                "UPDATE device_grants SET last_poll_at = ?1, interval_secs = ?2 \
                 WHERE rowid = ?3 AND version = ?4 AND device_code_hash = ?5",
            )
            .and_then(|mut s| {
                s.execute(params![
                    u.pace.last_poll_at.map(Timestamp::as_millis),
                    u.pace.interval_secs,
                    u.row,
                    u.base,
                    u.hash.as_bytes()
                ])
            });
        ok &= written.is_ok();
    }
    ok
}

/// `PRAGMA data_version`: changes when another connection (another process: every write of
/// this one goes through the writer connection) commits.
pub(super) fn data_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(internal)
}

/// The store's background thread: every few milliseconds, writes lengthened intervals, and
/// reloads the pending index if another process changed the database (`devicegate client
/// delete` beside a running server, say).
pub(super) fn maintain_forever(inner: std::sync::Weak<Inner>) {
    loop {
        std::thread::sleep(FLUSH_EVERY);
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (pending, seen) = (strong.pending.clone(), strong.data_version.clone());
        let job: Job = Box::new(move |conn| {
            let mut ok = true;
            // Another process's writes first: they may have deleted or reused rows.
            if let Ok(v) = data_version(conn)
                && seen.swap(v, Ordering::Relaxed) != v
            {
                match load_pending(conn) {
                    Ok(loaded) => pending.reload(loaded),
                    Err(_) => ok = false,
                }
            }
            ok &= write_pace(conn, &pending.take_lengthened());
            let reply: Reply = Box::new(|_| {});
            (ok, reply)
        });
        let _ = lock(&strong.writer).send(job);
    }
}
