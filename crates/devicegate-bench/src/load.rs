//! The loads: what each mode sends, how it paces polls, and what it measures.
//!
//! A code is never polled before its interval has passed since the previous answer (5 s more
//! after a `slow_down`). With several targets, the `poll` load first polls every code once on
//! every target, an unmeasured warm-up reported apart, and then each round over the codes
//! goes to the next target.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::Mutex;

use crate::procfs;
use crate::target::{
    Answer, Approval, Approver, Code, Http, Person, Target, code_from, epoch, send, since_epoch_ms,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The trivial handler at `--target` (POST, any answer)
    Trivial,
    /// Device authorizations per second (each creates a pending grant)
    Authorize,
    /// Pending polls over `--codes` codes, round-robin, none before its interval
    Poll,
    /// Token issuance: approve `--approved` codes, then redeem each once
    Tokens,
    /// Full flows: code, approval, redemption, back to back
    Flows,
    /// `--devices` devices, each asking for a code and polling at its interval, approved
    /// in the background
    Devices,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Trivial => "trivial",
            Mode::Authorize => "authorize",
            Mode::Poll => "poll",
            Mode::Tokens => "tokens",
            Mode::Flows => "flows",
            Mode::Devices => "devices",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Modes to run, in order, against the same server (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    mode: Vec<Mode>,
    /// Issuer URL(s) of the server (endpoints from discovery); several instances of one
    /// deployment are comma-separated and share the connections. For `trivial`, its URL
    #[arg(long, value_delimiter = ',', required = true)]
    target: Vec<String>,
    #[arg(long, default_value = "bench")]
    client_id: String,
    #[arg(long, default_value = "openid offline_access")]
    scope: String,
    /// Concurrent connections (requests in flight)
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of load per mode (an upper bound for `tokens`)
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Pending codes the `poll` load cycles through
    #[arg(long, default_value_t = 60_000)]
    codes: usize,
    /// Approved codes the `tokens` load redeems
    #[arg(long, default_value_t = 1_500)]
    approved: usize,
    /// Simulated devices of the `devices` load
    #[arg(long, default_value_t = 1_000)]
    devices: usize,
    /// Seconds of the `devices` load: several poll intervals
    #[arg(long, default_value_t = 15)]
    devices_seconds: u64,
    /// Approvals in flight at once (setup of `tokens`; background of `devices`)
    #[arg(long, default_value_t = 8)]
    approvers: usize,
    #[arg(long, value_enum, default_value = "none")]
    approve: Approver,
    /// The account that signs on in devicegate's flows API
    #[arg(long, default_value = "bench")]
    username: String,
    #[arg(
        long,
        env = "BENCH_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    password: String,
    /// Server processes whose CPU and memory to report (with their children)
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// The server's name in the report
    #[arg(long)]
    label: String,
    /// Appended to each mode's group, e.g. " EdDSA": ratios compare rows of one group
    #[arg(long, default_value = "")]
    variant: String,
    /// Append the JSON lines to this file too
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What the workers of one load recorded.
#[derive(Debug, Default)]
struct Rec {
    /// Latency of each HTTP request, in microseconds.
    lat_us: Vec<u32>,
    outcomes: BTreeMap<String, u64>,
    /// Completed units of work that span requests (flows, devices signed in).
    ops: u64,
    /// Latency of each unit, in microseconds.
    op_lat_us: Vec<u32>,
    /// Times a worker waited for a code's interval to pass.
    paced: u64,
    codes: Vec<Arc<Code>>,
}

impl Rec {
    fn merge(&mut self, o: Rec) {
        self.lat_us.extend(o.lat_us);
        for (k, v) in o.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        self.ops += o.ops;
        self.op_lat_us.extend(o.op_lat_us);
        self.paced += o.paced;
        self.codes.extend(o.codes);
    }

    async fn timed(
        &mut self,
        http: &Http,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> Answer {
        let t = Instant::now();
        let a = send(http, req).await;
        self.lat_us
            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        *self.outcomes.entry(a.outcome.clone()).or_default() += 1;
        a
    }
}

struct Run {
    args: LoadArgs,
    http: Http,
    targets: Vec<Target>,
    approval: Approval,
    /// Pending codes created so far, for `poll` and `tokens`.
    pool: Mutex<Vec<Arc<Code>>>,
    idle_rss: Option<u64>,
}

/// Resident memory: RSS for one process, PSS summed for several (PostgreSQL's backends
/// share its buffers, which RSS would count once per backend).
fn resident(u: procfs::Usage) -> u64 {
    if u.processes > 1 {
        u.pss_bytes
    } else {
        u.rss_bytes
    }
}

/// Runs `n` workers to completion; returns what they recorded and the wall time taken.
async fn workers<F, Fut>(n: usize, f: F) -> (Rec, f64)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Rec> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut rec = Rec::default();
    for h in handles {
        if let Ok(r) = h.await {
            rec.merge(r);
        }
    }
    (rec, started.elapsed().as_secs_f64())
}

/// Waits until `code` may be polled again; `false` if that is past `deadline`.
async fn wait_due(code: &Code, deadline: Instant, rec: &mut Rec) -> bool {
    let due = code.due_ms.load(Ordering::Relaxed);
    let now = since_epoch_ms();
    if due > now {
        let at = epoch() + Duration::from_millis(due);
        if at > deadline {
            return false;
        }
        rec.paced += 1;
        tokio::time::sleep_until(at.into()).await;
    }
    true
}

/// After an answer to a poll of `code`: the next poll waits a full interval from now, which
/// is after the server read its clock for this one (RFC 8628 §3.5), 5 s more after
/// `slow_down`, plus a millisecond: the server and this tool round their clocks to whole
/// milliseconds from different origins.
fn polled(code: &Code, answer: &Answer) {
    if answer.outcome == "slow_down" {
        code.interval_ms.fetch_add(5000, Ordering::Relaxed);
    }
    code.due_ms.store(
        since_epoch_ms() + code.interval_ms.load(Ordering::Relaxed) + 1,
        Ordering::Relaxed,
    );
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    epoch();
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.connections)
        .build_http();
    let trivial_only = args.mode.iter().all(|m| *m == Mode::Trivial);
    let mut targets = Vec::new();
    for base in &args.target {
        targets.push(if trivial_only {
            Target {
                base: base.clone(),
                device_authorization: base.clone(),
                token: base.clone(),
            }
        } else {
            Target::discover(&http, base).await?
        });
    }
    let approval = Approval {
        approver: args.approve,
        username: args.username.clone(),
        password: args.password.clone(),
    };
    let idle_rss = procfs::usage(&args.server_pid).map(resident);
    let run = Arc::new(Run {
        args: args.clone(),
        http,
        targets,
        approval,
        pool: Mutex::new(Vec::new()),
        idle_rss,
    });
    for mode in &args.mode {
        let line = measure(&run, *mode).await?;
        println!("{line}");
        if let Some(out) = &args.out {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(out)
                .with_context(|| format!("opening {}", out.display()))?;
            writeln!(f, "{line}")?;
        }
    }
    Ok(())
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

async fn measure(run: &Arc<Run>, mode: Mode) -> anyhow::Result<serde_json::Value> {
    let a = &run.args;
    let setup_started = Instant::now();
    let mut extra = serde_json::Map::new();
    // Setup that is not measured: the codes a load needs.
    let prepared: Vec<Arc<Code>> = match mode {
        Mode::Poll => {
            fill_pool(run, a.codes).await?;
            let codes = run.pool.lock().await[..a.codes].to_vec();
            if run.targets.len() > 1 {
                // Steady state: every instance has seen every code once (its first poll of
                // a code reads the database). That warm-up is reported apart.
                let n = codes.len() * run.targets.len();
                let deadline = Instant::now() + Duration::from_secs(120);
                let (rec, secs) = poll(run, Arc::new(codes.clone()), Some(n), deadline).await;
                let requests: u64 = rec.outcomes.values().sum();
                extra.insert("warmup_req_per_s".into(), json!(requests as f64 / secs));
                extra.insert("warmup_outcomes".into(), json!(rec.outcomes));
            }
            codes
        }
        Mode::Tokens => {
            // Fresh codes, never polled, so that none waits for its interval.
            let codes = create_codes(run, a.approved).await?;
            let t = Instant::now();
            approve_all(run, &codes).await?;
            extra.insert(
                "approvals_per_s".into(),
                json!(codes.len() as f64 / t.elapsed().as_secs_f64()),
            );
            codes
        }
        _ => Vec::new(),
    };
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let before = procfs::usage(&a.server_pid);
    if mode == Mode::Poll
        && let (Some(idle), Some(b)) = (run.idle_rss, before)
    {
        // Every code this run created is still pending when the poll load starts.
        let pending = run.pool.lock().await.len();
        extra.insert("pending_codes".into(), json!(pending));
        extra.insert(
            "rss_bytes_per_pending_code".into(),
            json!((resident(b) as f64 - idle as f64) / pending.max(1) as f64),
        );
    }
    let seconds = if mode == Mode::Devices {
        a.devices_seconds
    } else {
        a.seconds
    };
    eprintln!(
        "{}: {} ({} connections, up to {seconds} s){}",
        a.label,
        mode.name(),
        a.connections,
        if setup_secs > 0.5 {
            format!(", after {setup_secs:.1} s of setup")
        } else {
            String::new()
        }
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut rec, elapsed) = match mode {
        Mode::Trivial => trivial(run, deadline).await,
        Mode::Authorize => authorize(run, deadline).await,
        Mode::Poll => poll(run, Arc::new(prepared), None, deadline).await,
        Mode::Tokens => {
            let n = prepared.len();
            poll(run, Arc::new(prepared), Some(n), deadline).await
        }
        Mode::Flows => flows(run, deadline).await,
        Mode::Devices => devices(run, deadline).await,
    };
    let after = procfs::usage(&a.server_pid);
    if mode == Mode::Authorize {
        run.pool.lock().await.append(&mut rec.codes);
    }
    let expected: &[&str] = match mode {
        Mode::Trivial | Mode::Poll => &["authorization_pending"],
        Mode::Authorize => &["device_code"],
        Mode::Tokens => &["tokens"],
        Mode::Flows | Mode::Devices => &["device_code", "authorization_pending", "tokens"],
    };
    let requests: u64 = rec.outcomes.values().sum();
    let unexpected: u64 = rec
        .outcomes
        .iter()
        .filter(|(k, _)| !expected.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
    // Flows are reported per flow; every other load per request.
    let (rate, unit, lat) = match mode {
        Mode::Flows => (rec.ops as f64 / elapsed, "flows/s", &mut rec.op_lat_us),
        Mode::Tokens => (requests as f64 / elapsed, "token sets/s", &mut rec.lat_us),
        _ => (requests as f64 / elapsed, "req/s", &mut rec.lat_us),
    };
    lat.sort_unstable();
    let server = match (before, after) {
        (Some(b), Some(af)) => json!({
            "cpu_secs": af.cpu_secs - b.cpu_secs,
            "cpu_us_per_request": 1e6 * (af.cpu_secs - b.cpu_secs) / requests.max(1) as f64,
            "rss_mb_before": b.rss_bytes as f64 / 1048576.0,
            "rss_mb_after": af.rss_bytes as f64 / 1048576.0,
            "pss_mb_after": af.pss_bytes as f64 / 1048576.0,
            "idle_rss_mb": run.idle_rss.map(|r| r as f64 / 1048576.0),
            "processes": af.processes,
        }),
        _ => serde_json::Value::Null,
    };
    let mut line = json!({
        "label": a.label,
        "group": format!("{}{}", mode.name(), a.variant),
        "mode": mode.name(),
        "targets": run.targets.len(),
        "connections": a.connections,
        "seconds": elapsed,
        "requests": requests,
        "rate": rate,
        "unit": unit,
        "req_per_s": requests as f64 / elapsed,
        "ops": rec.ops,
        "latency_of": if mode == Mode::Flows { "flow" } else { "request" },
        "p50_ms": pct(lat, 0.50),
        "p99_ms": pct(lat, 0.99),
        "p999_ms": pct(lat, 0.999),
        "outcomes": rec.outcomes,
        "unexpected": unexpected,
        "slow_down": rec.outcomes.get("slow_down").copied().unwrap_or(0),
        "paced_waits": rec.paced,
        "setup_secs": setup_secs,
        "server": server,
    });
    if let Some(obj) = line.as_object_mut() {
        obj.extend(extra);
    }
    eprintln!(
        "  {rate:.0} {unit}, p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, unexpected {unexpected}, slow_down {}, outcomes {:?}",
        line["p50_ms"].as_f64().unwrap_or(0.0),
        line["p99_ms"].as_f64().unwrap_or(0.0),
        line["p999_ms"].as_f64().unwrap_or(0.0),
        line["slow_down"],
        line["outcomes"].to_string(),
    );
    Ok(line)
}

async fn trivial(run: &Arc<Run>, deadline: Instant) -> (Rec, f64) {
    workers(run.args.connections, |i| {
        let run = run.clone();
        async move {
            let mut rec = Rec::default();
            let url = &run.targets[i % run.targets.len()].base;
            while Instant::now() < deadline {
                rec.timed(&run.http, crate::target::form(url, String::new()))
                    .await;
            }
            rec
        }
    })
    .await
}

async fn authorize(run: &Arc<Run>, deadline: Instant) -> (Rec, f64) {
    workers(run.args.connections, |i| {
        let run = run.clone();
        async move {
            let mut rec = Rec::default();
            let t = i % run.targets.len();
            let req = || run.targets[t].authorize_request(&run.args.client_id, &run.args.scope);
            while Instant::now() < deadline {
                let a = rec.timed(&run.http, req()).await;
                if let Some(c) = code_from(t, &a) {
                    rec.codes.push(Arc::new(c));
                }
            }
            rec
        }
    })
    .await
}

/// Tops the pool up to `n` pending codes.
async fn fill_pool(run: &Arc<Run>, n: usize) -> anyhow::Result<()> {
    let have = run.pool.lock().await.len();
    if have < n {
        let codes = create_codes(run, n - have).await?;
        run.pool.lock().await.extend(codes);
    }
    Ok(())
}

/// Creates `n` device codes (setup: bounded by count, not measured).
async fn create_codes(run: &Arc<Run>, n: usize) -> anyhow::Result<Vec<Arc<Code>>> {
    eprintln!("{}: creating {n} device codes", run.args.label);
    let left = Arc::new(AtomicUsize::new(n));
    let (rec, _) = workers(run.args.connections, |i| {
        let (run, left) = (run.clone(), left.clone());
        async move {
            let mut rec = Rec::default();
            let t = i % run.targets.len();
            let mut failures = 0;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1))
                .is_ok()
                && failures < 100
            {
                let req = run.targets[t].authorize_request(&run.args.client_id, &run.args.scope);
                match code_from(t, &send(&run.http, req).await) {
                    Some(c) => rec.codes.push(Arc::new(c)),
                    None => failures += 1,
                }
            }
            rec
        }
    })
    .await;
    if rec.codes.len() < n {
        bail!("could only create {} of {n} device codes", rec.codes.len());
    }
    Ok(rec.codes)
}

async fn approve_all(run: &Arc<Run>, codes: &[Arc<Code>]) -> anyhow::Result<()> {
    eprintln!("{}: approving {} codes", run.args.label, codes.len());
    let codes = Arc::new(codes.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    workers(run.args.approvers, |i| {
        let (run, codes, next, errors) = (run.clone(), codes.clone(), next.clone(), errors.clone());
        async move {
            let mut person = Person::new(i);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(c) = codes.get(n) else { break };
                let target = &run.targets[c.target];
                if let Err(e) = run
                    .approval
                    .approve(&run.http, target, c, &mut person)
                    .await
                {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                    break;
                }
            }
            Rec::default()
        }
    })
    .await;
    let errors = std::mem::take(&mut *errors.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(e) = errors.into_iter().next() {
        return Err(e.context("approving codes"));
    }
    Ok(())
}

/// Polls `codes` round-robin until the deadline, or `limit` polls (`tokens`: each code
/// once), never a code before its interval has passed.
async fn poll(
    run: &Arc<Run>,
    codes: Arc<Vec<Arc<Code>>>,
    limit: Option<usize>,
    deadline: Instant,
) -> (Rec, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    workers(run.args.connections, |_| {
        let (run, codes, next) = (run.clone(), codes.clone(), next.clone());
        async move {
            let mut rec = Rec::default();
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| n >= l) {
                    break;
                }
                let c = &codes[n % codes.len()];
                if !wait_due(c, deadline, &mut rec).await {
                    break;
                }
                // Each round over the codes polls them on the next instance, as a load
                // balancer would spread a device's polls: pace must hold across instances.
                let t = (c.target + n / codes.len()) % run.targets.len();
                let req = run.targets[t].poll_request(&run.args.client_id, &c.device_code);
                let a = rec.timed(&run.http, req).await;
                polled(c, &a);
            }
            rec
        }
    })
    .await
}

