//! One conformance suite for every backend (after Dex's storage/conformance).
//!
//! Each case runs on a fresh, empty store from `make` and checks exact sentinel errors and
//! the races: concurrent redemption of one approved code, concurrent rotation of one refresh
//! token, concurrent approve and deny, and concurrent wrong-code counting, each with exactly
//! one winner and no lost update. A backend's own test is a call to [`run_all`], which runs
//! every case, reports each by name, and fails naming every case that failed.
//!
//! Built for this crate's tests and with the `conformance` feature (which only test builds
//! enable), never into the release binary.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use devicegate_core::flow::Flow;
use devicegate_core::grant::{DeviceGrant, GrantStatus, PollDecision, Requester};
use devicegate_core::keys::Algorithm;
use devicegate_core::scope::Scopes;
use devicegate_core::secret::{Secret, SecretKind, random_id};
use devicegate_core::user_code::UserCode;
use devicegate_core::{SecretHash, Timestamp};
use devicegate_proto::FlowStatus;

use crate::{
    Admission, AuditEvent, AuditQuery, BrowserSession, ClientRecord, DEFAULT_TENANT, HeldPoll,
    KeyRecord, LimitTake, PasskeyRecord, PollBy, RefreshToken, Store, StoreError, TenantRecord,
    TotpFactor, UpstreamLink, UpstreamRecord, UpstreamState, UserRecord, WebauthnCeremony,
};

const T: &str = DEFAULT_TENANT;
const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// A case of the suite, on the store it is given.
type Case<S> = fn(S) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs every case, each on a store fresh from `make` and in a task of its own, printing
/// `case NAME ... ok` or `... FAILED` for each; a failing case does not stop the others.
/// Panics at the end, naming every case that failed.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let cases: [(&str, Case<S>); 50] = [
        ("clients", |s| Box::pin(clients(s))),
        ("users", |s| Box::pin(users(s))),
        ("grants", |s| Box::pin(grants(s))),
        ("grant_update_is_compare_and_swap", |s| {
            Box::pin(grant_update_is_compare_and_swap(s))
        }),
        ("polls_race_and_decisions_see_them", |s| {
            Box::pin(polls_race_and_decisions_see_them(Arc::new(s)))
        }),
        ("held_polls_never_hide_a_decision", |s| {
            Box::pin(held_polls_never_hide_a_decision(Arc::new(s)))
        }),
        ("concurrent_redemption_has_one_winner", |s| {
            Box::pin(concurrent_redemption_has_one_winner(Arc::new(s)))
        }),
        ("concurrent_approve_and_deny_have_one_winner", |s| {
            Box::pin(concurrent_approve_and_deny_have_one_winner(Arc::new(s)))
        }),
        ("flows", |s| Box::pin(flows(s))),
        ("concurrent_wrong_codes_are_all_counted", |s| {
            Box::pin(concurrent_wrong_codes_are_all_counted(Arc::new(s)))
        }),
        ("refresh_tokens", |s| Box::pin(refresh_tokens(s))),
        ("concurrent_rotation_has_one_winner", |s| {
            Box::pin(concurrent_rotation_has_one_winner(Arc::new(s)))
        }),
        ("keys", |s| Box::pin(keys(s))),
        ("tenants_are_isolated", |s| {
            Box::pin(tenants_are_isolated(s))
        }),
        ("ensure_key_agrees", |s| {
            Box::pin(ensure_key_agrees(Arc::new(s)))
        }),
        ("grant_changes_are_announced", |s| {
            Box::pin(grant_changes_are_announced(s))
        }),
        ("sessions", |s| Box::pin(sessions(s))),
        ("changing_a_user_stops_what_they_had_under_way", |s| {
            Box::pin(changing_a_user_stops_what_they_had_under_way(s))
        }),
        ("pending_count", |s| Box::pin(pending_count(s))),
        ("limits_hold_under_a_burst", |s| {
            Box::pin(limits_hold_under_a_burst(Arc::new(s)))
        }),
        ("limits_are_all_or_nothing", |s| {
            Box::pin(limits_are_all_or_nothing(s))
        }),
        ("sweep", |s| Box::pin(sweep(s))),
        ("local_passwords", |s| Box::pin(local_passwords(s))),
        ("upstreams", |s| Box::pin(upstreams(s))),
        ("upstream_links", |s| Box::pin(upstream_links(s))),
        ("upstream_state_is_taken_once", |s| {
            Box::pin(upstream_state_is_taken_once(Arc::new(s)))
        }),
        ("deleting_an_upstream_deletes_its_links_and_states", |s| {
            Box::pin(deleting_an_upstream_deletes_its_links_and_states(s))
        }),
        ("deleting_a_user_deletes_their_upstream_links", |s| {
            Box::pin(deleting_a_user_deletes_their_upstream_links(s))
        }),
        ("upstreams_are_per_tenant", |s| {
            Box::pin(upstreams_are_per_tenant(s))
        }),
        ("flow_sign_on_facts_round_trip", |s| {
            Box::pin(flow_sign_on_facts_round_trip(s))
        }),
        ("grant_sign_on_facts_round_trip", |s| {
            Box::pin(grant_sign_on_facts_round_trip(Arc::new(s)))
        }),
        ("refresh_token_sign_on_facts_round_trip", |s| {
            Box::pin(refresh_token_sign_on_facts_round_trip(s))
        }),
        ("session_sign_on_facts_round_trip", |s| {
            Box::pin(session_sign_on_facts_round_trip(s))
        }),
        ("updating_an_upstream_keeps_its_links", |s| {
            Box::pin(updating_an_upstream_keeps_its_links(s))
        }),
        ("second_factor_policy", |s| {
            Box::pin(second_factor_policy(s))
        }),
        ("totp_factors", |s| Box::pin(totp_factors(s))),
        ("concurrent_totp_step_has_one_winner", |s| {
            Box::pin(concurrent_totp_step_has_one_winner(Arc::new(s)))
        }),
        ("recovery_codes", |s| Box::pin(recovery_codes(s))),
        ("concurrent_recovery_code_has_one_winner", |s| {
            Box::pin(concurrent_recovery_code_has_one_winner(Arc::new(s)))
        }),
        ("deleting_factors", |s| Box::pin(deleting_factors(s))),
        ("second_factors_are_per_tenant", |s| {
            Box::pin(second_factors_are_per_tenant(s))
        }),
        ("passkeys", |s| Box::pin(passkeys(s))),
        ("concurrent_passkey_use_has_one_winner", |s| {
            Box::pin(concurrent_passkey_use_has_one_winner(Arc::new(s)))
        }),
        ("webauthn_ceremonies_are_taken_once", |s| {
            Box::pin(webauthn_ceremonies_are_taken_once(Arc::new(s)))
        }),
        ("passkeys_are_per_tenant_and_go_with_the_person", |s| {
            Box::pin(passkeys_are_per_tenant_and_go_with_the_person(s))
        }),
        ("ending_a_persons_sessions", |s| {
            Box::pin(ending_a_persons_sessions(s))
        }),
        ("revocations", |s| Box::pin(revocations(s))),
        ("a_persons_devices_are_their_live_families", |s| {
            Box::pin(a_persons_devices_are_their_live_families(s))
        }),
        ("audit_events", |s| Box::pin(audit_events(s))),
        ("audit_events_ride_their_change", |s| {
            Box::pin(audit_events_ride_their_change(s))
        }),
    ];
    let mut failed = Vec::new();
    for (name, case) in cases {
        let store = make().await;
        // In a task of its own, so that a panic (a failed assertion) ends only this case.
        match tokio::spawn(case(store)).await {
            Ok(()) => println!("case {name} ... ok"),
            Err(_) => {
                println!("case {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} conformance case(s) failed: {}",
        failed.len(),
        failed.join(", ")
    );
}

/// Racing writes: exactly one succeeds, every other one is told `Conflict`.
async fn assert_one_winner(tasks: Vec<tokio::task::JoinHandle<crate::Result<()>>>) {
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => wins += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict),
        }
    }
    assert_eq!(wins, 1);
}

pub(crate) fn client(id: &str) -> ClientRecord {
    ClientRecord {
        tenant: T.into(),
        id: id.into(),
        name: format!("Client {id}"),
        secret_hash: Some(SecretHash::of(id.as_bytes())),
        scopes: Scopes::parse("openid offline_access").unwrap(),
        grant_types: vec!["refresh_token".into()],
        device_code_ttl_secs: Some(60),
        poll_interval_secs: None,
        created_at: NOW,
        device_policy: Default::default(),
    }
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        id: random_id(),
        tenant: T.into(),
        username: name.into(),
        password_hash: "$argon2id$fake".into(),
        name: Some("Ann Example".into()),
        email: None,
        created_at: NOW,
        disabled: false,
    }
}

fn grant(client_id: &str) -> (Secret, DeviceGrant) {
    let code = Secret::generate(SecretKind::DeviceCode);
    let g = DeviceGrant {
        id: random_id(),
        tenant: T.into(),
        device_code_hash: code.hash(),
        user_code: UserCode::generate(),
        client_id: client_id.into(),
        scopes: Scopes::parse("openid").unwrap(),
        status: GrantStatus::Pending,
        created_at: NOW,
        expires_at: NOW.plus(Duration::from_secs(600)),
        interval_secs: 5,
        last_poll_at: None,
        flow_id: None,
        flow_expires_at: None,
        requester: Requester {
            ip: Some("127.0.0.1".into()),
            user_agent: Some("tv/1".into()),
        },
        context: Some("database=system".into()),
        version: 0,
    };
    (code, g)
}

