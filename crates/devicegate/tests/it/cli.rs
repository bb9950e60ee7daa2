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

/// `serve` with `flags`, expected to refuse to start; its error output.
pub(crate) fn refused_start(dir: &std::path::Path, flags: &[&str]) -> String {
    let args = [flags, &["serve", "--listen", "127.0.0.1:0"]].concat();
    let (ok, _, err) = run(dir, &args, None);
    assert!(!ok, "{flags:?} started");
    err
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

/// Runs `f` on `dir`'s default database, as the server would see it.
fn with_store<T>(
    dir: &std::path::Path,
    f: impl AsyncFnOnce(&devicegate_store::SqliteStore) -> T,
) -> T {
    let store = devicegate_store::SqliteStore::open(dir.join("devicegate.db")).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f(&store))
}

/// `upstream add` of `corp`, this server's issuer being https://dg.example (more flags may
/// follow).
const ADD_CORP: &[&str] = &[
    "--issuer",
    "https://dg.example",
    "upstream",
    "add",
    "--id",
    "corp",
    "--name",
    "Corp SSO",
    "--provider-issuer",
    "https://login.corp.example/oauth2/default",
    "--client-id",
    "0oa1dg",
];

#[test]
fn upstreams_are_added_listed_and_deleted_and_their_secret_never_shown() {
    use devicegate_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = "upstream-secret-Zq7";
    let (ok, out, err) = run(
        d,
        &[
            ADD_CORP,
            &[
                "--client-secret-stdin",
                "--auth-method",
                "client_secret_post",
                "--allowed-domains",
                "Example.com,example.org",
                "--require-claim",
                "groups=devs",
                "--require-claim",
                "tier=gold=1",
                "--link-by-email",
                "--max-age",
                "300",
                "--force-login",
                "--json",
            ],
        ]
        .concat(),
        Some(&format!("{secret}\n")),
    );
    assert!(ok, "{err}");
    assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    let added: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(added["id"], "corp");
    assert_eq!(added["name"], "Corp SSO");
    assert_eq!(added["issuer"], "https://login.corp.example/oauth2/default");
    assert_eq!(added["client_id"], "0oa1dg");
    assert_eq!(added["redirect_uri"], "https://dg.example/device/callback");
    assert_eq!(added["client_secret_set"], true);
    assert_eq!(added.get("client_secret"), None);
    assert_eq!(added["auth_method"], "client_secret_post");
    assert_eq!(
        added["allowed_domains"],
        serde_json::json!(["example.com", "example.org"])
    );

    let stored = with_store(d, async |s| s.get_upstream("default", "corp").await).unwrap();
    assert_eq!(
        stored.client_secret.as_deref(),
        Some(secret),
        "read from stdin"
    );
    assert_eq!(stored.scopes, "openid profile email");
    assert_eq!(
        stored.require_claims,
        vec![
            ("groups".to_owned(), "devs".to_owned()),
            ("tier".to_owned(), "gold=1".to_owned())
        ]
    );
    assert!(stored.link_by_email && stored.force_login);
    assert_eq!(stored.max_age_secs, Some(300));

    // Without --json, the redirect URI to register; in a tenant, the tenant's.
    assert!(run(d, &["tenant", "create", "acme"], None).0);
    let (ok, out, err) = run(
        d,
        &[
            ADD_CORP,
            &["--tenant", "acme", "--scope", "email openid groups"],
        ]
        .concat(),
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("https://dg.example/t/acme/device/callback"),
        "{out}"
    );
    let acme = with_store(d, async |s| s.get_upstream("acme", "corp").await).unwrap();
    assert_eq!(
        (
            acme.client_secret,
            acme.auth_method.as_str(),
            acme.scopes.as_str()
        ),
        (None, "none", "openid email groups"),
        "a public client, openid first"
    );

    for (list, json) in [(["upstream", "list"], false), (["upstream", "list"], true)] {
        let args = [&list[..], if json { &["--json"] } else { &[] }].concat();
        let (ok, out, err) = run(d, &args, None);
        assert!(ok, "{err}");
        assert!(!out.contains(secret), "{out}");
        if json {
            let rows: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(
                rows.as_array().unwrap().len(),
                1,
                "the default tenant's only"
            );
            assert_eq!(rows[0]["client_secret_set"], true);
            assert_eq!(rows[0].get("client_secret"), None);
        } else {
            assert!(
                out.starts_with("corp\tCorp SSO\t") && out.contains("secret set"),
                "{out}"
            );
        }
    }
    let (_, out, _) = run(d, &["upstream", "list", "--tenant", "acme"], None);
    assert!(out.contains("no secret"), "{out}");

    let (ok, _, err) = run(d, ADD_CORP, None);
    assert!(!ok && err.contains("already exists"), "{err}");
    assert!(run(d, &["upstream", "delete", "corp"], None).0);
    let (ok, _, err) = run(d, &["upstream", "delete", "corp"], None);
    assert!(!ok && err.contains("no upstream"), "{err}");
    let (_, out, _) = run(d, &["upstream", "list", "--json"], None);
    assert_eq!(out.trim(), "[]");
    let (_, out, _) = run(d, &["upstream", "list", "--tenant", "acme", "--json"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()[0]["id"],
        "corp"
    );
}

#[test]
fn bad_upstreams_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let add = |id: &str, issuer: &str, extra: &[&str]| {
        let args = [
            &[
                "upstream",
                "add",
                "--id",
                id,
                "--name",
                "Corp",
                "--provider-issuer",
                issuer,
                "--client-id",
                "c",
            ][..],
            extra,
        ]
        .concat();
        run(d, &args, Some("a-secret\n"))
    };
    for (id, issuer, extra, why) in [
        ("Corp", "https://idp.example", &[][..], "a-z"),
        ("", "https://idp.example", &[], "a-z"),
        (&"x".repeat(65), "https://idp.example", &[], "a-z"),
        ("corp", "http://idp.example", &[], "https://"),
        ("corp", "ftp://idp.example", &[], "https://"),
        ("corp", "idp.example", &[], "https://"),
        ("corp", "https://idp.example/?tenant=1", &[], "query"),
        ("corp", "https://idp.example/#x", &[], "fragment"),
        ("corp", "https://user:pw@idp.example", &[], "credentials"),
        (
            "corp",
            "https://idp.example",
            &["--scope", "profile email"],
            "openid",
        ),
        (
            "corp",
            "https://idp.example",
            &["--auth-method", "client_secret_basic"],
            "secret",
        ),
        (
            "corp",
            "https://idp.example",
            &["--require-claim", "novalue"],
            "NAME=VALUE",
        ),
        (
            "corp",
            "https://idp.example",
            &["--allowed-domains", "a b.com"],
            "domain",
        ),
        (
            "corp",
            "https://idp.example",
            &["--tenant", "nope"],
            "no tenant",
        ),
        (
            "corp",
            "https://idp.example",
            &["--client-secret-stdin", "--auth-method", "none"],
            "none",
        ),
    ] {
        let (ok, _, err) = add(id, issuer, extra);
        assert!(!ok && err.contains(why), "{id} {issuer} {extra:?}: {err}");
    }
    let (_, out, _) = run(d, &["upstream", "list", "--json"], None);
    assert_eq!(out.trim(), "[]", "nothing stored");
    // `--issuer` is this server's: the provider's has its own flag.
    let (ok, _, err) = run(
        d,
        &[
            "upstream",
            "add",
            "--id",
            "corp",
            "--name",
            "Corp",
            "--issuer",
            "https://idp.example",
            "--client-id",
            "c",
        ],
        None,
    );
    assert!(!ok && err.contains("--provider-issuer"), "{err}");
    // A provider on this machine may use plain http; an empty secret is no secret.
    let (ok, _, err) = add("local", "http://127.0.0.1:8081/realms/dev", &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = add(
        "local2",
        "http://localhost:8081",
        &["--client-secret-stdin"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(
        d,
        &[
            "upstream",
            "add",
            "--id",
            "x",
            "--name",
            "X",
            "--provider-issuer",
            "https://idp.example",
            "--client-id",
            "c",
            "--client-secret-stdin",
        ],
        Some("\n"),
    );
    assert!(!ok && err.contains("no secret"), "{err}");
}

#[test]
fn local_passwords_are_switched_per_tenant() {
    use devicegate_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(run(d, &["tenant", "create", "acme"], None).0);
    let (ok, out, err) = run(d, &["tenant", "passwords", "acme", "off"], None);
    assert!(ok, "{err}");
    assert!(out.contains("off"), "{out}");
    assert!(err.contains("no upstream provider"), "a warning: {err}");
    let passwords = |d| {
        with_store(d, async |s| {
            (
                s.get_tenant("default").await.unwrap().local_passwords,
                s.get_tenant("acme").await.unwrap().local_passwords,
            )
        })
    };
    assert_eq!(passwords(d), (true, false));
    let (_, out, _) = run(d, &["tenant", "list", "--json"], None);
    let list: Value = serde_json::from_str(&out).unwrap();
    let acme = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "acme")
        .unwrap();
    assert_eq!(acme["local_passwords"], false, "{list}");
    assert!(run(d, &["tenant", "passwords", "acme", "on"], None).0);
    assert!(run(d, &["tenant", "passwords", "default", "off"], None).0);
    assert_eq!(passwords(d), (false, true));
    let (ok, _, err) = run(d, &["tenant", "passwords", "nope", "off"], None);
    assert!(!ok && err.contains("no tenant"), "{err}");
    assert!(!run(d, &["tenant", "passwords", "acme", "maybe"], None).0);
}

/// Runs `serve` with `config` until it answers, then stops it; returns whether it came up
/// and its stderr.
fn serve_once(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> (bool, String) {
    std::fs::write(dir.join("dg.toml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = devicegate(dir)
        .args([
            "--config",
            "dg.toml",
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DEVICEGATE_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let up = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            for _ in 0..200 {
                if http.get(format!("{base}/healthz")).send().await.is_ok() {
                    return true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        });
    if up {
        sigterm(&child);
    }
    let out = child.wait_with_output().unwrap();
    (up, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_applies_upstreams_and_local_passwords_from_the_config_file() {
    use devicegate_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(run(d, &["tenant", "create", "acme"], None).0);
    let config = r#"
issuer = "https://dg.example"
local_passwords = false

[[upstream]]
id = "corp"
name = "Corp SSO"
issuer = "https://login.corp.example"
client_id = "dg"
client_secret_env = "CORP_SECRET"
allowed_domains = ["example.com"]
require_claims = ["groups=devs"]
max_age_secs = 600

[[upstream]]
tenant = "acme"
id = "google"
name = "Google"
issuer = "https://accounts.google.com"
client_id = "123.apps.googleusercontent.com"
client_secret = "inline-secret"
auth_method = "client_secret_post"
scope = "openid email"
link_by_email = true
"#;
    let (up, err) = serve_once(d, config, &[]);
    assert!(
        !up && err.contains("CORP_SECRET"),
        "the secret's variable is required: {err}"
    );
    let (_, out, _) = run(d, &["upstream", "list", "--json"], None);
    assert_eq!(
        out.trim(),
        "[]",
        "nothing applied from a config that failed"
    );

    let env = [("CORP_SECRET", "env-secret-Q9")];
    let (up, err) = serve_once(d, config, &env);
    assert!(up, "{err}");
    assert!(
        !err.contains("env-secret-Q9") && !err.contains("inline-secret"),
        "{err}"
    );
    assert!(
        err.contains("inline"),
        "a warning about the inline secret: {err}"
    );
    let read = |d| {
        with_store(d, async |s| {
            (
                s.get_upstream("default", "corp").await.unwrap(),
                s.get_upstream("acme", "google").await.unwrap(),
                s.get_tenant("default").await.unwrap().local_passwords,
            )
        })
    };
    let (corp, google, passwords) = read(d);
    assert!(!passwords);
    assert_eq!(corp.client_secret.as_deref(), Some("env-secret-Q9"));
    assert_eq!(corp.auth_method, "client_secret_basic");
    assert_eq!(corp.scopes, "openid profile email");
    assert_eq!(corp.allowed_domains, vec!["example.com".to_owned()]);
    assert_eq!(corp.max_age_secs, Some(600));
    assert_eq!(google.client_secret.as_deref(), Some("inline-secret"));
    assert_eq!(
        (google.auth_method.as_str(), google.link_by_email),
        ("client_secret_post", true)
    );

    // The same config again changes nothing; a changed one replaces the upstream.
    assert!(run(d, &["tenant", "passwords", "default", "on"], None).0);
    let (up, err) = serve_once(d, config, &env);
    assert!(up, "{err}");
    let (corp_again, google_again, passwords) = read(d);
    assert_eq!(
        (corp_again, google_again),
        (corp.clone(), google),
        "idempotent"
    );
    assert!(
        !passwords,
        "the config file's local_passwords wins at start"
    );
    // A person linked through corp: a rotated secret keeps the link, a changed issuer (another
    // provider, whose subjects are other people) drops it.
    let link_of = |d| {
        with_store(d, async |s| {
            s.get_upstream_link("default", "corp", "sub-ann")
                .await
                .is_ok()
        })
    };
    with_store(d, async |s| {
        let ann = devicegate_store::UserRecord {
            id: "ann-id".into(),
            tenant: "default".into(),
            username: "corp:ann@example.com".into(),
            password_hash: String::new(),
            name: None,
            email: None,
            created_at: devicegate_server::now(),
            disabled: false,
        };
        let link = devicegate_store::UpstreamLink {
            tenant: "default".into(),
            upstream_id: "corp".into(),
            subject: "sub-ann".into(),
            user_id: ann.id.clone(),
            created_at: devicegate_server::now(),
        };
        s.create_linked_user(&ann, &link).await.unwrap();
    });
    let (up, err) = serve_once(d, config, &[("CORP_SECRET", "rotated")]);
    assert!(up, "{err}");
    let (corp_rotated, _, _) = read(d);
    assert_eq!(corp_rotated.client_secret.as_deref(), Some("rotated"));
    assert!(link_of(d), "a rotated secret keeps the accounts linked");
    let moved = config.replace("https://login.corp.example", "https://login.other.example");
    let (up, err) = serve_once(d, &moved, &[("CORP_SECRET", "rotated")]);
    assert!(up, "{err}");
    assert!(
        !link_of(d),
        "another issuer's subjects are not these people"
    );

    let (up, err) = serve_once(
        d,
        "[[upstream]]\nid = \"Bad\"\nname = \"x\"\nissuer = \"https://x\"\nclient_id = \"c\"\n",
        &[],
    );
    assert!(!up && err.contains("a-z"), "{err}");
    let (up, err) = serve_once(d, "[[upstream]]\nid = \"x\"\nnme = \"x\"\n", &[]);
    assert!(!up && err.contains("dg.toml"), "{err}");
}

#[test]
fn tenant_second_factor_and_user_reset_factors() {
    use devicegate_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(run(d, &["tenant", "second-factor", "default", "required"], None).0);
    let (ok, _, err) = run(
        d,
        &["tenant", "second-factor", "default", "sometimes"],
        None,
    );
    assert!(!ok && err.contains("sometimes"), "{err}");
    let (ok, _, err) = run(d, &["tenant", "second-factor", "nope", "off"], None);
    assert!(!ok && err.contains("nope"), "{err}");
    let (ok, _, err) = run(
        d,
        &["user", "create", "--username", "ann", "--password-stdin"],
        Some("a long enough password\n"),
    );
    assert!(ok, "{err}");
    let ann = with_store(d, async |s| {
        let ann = s.get_user_by_username("default", "ann").await.unwrap();
        s.put_totp(&devicegate_store::TotpFactor {
            tenant: "default".into(),
            user_id: ann.id.clone(),
            secret: vec![7; 20],
            confirmed: true,
            last_step: 0,
            created_at: devicegate_server::now(),
        })
        .await
        .unwrap();
        assert_eq!(
            s.get_tenant("default").await.unwrap().second_factor,
            "required"
        );
        for (id, cred) in [("p1", b"c1"), ("p2", b"c2")] {
            s.create_passkey(&devicegate_store::PasskeyRecord {
                tenant: "default".into(),
                id: id.into(),
                user_id: ann.id.clone(),
                credential_id: cred.to_vec(),
                name: id.into(),
                credential: "{}".into(),
                sign_count: 0,
                backup_eligible: true,
                backup_state: true,
                created_at: devicegate_server::now(),
                last_used_at: None,
            })
            .await
            .unwrap();
        }
        s.create_session(&devicegate_store::BrowserSession {
            tenant: "default".into(),
            id_hash: devicegate_core::SecretHash::of(b"ann's browser"),
            user_id: Some(ann.id.clone()),
            signed_on_at: Some(devicegate_server::now()),
            flow_hash: None,
            created_at: devicegate_server::now(),
            expires_at: devicegate_server::now().plus(std::time::Duration::from_secs(600)),
            idp: None,
            amr: Some("hwk mfa".into()),
        })
        .await
        .unwrap();
        ann.id
    });
    let (ok, out, err) = run(d, &["user", "reset-factors", "ann"], None);
    assert!(
        ok && out.contains("ann") && out.contains("2 passkey") && out.contains("1 session"),
        "{out} {err}"
    );
    let gone = with_store(d, async move |s| {
        s.get_totp("default", &ann).await.is_err()
            && s.list_passkeys("default", &ann).await.unwrap().is_empty()
            && s.get_session(&devicegate_core::SecretHash::of(b"ann's browser"))
                .await
                .is_err()
    });
    assert!(gone);
    let (ok, _, err) = run(d, &["user", "reset-factors", "nobody"], None);
    assert!(!ok && err.contains("nobody"), "{err}");
}
