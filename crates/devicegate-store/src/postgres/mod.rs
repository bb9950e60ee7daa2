//! The PostgreSQL backend, for several instances behind a load balancer.
//!
//! tokio-postgres with a deadpool pool, statements prepared once per connection. Every
//! compare-and-swap is a single conditional `UPDATE … WHERE version = $n`, so it holds across
//! instances exactly as within one. Grant changes are announced with `NOTIFY` inside the
//! changing transaction (delivered on commit) and received by one `LISTEN` connection per
//! instance, which reconnects by itself. When the database cannot be reached, calls fail fast
//! with [`StoreError::Unavailable`] (2 s connect, pool wait, create and recycle timeouts) and
//! the pool reconnects once it is back.
//!
//! Pending polls are answered from each instance's [`SharedCache`]: an entry answers once a
//! compare-and-swap in the database admitted it, until a `NOTIFY` says its grant changed.
//! Each instance sends the pace of its polls to the others every 10 ms
//! (`NOTIFY devicegate_polls`), so that `slow_down` holds whichever instance a device polls;
//! lengthened intervals are also written to the database.
//!
//! This file connects and holds the pools and the query helpers; each job has its own file:
//! - `listen.rs`: the `LISTEN` connection, grant announcements in and out;
//! - `pace.rs`: poll pace told to and heard from the other instances;
//! - `migrate.rs`: the numbered migrations, and the advisory locks;
//! - `store_impl.rs`: the `Store` trait;
//! - `codec.rs`: rows to records, and tokio-postgres errors to sentinel errors.

mod codec;
mod listen;
mod migrate;
mod pace;
mod store_impl;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use tokio::sync::broadcast;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::pending::SharedCache;
use crate::{GrantChanged, Result, StoreError};
use codec::pg;
use listen::{Listening, listen_forever};
use pace::pace_forever;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    polls: Pool,
    grants: broadcast::Sender<GrantChanged>,
    pending: Arc<SharedCache>,
    listener: tokio::task::JoinHandle<()>,
    pacer: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
        self.pacer.abort();
    }
}

/// A pool with short timeouts, so that an unreachable database is a prompt `Unavailable`.
fn new_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .timeouts(Timeouts {
            wait: Some(Duration::from_secs(2)),
            create: Some(Duration::from_secs(2)),
            recycle: Some(Duration::from_secs(2)),
        })
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

impl PostgresStore {
    /// Connects, applies pending migrations, and starts listening for grant changes.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::Internal(format!("bad database URL: {e}"))
        })?;
        let mut config = config;
        config.connect_timeout(Duration::from_secs(2));
        let pool = new_pool(config.clone(), 16)?;
        // Poll bookkeeping goes through connections that do not wait for the WAL flush:
        // a crash can lose the last poll times (sparing a `slow_down`), never a decision.
        let mut relaxed = config.clone();
        relaxed.options("-c synchronous_commit=off");
        let polls = new_pool(relaxed, 8)?;
        migrate::migrate(&pool).await?;
        let grants = broadcast::channel(1024).0;
        let pending = Arc::new(SharedCache::default());
        let instance = devicegate_core::secret::random_id();
        // Return once this instance listens, so that no announcement made after `connect`
        // is missed (a subscriber may act at once).
        let (ready, listening) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen_forever(
            config,
            Listening {
                out: grants.clone(),
                pending: pending.clone(),
                instance: instance.clone(),
            },
            ready,
        ));
        let _ = tokio::time::timeout(Duration::from_secs(2), listening).await;
        let pacer = tokio::spawn(pace_forever(polls.clone(), pending.clone(), instance));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                polls,
                grants,
                pending,
                listener,
                pacer,
            }),
        })
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub(super) async fn opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.query_opt(&stmt, params).await.map_err(pg)
    }

    pub(super) async fn one<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: fn(&Row) -> Result<T>,
    ) -> Result<T> {
        match self.opt(sql, params).await? {
            Some(row) => map(&row),
            None => Err(StoreError::NotFound),
        }
    }

    pub(super) async fn all<T>(&self, sql: &str, map: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.all_with(sql, &[], map).await
    }

    pub(super) async fn all_for<T>(
        &self,
        sql: &str,
        param: &str,
        map: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        self.all_with(sql, &[&param], map).await
    }

    /// Every row `sql` finds with `params`.
    pub(super) async fn all_with<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        map: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client
            .query(&stmt, params)
            .await
            .map_err(pg)?
            .iter()
            .map(map)
            .collect()
    }

    /// `exec`, which must change a row (`NotFound` otherwise).
    pub(super) async fn exec_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<()> {
        match self.exec(sql, params).await? {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    pub(super) async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&stmt, params).await.map_err(pg)
    }
}