/// A new grant of client `cli`, approved by `token`'s subject and redeemed, storing `token`.
async fn redeemed_with(s: &impl Store, token: &RefreshToken) {
    let (_, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    let redeemed = DeviceGrant {
        status: GrantStatus::Redeemed,
        ..g.approve(&token.subject, NOW, None, None, NOW).unwrap()
    };
    s.redeem_grant(&redeemed, Some(token), &[]).await.unwrap();
}

fn refresh(family: &str) -> (Secret, RefreshToken) {
    let s = Secret::generate(SecretKind::RefreshToken);
    let t = RefreshToken {
        amr: None,
        idp: None,
        hash: s.hash(),
        tenant: T.into(),
        family_id: family.into(),
        // Distinct from every other time, so that a backend mixing up columns is caught.
        family_started_at: Timestamp::from_millis(NOW.as_millis() - 60_000),
        client_id: "cli".into(),
        subject: "u1".into(),
        scopes: Scopes::parse("openid offline_access").unwrap(),
        auth_time: Timestamp::from_millis(NOW.as_millis() - 90_000),
        created_at: NOW,
        expires_at: NOW.plus(Duration::from_secs(3600)),
        used: false,
        requester_ip: Some("203.0.113.7".into()),
        requester_agent: Some("tv/1.0".into()),
    };
    (s, t)
}

async fn clients(s: impl Store) {
    let c = client("a");
    s.create_client(&c).await.unwrap();
    assert_eq!(s.create_client(&c).await, Err(StoreError::AlreadyExists));
    // An update changes what it names, and keeps the secret and the creation time.
    let changed = ClientRecord {
        name: "A renamed".into(),
        scopes: Scopes::parse("openid").unwrap(),
        grant_types: vec!["urn:ietf:params:oauth:grant-type:device_code".into()],
        device_code_ttl_secs: Some(300),
        poll_interval_secs: Some(9),
        device_policy: crate::DevicePolicy {
            networks: vec!["198.51.100.0/24".into(), "2001:db8::/32".into()],
            refresh_tokens: false,
            scope_ceiling: Some(Scopes::parse("openid").unwrap()),
            access_ttl_secs: Some(600),
            proximity: "same_network".into(),
        },
        secret_hash: Some(SecretHash::of(b"ignored")),
        created_at: NOW.plus(Duration::from_secs(5)),
        ..c.clone()
    };
    s.update_client(&changed).await.unwrap();
    assert_eq!(
        s.get_client(T, "a").await.unwrap(),
        ClientRecord {
            secret_hash: c.secret_hash,
            created_at: c.created_at,
            ..changed.clone()
        }
    );
    assert_eq!(
        s.update_client(&ClientRecord {
            id: "nope".into(),
            ..changed.clone()
        })
        .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.update_client(&ClientRecord {
            tenant: "acme".into(),
            ..changed
        })
        .await,
        Err(StoreError::NotFound)
    );
    s.update_client(&c).await.unwrap();
    assert_eq!(s.get_client(T, "a").await.unwrap(), c);
    assert_eq!(s.get_client(T, "b").await, Err(StoreError::NotFound));
    let public = ClientRecord {
        secret_hash: None,
        ..client("b")
    };
    s.create_client(&public).await.unwrap();
    assert_eq!(s.list_clients(T).await.unwrap(), vec![c, public]);
    // Deleting a client takes its grants with it.
    let (code, g) = grant("a");
    s.create_grant(&g, &[]).await.unwrap();
    s.delete_client(T, "a").await.unwrap();
    assert_eq!(s.delete_client(T, "a").await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_grant_by_device_code(&code.hash()).await,
        Err(StoreError::NotFound)
    );
}

async fn users(s: impl Store) {
    let u = user("ann");
    s.create_user(&u).await.unwrap();
    let same_name = user("ann");
    assert_eq!(
        s.create_user(&same_name).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(s.get_user(&u.id).await.unwrap(), u);
    assert_eq!(s.get_user_by_username(T, "ann").await.unwrap(), u);
    assert_eq!(
        s.get_user_by_username(T, "bob").await,
        Err(StoreError::NotFound)
    );
    // A new password revokes the user's refresh tokens.
    let (token_secret, token) = refresh("fam");
    let token = RefreshToken {
        subject: u.id.clone(),
        ..token
    };
    redeemed_with(&s, &token).await;
    assert!(s.get_refresh_token(&token_secret.hash()).await.is_ok());
    s.set_password(T, "ann", "$argon2id$new").await.unwrap();
    assert_eq!(
        s.get_user(&u.id).await.unwrap().password_hash,
        "$argon2id$new"
    );
    assert_eq!(
        s.set_password(T, "bob", "x").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.get_refresh_token(&token_secret.hash()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.list_users(T).await.unwrap().len(), 1);
    s.delete_user(T, "ann").await.unwrap();
    assert_eq!(s.delete_user(T, "ann").await, Err(StoreError::NotFound));
    assert_eq!(s.get_user(&u.id).await, Err(StoreError::NotFound));
}

async fn grants(s: impl Store) {
    let (code, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    assert_eq!(s.get_grant_by_device_code(&code.hash()).await.unwrap(), g);
    assert_eq!(s.get_grant_by_user_code(&g.user_code).await.unwrap(), g);
    assert_eq!(s.get_grant(&g.id).await.unwrap(), g);
    let other = Secret::generate(SecretKind::DeviceCode);
    assert_eq!(
        s.get_grant_by_device_code(&other.hash()).await,
        Err(StoreError::NotFound)
    );
    // A user code is unique among stored grants.
    let (_, mut dup) = grant("cli");
    dup.user_code = g.user_code.clone();
    assert_eq!(
        s.create_grant(&dup, &[]).await,
        Err(StoreError::AlreadyExists)
    );
    // Every field survives a round trip, approved state included.
    let approved = g.approve("u1", NOW, None, None, NOW).unwrap();
    s.update_grant(&approved).await.unwrap();
    let back = s.get_grant(&g.id).await.unwrap();
    assert_eq!(
        back,
        DeviceGrant {
            version: 1,
            ..approved
        }
    );
}

async fn grant_update_is_compare_and_swap(s: impl Store) {
    let (_, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    let PollDecision::Pending { next } = g.on_poll("cli", NOW) else {
        panic!()
    };
    s.record_poll(&next).await.unwrap();
    // A second write from the same read is stale, whichever way it is written.
    assert_eq!(s.record_poll(&next).await, Err(StoreError::Conflict));
    assert_eq!(s.update_grant(&next).await, Err(StoreError::Conflict));
    let (_, missing) = grant("cli");
    assert_eq!(s.update_grant(&missing).await, Err(StoreError::NotFound));
    let stored = s.get_grant(&g.id).await.unwrap();
    assert_eq!((stored.version, stored.last_poll_at), (1, Some(NOW)));
}

/// Polls answered from memory (`poll_held`, where a backend has it) never answer as pending
/// once a decision is stored, however many of them race it.
async fn held_polls_never_hide_a_decision<S: Store>(s: Arc<S>) {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let (code, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    // A poll through the database, as the token endpoint makes when nothing is held here.
    let read = s.get_grant_by_device_code(&code.hash()).await.unwrap();
    let PollDecision::Pending { next } = read.on_poll("cli", NOW) else {
        panic!()
    };
    s.record_poll(&next).await.unwrap();
    let decided = Arc::new(AtomicBool::new(false));
    let clock = Arc::new(AtomicI64::new(NOW.as_millis()));
    let pollers: Vec<_> = (0..4)
        .map(|_| {
            let (s, decided, clock, hash) =
                (s.clone(), decided.clone(), clock.clone(), code.hash());
            tokio::spawn(async move {
                let mut held = 0;
                for _ in 0..2_000 {
                    let after_decision = decided.load(Ordering::SeqCst);
                    let at = Timestamp::from_millis(clock.fetch_add(1, Ordering::Relaxed));
                    match s.poll_held(PollBy::new(&hash, T, "cli"), at) {
                        Some(HeldPoll::Paced(p)) => {
                            assert!(!after_decision, "answered {p:?} after the approval");
                            held += 1;
                        }
                        Some(HeldPoll::Expired) => panic!("not expired"),
                        None => {}
                    }
                    tokio::task::yield_now().await;
                }
                held
            })
        })
        .collect();
    tokio::task::yield_now().await;
    loop {
        let fresh = s.get_grant(&g.id).await.unwrap();
        match s
            .update_grant(&fresh.approve("ann", NOW, None, None, NOW).unwrap())
            .await
        {
            Ok(()) => break,
            Err(StoreError::Conflict) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    decided.store(true, Ordering::SeqCst);
    for p in pollers {
        p.await.unwrap();
    }
    assert_eq!(s.poll_held(PollBy::new(&code.hash(), T, "cli"), NOW), None);
    assert!(matches!(
        s.get_grant(&g.id).await.unwrap().status,
        GrantStatus::Approved { .. }
    ));
}

async fn polls_race_and_decisions_see_them(s: Arc<impl Store>) {
    let (code, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    // Many polls from one read: one is recorded, the others must re-read.
    let read = s.get_grant_by_device_code(&code.hash()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, read) = (s.clone(), read.clone());
        tasks.push(tokio::spawn(async move {
            let PollDecision::Pending { next } =
                read.on_poll("cli", NOW.plus(Duration::from_millis(i)))
            else {
                panic!()
            };
            s.record_poll(&next).await
        }));
    }
    assert_one_winner(tasks).await;
    // Every read sees the recorded poll, so the next early poll slows down.
    let polled = s.get_grant_by_device_code(&code.hash()).await.unwrap();
    assert!(polled.last_poll_at.is_some() && polled.version > read.version);
    assert_eq!(s.get_grant(&g.id).await.unwrap(), polled);
    let PollDecision::SlowDown { next, .. } =
        polled.on_poll("cli", NOW.plus(Duration::from_secs(1)))
    else {
        panic!()
    };
    s.record_poll(&next).await.unwrap();
    let slowed = s.get_grant(&g.id).await.unwrap();
    assert_eq!(slowed.interval_secs, 10);
    // A decision made on a read from before the polls is stale; one on a fresh read holds,
    // and keeps the longer interval.
    assert_eq!(
        s.update_grant(&read.approve("u1", NOW, None, None, NOW).unwrap())
            .await,
        Err(StoreError::Conflict)
    );
    s.update_grant(&slowed.approve("u1", NOW, None, None, NOW).unwrap())
        .await
        .unwrap();
    let approved = s.get_grant(&g.id).await.unwrap();
    assert!(matches!(approved.status, GrantStatus::Approved { .. }));
    assert_eq!(approved.interval_secs, 10);
    // A poll recorded from a read before the decision is refused.
    assert_eq!(s.record_poll(&slowed).await, Err(StoreError::Conflict));
}

async fn concurrent_redemption_has_one_winner(s: Arc<impl Store>) {
    let (code, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    let approved = g.approve("u1", NOW, None, None, NOW).unwrap();
    s.update_grant(&approved).await.unwrap();
    let read = s.get_grant_by_device_code(&code.hash()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (s, read) = (s.clone(), read.clone());
        tasks.push(tokio::spawn(async move {
            let PollDecision::Issue { next, .. } = read.on_poll("cli", NOW) else {
                panic!()
            };
            let (_, token) = refresh(&format!("family-{i}"));
            s.redeem_grant(&next, Some(&token), &[]).await
        }));
    }
    assert_one_winner(tasks).await;
    assert_eq!(
        s.get_grant(&g.id).await.unwrap().status,
        GrantStatus::Redeemed
    );
}

async fn concurrent_approve_and_deny_have_one_winner(s: Arc<impl Store>) {
    let (_, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, g) = (s.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            let next = if i % 2 == 0 {
                g.approve("u1", NOW, None, None, NOW)
            } else {
                g.deny(NOW)
            }
            .unwrap();
            s.update_grant(&next).await.map(|()| next.status)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Ok(status) = t.await.unwrap() {
            winners.push(status);
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(s.get_grant(&g.id).await.unwrap().status, winners[0]);
}

fn flow() -> (Secret, Flow) {
    let secret = Secret::generate(SecretKind::FlowId);
    let f = Flow::new(T, random_id(), secret.hash(), NOW, Duration::from_secs(900));
    (secret, f)
}

async fn flows(s: impl Store) {
    let (secret, f) = flow();
    s.create_flow(&f).await.unwrap();
    assert_eq!(s.create_flow(&f).await, Err(StoreError::AlreadyExists));
    assert_eq!(s.get_flow(&secret.hash()).await.unwrap(), f);
    assert_eq!(
        s.get_flow(&SecretHash::of(b"nope")).await,
        Err(StoreError::NotFound)
    );
    // Binding a code updates flow and grant together, or neither.
    let (_, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    let (next_flow, next_grant) = f.verify_user_code(Some(&g), NOW).unwrap();
    let stale_grant = DeviceGrant {
        version: 7,
        ..next_grant.clone()
    };
    assert_eq!(
        s.update_flow(&next_flow, Some(&stale_grant), &[]).await,
        Err(StoreError::Conflict)
    );
    assert_eq!(
        s.get_flow(&secret.hash()).await.unwrap(),
        f,
        "flow update rolled back"
    );
    s.update_flow(&next_flow, Some(&next_grant), &[])
        .await
        .unwrap();
    let stored = s.get_flow(&secret.hash()).await.unwrap();
    assert_eq!(
        stored,
        Flow {
            version: 1,
            ..next_flow.clone()
        }
    );
    assert_eq!(
        s.get_grant(&g.id).await.unwrap().flow_id,
        Some(f.id.clone())
    );
    assert_eq!(
        s.update_flow(&next_flow, None, &[]).await,
        Err(StoreError::Conflict)
    );
    // A new capability: the flow is found by it, and no longer by the old one.
    let rekeyed = Flow {
        secret_hash: SecretHash::of(b"new capability"),
        ..stored
    };
    s.update_flow(&rekeyed, None, &[]).await.unwrap();
    assert_eq!(s.get_flow(&secret.hash()).await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_flow(&rekeyed.secret_hash).await.unwrap().version,
        rekeyed.version + 1
    );
}

async fn concurrent_wrong_codes_are_all_counted(s: Arc<impl Store>) {
    let (secret, f) = flow();
    s.create_flow(&f).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (s, hash) = (s.clone(), secret.hash());
        tasks.push(tokio::spawn(async move {
            // What a front-end does: read, decide, compare-and-swap, retry on conflict.
            loop {
                let f = s.get_flow(&hash).await.unwrap();
                let next = *f.verify_user_code(None, NOW).unwrap_err().next.unwrap();
                match s.update_flow(&next, None, &[]).await {
                    Ok(()) => return,
                    Err(StoreError::Conflict) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get_flow(&secret.hash()).await.unwrap().failed_attempts, 3);
}

async fn refresh_tokens(s: impl Store) {
    let (secret, t) = refresh("fam");
    redeemed_with(&s, &t).await;
    assert_eq!(s.get_refresh_token(&secret.hash()).await.unwrap(), t);
    let (secret2, t2) = refresh("fam");
    let t2 = RefreshToken {
        created_at: NOW.plus(Duration::from_secs(1)),
        ..t2
    };
    s.rotate_refresh_token(&t.hash, &t2).await.unwrap();
    assert!(s.get_refresh_token(&secret.hash()).await.unwrap().used);
    assert_eq!(
        s.get_refresh_token(&secret2.hash()).await.unwrap(),
        t2,
        "a rotated token keeps its family's start"
    );
    let (_, t3) = refresh("fam");
    assert_eq!(
        s.rotate_refresh_token(&t.hash, &t3).await,
        Err(StoreError::Conflict)
    );
    assert_eq!(
        s.get_refresh_token(&t3.hash).await,
        Err(StoreError::NotFound),
        "no token from a lost rotation"
    );
    assert_eq!(
        s.rotate_refresh_token(&SecretHash::of(b"nope"), &t3).await,
        Err(StoreError::NotFound)
    );
    let (_, other) = refresh("other");
    redeemed_with(&s, &other).await;
    assert_eq!(
        s.revoke_refresh_family(T, "fam", NOW.plus(Duration::from_secs(60)), &[])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.get_refresh_token(&secret2.hash()).await,
        Err(StoreError::NotFound)
    );
    assert!(
        s.get_refresh_token(&other.hash).await.is_ok(),
        "other families untouched"
    );
    // Deleting the user takes their tokens.
    s.create_user(&UserRecord {
        id: "u1".into(),
        ..user("ann")
    })
    .await
    .unwrap();
    s.delete_user(T, "ann").await.unwrap();
    assert_eq!(
        s.get_refresh_token(&other.hash).await,
        Err(StoreError::NotFound)
    );
}

async fn concurrent_rotation_has_one_winner(s: Arc<impl Store>) {
    let (_, t) = refresh("fam");
    redeemed_with(&*s, &t).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, old) = (s.clone(), t.hash);
        tasks.push(tokio::spawn(async move {
            let (_, new) = refresh("fam");
            s.rotate_refresh_token(&old, &new).await
        }));
    }
    assert_one_winner(tasks).await;
    assert_eq!(
        s.revoke_refresh_family(T, "fam", NOW, &[]).await.unwrap(),
        2,
        "the old token and one new one"
    );
}

async fn tenants_are_isolated(s: impl Store) {
    let acme = TenantRecord {
        second_factor: "off".into(),
        id: "acme".into(),
        uuid: "0f3c5b0e-8d43-4e4b-9a53-4cbe5a6a1a01".into(),
        local_passwords: true,
        created_at: NOW,
    };
    s.create_tenant(&acme).await.unwrap();
    assert_eq!(s.create_tenant(&acme).await, Err(StoreError::AlreadyExists));
    assert_eq!(s.get_tenant("acme").await.unwrap(), acme);
    assert_eq!(
        s.get_tenant_by_uuid(&acme.uuid.to_uppercase())
            .await
            .unwrap(),
        acme
    );
    assert_eq!(s.get_tenant("nope").await, Err(StoreError::NotFound));
    // The same client id and username in two tenants are two records.
    s.create_client(&client("tv")).await.unwrap();
    let acme_client = ClientRecord {
        tenant: "acme".into(),
        name: "Acme TV".into(),
        ..client("tv")
    };
    s.create_client(&acme_client).await.unwrap();
    assert_eq!(s.get_client("acme", "tv").await.unwrap().name, "Acme TV");
    assert_eq!(s.get_client(T, "tv").await.unwrap().name, "Client tv");
    s.create_user(&user("ann")).await.unwrap();
    let acme_ann = UserRecord {
        tenant: "acme".into(),
        ..user("ann")
    };
    s.create_user(&acme_ann).await.unwrap();
    assert_eq!(
        s.get_user_by_username("acme", "ann").await.unwrap().id,
        acme_ann.id
    );
    assert_eq!(s.list_users("acme").await.unwrap().len(), 1);
    let key = KeyRecord {
        tenant: "acme".into(),
        id: "acme-key".into(),
        alg: Algorithm::Es256,
        pkcs8: vec![1],
        created_at: NOW,
        signs_from: NOW,
    };
    assert_eq!(s.ensure_key(&key).await.unwrap(), vec![key.clone()]);
    assert!(
        s.list_keys(T).await.unwrap().is_empty(),
        "keys are per tenant"
    );
    // Deleting a tenant deletes what it holds, and nothing else.
    s.delete_tenant("acme").await.unwrap();
    assert_eq!(s.delete_tenant("acme").await, Err(StoreError::NotFound));
    assert_eq!(s.get_client("acme", "tv").await, Err(StoreError::NotFound));
    assert_eq!(s.get_user(&acme_ann.id).await, Err(StoreError::NotFound));
    assert!(s.list_keys("acme").await.unwrap().is_empty());
    assert!(s.get_client(T, "tv").await.is_ok());
    assert_eq!(s.list_tenants().await.unwrap(), vec![]);
}

async fn keys(s: impl Store) {
    assert!(s.list_keys(T).await.unwrap().is_empty());
    let k = KeyRecord {
        tenant: T.into(),
        id: "k1".into(),
        alg: Algorithm::Es256,
        pkcs8: vec![1, 2, 3],
        created_at: NOW,
        signs_from: NOW,
    };
    s.insert_key(&k).await.unwrap();
    assert_eq!(s.insert_key(&k).await, Err(StoreError::AlreadyExists));
    assert_eq!(s.list_keys(T).await.unwrap(), vec![k]);
}

async fn ensure_key_agrees(s: Arc<impl Store>) {
    s.ping().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let candidate = KeyRecord {
                tenant: T.into(),
                id: format!("k{i}"),
                alg: Algorithm::EdDsa,
                pkcs8: vec![i],
                created_at: NOW,
                signs_from: NOW,
            };
            s.ensure_key(&candidate).await.unwrap()
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    assert!(
        seen.iter().all(|keys| keys.len() == 1 && keys == &seen[0]),
        "one key, the same for all: {seen:?}"
    );
    let other = KeyRecord {
        tenant: T.into(),
        id: "rsa".into(),
        alg: Algorithm::Rs256,
        pkcs8: vec![9],
        created_at: NOW,
        signs_from: NOW,
    };
    assert_eq!(
        s.ensure_key(&other).await.unwrap().len(),
        2,
        "another algorithm gets its own key"
    );
}

async fn grant_changes_are_announced(s: impl Store) {
    let mut rx = s.subscribe();
    let (_, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    s.update_grant(&g.approve("u1", NOW, None, None, NOW).unwrap())
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!(got.grant_id, g.id);
}

async fn sessions(s: impl Store) {
    let id = Secret::generate(SecretKind::FlowId);
    let session = BrowserSession {
        amr: None,
        idp: None,
        tenant: T.into(),
        id_hash: id.hash(),
        user_id: None,
        signed_on_at: None,
        flow_hash: None,
        created_at: NOW,
        expires_at: NOW.plus(Duration::from_secs(60)),
    };
    s.create_session(&session).await.unwrap();
    assert_eq!(
        s.create_session(&session).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(s.get_session(&id.hash()).await.unwrap(), session);
    let signed_on = BrowserSession {
        user_id: Some("u1".into()),
        signed_on_at: Some(NOW),
        flow_hash: Some(SecretHash::of(b"flow")),
        ..session.clone()
    };
    s.update_session(&signed_on).await.unwrap();
    assert_eq!(s.get_session(&id.hash()).await.unwrap(), signed_on);
    s.delete_session(&id.hash()).await.unwrap();
    assert_eq!(
        s.delete_session(&id.hash()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_session(&id.hash()).await, Err(StoreError::NotFound));
    assert_eq!(
        s.update_session(&signed_on).await,
        Err(StoreError::NotFound)
    );
    // A person's sessions end with a new password, and with the person.
    for delete in [false, true] {
        let ann = user(if delete { "ann-deleted" } else { "ann" });
        s.create_user(&ann).await.unwrap();
        let theirs = BrowserSession {
            id_hash: SecretHash::of(ann.id.as_bytes()),
            user_id: Some(ann.id.clone()),
            ..signed_on.clone()
        };
        s.create_session(&theirs).await.unwrap();
        if delete {
            s.delete_user(T, &ann.username).await.unwrap();
        } else {
            s.set_password(T, &ann.username, "$argon2id$other")
                .await
                .unwrap();
        }
        assert_eq!(
            s.get_session(&theirs.id_hash).await,
            Err(StoreError::NotFound)
        );
    }
}

/// A new password, or deleting the user, denies the person's approved grants that were not
/// redeemed yet (with a new version, so a redemption read before loses its compare-and-swap)
/// and fails their open flows; announced like any grant change. Redeemed grants, finished
/// flows and everyone else's stay as they were.
async fn changing_a_user_stops_what_they_had_under_way(s: impl Store) {
    let bob = user("bob");
    s.create_user(&bob).await.unwrap();
    let (_, bobs) = grant("cli");
    s.create_grant(&bobs, &[]).await.unwrap();
    s.update_grant(&bobs.approve(&bob.id, NOW, None, None, NOW).unwrap())
        .await
        .unwrap();
    let bobs_flow = signed_on_flow(&s, &bob.id).await;
    for change in ["password", "delete", "revoke"] {
        let ann = user(&format!("ann-{change}"));
        s.create_user(&ann).await.unwrap();
        // Approved through a flow that completed; not redeemed.
        let (_, approved) = grant("cli");
        s.create_grant(&approved, &[]).await.unwrap();
        let done = signed_on_flow(&s, &ann.id).await;
        let (f, g) = done.verify_user_code(Some(&approved), NOW).unwrap();
        s.update_flow(&f, Some(&g), &[]).await.unwrap();
        let (f, g) = s
            .get_flow(&f.secret_hash)
            .await
            .unwrap()
            .consent(&s.get_grant(&g.id).await.unwrap(), true, NOW)
            .unwrap();
        s.update_flow(&f, Some(&g), &[]).await.unwrap();
        let approved = s.get_grant(&approved.id).await.unwrap();
        // Redeemed.
        let (_, redeemed) = grant("cli");
        s.create_grant(&redeemed, &[]).await.unwrap();
        s.redeem_grant(
            &DeviceGrant {
                status: GrantStatus::Redeemed,
                ..redeemed.approve(&ann.id, NOW, None, None, NOW).unwrap()
            },
            None,
            &[],
        )
        .await
        .unwrap();
        let redeemed = s.get_grant(&redeemed.id).await.unwrap();
        // Waiting at consent.
        let (_, waiting) = grant("cli");
        s.create_grant(&waiting, &[]).await.unwrap();
        let open = signed_on_flow(&s, &ann.id).await;
        let (f, g) = open.verify_user_code(Some(&waiting), NOW).unwrap();
        s.update_flow(&f, Some(&g), &[]).await.unwrap();
        let open = s.get_flow(&open.secret_hash).await.unwrap();
        let done = s.get_flow(&done.secret_hash).await.unwrap();

        let mut rx = s.subscribe();
        let later = NOW.plus(Duration::from_secs(3600));
        match change {
            "delete" => s.delete_user(T, &ann.username).await.unwrap(),
            "revoke" => {
                s.revoke_user(T, &ann.username, true, NOW, later)
                    .await
                    .unwrap();
                // Disabled, and the access tokens issued before now revoked (not later ones).
                assert!(s.get_user(&ann.id).await.unwrap().disabled);
                let sub = vec![format!("sub:{}", ann.id)];
                let before = Timestamp::from_millis(NOW.as_millis() - 1);
                assert!(s.any_revoked(T, &sub, before, NOW).await.unwrap());
                assert!(!s.any_revoked(T, &sub, NOW, NOW).await.unwrap());
                assert!(!s.any_revoked(T, &sub, before, later).await.unwrap());
                assert!(!s.any_revoked("acme", &sub, before, NOW).await.unwrap());
                // Enabled again: the revocation of what came before stands.
                s.enable_user(T, &ann.username).await.unwrap();
                assert!(!s.get_user(&ann.id).await.unwrap().disabled);
                assert!(s.any_revoked(T, &sub, before, NOW).await.unwrap());
                assert_eq!(s.enable_user(T, "nobody").await, Err(StoreError::NotFound));
                assert_eq!(
                    s.revoke_user(T, "nobody", false, NOW, later).await,
                    Err(StoreError::NotFound)
                );
            }
            _ => s
                .set_password(T, &ann.username, "$argon2id$other")
                .await
                .unwrap(),
        }

        let denied = s.get_grant(&approved.id).await.unwrap();
        assert_eq!(denied.status, GrantStatus::Denied);
        assert!(denied.version > approved.version);
        let redemption = DeviceGrant {
            status: GrantStatus::Redeemed,
            ..approved.clone()
        };
        assert_eq!(
            s.redeem_grant(&redemption, None, &[]).await,
            Err(StoreError::Conflict)
        );
        assert_eq!(s.get_grant(&redeemed.id).await.unwrap(), redeemed);
        let failed = s.get_flow(&open.secret_hash).await.unwrap();
        assert_eq!(
            failed,
            Flow {
                status: FlowStatus::Failed,
                version: open.version + 1,
                ..open.clone()
            }
        );
        assert_eq!(s.get_flow(&done.secret_hash).await.unwrap(), done);
        // A step read before the change loses its compare-and-swap.
        let (f, g) = open
            .consent(&s.get_grant(&waiting.id).await.unwrap(), true, NOW)
            .unwrap();
        assert_eq!(
            s.update_flow(&f, Some(&g), &[]).await,
            Err(StoreError::Conflict)
        );
        assert_eq!(
            s.get_grant(&waiting.id).await.unwrap().status,
            GrantStatus::Pending
        );
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("the denial is announced")
                .unwrap();
            if got.grant_id == approved.id {
                break;
            }
        }
    }
    // Bob's grant and flow were never touched.
    let bobs_now = s.get_grant(&bobs.id).await.unwrap();
    assert!(
        matches!(bobs_now.status, GrantStatus::Approved { ref subject, .. } if *subject == bob.id)
    );
    assert_eq!(bobs_now.version, bobs.version + 1);
    assert_eq!(s.get_flow(&bobs_flow.secret_hash).await.unwrap(), bobs_flow);
}

/// A new flow, stored, with `user_id` signed on (and stored again).
async fn signed_on_flow(s: &impl Store, user_id: &str) -> Flow {
    let (_, f) = flow();
    s.create_flow(&f).await.unwrap();
    s.update_flow(&f.sign_on(user_id, NOW).unwrap(), None, &[])
        .await
        .unwrap();
    s.get_flow(&f.secret_hash).await.unwrap()
}

async fn pending_count(s: impl Store) {
    assert_eq!(s.count_pending_grants(NOW).await.unwrap().total(), 0);
    let (_, a) = grant("cli");
    let (_, b) = grant("cli");
    let (_, c) = grant("cli");
    let (_, long) = grant("cli");
    let long = DeviceGrant {
        user_code: UserCode::generate_len(11),
        ..long
    };
    for g in [&a, &b, &c, &long] {
        s.create_grant(g, &[]).await.unwrap();
    }
    s.update_grant(&b.deny(NOW).unwrap()).await.unwrap();
    let counts = s.count_pending_grants(NOW).await.unwrap();
    assert_eq!((counts.of_length(8), counts.of_length(11)), (2, 1));
    assert_eq!(counts.longest_lifetime_ms, 600_000);
    assert_eq!(counts.total(), 3);
    assert_eq!(
        s.count_pending_grants(c.expires_at).await.unwrap().total(),
        0,
        "expired ones are not pending"
    );
}

fn bucket(key: &str, burst: u32) -> LimitTake {
    LimitTake::per(key.into(), burst, Duration::from_secs(60))
}

/// Whether `take_limits` admits `takes` at `at`.
async fn admits(s: &impl Store, takes: &[LimitTake], at: Timestamp) -> bool {
    s.take_limits(takes, at).await.unwrap().is_admitted()
}

/// A burst of concurrent takes gets exactly the bucket's size, however they interleave:
/// the count happens with the check, never after it.
async fn limits_hold_under_a_burst(s: Arc<impl Store>) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.take_limits(&[bucket("burst", 10), bucket("wide", 1000)], NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Admission::Admitted => admitted += 1,
            Admission::Refused {
                refused,
                retry_after,
            } => {
                assert_eq!(refused, vec![0], "only the small bucket is full");
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(6));
            }
        }
    }
    assert_eq!(admitted, 10);
    // Refused calls drew nothing from the wide bucket: 10 draws so far, 990 left.
    let wide = LimitTake::per("wide".into(), 1000, Duration::from_secs(60));
    for _ in 0..990 {
        assert!(admits(&*s, std::slice::from_ref(&wide), NOW).await);
    }
    assert!(!admits(&*s, std::slice::from_ref(&wide), NOW).await);
    // A bucket refills with time: one take per cost (60 s / 10).
    let later = NOW.plus(Duration::from_secs(6));
    assert!(admits(&*s, &[bucket("burst", 10)], later).await);
    assert!(!admits(&*s, &[bucket("burst", 10)], later).await);
}

async fn limits_are_all_or_nothing(s: impl Store) {
    let one = bucket("one", 1);
    let two = bucket("two", 2);
    assert!(admits(&s, &[one.clone(), two.clone()], NOW).await);
    assert_eq!(
        s.take_limits(&[two.clone(), one.clone()], NOW)
            .await
            .unwrap(),
        Admission::Refused {
            refused: vec![1],
            retry_after: Duration::from_secs(60)
        }
    );
    // `two` was not drawn by the refused call: one draw left.
    assert!(admits(&s, std::slice::from_ref(&two), NOW).await);
    assert!(!admits(&s, std::slice::from_ref(&two), NOW).await);
    // Giving back makes room again; a recorded-only take is never refused but counts, and
    // however many are recorded the bucket is full to its brim only, so it empties again
    // within its capacity (strangers recording takes cannot keep it shut).
    s.give_back_limits(std::slice::from_ref(&one))
        .await
        .unwrap();
    for _ in 0..5 {
        let recorded = s
            .take_limits(&[one.clone().recorded_only()], NOW)
            .await
            .unwrap();
        assert!(recorded.is_admitted());
    }
    match s
        .take_limits(std::slice::from_ref(&one), NOW)
        .await
        .unwrap()
    {
        Admission::Refused { retry_after, .. } => {
            assert_eq!(
                retry_after,
                Duration::from_secs(60),
                "full to the brim, no more"
            )
        }
        Admission::Admitted => panic!("the recorded takes were not counted"),
    }
    // Sweeping keeps buckets that still hold takes.
    s.sweep(NOW, NOW).await.unwrap();
    assert!(!admits(&s, std::slice::from_ref(&one), NOW).await);
    let later = NOW.plus(Duration::from_secs(60));
    assert!(admits(&s, std::slice::from_ref(&one), later).await);
}

async fn sweep(s: impl Store) {
    let (_, old) = grant("cli");
    let old = DeviceGrant {
        expires_at: NOW,
        ..old
    };
    let (_, live) = grant("cli");
    s.create_grant(&old, &[]).await.unwrap();
    s.create_grant(&live, &[]).await.unwrap();
    let (_, stale_flow) = flow();
    let stale_flow = Flow {
        expires_at: NOW,
        ..stale_flow
    };
    s.create_flow(&stale_flow).await.unwrap();
    let (_, fresh_flow) = flow();
    s.create_flow(&fresh_flow).await.unwrap();
    let (_, expired_token) = refresh("a");
    let expired_token = RefreshToken {
        expires_at: NOW,
        ..expired_token
    };
    redeemed_with(&s, &expired_token).await;
    let stale_session = BrowserSession {
        amr: None,
        idp: None,
        tenant: T.into(),
        id_hash: SecretHash::of(b"stale"),
        user_id: None,
        signed_on_at: None,
        flow_hash: None,
        created_at: NOW,
        expires_at: NOW,
    };
    s.create_session(&stale_session).await.unwrap();
    let stale_state = UpstreamState {
        expires_at: NOW,
        ..upstream_state("stale")
    };
    s.put_upstream_state(&stale_state).await.unwrap();
    let live_state = upstream_state("live");
    s.put_upstream_state(&live_state).await.unwrap();
    let later = NOW.plus(Duration::from_secs(1));
    let counts = s.sweep(later, later).await.unwrap();
    assert_eq!(
        (
            counts.grants,
            counts.flows,
            counts.refresh_tokens,
            counts.upstream_states
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(
        s.take_upstream_state(&stale_state.hash, &stale_state.binding_hash)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.take_upstream_state(&live_state.hash, &live_state.binding_hash)
            .await
            .unwrap(),
        live_state
    );
    assert_eq!(s.get_grant(&old.id).await, Err(StoreError::NotFound));
    assert!(s.get_grant(&live.id).await.is_ok());
    assert_eq!(
        s.get_flow(&stale_flow.secret_hash).await,
        Err(StoreError::NotFound)
    );
    assert!(s.get_flow(&fresh_flow.secret_hash).await.is_ok());
}

fn tenant(id: &str) -> TenantRecord {
    TenantRecord {
        second_factor: "off".into(),
        id: id.into(),
        uuid: format!("0f3c5b0e-8d43-4e4b-9a53-{:0>12}", id.len()),
        local_passwords: true,
        created_at: NOW,
    }
}

/// An upstream with every optional field set.
fn upstream(id: &str) -> UpstreamRecord {
    UpstreamRecord {
        tenant: T.into(),
        id: id.into(),
        name: format!("Upstream {id}"),
        issuer: format!("https://{id}.example.com"),
        client_id: format!("devicegate-{id}"),
        client_secret: Some(format!("secret of {id}")),
        auth_method: "client_secret_basic".into(),
        scopes: "openid email profile".into(),
        allowed_domains: vec!["example.com".into(), "example.org".into()],
        require_claims: vec![
            ("groups".into(), "tv admins".into()),
            ("acr".into(), "a=b c==d ".into()),
            ("groups".into(), "".into()),
            (
                "name with spaces=".into(),
                "line one\nline two \"quoted\"".into(),
            ),
        ],
        link_by_email: true,
        max_age_secs: Some(300),
        force_login: true,
        created_at: NOW,
    }
}

fn link(upstream_id: &str, subject: &str, user_id: &str) -> UpstreamLink {
    UpstreamLink {
        tenant: T.into(),
        upstream_id: upstream_id.into(),
        subject: subject.into(),
        user_id: user_id.into(),
        created_at: NOW,
    }
}

/// A round trip to the upstream `corp`; `state` is its `state` parameter.
fn upstream_state(state: &str) -> UpstreamState {
    UpstreamState {
        hash: SecretHash::of(state.as_bytes()),
        tenant: T.into(),
        upstream_id: "corp".into(),
        flow_hash: SecretHash::of(format!("flow of {state}").as_bytes()),
        binding_hash: SecretHash::of(format!("binding of {state}").as_bytes()),
        nonce: format!("nonce-{state}"),
        pkce_verifier: format!("verifier-{state}"),
        return_to: Some("https://app.example.com/done?x=1".into()),
        created_at: NOW,
        expires_at: NOW.plus(Duration::from_secs(600)),
    }
}

async fn local_passwords(s: impl Store) {
    s.create_tenant(&tenant("acme")).await.unwrap();
    assert!(
        s.get_tenant("acme").await.unwrap().local_passwords,
        "on by default"
    );
    s.set_local_passwords("acme", false).await.unwrap();
    assert!(!s.get_tenant("acme").await.unwrap().local_passwords);
    let by_uuid = s.get_tenant_by_uuid(&tenant("acme").uuid).await.unwrap();
    assert!(!by_uuid.local_passwords);
    assert!(!s.list_tenants().await.unwrap()[0].local_passwords);
    s.set_local_passwords("acme", true).await.unwrap();
    assert!(s.get_tenant("acme").await.unwrap().local_passwords);
    assert_eq!(
        s.set_local_passwords("nope", false).await,
        Err(StoreError::NotFound)
    );
    // A tenant created without them keeps it so.
    let closed = TenantRecord {
        local_passwords: false,
        ..tenant("closed")
    };
    s.create_tenant(&closed).await.unwrap();
    assert_eq!(s.get_tenant("closed").await.unwrap(), closed);
}

async fn upstreams(s: impl Store) {
    assert!(s.list_upstreams(T).await.unwrap().is_empty());
    assert_eq!(s.get_upstream(T, "corp").await, Err(StoreError::NotFound));
    let corp = upstream("corp");
    s.create_upstream(&corp).await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await.unwrap(), corp);
    assert_eq!(
        s.create_upstream(&UpstreamRecord {
            name: "Another".into(),
            ..upstream("corp")
        })
        .await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        s.get_upstream(T, "corp").await.unwrap(),
        corp,
        "the duplicate changed nothing"
    );
    // Every optional field empty: a public client, no domains or claims, no max_age.
    let public = UpstreamRecord {
        client_secret: None,
        auth_method: "none".into(),
        scopes: "openid".into(),
        allowed_domains: vec![],
        require_claims: vec![],
        link_by_email: false,
        max_age_secs: None,
        force_login: false,
        ..upstream("a-public")
    };
    s.create_upstream(&public).await.unwrap();
    assert_eq!(s.get_upstream(T, "a-public").await.unwrap(), public);
    // One domain and one claim.
    let single = UpstreamRecord {
        allowed_domains: vec!["example.net".into()],
        require_claims: vec![("hd".into(), "example.net".into())],
        max_age_secs: Some(0),
        ..upstream("single")
    };
    s.create_upstream(&single).await.unwrap();
    assert_eq!(s.get_upstream(T, "single").await.unwrap(), single);
    assert_eq!(
        s.list_upstreams(T).await.unwrap(),
        vec![public.clone(), corp.clone(), single.clone()],
        "by id"
    );
    s.delete_upstream(T, "corp").await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await, Err(StoreError::NotFound));
    assert_eq!(
        s.delete_upstream(T, "corp").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.list_upstreams(T).await.unwrap(), vec![public, single]);
    // Deleted, the id is free again.
    s.create_upstream(&corp).await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await.unwrap(), corp);
}

async fn upstream_links(s: impl Store) {
    s.create_upstream(&upstream("corp")).await.unwrap();
    let ann = user("ann");
    s.create_user(&ann).await.unwrap();
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await,
        Err(StoreError::NotFound)
    );
    let ann_link = link("corp", "sub-ann", &ann.id);
    s.create_upstream_link(&ann_link).await.unwrap();
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await.unwrap(),
        ann_link
    );
    assert_eq!(
        s.create_upstream_link(&link("corp", "sub-ann", "someone-else"))
            .await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await.unwrap(),
        ann_link,
        "the first link stands"
    );
    // Subjects are per upstream; one user may be linked at several upstreams…
    assert_eq!(
        s.get_upstream_link(T, "other", "sub-ann").await,
        Err(StoreError::NotFound)
    );
    s.create_upstream_link(&link("other", "sub-ann", &ann.id))
        .await
        .unwrap();
    // …but to one subject of each: a second subject (a recycled email at the provider) is
    // never linked to an account that has one.
    assert_eq!(
        s.create_upstream_link(&link("corp", "sub-ann-2", &ann.id))
            .await,
        Err(StoreError::AlreadyExists)
    );
    // A new user and their link, together.
    let bob = UserRecord {
        email: Some("bob@example.com".into()),
        ..user("bob")
    };
    let bob_link = link("corp", "sub-bob", &bob.id);
    s.create_linked_user(&bob, &bob_link).await.unwrap();
    assert_eq!(s.get_user(&bob.id).await.unwrap(), bob);
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-bob").await.unwrap(),
        bob_link
    );
    // A taken username: neither the user nor the link is written.
    let ann_again = user("ann");
    assert_eq!(
        s.create_linked_user(&ann_again, &link("corp", "sub-new", &ann_again.id))
            .await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-new").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_user(&ann_again.id).await, Err(StoreError::NotFound));
    // A linked subject: neither is written either.
    let carol = user("carol");
    assert_eq!(
        s.create_linked_user(&carol, &link("corp", "sub-ann", &carol.id))
            .await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(s.get_user(&carol.id).await, Err(StoreError::NotFound));
    assert_eq!(
        s.get_user_by_username(T, "carol").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await.unwrap(),
        ann_link
    );
    // And then with a free subject, carol can be created.
    s.create_linked_user(&carol, &link("corp", "sub-carol", &carol.id))
        .await
        .unwrap();
    assert_eq!(s.list_users(T).await.unwrap().len(), 3);
}

async fn upstream_state_is_taken_once(s: Arc<impl Store>) {
    assert_eq!(
        s.take_upstream_state(&SecretHash::of(b"nope"), &SecretHash::of(b"any"))
            .await,
        Err(StoreError::NotFound)
    );
    let st = upstream_state("once");
    s.put_upstream_state(&st).await.unwrap();
    let bare = UpstreamState {
        return_to: None,
        ..upstream_state("bare")
    };
    s.put_upstream_state(&bare).await.unwrap();
    // Another browser's binding takes nothing, and leaves the trip for its own browser.
    assert_eq!(
        s.take_upstream_state(&st.hash, &SecretHash::of(b"another browser"))
            .await,
        Err(StoreError::NotFound)
    );
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, hash, binding) = (s.clone(), st.hash, st.binding_hash);
            tokio::spawn(async move { s.take_upstream_state(&hash, &binding).await })
        })
        .collect();
    let mut taken = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(got) => taken.push(got),
            Err(e) => assert_eq!(e, StoreError::NotFound),
        }
    }
    assert_eq!(taken, vec![st.clone()], "exactly one take gets it, whole");
    assert_eq!(
        s.take_upstream_state(&st.hash, &st.binding_hash).await,
        Err(StoreError::NotFound)
    );
    // Expired ones are returned too: the caller checks.
    let expired = UpstreamState {
        expires_at: NOW,
        ..upstream_state("expired")
    };
    s.put_upstream_state(&expired).await.unwrap();
    assert_eq!(
        s.take_upstream_state(&expired.hash, &expired.binding_hash)
            .await
            .unwrap(),
        expired
    );
    assert_eq!(
        s.take_upstream_state(&bare.hash, &bare.binding_hash)
            .await
            .unwrap(),
        bare
    );
}

async fn deleting_an_upstream_deletes_its_links_and_states(s: impl Store) {
    s.create_upstream(&upstream("corp")).await.unwrap();
    s.create_upstream(&upstream("other")).await.unwrap();
    let ann = user("ann");
    s.create_user(&ann).await.unwrap();
    s.create_upstream_link(&link("corp", "sub-ann", &ann.id))
        .await
        .unwrap();
    let kept = link("other", "sub-ann", &ann.id);
    s.create_upstream_link(&kept).await.unwrap();
    let corp_state = upstream_state("corp-trip");
    s.put_upstream_state(&corp_state).await.unwrap();
    let other_state = UpstreamState {
        upstream_id: "other".into(),
        ..upstream_state("other-trip")
    };
    s.put_upstream_state(&other_state).await.unwrap();
    s.delete_upstream(T, "corp").await.unwrap();
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.take_upstream_state(&corp_state.hash, &corp_state.binding_hash)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_user(&ann.id).await.unwrap(), ann, "the user stays");
    assert_eq!(
        s.get_upstream_link(T, "other", "sub-ann").await.unwrap(),
        kept
    );
    assert_eq!(
        s.take_upstream_state(&other_state.hash, &other_state.binding_hash)
            .await
            .unwrap(),
        other_state
    );
}

async fn deleting_a_user_deletes_their_upstream_links(s: impl Store) {
    s.create_upstream(&upstream("corp")).await.unwrap();
    let (ann, bob) = (user("ann"), user("bob"));
    s.create_linked_user(&ann, &link("corp", "sub-ann", &ann.id))
        .await
        .unwrap();
    s.create_upstream_link(&link("other", "sub-ann", &ann.id))
        .await
        .unwrap();
    let bobs = link("corp", "sub-bob", &bob.id);
    s.create_linked_user(&bob, &bobs).await.unwrap();
    // A new password keeps the links.
    s.set_password(T, "ann", "$argon2id$new").await.unwrap();
    assert!(s.get_upstream_link(T, "corp", "sub-ann").await.is_ok());
    s.delete_user(T, "ann").await.unwrap();
    for upstream_id in ["corp", "other"] {
        assert_eq!(
            s.get_upstream_link(T, upstream_id, "sub-ann").await,
            Err(StoreError::NotFound)
        );
    }
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-bob").await.unwrap(),
        bobs
    );
    // The subject can be linked afresh.
    let ann2 = user("ann");
    s.create_linked_user(&ann2, &link("corp", "sub-ann", &ann2.id))
        .await
        .unwrap();
}

async fn upstreams_are_per_tenant(s: impl Store) {
    s.create_tenant(&tenant("acme")).await.unwrap();
    let acme_corp = UpstreamRecord {
        tenant: "acme".into(),
        name: "Acme's".into(),
        ..upstream("corp")
    };
    s.create_upstream(&acme_corp).await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await, Err(StoreError::NotFound));
    assert!(s.list_upstreams(T).await.unwrap().is_empty());
    assert_eq!(
        s.delete_upstream(T, "corp").await,
        Err(StoreError::NotFound)
    );
    // The same id in two tenants is two upstreams.
    let corp = upstream("corp");
    s.create_upstream(&corp).await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await.unwrap(), corp);
    assert_eq!(s.get_upstream("acme", "corp").await.unwrap(), acme_corp);
    // And the same subject at each is two links.
    let acme_ann = UserRecord {
        tenant: "acme".into(),
        ..user("ann")
    };
    let acme_link = UpstreamLink {
        tenant: "acme".into(),
        ..link("corp", "sub-ann", &acme_ann.id)
    };
    s.create_linked_user(&acme_ann, &acme_link).await.unwrap();
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await,
        Err(StoreError::NotFound)
    );
    let ann = user("ann");
    s.create_linked_user(&ann, &link("corp", "sub-ann", &ann.id))
        .await
        .unwrap();
    let acme_state = UpstreamState {
        tenant: "acme".into(),
        ..upstream_state("acme-trip")
    };
    s.put_upstream_state(&acme_state).await.unwrap();
    let state = upstream_state("trip");
    s.put_upstream_state(&state).await.unwrap();
    // Deleting one tenant's upstream leaves the other's, with its links and states.
    s.delete_upstream("acme", "corp").await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await.unwrap(), corp);
    assert!(s.get_upstream_link(T, "corp", "sub-ann").await.is_ok());
    assert_eq!(
        s.take_upstream_state(&state.hash, &state.binding_hash)
            .await
            .unwrap(),
        state
    );
    // Deleting a tenant deletes its upstreams, links and states.
    s.create_upstream(&acme_corp).await.unwrap();
    s.create_upstream_link(&acme_link).await.unwrap();
    s.put_upstream_state(&acme_state).await.unwrap();
    s.delete_tenant("acme").await.unwrap();
    assert_eq!(
        s.get_upstream("acme", "corp").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.get_upstream_link("acme", "corp", "sub-ann").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.take_upstream_state(&acme_state.hash, &acme_state.binding_hash)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_upstream(T, "corp").await.unwrap(), corp);
    assert!(s.get_upstream_link(T, "corp", "sub-ann").await.is_ok());
}

