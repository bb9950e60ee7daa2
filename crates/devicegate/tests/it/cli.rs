//! The `devicegate` binary as an operator uses it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::JsonOf;
use serde_json::Value;

/// Creates the public client `tv`, named TV (more flags may follow).
const CREATE_TV: &[&str] = &["client", "create", "--id", "tv", "--name", "TV", "--public"];

fn devicegate(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_devicegate"));
    c.current_dir(dir)
        .env_remove("DEVICEGATE_DATABASE")
        .env("DEVICEGATE_LOG", "warn");
    c
}

pub(crate) fn run(
    dir: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (bool, String, String) {
    let mut child = devicegate(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn clients_and_users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out, err) = run(
        d,
        &[
            "client", "create", "--id", "svc", "--name", "Service", "--secret", "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["client_id"], "svc");
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("dgs_")
    );
    let (ok, _, err) = run(
        d,
        &[
            "client", "create", "--id", "svc", "--name", "Again", "--public",
        ],
        None,
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(d, &["client", "create", "--id", "x", "--name", "X"], None);
    assert!(
        !ok && err.contains("--public"),
        "public or secret is required: {err}"
    );
    let (ok, _, err) = run(
        d,
        &[
            CREATE_TV,
            &[
                "--scope",
                "openid",
                "--device-code-ttl-secs",
                "60",
                "--poll-interval-secs",
                "2",
            ],
        ]
        .concat(),
        None,
    );
    assert!(ok, "{err}");
    let (ok, out, _) = run(d, &["client", "list", "--json"], None);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["public"], true);
    assert_eq!(
        (
            list[1]["device_code_ttl_secs"].as_u64(),
            list[1]["poll_interval_secs"].as_u64()
        ),
        (Some(60), Some(2))
    );
    assert!(run(d, &["client", "delete", "tv"], None).0);
    assert!(!run(d, &["client", "delete", "tv"], None).0);

    let (ok, out, err) = run(
        d,
        &[
            "user",
            "create",
            "--username",
            "ann",
            "--password-stdin",
            "--email",
            "ann@example.com",
        ],
        Some("long enough password\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("created user ann"));
    let (ok, _, err) = run(
        d,
        &["user", "create", "--username", "bob", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok && err.contains("at least 8"), "{err}");
    let (ok, _, err) = run(d, &["user", "create", "--username", "bob"], Some(""));
    assert!(!ok && err.contains("--password-stdin"), "{err}");
    assert!(
        run(
            d,
            &["user", "set-password", "ann", "--password-stdin"],
            Some("another long password\n")
        )
        .0
    );
    let (_, out, _) = run(d, &["user", "list", "--json"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["email"],
        "ann@example.com"
    );
    assert!(run(d, &["user", "delete", "ann"], None).0);
    let (_, out, _) = run(d, &["user", "list", "--json"], None);
    assert_eq!(out.trim(), "[]");
    // Secrets are stored only as hashes.
    let db = std::fs::read(d.join("devicegate.db")).unwrap();
    let wal = std::fs::read(d.join("devicegate.db-wal")).unwrap_or_default();
    let secret = created["client_secret"].as_str().unwrap();
    for bytes in [db, wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
}

#[test]
fn config_file_environment_and_flags_layer_and_migrate_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("dg.toml"), "database = \"sqlite://from-file.db\"\n").unwrap();
    let (ok, out, err) = run(d, &["--config", "dg.toml", "migrate"], None);
    assert!(ok, "{err}");
    assert!(out.contains("from-file.db"), "{out}");
    let out = devicegate(d)
        .args(["--config", "dg.toml", "migrate"])
        .env("DEVICEGATE_DATABASE", "from-env.db")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("from-env.db"));
    let out = devicegate(d)
        .args([
            "--config",
            "dg.toml",
            "--database",
            "from-flag.db",
            "migrate",
        ])
        .env("DEVICEGATE_DATABASE", "from-env.db")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("from-flag.db"));
    std::fs::write(d.join("bad.toml"), "no_such_key = 1\n").unwrap();
    let (ok, _, err) = run(d, &["--config", "bad.toml", "migrate"], None);
    assert!(!ok && err.contains("bad.toml"), "{err}");
}

#[test]
fn serve_demo_serves_and_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = devicegate(dir.path())
        .args([
            "serve",
            "--demo",
            "--listen",
            &listen,
            "--issuer",
            &format!("http://{listen}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer: Value = rt.block_on(async {
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(r) = http
                .post(format!("http://{listen}/oauth2/device_authorization"))
                .form(&[("client_id", "demo-cli")])
                .send()
                .await
            {
                return r.json().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("server did not come up");
    });
    assert!(answer["user_code"].is_string(), "{answer}");
    sigterm(&child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("demo: created user demo with password"),
        "{stderr}"
    );
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[test]
fn tenants_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let uuid = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b";
    let (ok, out, err) = run(
        d,
        &["tenant", "create", "acme", "--id", uuid, "--json"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        serde_json::json!({"name": "acme", "id": uuid})
    );
    for bad in [
        vec!["tenant", "create", "acme"],
        vec!["tenant", "create", "Bad Name"],
        vec!["tenant", "create", "x", "--id", "not-a-uuid"],
        vec!["tenant", "create", "default"],
    ] {
        assert!(!run(d, &bad, None).0, "{bad:?}");
    }
    let (_, out, _) = run(d, &["tenant", "list", "--json"], None);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "default and acme: {list}"
    );
    assert!(
        run(
            d,
            &[
                "client", "create", "--tenant", "acme", "--id", "tv", "--name", "Acme TV",
                "--public"
            ],
            None
        )
        .0
    );
    assert!(
        run(
            d,
            &["client", "create", "--id", "tv", "--name", "TV", "--public"],
            None
        )
        .0,
        "the same id in another tenant"
    );
    assert!(
        run(
            d,
            &[
                "user",
                "create",
                "--tenant",
                "acme",
                "--username",
                "bob",
                "--password-stdin"
            ],
            Some("long enough password\n")
        )
        .0
    );
    let (_, out, _) = run(d, &["client", "list", "--tenant", "acme", "--json"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["name"],
        "Acme TV"
    );
    let (_, out, _) = run(d, &["user", "list", "--json"], None);
    assert_eq!(out.trim(), "[]", "bob is acme's, not the default tenant's");
    let (ok, _, err) = run(d, &["client", "list", "--tenant", "nope"], None);
    assert!(!ok && err.contains("no tenant named"), "{err}");
    assert!(run(d, &["tenant", "delete", "acme"], None).0);
    let (ok, _, err) = run(d, &["client", "list", "--tenant", "acme"], None);
    assert!(!ok && err.contains("no tenant named"), "{err}");
    assert!(!run(d, &["tenant", "delete", "default"], None).0);
}

/// Starts `devicegate serve` on `dir`'s default database; returns the process and its base URL.
fn serve_in(dir: &std::path::Path) -> (std::process::Child, String) {
    serve_with(dir, &[])
}

/// `serve_in` with `extra` flags.
fn serve_with(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = devicegate(dir)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--issuer",
            &base,
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, base)
}

async fn wait_until_up(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not come up");
}

#[test]
fn an_answered_device_code_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(
        run(
            d,
            &[CREATE_TV, &["--poll-interval-secs", "1"]].concat(),
            None
        )
        .0
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let (mut first, base) = serve_in(d);
    let (device_code, polled) = rt.block_on(async {
        wait_until_up(&http, &base).await;
        let answer: Value = http
            .post(format!("{base}/oauth2/device_authorization"))
            .form(&[("client_id", "tv")])
            .json_of()
            .await;
        let code = answer["device_code"].as_str().unwrap().to_owned();
        // A poll too, whose time lives in memory for a few milliseconds before the file.
        let polled: Value = http
            .post(format!("{base}/oauth2/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "tv"),
                ("device_code", &code),
            ])
            .json_of()
            .await;
        (code, polled)
    });
    assert_eq!(polled["error"], "authorization_pending");
    // No goodbye: the process is killed outright, right after answering.
    assert!(
        Command::new("sh")
            .args(["-c", &format!("kill -KILL {}", first.id())])
            .status()
            .unwrap()
            .success()
    );
    first.wait().unwrap();
    let (mut second, base) = serve_in(d);
    let after: Value = rt.block_on(async {
        wait_until_up(&http, &base).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        http.post(format!("{base}/oauth2/token"))
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "tv"),
                ("device_code", &device_code),
            ])
            .json_of()
            .await
    });
    assert_eq!(
        after["error"], "authorization_pending",
        "the code is still known after kill -9: {after}"
    );
    let _ = second.kill();
    let _ = second.wait();
}

#[test]
fn sigterm_exits_after_the_drain_timeout_however_slow_the_clients() {
    let dir = tempfile::tempdir().unwrap();
    // Only the drain can end these clients: the header and body clocks are set far beyond it.
    let (mut child, base) = serve_with(
        dir.path(),
        &[
            "--shutdown-drain-secs",
            "1",
            "--header-read-timeout-secs",
            "120",
            "--body-read-timeout-secs",
            "120",
        ],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(wait_until_up(&reqwest::Client::new(), &base));
    let addr = base.trim_start_matches("http://");
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .unwrap();
        slow.push(c);
    }
    // And a request in flight whose body never comes.
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(
        b"POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n",
    )
    .unwrap();
    slow.push(c);
    std::thread::sleep(Duration::from_millis(300));

    sigterm(&child);
    let sent = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(1 + 10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running {:?} after SIGTERM", sent.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    drop(slow);
}

/// Sends SIGTERM to `child`, as a service manager stopping the server does.
fn sigterm(child: &std::process::Child) {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}