/// Each worker: a code, its approval, its redemption, again until the deadline.
async fn flows(run: &Arc<Run>, deadline: Instant) -> (Rec, f64) {
    workers(run.args.connections, |i| {
        let run = run.clone();
        async move {
            let mut rec = Rec::default();
            let mut person = Person::new(i);
            let t = i % run.targets.len();
            let target = &run.targets[t];
            while Instant::now() < deadline {
                let started = Instant::now();
                let a = rec
                    .timed(
                        &run.http,
                        target.authorize_request(&run.args.client_id, &run.args.scope),
                    )
                    .await;
                let Some(code) = code_from(t, &a) else {
                    continue;
                };
                if let Err(e) = run
                    .approval
                    .approve(&run.http, target, &code, &mut person)
                    .await
                {
                    *rec.outcomes
                        .entry(format!("approval failed: {e:#}"))
                        .or_default() += 1;
                    continue;
                }
                let a = rec
                    .timed(
                        &run.http,
                        target.poll_request(&run.args.client_id, &code.device_code),
                    )
                    .await;
                if a.outcome == "tokens" {
                    rec.ops += 1;
                    rec.op_lat_us
                        .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            rec
        }
    })
    .await
}

/// `--devices` devices, at most `--connections` requests in flight; approvals in the
/// background by `--approvers` people.
async fn devices(run: &Arc<Run>, deadline: Instant) -> (Rec, f64) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(run.args.connections));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Arc<Code>>();
    let rx = Arc::new(Mutex::new(rx));
    let approvers: Vec<_> = (0..run.args.approvers)
        .map(|i| {
            let (run, rx) = (run.clone(), rx.clone());
            tokio::spawn(async move {
                let mut person = Person::new(i);
                loop {
                    let code = tokio::select! {
                        c = async { rx.lock().await.recv().await } => c,
                        _ = tokio::time::sleep_until(deadline.into()) => None,
                    };
                    let Some(code) = code else { break };
                    let _ = run
                        .approval
                        .approve(&run.http, &run.targets[code.target], &code, &mut person)
                        .await;
                }
            })
        })
        .collect();
    let n = run.args.devices;
    let out = workers(n, |i| {
        let (run, in_flight, tx) = (run.clone(), in_flight.clone(), tx.clone());
        async move {
            let mut rec = Rec::default();
            // Devices come up spread over a second rather than all at once.
            tokio::time::sleep(Duration::from_millis((i * 1000 / n.max(1)) as u64)).await;
            let t = i % run.targets.len();
            let target = &run.targets[t];
            'device: while Instant::now() < deadline {
                let started = Instant::now();
                let a = {
                    let _slot = in_flight.acquire().await;
                    rec.timed(
                        &run.http,
                        target.authorize_request(&run.args.client_id, &run.args.scope),
                    )
                    .await
                };
                let Some(code) = code_from(t, &a) else {
                    continue;
                };
                let code = Arc::new(code);
                polled(&code, &a);
                let _ = tx.send(code.clone());
                loop {
                    if !wait_due(&code, deadline, &mut rec).await {
                        break 'device;
                    }
                    let a = {
                        let _slot = in_flight.acquire().await;
                        rec.timed(
                            &run.http,
                            target.poll_request(&run.args.client_id, &code.device_code),
                        )
                        .await
                    };
                    polled(&code, &a);
                    match a.outcome.as_str() {
                        "authorization_pending" | "slow_down" => {}
                        "tokens" => {
                            rec.ops += 1;
                            rec.op_lat_us
                                .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            break;
                        }
                        _ => break,
                    }
                }
            }
            // Devices wait out their interval by design; that is not a pool too small.
            rec.paced = 0;
            rec
        }
    })
    .await;
    drop(tx);
    for a in approvers {
        let _ = a.await;
    }
    out
}
