//! The PostgreSQL backend, for several instances behind a load balancer.
//!
//! tokio-postgres with a deadpool pool, statements prepared once per connection. Every
//! compare-and-swap is a single conditional `UPDATE … WHERE version = $n`, so it holds across
//! instances exactly as within one. Grant changes are announced with `NOTIFY` inside the
//! changing transaction (delivered on commit) and received by one `LISTEN` connection per
//! instance, which reconnects by itself. When the database cannot be reached, calls fail fast
//! with [`StoreError::Unavailable`] and the pool reconnects once it is back.
//!
//! Pending polls are answered from each instance's [`PendingIndex`] (`Mode::Shared`): an
//! entry answers once a compare-and-swap in the database admitted it, until a `NOTIFY` says
//! its grant changed. Each instance sends the pace of its polls to the others every 10 ms
//! (`NOTIFY devicegate_polls`), so that `slow_down` holds whichever instance a device polls;
//! lengthened intervals are also written to the database.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use devicegate_core::flow::Flow;
use devicegate_core::grant::{DeviceGrant, GrantStatus, Requester};
use devicegate_core::keys::Algorithm;
use devicegate_core::scope::Scopes;
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::{FlowResult, FlowStatus};
use tokio::sync::broadcast;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::limits::{Admission, LimitTake};
use crate::pending::{Mode, PendingIndex, Unwritten};
use crate::records::{
    BrowserSession, ClientRecord, KeyRecord, RefreshToken, SweepCounts, TenantRecord, UserRecord,
};
use crate::{GrantChanged, HeldPoll, PendingCodes, Result, Store, StoreError, TENANT_TABLES};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devicegate_core::grant::PollPace;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_refresh_family_start.sql"),
    include_str!("../migrations/postgres/0003_rate_limits.sql"),
];
/// Taken while migrating, so that instances starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6465_7669_6365_6761;
const CHANNEL: &str = "devicegate_grants";
/// Instances' poll pace: `<instance> <base64 of records>` (see [`encode_paces`]).
const POLLS_CHANNEL: &str = "devicegate_polls";
/// The `CHANNEL` payload that says grants were deleted in bulk.
const ALL_GRANTS: &str = "*";
/// How often an instance tells the others of its polls.
const PACE_EVERY: Duration = Duration::from_millis(10);
/// How often an instance notifies at least once (a pace payload with no records), so that
/// its listener can tell a quiet channel from a dead connection.
const HEARTBEAT: Duration = Duration::from_secs(1);
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
fn decode_paces(instance: &str, payload: &str) -> Vec<(SecretHash, PollPace)> {
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

/// The `CHANNEL` payload for a change to grant `g`.
fn grant_payload(g: &DeviceGrant) -> String {
    format!(
        "{} {}",
        g.id,
        URL_SAFE_NO_PAD.encode(g.device_code_hash.as_bytes())
    )
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: Pool,
    polls: Pool,
    grants: broadcast::Sender<GrantChanged>,
    pending: Arc<PendingIndex>,
    listener: tokio::task::JoinHandle<()>,
    pacer: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
        self.pacer.abort();
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if *db.code() == SqlState::UNIQUE_VIOLATION => StoreError::AlreadyExists,
        // Class 08 (connection exception) and 57 (operator intervention: shutdown).
        Some(db) if db.code().code().starts_with("08") || db.code().code().starts_with("57") => {
            StoreError::Unavailable(db.message().to_owned())
        }
        Some(db) => StoreError::Internal(db.message().to_owned()),
        None => StoreError::Unavailable(e.to_string()),
    }
}

