//! Numbered migrations in `migrations/sqlite/`, applied on open, each in one transaction
//! with its `PRAGMA user_version`.

use rusqlite::Connection;

use super::codec::internal;
use crate::{Result, StoreError};

/// Numbered migrations, applied in order; `PRAGMA user_version` records the last one.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_sessions.sql"),
    include_str!("../../migrations/sqlite/0003_device_code_selectors.sql"),
    include_str!("../../migrations/sqlite/0004_refresh_family_start.sql"),
    include_str!("../../migrations/sqlite/0005_upstreams.sql"),
    include_str!("../../migrations/sqlite/0006_idp.sql"),
    include_str!("../../migrations/sqlite/0007_upstream_link_per_user.sql"),
    include_str!("../../migrations/sqlite/0008_second_factors.sql"),
    include_str!("../../migrations/sqlite/0009_passkeys.sql"),
    include_str!("../../migrations/sqlite/0010_revocations.sql"),
    include_str!("../../migrations/sqlite/0011_device_policy.sql"),
];

/// Applies the migrations the database lacks; returns how many ran.
pub(super) fn migrate(conn: &mut Connection) -> Result<usize> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(internal)?;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "database schema version {current} is newer than this devicegate ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        // Each migration and its version number commit together, or not at all; the write
        // lock is taken first, so that of two processes starting at once only one migrates.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(internal)?;
        let now: usize = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(internal)?;
        if now > i {
            continue;
        }
        tx.execute_batch(sql).map_err(internal)?;
        tx.pragma_update(None, "user_version", i + 1)
            .map_err(internal)?;
        tx.commit().map_err(internal)?;
    }
    Ok(MIGRATIONS.len() - current)
}
