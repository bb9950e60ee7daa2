//! Reads: a pool of reader connections, used inline on the calling task, and the read
//! helpers the `Store` methods use.

use devicegate_core::grant::DeviceGrant;
use rusqlite::{Connection, Params, Row};

use super::codec::grant_from_row;
use super::queries::{get_all, get_all_for, get_all_with, get_one};
use super::{Inner, SqliteStore, lock, open_connection};
use crate::Result;

/// Idle reader connections kept; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 64;

impl SqliteStore {
    /// Runs a read on a pooled reader connection, right here on the calling task.
    ///
    /// Reads are point lookups by key, a few microseconds each, and in WAL mode a reader never
    /// waits for the writer; handing them to the blocking pool cost more than running them
    /// (the hop was most of a pending poll's cost), so they run inline.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        read_now(&self.inner, f)
    }

    /// The one row `sql` finds (`NotFound` if none), read like `read`.
    pub(super) async fn one<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        read_now(&self.inner, |conn| get_one(conn, sql, params, map))
    }

    /// Every row `sql` finds, read like `read`.
    pub(super) async fn all<T>(
        &self,
        sql: &str,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        read_now(&self.inner, |conn| get_all(conn, sql, map))
    }

    /// Every row `sql` finds with one parameter (a tenant), read like `read`.
    pub(super) async fn all_for<T>(
        &self,
        sql: &str,
        param: &str,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        read_now(&self.inner, |conn| get_all_for(conn, sql, param, map))
    }

    /// Every row `sql` finds with `params`, read like `read`.
    pub(super) async fn all_with<T>(
        &self,
        sql: &str,
        params: impl Params,
        map: fn(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        read_now(&self.inner, |conn| get_all_with(conn, sql, params, map))
    }

    /// The grant `sql` finds, with the polls held in memory applied.
    pub(super) async fn grant(&self, sql: &str, params: impl Params) -> Result<DeviceGrant> {
        let mut grant = self.one(sql, params, grant_from_row).await?;
        self.inner.pending.overlay(&mut grant);
        Ok(grant)
    }
}

/// `read`, synchronously.
fn read_now<T>(inner: &Inner, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let pooled = lock(&inner.readers).pop();
    let conn = match pooled {
        Some(c) => c,
        None => open_connection(&inner.path)?,
    };
    let out = f(&conn);
    let mut readers = lock(&inner.readers);
    if readers.len() < MAX_IDLE_READERS {
        readers.push(conn);
    }
    out
}
