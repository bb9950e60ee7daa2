//! devicegate-bench: device authorizations and pending polls over real HTTP, beside a trivial
//! axum handler measured in the same run as the ceiling.
//!
//! ```text
//! cargo run --release -p devicegate-bench -- --seconds 5 --connections 64
//! ```
//! Servers and load run in this one process on 127.0.0.1 (the machine has 2 cores, shared by
//! both sides); what it reports are ratios taken in the same run, medians of `--runs` rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use devicegate_core::scope::Scopes;
use devicegate_proto::GrantType;
use devicegate_server::Settings;
use devicegate_store::{ClientRecord, SqliteStore};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Parser)]
struct Args {
    /// Seconds of load per measurement
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent connections
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Rounds; the report gives the median of each figure
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Distinct device codes the pending-poll load cycles through
    #[arg(long, default_value_t = 40_000)]
    codes: usize,
}

type Http = Client<HttpConnector, Full<Bytes>>;

#[derive(Debug, Clone, Copy)]
struct Figures {
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    /// Responses that were not the expected outcome.
    unexpected: usize,
}

/// Runs `make_request` from `connections` tasks for `secs`; `expect` checks each answer.
async fn load<F>(
    http: &Http,
    connections: usize,
    secs: u64,
    make_request: F,
    expect: fn(u16, &[u8]) -> bool,
) -> Figures
where
    F: Fn(usize) -> http::Request<Full<Bytes>> + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let unexpected = Arc::new(AtomicUsize::new(0));
    let counter = Arc::new(AtomicUsize::new(0));
    let make_request = Arc::new(make_request);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (http, stop, unexpected, counter, make_request) = (
                http.clone(),
                stop.clone(),
                unexpected.clone(),
                counter.clone(),
                make_request.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    let ok = match http.request(make_request(n)).await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            match res.into_body().collect().await {
                                Ok(b) => expect(status, &b.to_bytes()),
                                Err(_) => false,
                            }
                        }
                        Err(_) => false,
                    };
                    lat.push(t.elapsed().as_micros() as u64);
                    if !ok {
                        unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Figures {
        rps: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        unexpected: unexpected.load(Ordering::Relaxed),
    }
}

fn post_form(url: &str, body: String) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

fn is_pending(status: u16, body: &[u8]) -> bool {
    status == 400 && body.windows(21).any(|w| w == b"authorization_pending")
}

async fn trivial_server() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(|| async {
            (
                [("content-type", "application/json")],
                r#"{"error":"authorization_pending"}"#,
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let store =
        SqliteStore::open(dir.path().join("bench.db")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let settings = Settings {
        issuer: base.clone(),
        ..Settings::default()
    };
    let server = devicegate::start(settings, std::sync::Arc::new(store), listener).await?;
    server
        .state
        .store
        .create_client(&ClientRecord {
            tenant: devicegate_store::DEFAULT_TENANT.into(),
            id: "bench".into(),
            name: "Bench".into(),
            secret_hash: None,
            scopes: Scopes::parse("openid").unwrap_or_default(),
            grant_types: GrantType::ALL
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            device_code_ttl_secs: Some(3600),
            // One second, so that cycling through `codes` codes is slower than the interval
            // and every poll is a genuine `authorization_pending`.
            poll_interval_secs: Some(1),
            created_at: devicegate_server::now(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let trivial = trivial_server().await?;
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.connections)
        .build_http();

    eprintln!("creating {} device codes for the poll load…", args.codes);
    let codes = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(args.codes)));
    let auth_url = format!("{base}/oauth2/device_authorization");
    let fill: Vec<_> = (0..args.connections.min(32))
        .map(|_| {
            let (http, codes, url, want) =
                (http.clone(), codes.clone(), auth_url.clone(), args.codes);
            tokio::spawn(async move {
                loop {
                    if codes.lock().await.len() >= want {
                        return anyhow::Ok(());
                    }
                    let res = http
                        .request(post_form(&url, "client_id=bench".into()))
                        .await?;
                    let body = res.into_body().collect().await?.to_bytes();
                    let v: serde_json::Value = serde_json::from_slice(&body)?;
                    let code = v["device_code"]
                        .as_str()
                        .context("no device_code")?
                        .to_owned();
                    codes.lock().await.push(code);
                }
            })
        })
        .collect();
    for f in fill {
        f.await??;
    }
    let codes: Arc<Vec<String>> = Arc::new(std::mem::take(&mut *codes.lock().await));
    let token_url = format!("{base}/oauth2/token");
    let grant = GrantType::DeviceCode.as_str();

    let mut rows: Vec<(&str, Vec<Figures>)> = vec![
        ("trivial axum handler", vec![]),
        ("device authorization", vec![]),
        ("pending poll", vec![]),
    ];
    for round in 0..args.runs {
        eprintln!("round {}/{}", round + 1, args.runs);
        let url = trivial.clone();
        rows[0].1.push(
            load(
                &http,
                args.connections,
                args.seconds,
                move |_| post_form(&url, String::new()),
                |s, b| s == 200 && !b.is_empty(),
            )
            .await,
        );
        let url = auth_url.clone();
        rows[1].1.push(
            load(
                &http,
                args.connections,
                args.seconds,
                move |_| post_form(&url, "client_id=bench".into()),
                |s, _| s == 200,
            )
            .await,
        );
        let (url, codes) = (token_url.clone(), codes.clone());
        rows[2].1.push(
            load(
                &http,
                args.connections,
                args.seconds,
                move |n| {
                    post_form(
                        &url,
                        format!(
                            "grant_type={grant}&client_id=bench&device_code={}",
                            codes[n % codes.len()]
                        ),
                    )
                },
                is_pending,
            )
            .await,
        );
    }
    let ceiling = median(rows[0].1.iter().map(|f| f.rps).collect());
    println!(
        "{} s per measurement, {} connections, median of {} rounds, {} codes polled round-robin (interval 1 s)",
        args.seconds,
        args.connections,
        args.runs,
        codes.len()
    );
    println!("| load | req/s | p50 ms | p99 ms | vs trivial handler | unexpected answers |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, figs) in &rows {
        let rps = median(figs.iter().map(|f| f.rps).collect());
        let p50 = median(figs.iter().map(|f| f.p50_us as f64).collect()) / 1000.0;
        let p99 = median(figs.iter().map(|f| f.p99_us as f64).collect()) / 1000.0;
        let bad: usize = figs.iter().map(|f| f.unexpected).sum();
        println!(
            "| {name} | {rps:.0} | {p50:.2} | {p99:.2} | {:.0}% | {bad} |",
            100.0 * rps / ceiling
        );
    }
    server.stop().await?;
    Ok(())
}