/// What a sign-on records beside the person: the upstream provider it went through (`idp`)
/// and its methods (`amr`), kept alike on flows, grants, refresh tokens and sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Facts {
    idp: Option<&'static str>,
    amr: Option<&'static str>,
}

impl Facts {
    fn idp(self) -> Option<String> {
        self.idp.map(str::to_owned)
    }

    fn amr(self) -> Option<String> {
        self.amr.map(str::to_owned)
    }
}

/// The values every case tries, and for each the other one (which a write must replace, not
/// keep): each column set and empty, and never the other column's value, so a write that
/// drops or swaps one is seen.
const FACTS: [(Facts, Facts); 2] = [
    (
        Facts {
            idp: Some("corp"),
            amr: None,
        },
        Facts {
            idp: None,
            amr: Some("pwd"),
        },
    ),
    (
        Facts {
            idp: None,
            amr: Some("pwd otp mfa"),
        },
        Facts {
            idp: Some("corp"),
            amr: None,
        },
    ),
];

/// The grant's sign-on facts, both `None` unless it is approved.
fn grant_facts(g: &DeviceGrant) -> (Option<String>, Option<String>) {
    match &g.status {
        GrantStatus::Approved { idp, amr, .. } => (idp.clone(), amr.clone()),
        _ => (None, None),
    }
}