fn bad(what: &str) -> StoreError {
    StoreError::Internal(format!("invalid {what} in the database"))
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
        migrate(&pool).await?;
        let grants = broadcast::channel(1024).0;
        let pending = Arc::new(PendingIndex::new(Mode::Shared));
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

    /// Runs `sql`, which changes or deletes one user and returns its id (`NotFound` if none),
    /// and in the same transaction ends everything that user signed in to or had under way:
    /// refresh tokens and sessions go, approved grants not redeemed yet are denied (with a new
    /// version, so that a redemption read before loses its compare-and-swap, and a `NOTIFY`
    /// each, as for any grant change), and open flows fail.
    async fn change_user(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let row = tx.query_opt(sql, params).await.map_err(pg)?;
        let id: String = row.ok_or(StoreError::NotFound)?.get(0);
        tx.execute("DELETE FROM refresh_tokens WHERE subject = $1", &[&id])
            .await
            .map_err(pg)?;
        tx.execute("DELETE FROM browser_sessions WHERE user_id = $1", &[&id])
            .await
            .map_err(pg)?;
        let denied = tx
            .query(
                &format!(
                    "UPDATE device_grants SET status = 'denied', subject = NULL, auth_time = NULL, \
                     version = version + 1 WHERE status = 'approved' AND subject = $1 \
                     RETURNING {GRANT_COLUMNS}"
                ),
                &[&id],
            )
            .await
            .map_err(pg)?
            .iter()
            .map(grant_from_row)
            .collect::<Result<Vec<_>>>()?;
        for g in &denied {
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &grant_payload(g)])
                .await
                .map_err(pg)?;
        }
        tx.execute(
            "UPDATE flows SET status = 'FAILED', version = version + 1 \
             WHERE user_id = $1 AND status NOT IN ('COMPLETED', 'FAILED')",
            &[&id],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        // At once here; the `NOTIFY`s do it on every instance.
        for g in &denied {
            self.inner.pending.invalidate(&g.device_code_hash);
        }
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.query_opt(&stmt, params).await.map_err(pg)
    }

    async fn one<T>(
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

    async fn all<T>(&self, sql: &str, map: fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client
            .query(&stmt, &[])
            .await
            .map_err(pg)?
            .iter()
            .map(map)
            .collect()
    }

    async fn all_for<T>(
        &self,
        sql: &str,
        param: &str,
        map: fn(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client
            .query(&stmt, &[&param])
            .await
            .map_err(pg)?
            .iter()
            .map(map)
            .collect()
    }

    async fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&stmt, params).await.map_err(pg)
    }
}

/// Applies pending migrations under an advisory lock; returns how many ran.
async fn migrate(pool: &Pool) -> Result<usize> {
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

/// What the listener serves: the subscribers, the pending index, and who this instance is.
struct Listening {
    out: broadcast::Sender<GrantChanged>,
    pending: Arc<PendingIndex>,
    instance: String,
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
async fn listen_forever(
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

/// Every `PACE_EVERY`: tells the other instances the pace of this one's polls, and writes
/// lengthened intervals to the database. On the relaxed pool: losing a batch in a crash
/// spares at most one `slow_down`.
async fn pace_forever(polls: Pool, pending: Arc<PendingIndex>, instance: String) {
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

const GRANT_COLUMNS: &str = "id, device_code_hash, user_code, client_id, scopes, status, subject, auth_time, \
     created_at, expires_at, interval_secs, last_poll_at, flow_id, flow_expires_at, requester_ip, requester_agent, \
     version, tenant, context";
const FLOW_COLUMNS: &str = "id, secret_hash, status, grant_id, user_id, signed_on_at, failed_attempts, result, \
     created_at, expires_at, version, tenant";
const CLIENT_COLUMNS: &str = "id, name, secret_hash, scopes, grant_types, device_code_ttl_secs, poll_interval_secs, created_at, tenant";
const USER_COLUMNS: &str = "id, username, password_hash, name, email, created_at, tenant";
const REFRESH_COLUMNS: &str = "hash, family_id, client_id, subject, scopes, auth_time, created_at, expires_at, used, \
     tenant, family_started_at";
const SESSION_COLUMNS: &str =
    "id_hash, user_id, signed_on_at, flow_hash, created_at, expires_at, tenant";
const KEY_COLUMNS: &str = "id, alg, pkcs8, created_at, tenant";

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn opt_ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_millis)
}

fn hash(b: &[u8]) -> Result<SecretHash> {
    SecretHash::from_bytes(b).ok_or_else(|| bad("hash"))
}

fn scopes(s: &str) -> Result<Scopes> {
    Scopes::parse(s).ok_or_else(|| bad("scopes"))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i)
        .map_err(|e| StoreError::Internal(e.to_string()))
}

fn grant_from_row(r: &Row) -> Result<DeviceGrant> {
    let status = match get::<&str>(r, 5)? {
        "pending" => GrantStatus::Pending,
        "approved" => GrantStatus::Approved {
            subject: get(r, 6)?,
            auth_time: ts(get(r, 7)?),
        },
        "denied" => GrantStatus::Denied,
        "redeemed" => GrantStatus::Redeemed,
        _ => return Err(bad("grant status")),
    };
    Ok(DeviceGrant {
        id: get(r, 0)?,
        device_code_hash: hash(get(r, 1)?)?,
        user_code: UserCode::from_canonical(get(r, 2)?),
        client_id: get(r, 3)?,
        scopes: scopes(get(r, 4)?)?,
        status,
        created_at: ts(get(r, 8)?),
        expires_at: ts(get(r, 9)?),
        interval_secs: u32::try_from(get::<i64>(r, 10)?).map_err(|_| bad("interval"))?,
        last_poll_at: opt_ts(get(r, 11)?),
        flow_id: get(r, 12)?,
        flow_expires_at: opt_ts(get(r, 13)?),
        requester: Requester {
            ip: get(r, 14)?,
            user_agent: get(r, 15)?,
        },
        version: get(r, 16)?,
        tenant: get(r, 17)?,
        context: get(r, 18)?,
    })
}

fn flow_from_row(r: &Row) -> Result<Flow> {
    Ok(Flow {
        id: get(r, 0)?,
        secret_hash: hash(get(r, 1)?)?,
        status: FlowStatus::parse(get(r, 2)?).ok_or_else(|| bad("flow status"))?,
        grant_id: get(r, 3)?,
        user_id: get(r, 4)?,
        signed_on_at: opt_ts(get(r, 5)?),
        failed_attempts: u32::try_from(get::<i64>(r, 6)?).map_err(|_| bad("attempts"))?,
        result: match get::<Option<&str>>(r, 7)? {
            None => None,
            Some("approved") => Some(FlowResult::Approved),
            Some("denied") => Some(FlowResult::Denied),
            Some(_) => return Err(bad("flow result")),
        },
        created_at: ts(get(r, 8)?),
        expires_at: ts(get(r, 9)?),
        version: get(r, 10)?,
        tenant: get(r, 11)?,
    })
}

fn client_from_row(r: &Row) -> Result<ClientRecord> {
    let secret: Option<&[u8]> = get(r, 2)?;
    let grant_types: &str = get(r, 4)?;
    let secs = |v: Option<i64>| {
        v.map(|s| u32::try_from(s).map_err(|_| bad("seconds")))
            .transpose()
    };
    Ok(ClientRecord {
        id: get(r, 0)?,
        name: get(r, 1)?,
        secret_hash: secret.map(hash).transpose()?,
        scopes: scopes(get(r, 3)?)?,
        grant_types: grant_types.split_whitespace().map(str::to_owned).collect(),
        device_code_ttl_secs: secs(get(r, 5)?)?,
        poll_interval_secs: secs(get(r, 6)?)?,
        created_at: ts(get(r, 7)?),
        tenant: get(r, 8)?,
    })
}

fn user_from_row(r: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        id: get(r, 0)?,
        username: get(r, 1)?,
        password_hash: get(r, 2)?,
        name: get(r, 3)?,
        email: get(r, 4)?,
        created_at: ts(get(r, 5)?),
        tenant: get(r, 6)?,
    })
}

