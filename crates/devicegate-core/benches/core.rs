//! The pure core's hot paths, without I/O: what a pending poll, a device authorization and a
//! token issuance cost before any storage or HTTP.
//!
//! ```text
//! cargo bench -p devicegate-core --bench core
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use devicegate_core::grant::{DeviceGrant, GrantStatus};
use devicegate_core::jwt::{self, Issue, UserClaims};
use devicegate_core::keys::{Algorithm, KeyMaterial, Signer};
use devicegate_core::scope::Scopes;
use devicegate_core::secret::SecretKind;
use devicegate_core::user_code::UserCode;
use devicegate_core::{Secret, Timestamp};

fn user_codes(c: &mut Criterion) {
    c.bench_function("user_code/generate", |b| b.iter(UserCode::generate));
    // What a person types: lower case, a space instead of the dash.
    c.bench_function("user_code/parse", |b| {
        b.iter(|| UserCode::parse(black_box("bcdf ghjk")))
    });
}

fn secrets(c: &mut Criterion) {
    c.bench_function("secret/generate_device_code", |b| {
        b.iter(|| Secret::generate(SecretKind::DeviceCode))
    });
    // Every poll hashes the presented device code to find its grant.
    let code = Secret::generate(SecretKind::DeviceCode);
    c.bench_function("secret/hash_device_code", |b| {
        b.iter(|| black_box(&code).hash())
    });
}

fn polls(c: &mut Criterion) {
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let first = DeviceGrant::example_pending("cli", t0);
    let polled = DeviceGrant {
        last_poll_at: Some(t0),
        ..first.clone()
    };
    let later = t0.plus(Duration::from_secs(6));
    let early = t0.plus(Duration::from_secs(1));
    let approved = DeviceGrant {
        status: GrantStatus::Approved {
            amr: None,
            idp: None,
            subject: "u1".into(),
            auth_time: t0,
        },
        ..polled.clone()
    };
    c.bench_function("on_poll/pending", |b| {
        b.iter(|| black_box(&polled).on_poll("cli", black_box(later)))
    });
    c.bench_function("on_poll/slow_down", |b| {
        b.iter(|| black_box(&polled).on_poll("cli", black_box(early)))
    });
    c.bench_function("on_poll/issue", |b| {
        b.iter(|| black_box(&approved).on_poll("cli", black_box(later)))
    });
}

fn signing(c: &mut Criterion) {
    let scopes = Scopes::parse("openid profile email offline_access").unwrap_or_default();
    let user = UserClaims {
        subject: "u1".into(),
        username: "ann".into(),
        name: Some("Ann Example".into()),
        email: Some("ann@example.com".into()),
    };
    let issue = Issue {
        issuer: "https://id.example.com",
        audience: "https://id.example.com",
        client_id: "tv-app",
        subject: "u1",
        scopes: &scopes,
        now: Timestamp::from_millis(1_700_000_000_000),
        access_ttl_secs: 3600,
        auth_time: Timestamp::from_millis(1_700_000_000_000),
    };
    for alg in Algorithm::ALL {
        let Ok(signer) = KeyMaterial::generate(alg).and_then(|m| Signer::from_material(&m)) else {
            panic!("generating a {} key", alg.as_str());
        };
        // A token set's signing: an RFC 9068 access token and an ID token.
        c.bench_function(&format!("jwt/token_set/{}", alg.as_str()), |b| {
            b.iter(|| {
                let at = jwt::encode(&signer, "at+jwt", &jwt::access_token_claims(&issue));
                let id = jwt::encode(&signer, "JWT", &jwt::id_token_claims(&issue, &user));
                (at, id)
            })
        });
    }
}

criterion_group! {
    name = core;
    // Short rounds: the machine is small and shared; these are for comparisons, not records.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = user_codes, secrets, polls, signing
}
criterion_main!(core);
