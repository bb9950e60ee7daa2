//! The embedded SQLite backend, on rusqlite.
//!
//! rusqlite rather than sqlx: on this machine sqlx's per-query cost on SQLite measured 4–17×
//! the engine's own, and the poll path is a point select plus a conditional update. Writes go
//! to one writer thread (SQLite allows one writer at a time anyway) that commits every write
//! waiting in one transaction; reads use a pool of reader connections, which WAL lets run
//! beside the writer.

mod codec;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use devicegate_core::flow::Flow;
use devicegate_core::grant::{DeviceGrant, PollPace};
use devicegate_core::secret::ORDERED_ID_LEN;
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::TENANT_TABLES;
use crate::limits::{Admission, LimitTake, LocalBuckets};
use crate::pending::{Loaded, PendingIndex, Unwritten};
use crate::records::{
    BrowserSession, ClientRecord, KeyRecord, RefreshToken, SweepCounts, TenantRecord, UserRecord,
};
use crate::{GrantChanged, HeldPoll, PendingCodes, Result, Store, StoreError};
use codec::*;

/// A write, run inside the group transaction: says whether it succeeded, and how to answer
/// once the transaction's fate is known.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;
type Reply = Box<dyn FnOnce(Result<()>) + Send>;

/// Most writes committed together in one transaction.
const MAX_GROUP: usize = 256;