fn flow_facts(f: &Flow) -> (Option<String>, Option<String>) {
    (f.idp.clone(), f.amr.clone())
}

fn facts(v: Facts) -> (Option<String>, Option<String>) {
    (v.idp(), v.amr())
}

/// `g` as approved by `u1` with the facts `v`.
fn approved_with(g: &DeviceGrant, v: Facts) -> DeviceGrant {
    g.approve("u1", NOW, v.idp, v.amr, NOW).unwrap()
}

async fn flow_sign_on_facts_round_trip(s: impl Store) {
    for (want, other) in FACTS {
        // Created with them.
        let (secret, f) = flow();
        let f = Flow {
            idp: want.idp(),
            amr: want.amr(),
            ..f
        };
        s.create_flow(&f).await.unwrap();
        assert_eq!(s.get_flow(&secret.hash()).await.unwrap(), f);
        // Updated to the other values and back: each update stores the flow's own.
        for v in [other, want] {
            let read = s.get_flow(&secret.hash()).await.unwrap();
            let changed = Flow {
                idp: v.idp(),
                amr: v.amr(),
                ..read.clone()
            };
            s.update_flow(&changed, None, &[]).await.unwrap();
            assert_eq!(
                s.get_flow(&secret.hash()).await.unwrap(),
                Flow {
                    version: read.version + 1,
                    ..changed
                }
            );
        }
        // A sign-on, as the pages store it.
        let (secret, f) = flow();
        s.create_flow(&f).await.unwrap();
        let signed_on = f.sign_on_at("u1", NOW, want.idp, want.amr, NOW).unwrap();
        s.update_flow(&signed_on, None, &[]).await.unwrap();
        let back = s.get_flow(&secret.hash()).await.unwrap();
        assert_eq!(
            back,
            Flow {
                version: 1,
                ..signed_on
            }
        );
        // Binding and consenting keep them, and the grant approved through the flow gets them.
        let (_, g) = grant("cli");
        s.create_grant(&g, &[]).await.unwrap();
        let (bound, bound_grant) = back.verify_user_code(Some(&g), NOW).unwrap();
        s.update_flow(&bound, Some(&bound_grant), &[])
            .await
            .unwrap();
        let bound = s.get_flow(&secret.hash()).await.unwrap();
        assert_eq!(flow_facts(&bound), facts(want));
        let read = s.get_grant(&g.id).await.unwrap();
        let (done, approved) = bound.consent(&read, true, NOW).unwrap();
        assert_eq!(grant_facts(&approved), facts(want));
        s.update_flow(&done, Some(&approved), &[]).await.unwrap();
        assert_eq!(
            flow_facts(&s.get_flow(&secret.hash()).await.unwrap()),
            facts(want)
        );
        let stored = s.get_grant(&g.id).await.unwrap();
        assert_eq!(
            stored.status, approved.status,
            "the flow's facts reach the grant"
        );
        // Redeemed with a refresh token carrying them.
        let (token_secret, token) = refresh(&format!("fam-flow-{want:?}"));
        let (idp, amr) = grant_facts(&stored);
        let token = RefreshToken { idp, amr, ..token };
        let redeemed = DeviceGrant {
            status: GrantStatus::Redeemed,
            ..stored
        };
        s.redeem_grant(&redeemed, Some(&token), &[]).await.unwrap();
        let kept = s.get_refresh_token(&token_secret.hash()).await.unwrap();
        assert_eq!((kept.idp, kept.amr), facts(want));
    }
}

