//! The PAM module, `pam_devicegate.so`, loaded by real libpam through Debian's `pamtester`,
//! against devicegate on 127.0.0.1: the code is read from what the module shows, and a person
//! decides through the flows API.
//!
//! The tests write a PAM service file under /etc/pam.d, so they run as root (CI does).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use devicegate_store::ClientRecord;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

/// The module as cargo built it for these tests (a dev-dependency with its `module` feature).
fn module() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    [
        target.join(profile).join("deps/libpam_devicegate.so"),
        target.join(profile).join("libpam_devicegate.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .expect("libpam_devicegate.so is not built: cargo test builds it as a dev-dependency")
}

/// A PAM service `/etc/pam.d/NAME` with only this module, removed on drop.
struct Service {
    name: String,
    /// Holds the configuration file.
    _dir: tempfile::TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(format!("/etc/pam.d/{}", self.name));
    }
}

impl Service {
    /// The module configured with `config` (TOML, issuer and client included).
    fn new(config: &str) -> Service {
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the PAM tests write /etc/pam.d and must run as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pam.toml");
        std::fs::write(&conf, config).unwrap();
        // Linux-PAM looks services up in lower case.
        let name = format!(
            "devicegate-test-{}",
            devicegate_core::secret::random_id()
                .replace(['-', '_'], "")
                .to_lowercase()
        );
        std::fs::write(
            format!("/etc/pam.d/{name}"),
            format!(
                "auth required {} config={}\naccount required pam_permit.so\n",
                module().display(),
                conf.display()
            ),
        )
        .unwrap();
        Service { name, _dir: dir }
    }
}

