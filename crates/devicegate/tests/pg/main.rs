//! devicegate on PostgreSQL, against a throw-away server this binary starts and stops: the
//! storage conformance suite, several `devicegate serve` processes sharing one database, and
//! the database going away and coming back.
//!
//! The cases share one PostgreSQL server (each on its own database) and run in order, so this
//! test binary has its own `main` and prints the `N passed, N failed` line itself.

mod instances;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use devicegate::temp_postgres::TempPostgres;
use devicegate_store::PostgresStore;

#[derive(Debug)]
pub struct Ctx {
    pub pg: TempPostgres,
    next_db: AtomicUsize,
}

impl Ctx {
    /// A new, empty database.
    pub fn database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        self.pg
            .create_database(&format!("case_{n}"))
            .expect("createdb")
    }
}

type Case = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

async fn conformance(ctx: Arc<Ctx>) {
    devicegate_store::conformance::run_all(|| {
        let url = ctx.database();
        async move { PostgresStore::connect(&url).await.expect("connect") }
    })
    .await;
}

fn main() -> std::process::ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases: Vec<(&str, Case)> = vec![
        ("conformance_suite_on_postgresql", |c| {
            Box::pin(conformance(c))
        }),
        ("instances_share_keys_codes_tokens_and_slow_down", |c| {
            Box::pin(instances::shared_state(c))
        }),
        ("fifty_polls_across_instances_give_one_token", |c| {
            Box::pin(instances::one_token_across_instances(c))
        }),
        ("grant_changes_are_announced_across_instances", |c| {
            Box::pin(instances::announcements(c))
        }),
        ("limits_hold_across_three_instances", |c| {
            Box::pin(instances::limits_hold_across_instances(c))
        }),
        ("database_outage_gives_503_and_service_resumes", |c| {
            Box::pin(instances::outage(c))
        }),
        ("key_rotation_reaches_every_instance", |c| {
            Box::pin(instances::key_rotation_across_instances(c))
        }),
        ("revocation_holds_across_instances", |c| {
            Box::pin(instances::revocation_across_instances(c))
        }),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = match TempPostgres::start_for_tests() {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("could not start PostgreSQL: {e:#}");
            println!("0 passed, 1 failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let ctx = Arc::new(Ctx {
        pg,
        next_db: AtomicUsize::new(0),
    });
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let started = std::time::Instant::now();
        let fut = case(ctx.clone());
        let outcome = rt.block_on(async move { tokio::spawn(fut).await });
        match outcome {
            Ok(()) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failed += 1;
                let message = e.to_string();
                let first = message
                    .split("\n\nStack backtrace")
                    .next()
                    .unwrap_or(&message);
                println!("test {name} ... FAILED: {first}");
            }
        }
    }
    drop(rt);
    drop(ctx);
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