/// A new grant of `cli` polled three times (held in memory where a backend holds polls):
/// the grant as read after the polls.
async fn polled_grant(s: &impl Store) -> (Secret, DeviceGrant) {
    let (code, g) = grant("cli");
    s.create_grant(&g, &[]).await.unwrap();
    let mut polled = s.get_grant(&g.id).await.unwrap();
    for i in 0..3 {
        let now = NOW.plus(Duration::from_secs(10 * i));
        let hash = code.hash();
        let by = PollBy::new(&hash, T, "cli");
        if s.poll_held(by, now).is_none() {
            let mut next = polled.clone();
            next.last_poll_at = Some(now);
            s.record_poll(&next).await.unwrap();
        }
        polled = s.get_grant(&g.id).await.unwrap();
    }
    (code, polled)
}

async fn grant_sign_on_facts_round_trip(s: Arc<impl Store>) {
    for (want, other) in FACTS {
        // Every read of an approved grant has them.
        let (code, g) = grant("cli");
        let created = approved_with(&g, want);
        s.create_grant(&created, &[]).await.unwrap();
        let read = s.get_grant(&g.id).await.unwrap();
        assert_eq!(read, created, "create_grant");
        assert_eq!(s.get_grant_by_user_code(&g.user_code).await.unwrap(), read);
        assert_eq!(
            s.get_grant_by_device_code(&code.hash()).await.unwrap(),
            read
        );
        // update_grant replaces them with the grant's own.
        let (_, g) = grant("cli");
        s.create_grant(&g, &[]).await.unwrap();
        s.update_grant(&approved_with(&g, other)).await.unwrap();
        assert_eq!(
            grant_facts(&s.get_grant(&g.id).await.unwrap()),
            facts(other)
        );
        let read = s.get_grant(&g.id).await.unwrap();
        let again = DeviceGrant {
            status: GrantStatus::Approved {
                subject: "u1".into(),
                auth_time: NOW,
                idp: want.idp(),
                amr: want.amr(),
            },
            ..read.clone()
        };
        s.update_grant(&again).await.unwrap();
        assert_eq!(
            s.get_grant(&g.id).await.unwrap(),
            DeviceGrant {
                version: read.version + 1,
                ..again
            },
            "update_grant"
        );
        // Approved after polls held in memory (a backend's pending index), through
        // update_grant and through update_flow: the decision written on the polled read keeps
        // its facts.
        for through_flow in [false, true] {
            let (code, polled) = polled_grant(s.as_ref()).await;
            let approved = approved_with(&polled, want);
            if through_flow {
                let (_, f) = flow();
                s.create_flow(&f).await.unwrap();
                s.update_flow(&f, Some(&approved), &[]).await.unwrap();
            } else {
                s.update_grant(&approved).await.unwrap();
            }
            assert_eq!(
                grant_facts(&s.get_grant(&polled.id).await.unwrap()),
                facts(want)
            );
            assert_eq!(
                s.get_grant_by_device_code(&code.hash())
                    .await
                    .unwrap()
                    .status,
                approved.status,
                "after held polls (through update_flow: {through_flow})"
            );
        }
        // redeem_grant stores the status it is given (an approved one keeps its facts; the
        // redeemed state has none).
        let (_, g) = grant("cli");
        s.create_grant(&g, &[]).await.unwrap();
        let approved = approved_with(&g, want);
        s.redeem_grant(&approved, None, &[]).await.unwrap();
        assert_eq!(
            s.get_grant(&g.id).await.unwrap().status,
            approved.status,
            "redeem_grant"
        );
        let redeemed = DeviceGrant {
            status: GrantStatus::Redeemed,
            version: approved.version + 1,
            ..approved.clone()
        };
        s.redeem_grant(&redeemed, None, &[]).await.unwrap();
        assert_eq!(
            s.get_grant(&g.id).await.unwrap().status,
            GrantStatus::Redeemed
        );
    }
    // Many approvals at once (written together where a backend groups its writes): each
    // keeps its own.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (_, g) = grant("cli");
            s.create_grant(&g, &[]).await.unwrap();
            let own = (i % 3 != 0).then(|| (format!("corp-{i}"), format!("pwd otp mfa {i}")));
            let (idp, amr) = own.clone().unzip();
            let approved = g
                .approve("u1", NOW, idp.as_deref(), amr.as_deref(), NOW)
                .unwrap();
            s.update_grant(&approved).await.unwrap();
            (g.id, (idp, amr))
        }));
    }
    for t in tasks {
        let (id, own) = t.await.unwrap();
        assert_eq!(grant_facts(&s.get_grant(&id).await.unwrap()), own);
    }
}