fn refresh_from_row(r: &Row) -> Result<RefreshToken> {
    Ok(RefreshToken {
        hash: hash(get(r, 0)?)?,
        family_id: get(r, 1)?,
        client_id: get(r, 2)?,
        subject: get(r, 3)?,
        scopes: scopes(get(r, 4)?)?,
        auth_time: ts(get(r, 5)?),
        created_at: ts(get(r, 6)?),
        expires_at: ts(get(r, 7)?),
        used: get(r, 8)?,
        tenant: get(r, 9)?,
        family_started_at: ts(get(r, 10)?),
    })
}

fn key_from_row(r: &Row) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: get(r, 0)?,
        alg: Algorithm::parse(get(r, 1)?).ok_or_else(|| bad("algorithm"))?,
        pkcs8: get(r, 2)?,
        created_at: ts(get(r, 3)?),
        tenant: get(r, 4)?,
    })
}

fn session_from_row(r: &Row) -> Result<BrowserSession> {
    let flow: Option<&[u8]> = get(r, 3)?;
    Ok(BrowserSession {
        id_hash: hash(get(r, 0)?)?,
        user_id: get(r, 1)?,
        signed_on_at: opt_ts(get(r, 2)?),
        flow_hash: flow.map(hash).transpose()?,
        created_at: ts(get(r, 4)?),
        expires_at: ts(get(r, 5)?),
        tenant: get(r, 6)?,
    })
}

fn tenant_from_row(r: &Row) -> Result<TenantRecord> {
    Ok(TenantRecord {
        id: get(r, 0)?,
        uuid: get(r, 1)?,
        created_at: ts(get(r, 2)?),
    })
}

fn grant_status_columns(s: &GrantStatus) -> (&'static str, Option<&str>, Option<i64>) {
    match s {
        GrantStatus::Approved { subject, auth_time } => (
            s.name(),
            Some(subject.as_str()),
            Some(auth_time.as_millis()),
        ),
        _ => (s.name(), None, None),
    }
}