/// The writer thread: group commit. Takes every write waiting, runs each in its own savepoint
/// (a failing one is rolled back alone), commits once, then answers them all. Under load this
/// turns many commits into one; alone, a write commits at once.
fn write_forever(conn: Connection, queue: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            let e = internal(e);
            for job in jobs {
                let (_, reply) = job(&conn);
                reply(Err(e.clone()));
            }
            continue;
        }
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let savepoint = run_cached(&conn, "SAVEPOINT job");
            let (ok, reply) = job(&conn);
            let ended = savepoint.and_then(|()| {
                if !ok {
                    run_cached(&conn, "ROLLBACK TO job")?;
                }
                run_cached(&conn, "RELEASE job")
            });
            replies.push((reply, ended.map_err(internal)));
        }
        // A savepoint that could not be taken, released or rolled back leaves a job's effects
        // uncertain: then nothing of the group is committed, and every job hears why.
        let committed = match replies.iter().find_map(|(_, ended)| ended.clone().err()) {
            Some(e) => Err(e),
            None => run_cached(&conn, "COMMIT").map_err(internal),
        };
        if committed.is_err() {
            let _ = run_cached(&conn, "ROLLBACK");
        }
        for (reply, _) in replies {
            reply(committed.clone());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often lengthened intervals are written, and another process's writes looked for.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(25);

/// Every pending grant with its poll state, for the [`PendingIndex`].
fn load_pending(conn: &Connection) -> Result<Vec<Loaded>> {
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
fn write_pace(conn: &Connection, unwritten: &[Unwritten]) -> bool {
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
fn data_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(internal)
}

/// The store's background thread: every few milliseconds, writes lengthened intervals, and
/// reloads the pending index if another process changed the database (`devicegate client
/// delete` beside a running server, say).
fn maintain_forever(inner: std::sync::Weak<Inner>) {
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

/// A parameterless statement, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Numbered migrations, applied in order; `PRAGMA user_version` records the last one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_sessions.sql"),
    include_str!("../../migrations/sqlite/0003_device_code_selectors.sql"),
    include_str!("../../migrations/sqlite/0004_refresh_family_start.sql"),
];
/// Idle reader connections kept; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 64;

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
    pending: Arc<PendingIndex>,
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

fn migrate(conn: &mut Connection) -> Result<usize> {
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

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let mut writer = open_connection(&path)?;
        migrate(&mut writer)?;
        let pending = Arc::new(PendingIndex::default());
        pending.reload(load_pending(&writer)?);
        let data_version = Arc::new(AtomicI64::new(self::data_version(&writer)?));
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
        migrate(&mut open_connection(path.as_ref())?)
    }

    /// Runs `f` on the writer thread, inside a savepoint of the current group transaction;
    /// answers after that transaction commits.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_then(f, |_| {}).await
    }

    /// `write`, and once the transaction has committed, `then` with `f`'s result, on the
    /// writer thread before anything else is written or answered: how the pending index
    /// follows the database, whether or not the caller is still waiting.
    async fn write_then<T, F, G>(&self, f: F, then: G) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        G: FnOnce(&T) + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let out = f(conn);
            let ok = out.is_ok();
            let reply: Reply = Box::new(move |committed| {
                if let (Ok(()), Ok(out)) = (&committed, &out) {
                    then(out);
                }
                let _ = answer.send(committed.and(out));
            });
            (ok, reply)
        });
        lock(&self.inner.writer)
            .send(job)
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Internal("the SQLite writer thread has stopped".into()))?
    }

    /// Runs a read on a pooled reader connection, right here on the calling task.
    ///
    /// Reads are point lookups by key, a few microseconds each, and in WAL mode a reader never
    /// waits for the writer; handing them to the blocking pool cost more than running them
    /// (the hop was most of a pending poll's cost), so they run inline.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        read_now(&self.inner, f)
    }

    /// A grant read, with its poll note applied.
    async fn read_grant<F>(&self, f: F) -> Result<DeviceGrant>
    where
        F: FnOnce(&Connection) -> Result<DeviceGrant> + Send + 'static,
    {
        let mut grant = self.read(f).await?;
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

const GRANT_COLUMNS: &str = "id, device_code_hash, user_code, client_id, scopes, status, subject, auth_time, \
     created_at, expires_at, interval_secs, last_poll_at, flow_id, flow_expires_at, requester_ip, requester_agent, \
     version, tenant, context";
const FLOW_COLUMNS: &str = "id, secret_hash, status, grant_id, user_id, signed_on_at, failed_attempts, result, \
     created_at, expires_at, version, tenant";
const CLIENT_COLUMNS: &str = "id, name, secret_hash, scopes, grant_types, device_code_ttl_secs, poll_interval_secs, \
     created_at, tenant";
const USER_COLUMNS: &str = "id, username, password_hash, name, email, created_at, tenant";
const REFRESH_COLUMNS: &str = "hash, family_id, client_id, subject, scopes, auth_time, created_at, expires_at, used, \
     tenant, family_started_at";

fn get_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T> {
    conn.prepare_cached(sql)
        .map_err(internal)?
        .query_row(params, map)
        .optional()
        .map_err(internal)?
        .ok_or(StoreError::NotFound)
}

fn get_all<T>(
    conn: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(internal)?;
    let rows = stmt.query_map([], map).map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(internal)
}

/// All rows of a query with one parameter (a tenant).
fn get_all_for<T>(
    conn: &Connection,
    sql: &str,
    param: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(internal)?;
    let rows = stmt.query_map([param], map).map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(internal)
}

/// The conditional update of a grant; returns the new stored version. `g.version` is the
/// version the caller read, which may include polls held in memory: the compare is then
/// against those, and the update against the stored version they build on.
fn update_grant_in(conn: &Connection, pending: &PendingIndex, g: &DeviceGrant) -> Result<i64> {
    let expected = pending.expected_version(g)?;
    let (status, subject, auth_time) = grant_status_columns(&g.status);
    let n = conn
        .prepare_cached(
            "UPDATE device_grants SET status = ?1, subject = ?2, auth_time = ?3, interval_secs = ?4, \
             last_poll_at = ?5, flow_id = ?6, flow_expires_at = ?7, version = version + 1 \
             WHERE id = ?8 AND version = ?9",
        )
        .map_err(internal)?
        .execute(params![
            status,
            subject,
            auth_time,
            g.interval_secs,
            g.last_poll_at.map(Timestamp::as_millis),
            g.flow_id,
            g.flow_expires_at.map(Timestamp::as_millis),
            g.id,
            expected
        ])
        .map_err(internal)?;
    match n {
        1 => Ok(expected + 1),
        _ => Err(missing_or_conflict(conn, "device_grants", "id", &g.id)),
    }
}

/// Inserts a grant; returns its rowid.
fn insert_grant_in(conn: &Connection, g: &DeviceGrant) -> Result<i64> {
    let (status, subject, auth_time) = grant_status_columns(&g.status);
    conn.prepare_cached(&format!(
        "INSERT INTO device_grants ({GRANT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    ))
    .map_err(internal)?
    .execute(params![
        g.id,
        g.device_code_hash.as_bytes(),
        g.user_code.canonical(),
        g.client_id,
        g.scopes.to_string(),
        status,
        subject,
        auth_time,
        g.created_at.as_millis(),
        g.expires_at.as_millis(),
        g.interval_secs,
        g.last_poll_at.map(Timestamp::as_millis),
        g.flow_id,
        g.flow_expires_at.map(Timestamp::as_millis),
        g.requester.ip,
        g.requester.user_agent,
        g.version,
        g.tenant,
        g.context
    ])
    .map_err(constraint)?;
    Ok(conn.last_insert_rowid())
}

/// Runs `sql`, which changes or deletes one user and returns its id (`NotFound` if none),
/// then ends everything that user signed in to or had under way: refresh tokens and sessions
/// go, approved grants not redeemed yet are denied (with a new version, so that a redemption
/// read before loses its compare-and-swap), and open flows fail. Returns the denied grants,
/// as stored.
fn change_user_in(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<DeviceGrant>> {
    let id: String = conn
        .query_row(sql, params, |r| r.get(0))
        .optional()
        .map_err(internal)?
        .ok_or(StoreError::NotFound)?;
    conn.execute("DELETE FROM refresh_tokens WHERE subject = ?1", [&id])
        .map_err(internal)?;
    conn.execute("DELETE FROM browser_sessions WHERE user_id = ?1", [&id])
        .map_err(internal)?;
    let denied = conn
        .prepare_cached(&format!(
            "UPDATE device_grants SET status = 'denied', subject = NULL, auth_time = NULL, \
             version = version + 1 WHERE status = 'approved' AND subject = ?1 \
             RETURNING {GRANT_COLUMNS}"
        ))
        .map_err(internal)?
        .query_map([&id], grant_from_row)
        .map_err(internal)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(internal)?;
    conn.execute(
        "UPDATE flows SET status = 'FAILED', version = version + 1 \
         WHERE user_id = ?1 AND status NOT IN ('COMPLETED', 'FAILED')",
        [&id],
    )
    .map_err(internal)?;
    Ok(denied)
}

/// After an update that matched no row: was the row gone, or changed?
fn missing_or_conflict(conn: &Connection, table: &str, key: &str, id: &str) -> StoreError {
    let sql = format!("SELECT 1 FROM {table} WHERE {key} = ?1");
    match conn.query_row(&sql, [id], |_| Ok(())).optional() {
        Ok(Some(())) => StoreError::Conflict,
        Ok(None) => StoreError::NotFound,
        Err(e) => internal(e),
    }
}

fn insert_refresh_in(conn: &Connection, t: &RefreshToken) -> Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
    ))
    .map_err(internal)?
    .execute(params![
        t.hash.as_bytes(),
        t.family_id,
        t.client_id,
        t.subject,
        t.scopes.to_string(),
        t.auth_time.as_millis(),
        t.created_at.as_millis(),
        t.expires_at.as_millis(),
        t.used,
        t.tenant,
        t.family_started_at.as_millis()
    ])
    .map_err(constraint)?;
    Ok(())
}

impl SqliteStore {
    /// `change_user_in` on the writer thread: the pending index drops the denied grants
    /// (it holds only pending ones, so this keeps the rule that every grant write reaches
    /// it), and each denial is announced.
    async fn change_user(&self, sql: &'static str, params: Vec<String>) -> Result<()> {
        let pending = self.inner.pending.clone();
        let denied = self
            .write_then(
                move |conn| change_user_in(conn, sql, rusqlite::params_from_iter(params)),
                move |denied: &Vec<DeviceGrant>| {
                    for g in denied {
                        pending.written(g, g.version, None);
                    }
                },
            )
            .await?;
        for g in &denied {
            self.announce(&g.id);
        }
        Ok(())
    }

    /// Announces a committed change; nobody listening is fine.
    fn announce(&self, grant_id: &str) {
        let _ = self.inner.grants.send(GrantChanged {
            grant_id: grant_id.to_owned(),
        });
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GrantChanged> {
        self.inner.grants.subscribe()
    }

    async fn ensure_key(&self, candidate: &KeyRecord) -> Result<Vec<KeyRecord>> {
        let k = candidate.clone();
        self.write(move |conn| {
            let exists = conn
                .query_row(
                    "SELECT 1 FROM signing_keys WHERE tenant = ?1 AND alg = ?2 LIMIT 1",
                    [k.tenant.as_str(), k.alg.as_str()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(internal)?;
            if exists.is_none() {
                conn.execute(
                    "INSERT INTO signing_keys (id, alg, pkcs8, created_at, tenant) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![k.id, k.alg.as_str(), k.pkcs8, k.created_at.as_millis(), k.tenant],
                )
                .map_err(constraint)?;
            }
            let keys = conn
                .prepare_cached(
                    "SELECT id, alg, pkcs8, created_at, tenant FROM signing_keys WHERE tenant = ?1 \
                     ORDER BY created_at, id",
                )
                .map_err(internal)?
                .query_map([&k.tenant], key_from_row)
                .map_err(internal)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
                        Ok(keys)
        })
        .await
    }

    async fn create_tenant(&self, t: &TenantRecord) -> Result<()> {
        let t = t.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO tenants (id, uuid, created_at) VALUES (?1, ?2, ?3)",
                params![t.id, t.uuid, t.created_at.as_millis()],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_tenant(&self, id: &str) -> Result<TenantRecord> {
        let id = id.to_owned();
        self.read(move |conn| {
            get_one(
                conn,
                "SELECT id, uuid, created_at FROM tenants WHERE id = ?1",
                [id],
                tenant_from_row,
            )
        })
        .await
    }

    async fn get_tenant_by_uuid(&self, uuid: &str) -> Result<TenantRecord> {
        let uuid = uuid.to_ascii_lowercase();
        self.read(move |conn| {
            get_one(
                conn,
                "SELECT id, uuid, created_at FROM tenants WHERE uuid = ?1",
                [uuid],
                tenant_from_row,
            )
        })
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        self.read(|conn| {
            get_all(
                conn,
                "SELECT id, uuid, created_at FROM tenants ORDER BY id",
                tenant_from_row,
            )
        })
        .await
    }

    async fn delete_tenant(&self, id: &str) -> Result<()> {
        let (id, gone, inner) = (id.to_owned(), id.to_owned(), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                if conn
                    .execute("DELETE FROM tenants WHERE id = ?1", [&id])
                    .map_err(internal)?
                    == 0
                {
                    return Err(StoreError::NotFound);
                }
                for table in TENANT_TABLES {
                    conn.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [&id])
                        .map_err(internal)?;
                }
                Ok(())
            },
            move |()| inner.forget_owner(&gone, None),
        )
        .await
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    c.id,
                    c.name,
                    c.secret_hash.as_ref().map(|h| h.as_bytes().to_vec()),
                    c.scopes.to_string(),
                    c.grant_types.join(" "),
                    c.device_code_ttl_secs,
                    c.poll_interval_secs,
                    c.created_at.as_millis(),
                    c.tenant
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_client(&self, tenant: &str, id: &str) -> Result<ClientRecord> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.read(move |conn| {
            get_one(
                conn,
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = ?1 AND id = ?2"),
                [tenant, id],
                client_from_row,
            )
        })
        .await
    }

    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>> {
        let tenant = tenant.to_owned();
        self.read(move |conn| {
            get_all_for(
                conn,
                &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = ?1 ORDER BY id"),
                &tenant,
                client_from_row,
            )
        })
        .await
    }

    async fn delete_client(&self, tenant: &str, id: &str) -> Result<()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        let (gone, inner) = ((tenant.clone(), id.clone()), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                let n = conn
                    .execute(
                        "DELETE FROM clients WHERE tenant = ?1 AND id = ?2",
                        [&tenant, &id],
                    )
                    .map_err(internal)?;
                if n == 0 {
                    return Err(StoreError::NotFound);
                }
                conn.execute(
                    "DELETE FROM device_grants WHERE tenant = ?1 AND client_id = ?2",
                    [&tenant, &id],
                )
                .map_err(internal)?;
                conn.execute(
                    "DELETE FROM refresh_tokens WHERE tenant = ?1 AND client_id = ?2",
                    [&tenant, &id],
                )
                .map_err(internal)?;
                Ok(())
            },
            move |()| inner.forget_owner(&gone.0, Some(&gone.1)),
        )
        .await
    }

    async fn create_user(&self, u: &UserRecord) -> Result<()> {
        let u = u.clone();
        self.write(move |conn| {
            conn.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    u.id,
                    u.username,
                    u.password_hash,
                    u.name,
                    u.email,
                    u.created_at.as_millis(),
                    u.tenant
                ],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        let id = id.to_owned();
        self.read(move |conn| {
            get_one(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_from_row,
            )
        })
        .await
    }

    async fn get_user_by_username(&self, tenant: &str, username: &str) -> Result<UserRecord> {
        let (tenant, username) = (tenant.to_owned(), username.to_owned());
        self.read(move |conn| {
            get_one(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 AND username = ?2"),
                [tenant, username],
                user_from_row,
            )
        })
        .await
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        let tenant = tenant.to_owned();
        self.read(move |conn| {
            get_all_for(
                conn,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = ?1 ORDER BY username"),
                &tenant,
                user_from_row,
            )
        })
        .await
    }

    async fn delete_user(&self, tenant: &str, username: &str) -> Result<()> {
        self.change_user(
            "DELETE FROM users WHERE tenant = ?1 AND username = ?2 RETURNING id",
            vec![tenant.to_owned(), username.to_owned()],
        )
        .await
    }

    async fn set_password(&self, tenant: &str, username: &str, password_hash: &str) -> Result<()> {
        self.change_user(
            "UPDATE users SET password_hash = ?1 WHERE tenant = ?2 AND username = ?3 RETURNING id",
            vec![
                password_hash.to_owned(),
                tenant.to_owned(),
                username.to_owned(),
            ],
        )
        .await
    }

    async fn create_grant(&self, g: &DeviceGrant) -> Result<()> {
        let (g, inner, held) = (g.clone(), self.inner.pending.clone(), g.clone());
        self.write_then(
            move |conn| insert_grant_in(conn, &g),
            move |row| inner.written(&held, held.version, Some(*row)),
        )
        .await
        .map(|_row| ())
    }

    async fn get_grant(&self, id: &str) -> Result<DeviceGrant> {
        let id = id.to_owned();
        self.read_grant(move |conn| {
            get_one(
                conn,
                &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE id = ?1"),
                [id],
                grant_from_row,
            )
        })
        .await
    }

    async fn get_grant_by_device_code(&self, hash: &SecretHash) -> Result<DeviceGrant> {
        let hash = *hash;
        self.read_grant(move |conn| {
            get_one(
                conn,
                // Only codes without a selector are found by hash (see migration 0003).
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM device_grants \
                     WHERE device_code_hash = ?1 AND length(id) <> {ORDERED_ID_LEN}"
                ),
                [hash.as_bytes()],
                grant_from_row,
            )
        })
        .await
    }

    async fn get_grant_by_user_code(&self, code: &UserCode) -> Result<DeviceGrant> {
        let code = code.canonical().to_owned();
        self.read_grant(move |conn| {
            get_one(
                conn,
                &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE user_code = ?1"),
                [code],
                grant_from_row,
            )
        })
        .await
    }

    fn poll_held(
        &self,
        hash: &SecretHash,
        tenant: &str,
        client_id: &str,
        now: Timestamp,
    ) -> Option<HeldPoll> {
        self.inner.pending.poll(hash, tenant, client_id, now)
    }

    /// Held in memory (see `pending.rs`): compare-and-swap against the held polls; no write
    /// of its own, no announcement.
    async fn record_poll(&self, g: &DeviceGrant) -> Result<()> {
        if self.inner.pending.record(g)? {
            return Ok(());
        }
        // Not held (every pending grant is, unless it was just decided or another process
        // wrote it): the caller's version must still be the stored one, checked and adopted on
        // the writer thread, where no decision's index update can fall in between.
        let (g, pending) = (g.clone(), self.inner.pending.clone());
        self.write(move |conn| {
            let (stored, row): (i64, i64) = get_one(
                conn,
                "SELECT version, rowid FROM device_grants WHERE id = ?1",
                [&g.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if stored != g.version {
                return Err(StoreError::Conflict);
            }
            pending.adopt(&g, stored, row)
        })
        .await
    }

    async fn update_grant(&self, g: &DeviceGrant) -> Result<()> {
        let (grant, inner) = (g.clone(), self.inner.pending.clone());
        let (held, after) = (g.clone(), self.inner.pending.clone());
        self.write_then(
            move |conn| update_grant_in(conn, &inner, &grant),
            move |stored| after.written(&held, *stored, None),
        )
        .await?;
        self.announce(&g.id);
        Ok(())
    }

    async fn redeem_grant(&self, g: &DeviceGrant, refresh: Option<&RefreshToken>) -> Result<()> {
        let (grant, refresh, inner) = (g.clone(), refresh.cloned(), self.inner.pending.clone());
        let (held, after) = (g.clone(), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                let stored = update_grant_in(conn, &inner, &grant)?;
                if let Some(t) = &refresh {
                    insert_refresh_in(conn, t)?;
                }
                Ok(stored)
            },
            move |stored| after.written(&held, *stored, None),
        )
        .await?;
        self.announce(&g.id);
        Ok(())
    }

    async fn create_flow(&self, f: &Flow) -> Result<()> {
        let f = f.clone();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO flows ({FLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .map_err(internal)?
            .execute(params![
                f.id,
                f.secret_hash.as_bytes(),
                f.status.as_str(),
                f.grant_id,
                f.user_id,
                f.signed_on_at.map(Timestamp::as_millis),
                f.failed_attempts,
                flow_result_column(f.result),
                f.created_at.as_millis(),
                f.expires_at.as_millis(),
                f.version,
                f.tenant
            ])
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_flow(&self, hash: &SecretHash) -> Result<Flow> {
        let hash = *hash;
        self.read(move |conn| {
            get_one(
                conn,
                &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE secret_hash = ?1"),
                [hash.as_bytes()],
                flow_from_row,
            )
        })
        .await
    }

    async fn update_flow(&self, f: &Flow, grant: Option<&DeviceGrant>) -> Result<()> {
        let grant_id = grant.map(|g| g.id.clone());
        let (f, grant, inner) = (f.clone(), grant.cloned(), self.inner.pending.clone());
        let (held, after) = (grant.clone(), self.inner.pending.clone());
        self.write_then(
            move |conn| {
                let n = conn
                .prepare_cached(
                    "UPDATE flows SET status = ?1, grant_id = ?2, user_id = ?3, signed_on_at = ?4, \
                     failed_attempts = ?5, result = ?6, secret_hash = ?9, version = version + 1 \
                     WHERE id = ?7 AND version = ?8",
                )
                .map_err(internal)?
                .execute(params![
                    f.status.as_str(),
                    f.grant_id,
                    f.user_id,
                    f.signed_on_at.map(Timestamp::as_millis),
                    f.failed_attempts,
                    flow_result_column(f.result),
                    f.id,
                    f.version,
                    f.secret_hash.as_bytes()
                ])
                .map_err(internal)?;
                if n != 1 {
                    return Err(missing_or_conflict(conn, "flows", "id", &f.id));
                }
                match &grant {
                    Some(g) => update_grant_in(conn, &inner, g).map(Some),
                    None => Ok(None),
                }
            },
            move |stored| {
                if let (Some(g), Some(stored)) = (&held, stored) {
                    after.written(g, *stored, None);
                }
            },
        )
        .await?;
        if let Some(id) = grant_id {
            self.announce(&id);
        }
        Ok(())
    }

    async fn get_refresh_token(&self, hash: &SecretHash) -> Result<RefreshToken> {
        let hash = *hash;
        self.read(move |conn| {
            get_one(
                conn,
                &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE hash = ?1"),
                [hash.as_bytes()],
                refresh_from_row,
            )
        })
        .await
    }

    async fn rotate_refresh_token(&self, old: &SecretHash, new: &RefreshToken) -> Result<()> {
        let (old, new) = (*old, new.clone());
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE refresh_tokens SET used = 1 WHERE hash = ?1 AND used = 0",
                    [old.as_bytes()],
                )
                .map_err(internal)?;
            if n != 1 {
                let exists = conn
                    .query_row(
                        "SELECT 1 FROM refresh_tokens WHERE hash = ?1",
                        [old.as_bytes()],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(internal)?;
                return Err(if exists.is_some() {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                });
            }
            insert_refresh_in(conn, &new)?;
            Ok(())
        })
        .await
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64> {
        let family_id = family_id.to_owned();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM refresh_tokens WHERE family_id = ?1",
                    [family_id],
                )
                .map_err(internal)?;
            Ok(n as u64)
        })
        .await
    }

    async fn count_pending_grants(&self, now: Timestamp) -> Result<PendingCodes> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT length(user_code), COUNT(*), MAX(expires_at - created_at) \
                     FROM device_grants WHERE status = 'pending' AND expires_at > ?1 GROUP BY 1",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map([now.as_millis()], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(internal)?;
            let mut counts = PendingCodes::default();
            for row in rows {
                let (len, n, longest) = row.map_err(internal)?;
                counts.add(len as usize, n as u64);
                counts.longest_lifetime_ms = counts.longest_lifetime_ms.max(longest);
            }
            Ok(counts)
        })
        .await
    }

    async fn take_limits(&self, takes: &[LimitTake], now: Timestamp) -> Result<Admission> {
        Ok(self.inner.limits.take(takes, now))
    }

    async fn give_back_limits(&self, takes: &[LimitTake]) -> Result<()> {
        self.inner.limits.give_back(takes);
        Ok(())
    }

    async fn create_session(&self, s: &BrowserSession) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO browser_sessions (id_hash, user_id, signed_on_at, flow_hash, created_at, expires_at, tenant) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(internal)?
            .execute(params![
                s.id_hash.as_bytes(),
                s.user_id,
                s.signed_on_at.map(Timestamp::as_millis),
                s.flow_hash.map(|h| h.as_bytes().to_vec()),
                s.created_at.as_millis(),
                s.expires_at.as_millis(),
                s.tenant
            ])
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, id_hash: &SecretHash) -> Result<BrowserSession> {
        let h = *id_hash;
        self.read(move |conn| {
            get_one(
                conn,
                "SELECT id_hash, user_id, signed_on_at, flow_hash, created_at, expires_at, tenant \
                 FROM browser_sessions WHERE id_hash = ?1",
                [h.as_bytes()],
                session_from_row,
            )
        })
        .await
    }

    async fn update_session(&self, s: &BrowserSession) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE browser_sessions SET user_id = ?1, signed_on_at = ?2, flow_hash = ?3, \
                     expires_at = ?4 WHERE id_hash = ?5",
                )
                .map_err(internal)?
                .execute(params![
                    s.user_id,
                    s.signed_on_at.map(Timestamp::as_millis),
                    s.flow_hash.map(|h| h.as_bytes().to_vec()),
                    s.expires_at.as_millis(),
                    s.id_hash.as_bytes()
                ])
                .map_err(internal)?;
            if n == 1 {
                Ok(())
            } else {
                Err(StoreError::NotFound)
            }
        })
        .await
    }

    async fn delete_session(&self, id_hash: &SecretHash) -> Result<()> {
        let h = *id_hash;
        self.write(move |conn| {
            match conn
                .execute(
                    "DELETE FROM browser_sessions WHERE id_hash = ?1",
                    [h.as_bytes()],
                )
                .map_err(internal)?
            {
                0 => Err(StoreError::NotFound),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        let tenant = tenant.to_owned();
        self.read(move |conn| {
            get_all_for(
                conn,
                "SELECT id, alg, pkcs8, created_at, tenant FROM signing_keys WHERE tenant = ?1 \
                 ORDER BY created_at, id",
                &tenant,
                key_from_row,
            )
        })
        .await
    }

    async fn insert_key(&self, k: &KeyRecord) -> Result<()> {
        let k = k.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO signing_keys (id, alg, pkcs8, created_at, tenant) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.id, k.alg.as_str(), k.pkcs8, k.created_at.as_millis(), k.tenant],
            )
            .map_err(constraint)?;
            Ok(())
        })
        .await
    }

    async fn sweep(&self, now: Timestamp, grace_before: Timestamp) -> Result<SweepCounts> {
        self.inner.limits.sweep(now);
        let inner = self.inner.pending.clone();
        self.write_then(
            move |conn| {
                let grants = conn
                    .execute(
                        "DELETE FROM device_grants WHERE expires_at < ?1",
                        [grace_before.as_millis()],
                    )
                    .map_err(internal)?;
                let flows = conn
                    .execute(
                        "DELETE FROM flows WHERE expires_at < ?1",
                        [grace_before.as_millis()],
                    )
                    .map_err(internal)?;
                let refresh_tokens = conn
                    .execute(
                        "DELETE FROM refresh_tokens WHERE expires_at < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                let sessions = conn
                    .execute(
                        "DELETE FROM browser_sessions WHERE expires_at < ?1",
                        [now.as_millis()],
                    )
                    .map_err(internal)?;
                Ok(SweepCounts {
                    grants: grants as u64,
                    flows: flows as u64,
                    refresh_tokens: refresh_tokens as u64,
                    sessions: sessions as u64,
                })
            },
            move |_| inner.forget_expired(grace_before),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        crate::conformance::run_all(|| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("store-{n}.db"));
            async move { super::SqliteStore::open(path).unwrap() }
        })
        .await;
    }

    use crate::{HeldPoll, Store};
    use devicegate_core::grant::{DeviceGrant, Paced};
    use devicegate_core::{SecretHash, Timestamp};

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    async fn pending_grant(s: &super::SqliteStore) -> DeviceGrant {
        let g = DeviceGrant {
            device_code_hash: SecretHash::of(b"dgd_x"),
            ..DeviceGrant::example_pending("cli", NOW)
        };
        s.create_grant(&g).await.unwrap();
        g
    }

    fn poll(s: &super::SqliteStore, g: &DeviceGrant, at: Timestamp) -> Option<HeldPoll> {
        s.poll_held(&g.device_code_hash, &g.tenant, &g.client_id, at)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_polls_are_answered_from_memory_until_a_decision() {
        let dir = tempfile::tempdir().unwrap();
        let s = super::SqliteStore::open(dir.path().join("p.db")).unwrap();
        let g = pending_grant(&s).await;
        assert_eq!(s.inner.pending.len(), 1);
        assert_eq!(poll(&s, &g, NOW), Some(HeldPoll::Paced(Paced::Pending)));
        // Another client, or the same client id in another tenant, is not answered here.
        assert_eq!(
            s.poll_held(&g.device_code_hash, &g.tenant, "other", NOW),
            None
        );
        assert_eq!(
            s.poll_held(&g.device_code_hash, "acme", &g.client_id, NOW),
            None
        );
        // The held poll is part of the version: a decision made on the older read loses.
        let approved = g.approve("alice", NOW, NOW).unwrap();
        assert_eq!(
            s.update_grant(&approved).await,
            Err(crate::StoreError::Conflict)
        );
        let read = s.get_grant(&g.id).await.unwrap();
        assert_eq!(
            (read.version, read.last_poll_at),
            (g.version + 1, Some(NOW))
        );
        s.update_grant(&read.approve("alice", NOW, NOW).unwrap())
            .await
            .unwrap();
        assert_eq!(poll(&s, &g, NOW), None);
        assert_eq!(s.inner.pending.len(), 0);
        // Expired while pending: answered from memory too.
        let late = DeviceGrant {
            id: "g2".into(),
            device_code_hash: SecretHash::of(b"dgd_y"),
            user_code: devicegate_core::user_code::UserCode::from_canonical("CDFGHJKL".into()),
            ..DeviceGrant::example_pending("cli", NOW)
        };
        s.create_grant(&late).await.unwrap();
        assert_eq!(poll(&s, &late, late.expires_at), Some(HeldPoll::Expired));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poll_times_reach_the_file_when_the_store_closes_and_intervals_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = super::SqliteStore::open(&path).unwrap();
        let g = pending_grant(&s).await;
        assert_eq!(poll(&s, &g, NOW), Some(HeldPoll::Paced(Paced::Pending)));
        let soon = Timestamp::from_millis(NOW.as_millis() + 1);
        assert!(matches!(
            poll(&s, &g, soon),
            Some(HeldPoll::Paced(Paced::SlowDown { .. }))
        ));
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        // Another process reads the lengthened interval while this store still runs.
        let other = super::SqliteStore::open(&path).unwrap();
        let seen = other.get_grant(&g.id).await.unwrap();
        assert_eq!(seen.interval_secs, g.interval_secs + 5);
        drop(other);
        let later = Timestamp::from_millis(soon.as_millis() + 60_000);
        assert_eq!(poll(&s, &g, later), Some(HeldPoll::Paced(Paced::Pending)));
        drop(s);
        // A restart keeps the last poll time, so a poll right after it is still too early.
        let s = super::SqliteStore::open(&path).unwrap();
        let read = s.get_grant(&g.id).await.unwrap();
        assert_eq!(read.last_poll_at, Some(later));
        assert!(matches!(
            poll(&s, &g, Timestamp::from_millis(later.as_millis() + 1)),
            Some(HeldPoll::Paced(Paced::SlowDown { .. }))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_process_deleting_grants_reaches_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let s = super::SqliteStore::open(&path).unwrap();
        let client = crate::conformance::client("cli");
        s.create_client(&client).await.unwrap();
        let g = pending_grant(&s).await;
        assert_eq!(poll(&s, &g, NOW), Some(HeldPoll::Paced(Paced::Pending)));
        // `devicegate client delete` run beside the server.
        let cli = super::SqliteStore::open(&path).unwrap();
        cli.delete_client(&client.tenant, &client.id).await.unwrap();
        drop(cli);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(poll(&s, &g, NOW), None);
        assert_eq!(
            s.get_grant_by_device_code(&g.device_code_hash).await,
            Err(crate::StoreError::NotFound)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grants_from_before_device_code_selectors_survive_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // A database at schema 2 holding a pending grant with an old-style (22-character) id.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(super::MIGRATIONS[0]).unwrap();
        conn.execute_batch(super::MIGRATIONS[1]).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        let old = DeviceGrant {
            id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            device_code_hash: SecretHash::of(b"dgd_old-style"),
            ..DeviceGrant::example_pending("cli", NOW)
        };
        super::insert_grant_in(&conn, &old).unwrap();
        drop(conn);
        let s = super::SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.get_grant_by_device_code(&old.device_code_hash)
                .await
                .unwrap()
                .id,
            old.id
        );
        assert_eq!(poll(&s, &old, NOW), Some(HeldPoll::Paced(Paced::Pending)));
        // New grants (28-character ids) are found by id, and their hashes are not indexed.
        let conn = rusqlite::Connection::open(&path).unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM device_grants \
                 WHERE device_code_hash = x'00' AND length(id) <> 28",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(
            plan.contains("device_grants_code_without_selector"),
            "{plan}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_families_from_before_their_start_was_kept_start_at_their_sign_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // A database at schema 3 holding a refresh token without `family_started_at`.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &super::MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        let hash = SecretHash::of(b"dgr_old");
        let auth_time = NOW.as_millis() - 3_600_000;
        conn.execute(
            "INSERT INTO refresh_tokens (hash, tenant, family_id, client_id, subject, scopes, \
             auth_time, created_at, expires_at) VALUES (?1, 'default', 'fam', 'cli', 'u1', \
             'offline_access', ?2, ?3, ?4)",
            rusqlite::params![
                hash.as_bytes(),
                auth_time,
                NOW.as_millis(),
                NOW.as_millis() + 3_600_000
            ],
        )
        .unwrap();
        drop(conn);
        let s = super::SqliteStore::open(&path).unwrap();
        let t = s.get_refresh_token(&hash).await.unwrap();
        assert_eq!(t.family_started_at, Timestamp::from_millis(auth_time));
    }

    #[test]
    fn migrations_run_once_and_refuse_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        assert_eq!(super::SqliteStore::migrate(&path).unwrap(), 4);
        assert_eq!(super::SqliteStore::migrate(&path).unwrap(), 0);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(super::SqliteStore::open(&path).is_err());
    }
}