/// What pamtester did: its exit status, what it printed, and how long it took.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// `pamtester SERVICE ACCOUNT authenticate`; `decide` gets the user code the module showed
/// and acts on it (the person); `enter` is typed at the module's prompt.
async fn pamtester<F, Fut>(service: &Service, account: &str, enter: bool, decide: F) -> Outcome
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    // pamtester's stdio buffers a pipe until exit: line buffering shows the code at once.
    let mut child = tokio::process::Command::new("stdbuf")
        .args([
            "-oL",
            "-eL",
            "pamtester",
            "-v",
            &service.name,
            account,
            "authenticate",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("pamtester: ./scripts/test installs Debian's pamtester");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut decide = Some(decide);
    while let Ok(Some(line)) = lines.next_line().await {
        stdout.push_str(&line);
        stdout.push('\n');
        if let Some(code) = line.split("enter the code ").nth(1) {
            if let Some(decide) = decide.take() {
                decide(code.trim().to_owned()).await;
            }
            if enter {
                stdin.write_all(b"\n").await.unwrap();
            }
        }
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("pamtester hung")
        .unwrap();
    Outcome {
        success: out.status.success(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

async fn server() -> TestServer {
    let s = TestServer::start().await;
    s.client(ClientRecord {
        poll_interval_secs: Some(1),
        ..client_record("ssh", None)
    })
    .await;
    s.client(ClientRecord {
        poll_interval_secs: Some(1),
        device_code_ttl_secs: Some(3),
        ..client_record("ssh-short", None)
    })
    .await;
    s.user("dgpamann").await;
    s.user("dgpambob").await;
    unix_account("dgpamann");
    unix_account("dgpambob");
    s
}

fn config(s: &TestServer, client: &str, extra: &str) -> String {
    format!(
        "issuer = \"{}\"\nclient_id = \"{client}\"\npress_enter = false\ntimeout_secs = 30\n{extra}",
        s.base
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pamtester_signs_in_the_approved_person_and_no_one_else() {
    let s = server().await;
    let sr = &s;
    let svc = Service::new(&config(&s, "ssh", ""));

    // The right person approves: the account opens.
    let ok = pamtester(&svc, "dgpamann", false, |code| async move {
        sr.decide(&code, "dgpamann", true).await
    })
    .await;
    assert!(ok.success, "{}\n{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.contains("To sign in as dgpamann, open"),
        "{}",
        ok.stdout
    );
    assert!(
        ok.stdout.contains("/device?"),
        "the complete address: {}",
        ok.stdout
    );
    assert!(ok.stdout.contains('█'), "a QR code: {}", ok.stdout);
    assert!(
        format!("{}{}", ok.stdout, ok.stderr).contains("successfully authenticated"),
        "{}",
        ok.stderr
    );

    // Someone else approves the code shown for ann: refused.
    let other = pamtester(&svc, "dgpamann", false, |code| async move {
        sr.decide(&code, "dgpambob", true).await
    })
    .await;
    assert!(!other.success, "{}", other.stderr);
    // Said without the approver's name.
    assert!(
        other
            .stderr
            .contains("the approval came from an account other than \"dgpamann\""),
        "{}",
        other.stderr
    );
    assert!(!other.stderr.contains("dgpambob"), "{}", other.stderr);

    // Denied: refused, and said so.
    let denied = pamtester(&svc, "dgpamann", false, |code| async move {
        sr.decide(&code, "dgpamann", false).await
    })
    .await;
    assert!(!denied.success);
    assert!(
        denied.stderr.contains("the request was denied"),
        "{}",
        denied.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pamtester_fails_cleanly_on_expiry_timeout_an_unreachable_issuer_or_bad_configuration() {
    let s = server().await;

    // Nobody approves a 3 s code: expired, within the timeout.
    let svc = Service::new(&config(&s, "ssh-short", ""));
    let expired = pamtester(&svc, "dgpamann", false, |_| async {}).await;
    assert!(!expired.success);
    assert!(expired.stderr.contains("expired"), "{}", expired.stderr);
    assert!(expired.took < Duration::from_secs(30), "{:?}", expired.took);

    // A timeout shorter than the code: the module gives up when it says.
    let svc = Service::new(&config(&s, "ssh", "").replace("timeout_secs = 30", "timeout_secs = 2"));
    let late = pamtester(&svc, "dgpamann", false, |_| async {}).await;
    assert!(!late.success);
    assert!(
        late.stderr.contains("no answer within 2 s"),
        "{}",
        late.stderr
    );
    assert!(late.took < Duration::from_secs(10), "{:?}", late.took);

    // The issuer is down.
    let down =
        Service::new("issuer = \"http://127.0.0.1:9\"\nclient_id = \"ssh\"\ntimeout_secs = 10\n");
    let unreachable = pamtester(&down, "dgpamann", false, |_| async {}).await;
    assert!(!unreachable.success);
    assert!(
        unreachable
            .stderr
            .contains("the sign-in service could not be reached"),
        "{}",
        unreachable.stderr
    );

    // An account this host does not have: refused before the issuer is asked anything.
    let svc = Service::new(&config(&s, "ssh", ""));
    let stranger = pamtester(&svc, "dgpam-nobody", false, |_| async {}).await;
    assert!(!stranger.success);
    assert!(
        !stranger.stdout.contains("enter the code"),
        "{}",
        stranger.stdout
    );
    // root, without a user map naming it: refused before the issuer too.
    let root = pamtester(&svc, "root", false, |_| async {}).await;
    assert!(!root.success);
    assert!(!root.stdout.contains("enter the code"), "{}", root.stdout);
    assert!(
        root.stderr.contains("not allowed for this account"),
        "{}",
        root.stderr
    );

    // A configuration that cannot be used.
    let bad = Service::new("issuer = \"http://127.0.0.1:9\"\n");
    let broken = pamtester(&bad, "dgpamann", false, |_| async {}).await;
    assert!(!broken.success);
    assert!(
        broken.stderr.contains("not configured correctly"),
        "{}",
        broken.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_waits_for_enter_while_it_polls() {
    let s = server().await;
    let sr = &s;
    let svc =
        Service::new(&config(&s, "ssh", "").replace("press_enter = false", "press_enter = true"));
    let ok = pamtester(&svc, "dgpamann", true, |code| async move {
        sr.decide(&code, "dgpamann", true).await
    })
    .await;
    assert!(ok.success, "{}\n{}", ok.stdout, ok.stderr);
    let all = format!("{}{}", ok.stdout, ok.stderr);
    assert!(all.contains("Press Enter once you have approved"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pam_check_validates_a_configuration_and_prints_the_pam_line() {
    let s = server().await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pam.toml");
    let run = |text: String| {
        std::fs::write(&conf, text).unwrap();
        let args = vec!["pam", "check", "--config", conf.to_str().unwrap()];
        crate::cli::run(dir.path(), &args, None)
    };
    let (ok, out, err) = run(config(&s, "ssh", ""));
    assert!(ok, "{err}");
    assert!(out.contains("client ssh may use the device grant"), "{out}");
    assert!(
        out.contains(&format!(
            "auth [success=done authinfo_unavail=ignore default=die] pam_devicegate.so config={}",
            conf.display()
        )),
        "{out}"
    );
    // A client the server does not know.
    let (ok, _, err) = run(config(&s, "nobody", ""));
    assert!(!ok);
    assert!(
        err.contains("client nobody may not start a device sign-in"),
        "{err}"
    );
    // An issuer that is down, and a file that cannot be used.
    let (ok, _, err) = run("issuer = \"http://127.0.0.1:9\"\nclient_id = \"ssh\"\n".into());
    assert!(!ok);
    assert!(err.contains("discovery at http://127.0.0.1:9"), "{err}");
    let (ok, _, err) = run("issuer = \"http://127.0.0.1:9\"\n".into());
    assert!(!ok);
    assert!(err.contains("client_id"), "{err}");
}

/// A real OpenSSH server on a loopback port, its PAM service this module; ended on drop.
struct Sshd {
    port: u16,
    child: std::process::Child,
    /// Removed after the server is stopped (fields drop after `drop`).
    _service: Service,
    _dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Unix account on this host (the module and sshd sign in only accounts that exist).
fn unix_account(name: &str) {
    // Tests run in parallel; useradd takes /etc/passwd's lock, so one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exists = || {
        std::process::Command::new("id")
            .arg(name)
            .output()
            .unwrap()
            .status
            .success()
    };
    if !exists() {
        let made = std::process::Command::new("useradd")
            .args(["--no-create-home", "--shell", "/bin/sh", name])
            .status()
            .expect("useradd");
        assert!(made.success() || exists(), "useradd {name}");
    }
}

impl Sshd {
    /// sshd runs PAM under the name it was started as: a symlink named after the test's own
    /// service keeps the host's /etc/pam.d/sshd untouched.
    fn start(config: &str) -> Sshd {
        assert!(
            std::path::Path::new("/usr/sbin/sshd").is_file(),
            "sshd: ./scripts/test installs Debian's openssh-server"
        );
        let svc = Service::new(config);
        let dir = tempfile::tempdir().unwrap();
        let service = svc.name.clone();
        let key = dir.path().join("host_key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(made.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("sshd_config");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nUsePAM yes\n\
                 KbdInteractiveAuthentication yes\nPasswordAuthentication no\n\
                 PubkeyAuthentication no\nAuthenticationMethods keyboard-interactive\n\
                 PermitRootLogin no\nStrictModes no\nPidFile none\nLogLevel VERBOSE\n",
                key.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let link = dir.path().join(&service);
        std::os::unix::fs::symlink("/usr/sbin/sshd", &link).unwrap();
        let child = std::process::Command::new(&link)
            .args(["-D", "-e", "-f", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Listening once a connection is accepted.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd {
            port,
            child,
            _service: svc,
            _dir: dir,
        }
    }
}

/// `ssh -p PORT ACCOUNT@127.0.0.1 COMMAND` with paramiko (tests/fixtures/ssh/client.py); the
/// person decides on the code the prompt shows, then presses Enter. Its stdout.
async fn ssh<F, Fut>(sshd: &Sshd, account: &str, command: &str, decide: F) -> String
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ssh/client.py");
    let mut child = tokio::process::Command::new("/usr/bin/python3")
        .arg(script)
        .args([&sshd.port.to_string(), account, command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with paramiko: ./scripts/test installs python3-paramiko");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let mut decide = Some(decide);
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await
    {
        out.push_str(&line);
        out.push('\n');
        if let Some(code) = line.split("enter the code ").nth(1)
            && let Some(decide) = decide.take()
        {
            decide(code.trim().to_owned()).await;
        }
        if line.contains("Press Enter once you have approved") {
            stdin.write_all(b"\n").await.unwrap();
        }
    }
    let _ = child.wait().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_signs_in_with_the_device_flow_through_openssh_and_pam() {
    const ACCOUNT: &str = "dgsshtest";
    let s = server().await;
    s.user(ACCOUNT).await;
    unix_account(ACCOUNT);
    let cfg = config(&s, "ssh", "").replace("press_enter = false", "press_enter = true");
    let sshd = Sshd::start(&cfg);
    let sr = &s;

    // The prompt shows the code; the person approves; the command runs on the host.
    let out = ssh(
        &sshd,
        ACCOUNT,
        "echo signed in as $(whoami)",
        |code| async move { sr.decide(&code, ACCOUNT, true).await },
    )
    .await;
    assert!(
        out.contains(&format!("PROMPT To sign in as {ACCOUNT}, open")),
        "{out}"
    );
    assert!(
        out.contains(&format!("OUTPUT signed in as {ACCOUNT}")),
        "{out}"
    );

    // Someone else approves: no shell.
    let out = ssh(&sshd, ACCOUNT, "echo should not run", |code| async move {
        sr.decide(&code, "dgpamann", true).await
    })
    .await;
    assert!(out.contains("REFUSED"), "{out}");
    assert!(!out.contains("should not run"), "{out}");
}