async fn refresh_token_sign_on_facts_round_trip(s: impl Store) {
    for (want, other) in FACTS {
        let family = format!("fam-{want:?}");
        let with = |t: RefreshToken, v: Facts| RefreshToken {
            idp: v.idp(),
            amr: v.amr(),
            ..t
        };
        // Stored by a redemption.
        let (secret, t) = refresh(&family);
        let t = with(t, want);
        redeemed_with(&s, &t).await;
        assert_eq!(s.get_refresh_token(&secret.hash()).await.unwrap(), t);
        // Stored by a rotation: the new token's own.
        let (secret2, t2) = refresh(&family);
        let t2 = with(t2, other);
        s.rotate_refresh_token(&t.hash, &t2).await.unwrap();
        assert_eq!(s.get_refresh_token(&secret2.hash()).await.unwrap(), t2);
        let (secret3, t3) = refresh(&family);
        let t3 = with(t3, want);
        s.rotate_refresh_token(&t2.hash, &t3).await.unwrap();
        assert_eq!(s.get_refresh_token(&secret3.hash()).await.unwrap(), t3);
        let used = s.get_refresh_token(&secret.hash()).await.unwrap();
        assert!(used.used);
        assert_eq!(
            (used.idp, used.amr),
            facts(want),
            "marking a token used keeps its facts"
        );
    }
}

async fn session_sign_on_facts_round_trip(s: impl Store) {
    for (want, other) in FACTS {
        let id = Secret::generate(SecretKind::FlowId);
        let session = BrowserSession {
            idp: want.idp(),
            amr: want.amr(),
            tenant: T.into(),
            id_hash: id.hash(),
            user_id: Some("u1".into()),
            signed_on_at: Some(NOW),
            flow_hash: None,
            created_at: NOW,
            expires_at: NOW.plus(Duration::from_secs(60)),
        };
        s.create_session(&session).await.unwrap();
        assert_eq!(s.get_session(&id.hash()).await.unwrap(), session);
        for v in [other, want] {
            let updated = BrowserSession {
                idp: v.idp(),
                amr: v.amr(),
                flow_hash: Some(SecretHash::of(b"flow")),
                ..session.clone()
            };
            s.update_session(&updated).await.unwrap();
            assert_eq!(s.get_session(&id.hash()).await.unwrap(), updated);
        }
    }
}

async fn updating_an_upstream_keeps_its_links(s: impl Store) {
    let corp = upstream("corp");
    s.create_upstream(&corp).await.unwrap();
    s.create_upstream(&upstream("other")).await.unwrap();
    let ann = user("ann");
    s.create_user(&ann).await.unwrap();
    let anns = link("corp", "sub-ann", &ann.id);
    s.create_upstream_link(&anns).await.unwrap();
    let trip = upstream_state("corp-trip");
    s.put_upstream_state(&trip).await.unwrap();
    // Every field replaced but tenant, id and created_at; optional ones emptied.
    let changed = UpstreamRecord {
        name: "Corp, renamed".into(),
        issuer: "https://login.corp.example".into(),
        client_id: "devicegate-2".into(),
        client_secret: None,
        auth_method: "none".into(),
        scopes: "openid".into(),
        allowed_domains: vec![],
        require_claims: vec![("hd".into(), "corp.example".into())],
        link_by_email: false,
        max_age_secs: None,
        force_login: false,
        created_at: NOW.plus(Duration::from_secs(3600)),
        ..corp.clone()
    };
    s.update_upstream(&changed).await.unwrap();
    assert_eq!(
        s.get_upstream(T, "corp").await.unwrap(),
        UpstreamRecord {
            created_at: corp.created_at,
            ..changed.clone()
        }
    );
    assert_eq!(
        s.get_upstream(T, "other").await.unwrap(),
        upstream("other"),
        "others untouched"
    );
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await.unwrap(),
        anns,
        "the link survives the update"
    );
    // And back to every optional field set.
    s.update_upstream(&corp).await.unwrap();
    assert_eq!(s.get_upstream(T, "corp").await.unwrap(), corp);
    assert_eq!(
        s.get_upstream_link(T, "corp", "sub-ann").await.unwrap(),
        anns
    );
    assert_eq!(
        s.take_upstream_state(&trip.hash, &trip.binding_hash)
            .await
            .unwrap(),
        trip
    );
    // Nothing to update: in another tenant, or never created.
    assert_eq!(
        s.update_upstream(&upstream("nope")).await,
        Err(StoreError::NotFound)
    );
    s.create_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(
        s.update_upstream(&UpstreamRecord {
            tenant: "acme".into(),
            ..corp.clone()
        })
        .await,
        Err(StoreError::NotFound)
    );
    assert!(s.list_upstreams("acme").await.unwrap().is_empty());
}

async fn second_factor_policy(s: impl Store) {
    // Off for a tenant created before the policy existed, and for new ones by default.
    s.create_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(s.get_tenant("acme").await.unwrap().second_factor, "off");
    for policy in ["required", "optional", "off", "required"] {
        s.set_second_factor("acme", policy).await.unwrap();
        assert_eq!(s.get_tenant("acme").await.unwrap().second_factor, policy);
        let by_uuid = s.get_tenant_by_uuid(&tenant("acme").uuid).await.unwrap();
        assert_eq!(by_uuid.second_factor, policy);
        let listed = s.list_tenants().await.unwrap();
        let acme = listed.iter().find(|t| t.id == "acme").unwrap();
        assert_eq!(acme.second_factor, policy);
    }
    assert_eq!(
        s.set_second_factor("nope", "required").await,
        Err(StoreError::NotFound)
    );
    // Created with a policy, it keeps it; another tenant's is untouched.
    let strict = TenantRecord {
        second_factor: "optional".into(),
        ..tenant("strict")
    };
    s.create_tenant(&strict).await.unwrap();
    assert_eq!(s.get_tenant("strict").await.unwrap(), strict);
    assert_eq!(
        s.get_tenant("acme").await.unwrap().second_factor,
        "required"
    );
}

/// An unconfirmed enrolment of `user_id` in tenant `T`, with a secret made from `seed`.
fn totp(user_id: &str, seed: &str) -> TotpFactor {
    TotpFactor {
        tenant: T.into(),
        user_id: user_id.into(),
        secret: SecretHash::of(seed.as_bytes()).as_bytes()[..20].to_vec(),
        confirmed: false,
        last_step: 0,
        created_at: NOW,
    }
}

async fn totp_factors(s: impl Store) {
    // Nobody has one yet.
    assert_eq!(s.get_totp(T, "ann").await, Err(StoreError::NotFound));
    assert_eq!(
        s.use_totp_step(T, "ann", 100, true).await,
        Err(StoreError::NotFound)
    );
    let first = totp("ann", "first");
    s.put_totp(&first).await.unwrap();
    assert_eq!(s.get_totp(T, "ann").await.unwrap(), first);
    // Unconfirmed, a code signs nobody in, and nothing is recorded.
    assert!(!s.use_totp_step(T, "ann", 100, false).await.unwrap());
    assert_eq!(s.get_totp(T, "ann").await.unwrap(), first);
    // An enrolment started again replaces the unconfirmed one, every field.
    let second = TotpFactor {
        created_at: NOW.plus(Duration::from_secs(60)),
        last_step: 7,
        ..totp("ann", "second")
    };
    s.put_totp(&second).await.unwrap();
    assert_eq!(s.get_totp(T, "ann").await.unwrap(), second);
    // Confirming with a step no later than the last is refused too.
    assert!(!s.use_totp_step(T, "ann", 7, true).await.unwrap());
    assert!(!s.get_totp(T, "ann").await.unwrap().confirmed);
    // Confirming accepts the step and confirms.
    assert!(s.use_totp_step(T, "ann", 100, true).await.unwrap());
    let confirmed = s.get_totp(T, "ann").await.unwrap();
    assert_eq!(
        confirmed,
        TotpFactor {
            confirmed: true,
            last_step: 100,
            ..second.clone()
        }
    );
    // A confirmed one is not replaced: remove it first.
    assert_eq!(
        s.put_totp(&totp("ann", "third")).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(
        s.put_totp(&TotpFactor {
            confirmed: true,
            ..totp("ann", "third")
        })
        .await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(s.get_totp(T, "ann").await.unwrap(), confirmed);
    // A replay of the same step, or an older one, is refused and changes nothing.
    assert!(!s.use_totp_step(T, "ann", 100, false).await.unwrap());
    assert!(!s.use_totp_step(T, "ann", 100, true).await.unwrap());
    assert!(!s.use_totp_step(T, "ann", 99, false).await.unwrap());
    assert_eq!(s.get_totp(T, "ann").await.unwrap().last_step, 100);
    // A later step is accepted, once.
    assert!(s.use_totp_step(T, "ann", 101, false).await.unwrap());
    assert!(!s.use_totp_step(T, "ann", 101, false).await.unwrap());
    assert!(s.use_totp_step(T, "ann", 105, true).await.unwrap());
    assert_eq!(
        s.get_totp(T, "ann").await.unwrap(),
        TotpFactor {
            last_step: 105,
            ..confirmed.clone()
        }
    );
    // Someone else has none: NotFound, not a refusal.
    assert_eq!(s.get_totp(T, "bob").await, Err(StoreError::NotFound));
    assert_eq!(
        s.use_totp_step(T, "bob", 200, false).await,
        Err(StoreError::NotFound)
    );
    // Another person's enrolment is their own.
    let bobs = totp("bob", "bob");
    s.put_totp(&bobs).await.unwrap();
    assert_eq!(s.get_totp(T, "bob").await.unwrap(), bobs);
    assert_eq!(s.get_totp(T, "ann").await.unwrap().last_step, 105);
}

async fn concurrent_totp_step_has_one_winner(s: Arc<impl Store>) {
    // Confirming: of 20 submissions of the same code, one confirms.
    s.put_totp(&totp("ann", "ann")).await.unwrap();
    // Signing in: of 20 submissions of the same code, one is accepted.
    s.put_totp(&TotpFactor {
        confirmed: true,
        last_step: 400,
        ..totp("bob", "bob")
    })
    .await
    .unwrap();
    for (user, step, confirming) in [("ann", 300, true), ("bob", 500, false)] {
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.use_totp_step(T, user, step, confirming).await.unwrap()
            }));
        }
        let mut wins = 0;
        for t in tasks {
            if t.await.unwrap() {
                wins += 1;
            }
        }
        assert_eq!(wins, 1, "{user}");
        let stored = s.get_totp(T, user).await.unwrap();
        assert!(stored.confirmed);
        assert_eq!(stored.last_step, step);
    }
}

fn recovery_hashes(prefix: &str, n: usize) -> Vec<SecretHash> {
    (0..n)
        .map(|i| SecretHash::of(format!("{prefix}-{i}").as_bytes()))
        .collect()
}