fn flow_result_column(r: Option<FlowResult>) -> Option<&'static str> {
    r.map(|r| match r {
        FlowResult::Approved => "approved",
        FlowResult::Denied => "denied",
    })
}

/// The conditional update of a grant, and its announcement, inside `tx`.
async fn update_grant_in(tx: &deadpool_postgres::Transaction<'_>, g: &DeviceGrant) -> Result<()> {
    let (status, subject, auth_time) = grant_status_columns(&g.status);
    let stmt = tx
        .prepare_cached(
            "UPDATE device_grants SET status = $1, subject = $2, auth_time = $3, interval_secs = $4, \
             last_poll_at = $5, flow_id = $6, flow_expires_at = $7, version = version + 1 \
             WHERE id = $8 AND version = $9",
        )
        .await
        .map_err(pg)?;
    let n = tx
        .execute(
            &stmt,
            &[
                &status,
                &subject,
                &auth_time,
                &i64::from(g.interval_secs),
                &g.last_poll_at.map(Timestamp::as_millis),
                &g.flow_id,
                &g.flow_expires_at.map(Timestamp::as_millis),
                &g.id,
                &g.version,
            ],
        )
        .await
        .map_err(pg)?;
    if n != 1 {
        let exists = tx
            .query_opt("SELECT 1 FROM device_grants WHERE id = $1", &[&g.id])
            .await
            .map_err(pg)?;
        return Err(if exists.is_some() {
            StoreError::Conflict
        } else {
            StoreError::NotFound
        });
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &grant_payload(g)])
        .await
        .map_err(pg)?;
    Ok(())
}

