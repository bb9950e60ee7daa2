//! Numbered migrations in `migrations/postgres/`, applied on connect under an advisory lock.

use deadpool_postgres::Pool;

use super::codec::pg;
use crate::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_refresh_family_start.sql"),
    include_str!("../../migrations/postgres/0003_rate_limits.sql"),
    include_str!("../../migrations/postgres/0004_upstreams.sql"),
    include_str!("../../migrations/postgres/0005_idp.sql"),
    include_str!("../../migrations/postgres/0006_upstream_link_per_user.sql"),
    include_str!("../../migrations/postgres/0007_second_factors.sql"),
    include_str!("../../migrations/postgres/0008_passkeys.sql"),
    include_str!("../../migrations/postgres/0009_revocations.sql"),
    include_str!("../../migrations/postgres/0010_device_policy.sql"),
];
/// Taken while migrating, so that instances starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6465_7669_6365_6761;
/// Taken while creating a signing key, so that instances starting together agree on one.
pub(super) const KEY_LOCK: i64 = MIGRATION_LOCK + 1;

/// Applies pending migrations under an advisory lock; returns how many ran.
pub(super) async fn migrate(pool: &Pool) -> Result<usize> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS devicegate_schema (version INTEGER NOT NULL)")
        .await
        .map_err(pg)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::BIGINT FROM devicegate_schema",
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    let current = current as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "database schema version {current} is newer than this devicegate ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO devicegate_schema (version) VALUES ($1)",
            &[&((i + 1) as i32)],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(MIGRATIONS.len() - current)
}