async fn recovery_codes(s: impl Store) {
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 0);
    let codes = recovery_hashes("ann", 10);
    s.put_recovery_codes(T, "ann", &codes, NOW).await.unwrap();
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 10);
    // Each code works once.
    assert!(s.use_recovery_code(T, "ann", &codes[0], NOW).await.unwrap());
    assert!(!s.use_recovery_code(T, "ann", &codes[0], NOW).await.unwrap());
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 9);
    assert!(s.use_recovery_code(T, "ann", &codes[9], NOW).await.unwrap());
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 8);
    // An unknown code, or someone else's, does nothing.
    let unknown = SecretHash::of(b"unknown");
    assert!(!s.use_recovery_code(T, "ann", &unknown, NOW).await.unwrap());
    let bobs = recovery_hashes("bob", 3);
    s.put_recovery_codes(T, "bob", &bobs, NOW).await.unwrap();
    assert!(!s.use_recovery_code(T, "ann", &bobs[0], NOW).await.unwrap());
    assert!(!s.use_recovery_code(T, "bob", &codes[1], NOW).await.unwrap());
    assert_eq!(s.count_recovery_codes(T, "bob").await.unwrap(), 3);
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 8);
    // New codes replace all the old ones, used or not.
    let fresh = recovery_hashes("ann-fresh", 5);
    s.put_recovery_codes(T, "ann", &fresh, NOW).await.unwrap();
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 5);
    for old in &codes {
        assert!(!s.use_recovery_code(T, "ann", old, NOW).await.unwrap());
    }
    assert!(s.use_recovery_code(T, "ann", &fresh[2], NOW).await.unwrap());
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 4);
    // Replacing with the same codes again makes them unused again.
    s.put_recovery_codes(T, "ann", &fresh, NOW).await.unwrap();
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 5);
    // And with none, none are left.
    s.put_recovery_codes(T, "ann", &[], NOW).await.unwrap();
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 0);
    assert!(!s.use_recovery_code(T, "ann", &fresh[0], NOW).await.unwrap());
    assert_eq!(s.count_recovery_codes(T, "bob").await.unwrap(), 3);
}

async fn concurrent_recovery_code_has_one_winner(s: Arc<impl Store>) {
    let codes = recovery_hashes("ann", 10);
    s.put_recovery_codes(T, "ann", &codes, NOW).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, code) = (s.clone(), codes[4]);
        tasks.push(tokio::spawn(async move {
            s.use_recovery_code(T, "ann", &code, NOW).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 9);
}

/// Gives `user_id` a confirmed authenticator and three recovery codes.
async fn enrol(s: &impl Store, tenant: &str, user_id: &str) {
    s.put_totp(&TotpFactor {
        tenant: tenant.into(),
        confirmed: true,
        ..totp(user_id, user_id)
    })
    .await
    .unwrap();
    let codes = recovery_hashes(&format!("{tenant}/{user_id}"), 3);
    s.put_recovery_codes(tenant, user_id, &codes, NOW)
        .await
        .unwrap();
}

async fn deleting_factors(s: impl Store) {
    enrol(&s, T, "ann").await;
    enrol(&s, T, "bob").await;
    s.delete_factors(T, "ann").await.unwrap();
    assert_eq!(s.get_totp(T, "ann").await, Err(StoreError::NotFound));
    assert_eq!(
        s.use_totp_step(T, "ann", 10, false).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 0);
    // Nothing left to delete is fine.
    s.delete_factors(T, "ann").await.unwrap();
    s.delete_factors(T, "nobody").await.unwrap();
    // Someone else's stay.
    assert!(s.get_totp(T, "bob").await.unwrap().confirmed);
    assert_eq!(s.count_recovery_codes(T, "bob").await.unwrap(), 3);
    // After a removal, a new enrolment can start.
    s.put_totp(&totp("ann", "again")).await.unwrap();
    // A new password keeps a user's factors; deleting the user deletes them.
    let carol = user("carol");
    s.create_user(&carol).await.unwrap();
    enrol(&s, T, &carol.id).await;
    s.set_password(T, "carol", "$argon2id$new").await.unwrap();
    assert!(s.get_totp(T, &carol.id).await.unwrap().confirmed);
    assert_eq!(s.count_recovery_codes(T, &carol.id).await.unwrap(), 3);
    s.delete_user(T, "carol").await.unwrap();
    assert_eq!(s.get_totp(T, &carol.id).await, Err(StoreError::NotFound));
    assert_eq!(s.count_recovery_codes(T, &carol.id).await.unwrap(), 0);
    assert!(s.get_totp(T, "bob").await.unwrap().confirmed);
    assert_eq!(s.count_recovery_codes(T, "bob").await.unwrap(), 3);
}

async fn second_factors_are_per_tenant(s: impl Store) {
    s.create_tenant(&tenant("acme")).await.unwrap();
    enrol(&s, "acme", "ann").await;
    let acme_code = recovery_hashes("acme/ann", 3)[0];
    // Nothing of acme's is seen, used or removed from the default tenant.
    assert_eq!(s.get_totp(T, "ann").await, Err(StoreError::NotFound));
    assert_eq!(
        s.use_totp_step(T, "ann", 10, false).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 0);
    assert!(
        !s.use_recovery_code(T, "ann", &acme_code, NOW)
            .await
            .unwrap()
    );
    s.delete_factors(T, "ann").await.unwrap();
    s.put_recovery_codes(T, "ann", &[], NOW).await.unwrap();
    let acmes = s.get_totp("acme", "ann").await.unwrap();
    assert_eq!((acmes.tenant.as_str(), acmes.confirmed), ("acme", true));
    assert_eq!(s.count_recovery_codes("acme", "ann").await.unwrap(), 3);
    // The same person id in the default tenant has factors of its own.
    enrol(&s, T, "ann").await;
    assert!(s.use_totp_step(T, "ann", 10, false).await.unwrap());
    assert!(s.use_totp_step("acme", "ann", 10, false).await.unwrap());
    assert!(
        s.use_recovery_code("acme", "ann", &acme_code, NOW)
            .await
            .unwrap()
    );
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 3);
    // Deleting the tenant deletes its factors, and only its.
    s.delete_tenant("acme").await.unwrap();
    assert_eq!(s.get_totp("acme", "ann").await, Err(StoreError::NotFound));
    assert_eq!(s.count_recovery_codes("acme", "ann").await.unwrap(), 0);
    assert_eq!(s.get_totp(T, "ann").await.unwrap().last_step, 10);
    assert_eq!(s.count_recovery_codes(T, "ann").await.unwrap(), 3);
    // A tenant created again under that id starts without any.
    s.create_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(s.get_totp("acme", "ann").await, Err(StoreError::NotFound));
}

fn passkey(tenant: &str, id: &str, user_id: &str, credential_id: &[u8]) -> PasskeyRecord {
    PasskeyRecord {
        tenant: tenant.into(),
        id: id.into(),
        user_id: user_id.into(),
        credential_id: credential_id.to_vec(),
        name: format!("{id} key"),
        credential: format!("{{\"cred\":\"{id}\"}}"),
        sign_count: 5,
        backup_eligible: true,
        backup_state: false,
        created_at: NOW,
        last_used_at: None,
    }
}

async fn passkeys(s: impl Store) {
    assert_eq!(s.list_passkeys(T, "ann").await.unwrap(), vec![]);
    assert_eq!(s.get_passkey(T, b"c1").await, Err(StoreError::NotFound));
    let first = passkey(T, "p1", "ann", b"c1");
    let second = PasskeyRecord {
        created_at: NOW.plus(Duration::from_secs(1)),
        ..passkey(T, "p2", "ann", b"c2")
    };
    s.create_passkey(&second).await.unwrap();
    s.create_passkey(&first).await.unwrap();
    assert_eq!(s.get_passkey(T, b"c1").await.unwrap(), first);
    // Oldest first.
    assert_eq!(
        s.list_passkeys(T, "ann").await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    // A credential id is registered once in a tenant, whoever asks.
    assert_eq!(
        s.create_passkey(&passkey(T, "p3", "bob", b"c1")).await,
        Err(StoreError::AlreadyExists)
    );
    assert_eq!(s.list_passkeys(T, "bob").await.unwrap(), vec![]);
    // The counter only goes forward: an equal or lower one is refused and changes nothing.
    let later = NOW.plus(Duration::from_secs(60));
    for stale in [5, 4, 0] {
        assert!(
            !s.use_passkey(T, b"c1", stale, true, "{\"x\":1}", later)
                .await
                .unwrap(),
            "{stale}"
        );
    }
    assert_eq!(s.get_passkey(T, b"c1").await.unwrap(), first);
    assert!(
        s.use_passkey(T, b"c1", 6, true, "{\"cred\":\"p1 at 6\"}", later)
            .await
            .unwrap()
    );
    let used = s.get_passkey(T, b"c1").await.unwrap();
    assert_eq!(
        used,
        PasskeyRecord {
            sign_count: 6,
            backup_state: true,
            credential: "{\"cred\":\"p1 at 6\"}".into(),
            last_used_at: Some(later),
            ..first.clone()
        }
    );
    assert!(!s.use_passkey(T, b"c1", 6, true, "{}", later).await.unwrap());
    // An authenticator that keeps no counter (0 throughout) is used again and again.
    let zero = PasskeyRecord {
        sign_count: 0,
        ..passkey(T, "p0", "carol", b"c0")
    };
    s.create_passkey(&zero).await.unwrap();
    assert!(
        s.use_passkey(T, b"c0", 0, false, "{}", later)
            .await
            .unwrap()
    );
    assert!(
        s.use_passkey(T, b"c0", 0, false, "{}", later)
            .await
            .unwrap()
    );
    // Once it shows a counter, it must keep counting up.
    assert!(
        s.use_passkey(T, b"c0", 3, false, "{}", later)
            .await
            .unwrap()
    );
    assert!(
        !s.use_passkey(T, b"c0", 0, false, "{}", later)
            .await
            .unwrap()
    );
    // An unknown credential: NotFound, not a refusal.
    assert_eq!(
        s.use_passkey(T, b"nope", 9, false, "{}", later).await,
        Err(StoreError::NotFound)
    );
    // Renaming and removing: only the person's own passkey.
    s.rename_passkey(T, "ann", "p2", "phone").await.unwrap();
    assert_eq!(s.get_passkey(T, b"c2").await.unwrap().name, "phone");
    assert_eq!(
        s.rename_passkey(T, "bob", "p2", "mine now").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.delete_passkey(T, "bob", "p2").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.get_passkey(T, b"c2").await.unwrap().name, "phone");
    s.delete_passkey(T, "ann", "p2").await.unwrap();
    assert_eq!(s.get_passkey(T, b"c2").await, Err(StoreError::NotFound));
    assert_eq!(
        s.delete_passkey(T, "ann", "p2").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.list_passkeys(T, "ann").await.unwrap(), vec![used]);
}

async fn concurrent_passkey_use_has_one_winner(s: Arc<impl Store>) {
    s.create_passkey(&passkey(T, "p1", "ann", b"c1"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.use_passkey(T, b"c1", 9, false, "{}", NOW).await.unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.get_passkey(T, b"c1").await.unwrap().sign_count, 9);
}

fn ceremony(tenant: &str, key: &[u8], state: &str) -> WebauthnCeremony {
    WebauthnCeremony {
        tenant: tenant.into(),
        key_hash: SecretHash::of(key),
        purpose: "sign_in".into(),
        user_id: None,
        state: state.into(),
        expires_at: NOW.plus(Duration::from_secs(300)),
    }
}

async fn webauthn_ceremonies_are_taken_once(s: Arc<impl Store>) {
    let key = SecretHash::of(b"flow-1");
    assert_eq!(
        s.take_ceremony(T, &key, NOW).await,
        Err(StoreError::NotFound)
    );
    let first = ceremony(T, b"flow-1", "first");
    s.put_ceremony(&first).await.unwrap();
    // Asking again replaces it: only the latest challenge stands.
    let second = WebauthnCeremony {
        purpose: "register".into(),
        user_id: Some("ann".into()),
        ..ceremony(T, b"flow-1", "second")
    };
    s.put_ceremony(&second).await.unwrap();
    assert_eq!(s.take_ceremony(T, &key, NOW).await.unwrap(), second);
    assert_eq!(
        s.take_ceremony(T, &key, NOW).await,
        Err(StoreError::NotFound)
    );
    // Of concurrent takes, one gets it.
    s.put_ceremony(&first).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(
            async move { s.take_ceremony(T, &key, NOW).await },
        ));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => {
                assert_eq!(c, first);
                wins += 1;
            }
            Err(e) => assert_eq!(e, StoreError::NotFound),
        }
    }
    assert_eq!(wins, 1);
    // An expired one is not handed out, and is gone.
    s.put_ceremony(&first).await.unwrap();
    let late = first.expires_at;
    assert_eq!(
        s.take_ceremony(T, &key, late).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.take_ceremony(T, &key, NOW).await,
        Err(StoreError::NotFound)
    );
    // The sweep removes expired ones it finds.
    s.put_ceremony(&first).await.unwrap();
    let counts = s
        .sweep(late.plus(Duration::from_secs(1)), NOW)
        .await
        .unwrap();
    assert_eq!(counts.webauthn_ceremonies, 1);
    assert_eq!(
        s.take_ceremony(T, &key, NOW).await,
        Err(StoreError::NotFound)
    );
}