async fn insert_refresh_in(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &RefreshToken,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .await
        .map_err(pg)?;
    tx.execute(
        &stmt,
        &[
            &t.hash.as_bytes().as_slice(),
            &t.family_id,
            &t.client_id,
            &t.subject,
            &t.scopes.to_string(),
            &t.auth_time.as_millis(),
            &t.created_at.as_millis(),
            &t.expires_at.as_millis(),
            &t.used,
            &t.tenant,
            &t.family_started_at.as_millis(),
        ],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        self.exec("SELECT 1", &[]).await.map(|_| ())
    }

    fn subscribe(&self) -> broadcast::Receiver<GrantChanged> {
        self.inner.grants.subscribe()
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

    async fn create_tenant(&self, t: &TenantRecord) -> Result<()> {
        self.exec(
            "INSERT INTO tenants (id, uuid, created_at) VALUES ($1, $2, $3)",
            &[&t.id, &t.uuid, &t.created_at.as_millis()],
        )
        .await
        .map(|_| ())
    }

    async fn get_tenant(&self, id: &str) -> Result<TenantRecord> {
        self.one(
            "SELECT id, uuid, created_at FROM tenants WHERE id = $1",
            &[&id],
            tenant_from_row,
        )
        .await
    }

    async fn get_tenant_by_uuid(&self, uuid: &str) -> Result<TenantRecord> {
        let uuid = uuid.to_ascii_lowercase();
        self.one(
            "SELECT id, uuid, created_at FROM tenants WHERE uuid = $1",
            &[&uuid],
            tenant_from_row,
        )
        .await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        self.all(
            "SELECT id, uuid, created_at FROM tenants ORDER BY id",
            tenant_from_row,
        )
        .await
    }

    async fn delete_tenant(&self, id: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if tx
            .execute("DELETE FROM tenants WHERE id = $1", &[&id])
            .await
            .map_err(pg)?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        for table in TENANT_TABLES {
            tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1"), &[&id])
                .await
                .map_err(pg)?;
        }
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &ALL_GRANTS])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn create_client(&self, c: &ClientRecord) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &c.id,
                &c.name,
                &c.secret_hash.as_ref().map(|h| h.as_bytes().to_vec()),
                &c.scopes.to_string(),
                &c.grant_types.join(" "),
                &c.device_code_ttl_secs.map(i64::from),
                &c.poll_interval_secs.map(i64::from),
                &c.created_at.as_millis(),
                &c.tenant,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_client(&self, tenant: &str, id: &str) -> Result<ClientRecord> {
        self.one(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
            client_from_row,
        )
        .await
    }

    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>> {
        self.all_for(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 ORDER BY id"),
            tenant,
            client_from_row,
        )
        .await
    }

    async fn delete_client(&self, tenant: &str, id: &str) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        if tx
            .execute(
                "DELETE FROM clients WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )
            .await
            .map_err(pg)?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        tx.execute(
            "DELETE FROM device_grants WHERE tenant = $1 AND client_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "DELETE FROM refresh_tokens WHERE tenant = $1 AND client_id = $2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &ALL_GRANTS])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn create_user(&self, u: &UserRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
            &[
                &u.id,
                &u.username,
                &u.password_hash,
                &u.name,
                &u.email,
                &u.created_at.as_millis(),
                &u.tenant,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_user(&self, id: &str) -> Result<UserRecord> {
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
            &[&id],
            user_from_row,
        )
        .await
    }

    async fn get_user_by_username(&self, tenant: &str, username: &str) -> Result<UserRecord> {
        self.one(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 AND username = $2"),
            &[&tenant, &username],
            user_from_row,
        )
        .await
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>> {
        self.all_for(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE tenant = $1 ORDER BY username"),
            tenant,
            user_from_row,
        )
        .await
    }

    async fn delete_user(&self, tenant: &str, username: &str) -> Result<()> {
        self.change_user(
            "DELETE FROM users WHERE tenant = $1 AND username = $2 RETURNING id",
            &[&tenant, &username],
        )
        .await
    }

    async fn set_password(&self, tenant: &str, username: &str, password_hash: &str) -> Result<()> {
        self.change_user(
            "UPDATE users SET password_hash = $1 WHERE tenant = $2 AND username = $3 RETURNING id",
            &[&password_hash, &tenant, &username],
        )
        .await
    }

    async fn create_grant(&self, g: &DeviceGrant) -> Result<()> {
        let (status, subject, auth_time) = grant_status_columns(&g.status);
        let epoch = self.inner.pending.epoch(&g.device_code_hash);
        self.exec(
            &format!(
                "INSERT INTO device_grants ({GRANT_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
            ),
            &[
                &g.id,
                &g.device_code_hash.as_bytes().as_slice(),
                &g.user_code.canonical(),
                &g.client_id,
                &g.scopes.to_string(),
                &status,
                &subject,
                &auth_time,
                &g.created_at.as_millis(),
                &g.expires_at.as_millis(),
                &i64::from(g.interval_secs),
                &g.last_poll_at.map(Timestamp::as_millis),
                &g.flow_id,
                &g.flow_expires_at.map(Timestamp::as_millis),
                &g.requester.ip,
                &g.requester.user_agent,
                &g.version,
                &g.tenant,
                &g.context,
            ],
        )
        .await?;
        self.inner.pending.admit(g, g.version, epoch, false);
        Ok(())
    }

    async fn get_grant(&self, id: &str) -> Result<DeviceGrant> {
        self.one(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE id = $1"),
            &[&id],
            grant_from_row,
        )
        .await
        .map(|mut g| {
            self.inner.pending.overlay(&mut g);
            g
        })
    }

    async fn get_grant_by_device_code(&self, h: &SecretHash) -> Result<DeviceGrant> {
        self.one(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE device_code_hash = $1"),
            &[&h.as_bytes().as_slice()],
            grant_from_row,
        )
        .await
        .map(|mut g| {
            self.inner.pending.overlay(&mut g);
            g
        })
    }

    async fn get_grant_by_user_code(&self, code: &UserCode) -> Result<DeviceGrant> {
        self.one(
            &format!("SELECT {GRANT_COLUMNS} FROM device_grants WHERE user_code = $1"),
            &[&code.canonical()],
            grant_from_row,
        )
        .await
        .map(|mut g| {
            self.inner.pending.overlay(&mut g);
            g
        })
    }

    /// One conditional `UPDATE` in autocommit (one round trip), on the relaxed pool, with no
    /// `NOTIFY`: a poll decides nothing anyone waits for.
    async fn record_poll(&self, g: &DeviceGrant) -> Result<()> {
        let epoch = self.inner.pending.epoch(&g.device_code_hash);
        let client = self
            .inner
            .polls
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let stmt = client
            .prepare_cached(
                "UPDATE device_grants SET interval_secs = $1, last_poll_at = $2, version = version + 1 \
                 WHERE id = $3 AND version = $4",
            )
            .await
            .map_err(pg)?;
        let n = client
            .execute(
                &stmt,
                &[
                    &i64::from(g.interval_secs),
                    &g.last_poll_at.map(Timestamp::as_millis),
                    &g.id,
                    &g.version,
                ],
            )
            .await
            .map_err(pg)?;
        if n == 1 {
            // Pending at this version: later polls are answered from memory.
            self.inner.pending.admit(g, g.version + 1, epoch, true);
            return Ok(());
        }
        let exists = client
            .query_opt("SELECT 1 FROM device_grants WHERE id = $1", &[&g.id])
            .await
            .map_err(pg)?;
        Err(if exists.is_some() {
            StoreError::Conflict
        } else {
            StoreError::NotFound
        })
    }

    async fn update_grant(&self, g: &DeviceGrant) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_grant_in(&tx, g).await?;
        tx.commit().await.map_err(pg)?;
        // At once here; the `NOTIFY` does it on every instance (this one too, should this
        // future be dropped now).
        self.inner.pending.invalidate(&g.device_code_hash);
        Ok(())
    }

    async fn redeem_grant(&self, g: &DeviceGrant, refresh: Option<&RefreshToken>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        update_grant_in(&tx, g).await?;
        if let Some(t) = refresh {
            insert_refresh_in(&tx, t).await?;
        }
        tx.commit().await.map_err(pg)?;
        self.inner.pending.invalidate(&g.device_code_hash);
        Ok(())
    }

    async fn create_flow(&self, f: &Flow) -> Result<()> {
        self.exec(
            &format!("INSERT INTO flows ({FLOW_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
            &[
                &f.id,
                &f.secret_hash.as_bytes().as_slice(),
                &f.status.as_str(),
                &f.grant_id,
                &f.user_id,
                &f.signed_on_at.map(Timestamp::as_millis),
                &i64::from(f.failed_attempts),
                &flow_result_column(f.result),
                &f.created_at.as_millis(),
                &f.expires_at.as_millis(),
                &f.version,
                &f.tenant,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_flow(&self, h: &SecretHash) -> Result<Flow> {
        self.one(
            &format!("SELECT {FLOW_COLUMNS} FROM flows WHERE secret_hash = $1"),
            &[&h.as_bytes().as_slice()],
            flow_from_row,
        )
        .await
    }

    async fn update_flow(&self, f: &Flow, grant: Option<&DeviceGrant>) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let stmt = tx
            .prepare_cached(
                "UPDATE flows SET status = $1, grant_id = $2, user_id = $3, signed_on_at = $4, \
                 failed_attempts = $5, result = $6, secret_hash = $9, version = version + 1 \
                 WHERE id = $7 AND version = $8",
            )
            .await
            .map_err(pg)?;
        let n = tx
            .execute(
                &stmt,
                &[
                    &f.status.as_str(),
                    &f.grant_id,
                    &f.user_id,
                    &f.signed_on_at.map(Timestamp::as_millis),
                    &i64::from(f.failed_attempts),
                    &flow_result_column(f.result),
                    &f.id,
                    &f.version,
                    &f.secret_hash.as_bytes().as_slice(),
                ],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            let exists = tx
                .query_opt("SELECT 1 FROM flows WHERE id = $1", &[&f.id])
                .await
                .map_err(pg)?;
            return Err(if exists.is_some() {
                StoreError::Conflict
            } else {
                StoreError::NotFound
            });
        }
        if let Some(g) = grant {
            update_grant_in(&tx, g).await?;
        }
        tx.commit().await.map_err(pg)?;
        if let Some(g) = grant {
            self.inner.pending.invalidate(&g.device_code_hash);
        }
        Ok(())
    }

    async fn get_refresh_token(&self, h: &SecretHash) -> Result<RefreshToken> {
        self.one(
            &format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE hash = $1"),
            &[&h.as_bytes().as_slice()],
            refresh_from_row,
        )
        .await
    }

    async fn rotate_refresh_token(&self, old: &SecretHash, new: &RefreshToken) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let old = old.as_bytes().as_slice();
        let n = tx
            .execute(
                "UPDATE refresh_tokens SET used = TRUE WHERE hash = $1 AND NOT used",
                &[&old],
            )
            .await
            .map_err(pg)?;
        if n != 1 {
            let exists = tx
                .query_opt("SELECT 1 FROM refresh_tokens WHERE hash = $1", &[&old])
                .await
                .map_err(pg)?;
            return Err(if exists.is_some() {
                StoreError::Conflict
            } else {
                StoreError::NotFound
            });
        }
        insert_refresh_in(&tx, new).await?;
        tx.commit().await.map_err(pg)
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64> {
        self.exec(
            "DELETE FROM refresh_tokens WHERE family_id = $1",
            &[&family_id],
        )
        .await
    }

    async fn count_pending_grants(&self, now: Timestamp) -> Result<PendingCodes> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT length(user_code)::BIGINT, COUNT(*), MAX(expires_at - created_at) \
                 FROM device_grants WHERE status = 'pending' AND expires_at > $1 GROUP BY 1",
            )
            .await
            .map_err(pg)?;
        let rows = client.query(&stmt, &[&now.as_millis()]).await.map_err(pg)?;
        let mut counts = PendingCodes::default();
        for row in rows {
            counts.add(get::<i64>(&row, 0)? as usize, get::<i64>(&row, 1)? as u64);
            counts.longest_lifetime_ms = counts.longest_lifetime_ms.max(get::<i64>(&row, 2)?);
        }
        Ok(counts)
    }

    /// One conditional upsert draws every bucket (rows locked in key order, so concurrent
    /// calls cannot deadlock); when some did not fit, what was drawn is given back.
    async fn take_limits(&self, takes: &[LimitTake], now: Timestamp) -> Result<Admission> {
        let now_ms = now.as_millis();
        let mut refused = Vec::new();
        let mut retry_after = Duration::ZERO;
        for (i, t) in takes.iter().enumerate() {
            if let Err(wait) = t.apply(None, now_ms) {
                refused.push(i);
                retry_after = retry_after.max(wait);
            }
        }
        if !refused.is_empty() {
            return Ok(Admission::Refused {
                refused,
                retry_after,
            });
        }
        let mut order: Vec<usize> = (0..takes.len()).collect();
        order.sort_by(|a, b| takes[*a].key.cmp(&takes[*b].key));
        let keys: Vec<&str> = order.iter().map(|&i| takes[i].key.as_str()).collect();
        let costs: Vec<i64> = order.iter().map(|&i| takes[i].cost_ms).collect();
        // A recorded-only take travels as a negative capacity: never refused, but clamped to
        // the brim like every backend's (`LimitTake::apply`).
        let caps: Vec<i64> = order
            .iter()
            .map(|&i| {
                let t = &takes[i];
                if t.enforce {
                    t.capacity_ms
                } else {
                    -t.capacity_ms
                }
            })
            .collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO rate_limits AS r (key, tat, capacity) \
                 SELECT k, $4 + LEAST(c, abs(cap)), cap \
                   FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) \
                   WITH ORDINALITY AS t(k, c, cap, n) ORDER BY n \
                 ON CONFLICT (key) DO UPDATE \
                   SET tat = LEAST(GREATEST(r.tat, $4) + (EXCLUDED.tat - $4), \
                                   $4 + abs(EXCLUDED.capacity)), \
                       capacity = EXCLUDED.capacity \
                   WHERE EXCLUDED.capacity < 0 \
                      OR GREATEST(r.tat, $4) + (EXCLUDED.tat - $4) - $4 <= EXCLUDED.capacity \
                 RETURNING key",
            )
            .await
            .map_err(pg)?;
        let mut attempt = 0;
        let rows = loop {
            match client.query(&stmt, &[&keys, &costs, &caps, &now_ms]).await {
                // Rows are locked in key order, so this should not happen; if PostgreSQL
                // still picks this statement as a deadlock's victim, nothing was drawn.
                Err(e) if attempt < 3 && e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED) => {
                    attempt += 1;
                }
                other => break other.map_err(pg)?,
            }
        };
        let taken: std::collections::HashSet<String> = rows
            .iter()
            .map(|r| get::<String>(r, 0))
            .collect::<Result<_>>()?;
        if taken.len() == takes.len() {
            return Ok(Admission::Admitted);
        }
        let drawn: Vec<LimitTake> = takes
            .iter()
            .filter(|t| taken.contains(&t.key))
            .cloned()
            .collect();
        drop(client);
        self.give_back_limits(&drawn).await?;
        let missing: Vec<&str> = takes
            .iter()
            .filter(|t| !taken.contains(&t.key))
            .map(|t| t.key.as_str())
            .collect();
        let rows = self
            .client()
            .await?
            .query(
                "SELECT key, tat FROM rate_limits WHERE key = ANY($1::TEXT[])",
                &[&missing],
            )
            .await
            .map_err(pg)?;
        for row in rows {
            let key = get::<String>(&row, 0)?;
            let tat = get::<i64>(&row, 1)?;
            if let Some((i, t)) = takes.iter().enumerate().find(|(_, t)| t.key == key) {
                refused.push(i);
                if let Err(wait) = t.apply(Some(tat), now_ms) {
                    retry_after = retry_after.max(wait);
                }
            }
        }
        if refused.is_empty() {
            // Refused, and then drained before we looked: refuse this once, briefly.
            refused = (0..takes.len())
                .filter(|i| !taken.contains(&takes[*i].key))
                .collect();
        }
        refused.sort_unstable();
        Ok(Admission::Refused {
            refused,
            retry_after: retry_after.max(Duration::from_millis(1)),
        })
    }

    /// One autocommitted row at a time: a statement that locks one row cannot deadlock
    /// against the multi-row takes.
    async fn give_back_limits(&self, takes: &[LimitTake]) -> Result<()> {
        let mut sorted: Vec<&LimitTake> = takes.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        for t in sorted {
            self.exec(
                "UPDATE rate_limits SET tat = tat - $2 WHERE key = $1",
                &[&t.key, &t.cost_ms],
            )
            .await?;
        }
        Ok(())
    }

    async fn create_session(&self, s: &BrowserSession) -> Result<()> {
        self.exec(
            &format!(
                "INSERT INTO browser_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            &[
                &s.id_hash.as_bytes().as_slice(),
                &s.user_id,
                &s.signed_on_at.map(Timestamp::as_millis),
                &s.flow_hash.map(|h| h.as_bytes().to_vec()),
                &s.created_at.as_millis(),
                &s.expires_at.as_millis(),
                &s.tenant,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn get_session(&self, h: &SecretHash) -> Result<BrowserSession> {
        self.one(
            &format!("SELECT {SESSION_COLUMNS} FROM browser_sessions WHERE id_hash = $1"),
            &[&h.as_bytes().as_slice()],
            session_from_row,
        )
        .await
    }

    async fn update_session(&self, s: &BrowserSession) -> Result<()> {
        let n = self
            .exec(
                "UPDATE browser_sessions SET user_id = $1, signed_on_at = $2, flow_hash = $3, expires_at = $4 \
                 WHERE id_hash = $5",
                &[
                    &s.user_id,
                    &s.signed_on_at.map(Timestamp::as_millis),
                    &s.flow_hash.map(|h| h.as_bytes().to_vec()),
                    &s.expires_at.as_millis(),
                    &s.id_hash.as_bytes().as_slice(),
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete_session(&self, h: &SecretHash) -> Result<()> {
        match self
            .exec(
                "DELETE FROM browser_sessions WHERE id_hash = $1",
                &[&h.as_bytes().as_slice()],
            )
            .await?
        {
            0 => Err(StoreError::NotFound),
            _ => Ok(()),
        }
    }

    async fn list_keys(&self, tenant: &str) -> Result<Vec<KeyRecord>> {
        self.all_for(
            &format!(
                "SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant = $1 ORDER BY created_at, id"
            ),
            tenant,
            key_from_row,
        )
        .await
    }

    async fn insert_key(&self, k: &KeyRecord) -> Result<()> {
        self.exec(
            &format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
            &[
                &k.id,
                &k.alg.as_str(),
                &k.pkcs8,
                &k.created_at.as_millis(),
                &k.tenant,
            ],
        )
        .await
        .map(|_| ())
    }

    async fn ensure_key(&self, k: &KeyRecord) -> Result<Vec<KeyRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Serialise instances creating keys; the lock ends with the transaction.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(MIGRATION_LOCK + 1)])
            .await
            .map_err(pg)?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM signing_keys WHERE tenant = $1 AND alg = $2 LIMIT 1",
                &[&k.tenant, &k.alg.as_str()],
            )
            .await
            .map_err(pg)?;
        if exists.is_none() {
            tx.execute(
                &format!("INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &[
                    &k.id,
                    &k.alg.as_str(),
                    &k.pkcs8,
                    &k.created_at.as_millis(),
                    &k.tenant,
                ],
            )
            .await
            .map_err(pg)?;
        }
        let rows = tx
            .query(
                &format!("SELECT {KEY_COLUMNS} FROM signing_keys WHERE tenant = $1 ORDER BY created_at, id"),
                &[&k.tenant],
            )
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn sweep(&self, now: Timestamp, grace_before: Timestamp) -> Result<SweepCounts> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let grace = grace_before.as_millis();
        let now = now.as_millis();
        let grants = tx
            .execute("DELETE FROM device_grants WHERE expires_at < $1", &[&grace])
            .await
            .map_err(pg)?;
        let flows = tx
            .execute("DELETE FROM flows WHERE expires_at < $1", &[&grace])
            .await
            .map_err(pg)?;
        let refresh_tokens = tx
            .execute("DELETE FROM refresh_tokens WHERE expires_at < $1", &[&now])
            .await
            .map_err(pg)?;
        let sessions = tx
            .execute(
                "DELETE FROM browser_sessions WHERE expires_at < $1",
                &[&now],
            )
            .await
            .map_err(pg)?;
        // Buckets that filled up again hold nothing a new one would not.
        tx.execute("DELETE FROM rate_limits WHERE tat < $1", &[&now])
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(SweepCounts {
            grants,
            flows,
            refresh_tokens,
            sessions,
        })
    }
}
