//! The embedded SQLite backend, on rusqlite.
//!
//! rusqlite rather than sqlx: on this machine sqlx's per-query cost on SQLite measured 4–17×
//! the engine's own, and the poll path is a point select plus a conditional update. Writes go
//! to one writer thread (SQLite allows one writer at a time anyway) that commits every write
//! waiting in one transaction; reads use a pool of reader connections, which WAL lets run
//! beside the writer. `synchronous = NORMAL`: a committed write survives `kill -9`; a power
//! loss may lose the last commits.
//!
//! This file opens the store and holds its parts; each job has its own file:
//! - `writer.rs`: the writer thread, group commit;
//! - `readers.rs`: the pool of reader connections;
//! - `upkeep.rs`: the pending index's poll state loaded from, and written back to, the file;
//! - `migrate.rs`: the numbered migrations;
//! - `queries.rs`: statements several `Store` methods run, and the query helpers;
//! - `store_impl.rs`: the `Store` trait;
//! - `codec.rs`: rows to records, and rusqlite errors to sentinel errors.

mod codec;
mod migrate;
mod queries;
mod readers;
mod store_impl;
#[cfg(test)]
mod tests;
mod upkeep;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::limits::LocalBuckets;
use crate::pending::OwnerIndex;
use crate::{GrantChanged, Result, StoreError};
use codec::internal;
use upkeep::{data_version, load_pending, maintain_forever, write_pace};
use writer::{Job, Reply, write_forever};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    grants: tokio::sync::broadcast::Sender<GrantChanged>,
    writer: Mutex<std::sync::mpsc::Sender<Job>>,
    /// Shared with the writer's jobs, which never hold `Inner` itself: the store's last
    /// handle is dropped on a caller's thread, where `Drop` can wait for the writer.
    pending: Arc<OwnerIndex>,
    /// The writer connection's `PRAGMA data_version` when the index was last (re)loaded.
    data_version: Arc<AtomicI64>,
    readers: Mutex<Vec<Connection>>,
    /// The shared limits' buckets: one process owns a SQLite file, so its memory is where
    /// every request meets (restarting the server empties them).
    limits: LocalBuckets,
}

impl Drop for Inner {
    /// Poll times held in memory reach the file when the store closes (a clean shutdown), so
    /// a restart keeps every `slow_down` pace; only a crash forgets them. Written by the
    /// writer thread, after whatever it is doing, and waited for.
    fn drop(&mut self) {
        let unwritten = self.pending.take_all_dirty();
        if unwritten.is_empty() {
            return;
        }
        let (done, wait) = std::sync::mpsc::channel();
        let job: Job = Box::new(move |conn| {
            let ok = write_pace(conn, &unwritten);
            let reply: Reply = Box::new(move |committed| {
                let _ = done.send(committed.map(|()| ok));
            });
            (ok, reply)
        });
        let sent = lock(&self.writer).send(job).is_ok();
        match wait.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Ok(true)) if sent => {}
            _ => tracing::warn!("could not write the last poll times at close"),
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(internal)?;
    // WAL lets readers run beside the writer; NORMAL is durable across process crashes
    // (an answered request survives kill -9), losing at most the last commits on power loss.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )
    .map_err(internal)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_connection(&path)?;
        migrate::migrate(&mut writer)?;
        let pending = Arc::new(OwnerIndex::default());
        pending.reload(load_pending(&writer)?);
        let data_version = Arc::new(AtomicI64::new(data_version(&writer)?));
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("devicegate-sqlite-writer".into())
            .spawn(move || write_forever(writer, queue))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path,
                grants: tokio::sync::broadcast::channel(1024).0,
                writer: Mutex::new(jobs),
                pending,
                data_version,
                readers: Mutex::new(Vec::new()),
                limits: LocalBuckets::default(),
            }),
        };
        let weak = Arc::downgrade(&store.inner);
        std::thread::Builder::new()
            .name("devicegate-sqlite-upkeep".into())
            .spawn(move || maintain_forever(weak))
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(store)
    }

    /// Applies pending migrations to the database at `path`; returns how many ran.
    pub fn migrate(path: impl AsRef<Path>) -> Result<usize> {
        migrate::migrate(&mut open_connection(path.as_ref())?)
    }
}