async fn passkeys_are_per_tenant_and_go_with_the_person(s: impl Store) {
    s.create_tenant(&tenant("acme")).await.unwrap();
    let acmes = passkey("acme", "p1", "ann", b"c1");
    s.create_passkey(&acmes).await.unwrap();
    // Nothing of acme's is seen, used, renamed or removed from the default tenant.
    assert_eq!(s.get_passkey(T, b"c1").await, Err(StoreError::NotFound));
    assert_eq!(s.list_passkeys(T, "ann").await.unwrap(), vec![]);
    assert_eq!(
        s.use_passkey(T, b"c1", 9, false, "{}", NOW).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.rename_passkey(T, "ann", "p1", "x").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.delete_passkey(T, "ann", "p1").await,
        Err(StoreError::NotFound)
    );
    s.delete_factors(T, "ann").await.unwrap();
    assert_eq!(s.get_passkey("acme", b"c1").await.unwrap(), acmes);
    // The same credential id may exist in another tenant (another relying party's record).
    s.create_passkey(&passkey(T, "p1", "ann", b"c1"))
        .await
        .unwrap();
    // A ceremony of acme's is not taken from the default tenant.
    s.put_ceremony(&ceremony("acme", b"k", "acme's"))
        .await
        .unwrap();
    let key = SecretHash::of(b"k");
    assert_eq!(
        s.take_ceremony(T, &key, NOW).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.take_ceremony("acme", &key, NOW).await.unwrap().state,
        "acme's"
    );
    // The operator's reset removes every passkey of the person, and only theirs.
    s.create_passkey(&passkey(T, "p2", "ann", b"c2"))
        .await
        .unwrap();
    s.create_passkey(&passkey(T, "p3", "bob", b"c3"))
        .await
        .unwrap();
    s.delete_factors(T, "ann").await.unwrap();
    assert_eq!(s.list_passkeys(T, "ann").await.unwrap(), vec![]);
    assert_eq!(s.list_passkeys(T, "bob").await.unwrap().len(), 1);
    // Deleting a user deletes their passkeys.
    let carol = user("carol");
    s.create_user(&carol).await.unwrap();
    s.create_passkey(&passkey(T, "p4", &carol.id, b"c4"))
        .await
        .unwrap();
    s.delete_user(T, "carol").await.unwrap();
    assert_eq!(s.get_passkey(T, b"c4").await, Err(StoreError::NotFound));
    // Deleting the tenant deletes its passkeys and ceremonies, and only its.
    s.put_ceremony(&ceremony("acme", b"k", "again"))
        .await
        .unwrap();
    s.delete_tenant("acme").await.unwrap();
    s.create_tenant(&tenant("acme")).await.unwrap();
    assert_eq!(
        s.get_passkey("acme", b"c1").await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        s.take_ceremony("acme", &key, NOW).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(s.list_passkeys(T, "bob").await.unwrap().len(), 1);
}

async fn ending_a_persons_sessions(s: impl Store) {
    s.create_tenant(&tenant("acme")).await.unwrap();
    let session = |tenant: &str, user: Option<&str>| BrowserSession {
        amr: None,
        idp: None,
        tenant: tenant.into(),
        id_hash: Secret::generate(SecretKind::BrowserSession).hash(),
        user_id: user.map(str::to_owned),
        signed_on_at: Some(NOW),
        flow_hash: None,
        created_at: NOW,
        expires_at: NOW.plus(Duration::from_secs(60)),
    };
    let (here, other, kept) = (
        session(T, Some("ann")),
        session(T, Some("ann")),
        session(T, Some("ann")),
    );
    let (bobs, anonymous, acmes) = (
        session(T, Some("bob")),
        session(T, None),
        session("acme", Some("ann")),
    );
    for x in [&here, &other, &kept, &bobs, &anonymous, &acmes] {
        s.create_session(x).await.unwrap();
    }
    // All of ann's here but the one kept.
    assert_eq!(
        s.end_sessions(T, "ann", Some(&kept.id_hash)).await.unwrap(),
        2
    );
    for gone in [&here, &other] {
        assert_eq!(
            s.get_session(&gone.id_hash).await,
            Err(StoreError::NotFound)
        );
    }
    for stays in [&kept, &bobs, &anonymous, &acmes] {
        assert_eq!(s.get_session(&stays.id_hash).await.unwrap(), *stays);
    }
    // Then the kept one too; nothing left is fine.
    assert_eq!(s.end_sessions(T, "ann", None).await.unwrap(), 1);
    assert_eq!(s.end_sessions(T, "ann", None).await.unwrap(), 0);
    assert_eq!(s.get_session(&acmes.id_hash).await.unwrap(), acmes);
}

async fn revocations(s: impl Store) {
    s.create_tenant(&tenant("acme")).await.unwrap();
    let ids = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let later = NOW.plus(Duration::from_secs(60));
    assert!(
        !s.any_revoked(T, &ids(&["jti:a", "sid:f"]), NOW, NOW)
            .await
            .unwrap()
    );
    s.revoke_id(T, "jti:a", later).await.unwrap();
    assert!(
        s.any_revoked(T, &ids(&["jti:a", "sid:f"]), NOW, NOW)
            .await
            .unwrap()
    );
    assert!(s.any_revoked(T, &ids(&["jti:a"]), NOW, NOW).await.unwrap());
    assert!(!s.any_revoked(T, &ids(&["jti:b"]), NOW, NOW).await.unwrap());
    // Another tenant's revocation names nothing here, and the other way round.
    assert!(
        !s.any_revoked("acme", &ids(&["jti:a"]), NOW, NOW)
            .await
            .unwrap()
    );
    // Until `until`, then no longer; an earlier `until` does not shorten a later one.
    assert!(
        !s.any_revoked(T, &ids(&["jti:a"]), NOW, later)
            .await
            .unwrap()
    );
    s.revoke_id(T, "jti:a", NOW).await.unwrap();
    assert!(
        s.any_revoked(T, &ids(&["jti:a"]), NOW, NOW.plus(Duration::from_secs(30)))
            .await
            .unwrap()
    );
    // A family: its refresh tokens go (this tenant's only) and its sid is revoked, together.
    let (_, mine) = refresh("fam");
    redeemed_with(&s, &mine).await;
    assert_eq!(
        s.revoke_refresh_family("acme", "fam", later, &[])
            .await
            .unwrap(),
        0
    );
    assert!(
        s.get_refresh_token(&mine.hash).await.is_ok(),
        "another tenant's family"
    );
    assert!(
        !s.any_revoked(T, &ids(&["sid:fam"]), NOW, NOW)
            .await
            .unwrap()
    );
    assert_eq!(
        s.revoke_refresh_family(T, "fam", later, &[]).await.unwrap(),
        1
    );
    assert_eq!(
        s.get_refresh_token(&mine.hash).await,
        Err(StoreError::NotFound)
    );
    assert!(
        s.any_revoked(T, &ids(&["sid:fam"]), NOW, NOW)
            .await
            .unwrap()
    );
    // The sweep removes what has run out.
    let counts = s
        .sweep(later.plus(Duration::from_secs(61)), NOW)
        .await
        .unwrap();
    assert!(counts.revocations >= 2, "{counts:?}");
    assert!(
        !s.any_revoked(T, &ids(&["jti:a", "sid:fam"]), NOW, NOW)
            .await
            .unwrap()
    );
}

async fn a_persons_devices_are_their_live_families(s: impl Store) {
    assert_eq!(
        s.list_families(T, Some("u1"), None, NOW).await.unwrap(),
        vec![]
    );
    // An older family, rotated once: only its newest token stands for it.
    let (_, old) = refresh("old");
    let old = RefreshToken {
        family_started_at: Timestamp::from_millis(NOW.as_millis() - 120_000),
        ..old
    };
    redeemed_with(&s, &old).await;
    let (_, rotated) = refresh("old");
    let rotated = RefreshToken {
        family_started_at: old.family_started_at,
        created_at: NOW.plus(Duration::from_secs(5)),
        requester_ip: None,
        requester_agent: None,
        ..rotated
    };
    s.rotate_refresh_token(&old.hash, &rotated).await.unwrap();
    // A newer family; an expired one; someone else's.
    let (_, new) = refresh("new");
    redeemed_with(&s, &new).await;
    let (_, expired) = refresh("expired");
    let expired = RefreshToken {
        expires_at: NOW,
        ..expired
    };
    redeemed_with(&s, &expired).await;
    let (_, bobs) = refresh("bobs");
    let bobs = RefreshToken {
        subject: "u2".into(),
        ..bobs
    };
    redeemed_with(&s, &bobs).await;
    let listed = s.list_families(T, Some("u1"), None, NOW).await.unwrap();
    assert_eq!(
        listed,
        vec![new.clone(), rotated.clone()],
        "newest family first"
    );
    assert_eq!(listed[0].requester_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(listed[0].requester_agent.as_deref(), Some("tv/1.0"));
    // Another tenant has none of them; a revoked family is gone from the list.
    assert_eq!(
        s.list_families("acme", Some("u1"), None, NOW)
            .await
            .unwrap(),
        vec![]
    );
    // Filtered by client, or listed for everyone.
    assert_eq!(
        s.list_families(T, None, Some("cli"), NOW)
            .await
            .unwrap()
            .len(),
        3,
        "ann's two and bob's"
    );
    assert_eq!(
        s.list_families(T, None, Some("other"), NOW).await.unwrap(),
        vec![]
    );
    s.revoke_refresh_family(T, "new", NOW, &[]).await.unwrap();
    assert_eq!(
        s.list_families(T, Some("u1"), None, NOW).await.unwrap(),
        vec![rotated]
    );
}

async fn audit_events(s: impl Store) {
    let at = |secs: u64| NOW.plus(Duration::from_secs(secs));
    let event = |secs: u64, tenant: &str, event: &str, actor: &str, client: &str| AuditEvent {
        at: at(secs),
        tenant: tenant.into(),
        event: event.into(),
        actor: Some(actor.into()),
        client_id: Some(client.into()),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("tv/1.0".into()),
        grant_id: Some("g1".into()),
        family_id: None,
        detail: Some("detail".into()),
    };
    let all = [
        event(1, T, "code_issued", "tv", "tv"),
        event(2, T, "approved", "ann", "tv"),
        event(2, T, "redeemed", "tv", "tv"),
        event(3, T, "approved", "bob", "radio"),
        event(4, "acme", "approved", "ann", "tv"),
    ];
    s.append_audit(&all[..2]).await.unwrap();
    s.append_audit(&all[2..]).await.unwrap();
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        };
        f(&mut q);
        q
    };
    // In order (two at the same time in the order written), this tenant's only.
    assert_eq!(
        s.list_audit(T, &q(|_| {})).await.unwrap(),
        all[..4].to_vec()
    );
    assert_eq!(
        s.list_audit("acme", &q(|_| {})).await.unwrap(),
        all[4..].to_vec()
    );
    // Filters.
    assert_eq!(
        s.list_audit(T, &q(|q| q.actor = Some("ann".into())))
            .await
            .unwrap(),
        vec![all[1].clone()]
    );
    assert_eq!(
        s.list_audit(T, &q(|q| q.client_id = Some("radio".into())))
            .await
            .unwrap(),
        vec![all[3].clone()]
    );
    assert_eq!(
        s.list_audit(T, &q(|q| q.event = Some("approved".into())))
            .await
            .unwrap(),
        vec![all[1].clone(), all[3].clone()]
    );
    let since = s
        .list_audit(T, &q(|q| q.since = Some(NOW.plus(Duration::from_secs(2)))))
        .await
        .unwrap();
    assert_eq!(since, all[1..4].to_vec());
    // A limit keeps the newest, still oldest first.
    let newest = s.list_audit(T, &q(|q| q.limit = 2)).await.unwrap();
    assert_eq!(newest, all[2..4].to_vec());
    // Retention.
    assert_eq!(s.sweep_audit(at(3)).await.unwrap(), 3);
    assert_eq!(
        s.list_audit(T, &q(|_| {})).await.unwrap(),
        vec![all[3].clone()]
    );
}

/// An event written with a change is stored only if the change is: a refused write (a
/// duplicate, a lost compare-and-swap) leaves no event behind.
async fn audit_events_ride_their_change(s: impl Store) {
    let ev = |event: &str| AuditEvent {
        at: NOW,
        tenant: T.into(),
        event: event.into(),
        ..AuditEvent::default()
    };
    let all = || AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let (_, g) = grant("cli");
    s.create_grant(&g, &[ev("code_issued")]).await.unwrap();
    assert_eq!(
        s.create_grant(&g, &[ev("duplicate")]).await,
        Err(StoreError::AlreadyExists)
    );
    // A flow step that loses its compare-and-swap.
    let f = Flow::new(
        T,
        random_id(),
        SecretHash::of(b"f"),
        NOW,
        Duration::from_secs(600),
    );
    s.create_flow(&f).await.unwrap();
    let failed = Flow {
        failed_attempts: 1,
        ..f.clone()
    };
    s.update_flow(&failed, None, &[ev("wrong_code")])
        .await
        .unwrap();
    assert_eq!(
        s.update_flow(&failed, None, &[ev("stale")]).await,
        Err(StoreError::Conflict)
    );
    // A redemption that loses.
    let approved = g.approve("u1", NOW, None, None, NOW).unwrap();
    s.update_grant(&approved).await.unwrap();
    let approved = s.get_grant(&g.id).await.unwrap();
    let redeemed = DeviceGrant {
        status: GrantStatus::Redeemed,
        ..approved.clone()
    };
    s.redeem_grant(&redeemed, None, &[ev("redeemed")])
        .await
        .unwrap();
    assert_eq!(
        s.redeem_grant(&redeemed, None, &[ev("twice")]).await,
        Err(StoreError::Conflict)
    );
    s.revoke_refresh_family(T, "fam", NOW, &[ev("revoked")])
        .await
        .unwrap();
    let events: Vec<String> = s
        .list_audit(T, &all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(events, ["code_issued", "wrong_code", "redeemed", "revoked"]);
}
