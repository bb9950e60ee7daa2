//! The SQLite backend's own tests: the conformance suite, then what only SQLite does (poll
//! state held in memory, written back, reloaded; migrations of older files).

use super::migrate::MIGRATIONS;
use crate::{HeldPoll, PollBy, Store};
use devicegate_core::grant::{DeviceGrant, Paced};
use devicegate_core::{SecretHash, Timestamp};

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

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

async fn pending_grant(s: &super::SqliteStore) -> DeviceGrant {
    let g = DeviceGrant {
        device_code_hash: SecretHash::of(b"dgd_x"),
        ..DeviceGrant::example_pending("cli", NOW)
    };
    s.create_grant(&g, &[]).await.unwrap();
    g
}

fn poll(s: &super::SqliteStore, g: &DeviceGrant, at: Timestamp) -> Option<HeldPoll> {
    s.poll_held(
        PollBy::new(&g.device_code_hash, &g.tenant, &g.client_id),
        at,
    )
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
        s.poll_held(PollBy::new(&g.device_code_hash, &g.tenant, "other"), NOW),
        None
    );
    assert_eq!(
        s.poll_held(PollBy::new(&g.device_code_hash, "acme", &g.client_id), NOW),
        None
    );
    // The held poll is part of the version: a decision made on the older read loses.
    let approved = g.approve("alice", NOW, None, None, NOW).unwrap();
    assert_eq!(
        s.update_grant(&approved).await,
        Err(crate::StoreError::Conflict)
    );
    let read = s.get_grant(&g.id).await.unwrap();
    assert_eq!(
        (read.version, read.last_poll_at),
        (g.version + 1, Some(NOW))
    );
    s.update_grant(&read.approve("alice", NOW, None, None, NOW).unwrap())
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
    s.create_grant(&late, &[]).await.unwrap();
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
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.execute_batch(MIGRATIONS[1]).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    let old = DeviceGrant {
        id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
        device_code_hash: SecretHash::of(b"dgd_old-style"),
        ..DeviceGrant::example_pending("cli", NOW)
    };
    // Its columns as schema 2 had them (`insert_grant_in` writes today's).
    conn.execute(
        "INSERT INTO device_grants (id, device_code_hash, user_code, client_id, scopes, status, \
         created_at, expires_at, interval_secs, version, tenant) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?8, ?9, ?10)",
        rusqlite::params![
            old.id,
            old.device_code_hash.as_bytes(),
            old.user_code.canonical(),
            old.client_id,
            old.scopes.to_string(),
            old.created_at.as_millis(),
            old.expires_at.as_millis(),
            old.interval_secs,
            old.version,
            old.tenant
        ],
    )
    .unwrap();
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
    for sql in &MIGRATIONS[..3] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_from_before_upstreams_keep_local_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A database at schema 4 holding a tenant, without `local_passwords`.
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..4] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    conn.execute(
        "INSERT INTO tenants (id, uuid, created_at) VALUES ('acme', 'u-1', ?1)",
        [NOW.as_millis()],
    )
    .unwrap();
    drop(conn);
    let s = super::SqliteStore::open(&path).unwrap();
    assert!(s.get_tenant("acme").await.unwrap().local_passwords);
}

#[test]
fn migrations_run_once_and_refuse_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    assert_eq!(
        super::SqliteStore::migrate(&path).unwrap(),
        MIGRATIONS.len()
    );
    assert_eq!(super::SqliteStore::migrate(&path).unwrap(), 0);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    assert!(super::SqliteStore::open(&path).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_before_idp_read_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A database at schema 5 holding a refresh token and a session, without `idp`.
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..5] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 5).unwrap();
    let token = SecretHash::of(b"rt");
    conn.execute(
        "INSERT INTO refresh_tokens (hash, tenant, family_id, client_id, subject, scopes, \
         auth_time, created_at, expires_at, used, family_started_at) \
         VALUES (?1, 'default', 'fam', 'cli', 'u1', 'openid', ?2, ?2, ?3, 0, ?2)",
        rusqlite::params![
            token.as_bytes(),
            NOW.as_millis(),
            NOW.as_millis() + 3_600_000
        ],
    )
    .unwrap();
    let session = SecretHash::of(b"session");
    conn.execute(
        "INSERT INTO browser_sessions (id_hash, tenant, user_id, signed_on_at, created_at, \
         expires_at) VALUES (?1, 'default', 'u1', ?2, ?2, ?3)",
        rusqlite::params![
            session.as_bytes(),
            NOW.as_millis(),
            NOW.as_millis() + 3_600_000
        ],
    )
    .unwrap();
    drop(conn);
    let s = super::SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_refresh_token(&token).await.unwrap().idp, None);
    assert_eq!(s.get_session(&session).await.unwrap().idp, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_from_before_second_factors_read_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A database at schema 7 holding a tenant, a refresh token and a session.
    let conn = rusqlite::Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..7] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 7).unwrap();
    conn.execute(
        "INSERT INTO tenants (id, uuid, created_at) VALUES ('acme', 'u-acme', ?1)",
        [NOW.as_millis()],
    )
    .unwrap();
    let token = SecretHash::of(b"rt");
    conn.execute(
        "INSERT INTO refresh_tokens (hash, tenant, family_id, client_id, subject, scopes, \
         auth_time, created_at, expires_at, used, family_started_at, idp) \
         VALUES (?1, 'default', 'fam', 'cli', 'u1', 'openid', ?2, ?2, ?3, 0, ?2, 'corp')",
        rusqlite::params![
            token.as_bytes(),
            NOW.as_millis(),
            NOW.as_millis() + 3_600_000
        ],
    )
    .unwrap();
    let session = SecretHash::of(b"session");
    conn.execute(
        "INSERT INTO browser_sessions (id_hash, tenant, user_id, signed_on_at, created_at, \
         expires_at) VALUES (?1, 'default', 'u1', ?2, ?2, ?3)",
        rusqlite::params![
            session.as_bytes(),
            NOW.as_millis(),
            NOW.as_millis() + 3_600_000
        ],
    )
    .unwrap();
    drop(conn);
    let s = super::SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_tenant("acme").await.unwrap().second_factor, "off");
    let t = s.get_refresh_token(&token).await.unwrap();
    assert_eq!((t.idp.as_deref(), t.amr), (Some("corp"), None));
    assert_eq!(s.get_session(&session).await.unwrap().amr, None);
    assert_eq!(
        s.get_totp("acme", "u1").await,
        Err(crate::StoreError::NotFound)
    );
    assert_eq!(s.count_recovery_codes("acme", "u1").await.unwrap(), 0);
}
