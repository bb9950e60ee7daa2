//! Attacks, tried over real HTTP as an attacker would, each failing against the tree before
//! the limits were redesigned: floods that closed code entry for everyone, bursts past the
//! sign-in limiter, strangers locking people out, rows that grew without bound.
//!
//! Addresses are told apart through `X-Forwarded-For` from a trusted proxy (127.0.0.1).

use std::net::IpAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::pages::{Page, browser, get, post};
use crate::support::*;

async fn behind_proxy() -> TestServer {
    TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await
}

fn addr(n: u32) -> String {
    let ip = IpAddr::from([198, 18, (n >> 8) as u8, n as u8]);
    ip.to_string()
}

/// A device authorization for `client` from `from`.
async fn authorize_from(
    s: &TestServer,
    client: &str,
    from: &str,
) -> (StatusCode, Value, Option<u64>) {
    let res = s
        .http
        .post(s.url("/oauth2/device_authorization"))
        .header("x-forwarded-for", from)
        .form(&[("client_id", client)])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, res.json().await.unwrap(), retry)
}

/// A flows-API call from `from`.
async fn api_from(s: &TestServer, from: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let res = s
        .http
        .post(s.url(path))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn flow_from(s: &TestServer, from: &str) -> String {
    let (status, b) = api_from(s, from, "/api/v1/flows", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["id"].as_str().unwrap().to_owned()
}

async fn act(s: &TestServer, from: &str, flow: &str, action: Value) -> (StatusCode, Value) {
    api_from(s, from, &format!("/api/v1/flows/{flow}"), action).await
}

async fn enter(s: &TestServer, from: &str, flow: &str, code: &str) -> (StatusCode, Value) {
    act(
        s,
        from,
        flow,
        json!({"action": "user_code.verify", "user_code": code}),
    )
    .await
}

async fn sign_on(s: &TestServer, from: &str, flow: &str, password: &str) -> (StatusCode, Value) {
    act(
        s,
        from,
        flow,
        json!({"action": "sign_on", "username": "ann", "password": password}),
    )
    .await
}

/// Finding 1: 3,000 anonymous authorizations from one address plus 8 wrong codes from
/// another closed code entry for everyone. Now the flood stops at its sender's cap, codes
/// grow longer as codes pile up from many addresses, and the right code still works.
#[tokio::test]
async fn a_flood_of_device_codes_costs_only_its_sender() {
    let s = behind_proxy().await;
    s.public_client("tv", 1).await;
    let flooder = addr(1);
    for i in 0..20 {
        let (status, b, _) = authorize_from(&s, "tv", &flooder).await;
        assert_eq!(status, StatusCode::OK, "code {i}: {b}");
    }
    let (status, b, retry) = authorize_from(&s, "tv", &flooder).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(b["error"], "slow_down");
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("pending codes")
    );
    assert!((1..=600).contains(&retry.unwrap()), "{retry:?}");
    // Another address is not affected by the flooder's cap.
    let (status, honest, _) = authorize_from(&s, "tv", &addr(2)).await;
    assert_eq!(status, StatusCode::OK, "{honest}");
    // A flood spread over many addresses: new codes grow longer instead of pushing the
    // guessing odds up (24 pending 8-letter codes at most, then 9 letters).
    let mut lengths = std::collections::BTreeMap::new();
    for from in 10..40 {
        for _ in 0..20 {
            let (status, b, _) = authorize_from(&s, "tv", &addr(from)).await;
            assert_eq!(status, StatusCode::OK, "{b}");
            let code = b["user_code"].as_str().unwrap().replace('-', "");
            *lengths.entry(code.len()).or_insert(0) += 1;
        }
    }
    // 21 codes so far were 8 letters; then 8 letters up to 24 pending, 9 up to 488.
    let n = |len| lengths.get(&len).copied().unwrap_or(0);
    assert!(n(8) <= 4, "{lengths:?}");
    assert!((450..=488).contains(&n(9)), "{lengths:?}");
    assert!(n(10) >= 100, "{lengths:?}");
    // Eight wrong codes from a second address, then the right code from a third works.
    let guesser = addr(3);
    let flow = flow_from(&s, &guesser).await;
    for _ in 0..4 {
        let (status, _) = enter(&s, &guesser, &flow, "BCDF-BCDF").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let flow = flow_from(&s, &guesser).await;
    for _ in 0..4 {
        let (status, _) = enter(&s, &guesser, &flow, "BCDF-BCDFG").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let person = addr(4);
    let flow = flow_from(&s, &person).await;
    let (status, b) = enter(&s, &person, &flow, honest["user_code"].as_str().unwrap()).await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("SIGN_ON_REQUIRED")),
        "{b}"
    );
}

/// When the guessing budget is spent (wrong codes from many addresses), anonymous code
/// entry pauses, but a person who signs on first still enters codes, on the flows API and on
/// the pages.
#[tokio::test]
async fn a_spent_guessing_budget_pauses_only_anonymous_entry() {
    let s = behind_proxy().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let d = s.device_authorization("tv", None).await;
    let code = d["user_code"].as_str().unwrap().to_owned();
    // 24 eight-letter codes pending (the most there can be): each eight-letter guess costs
    // 1/508 of the budget.
    let mut codes = Vec::new();
    for i in 0..23 {
        let (status, b, _) = authorize_from(&s, "tv", &addr(50 + i / 10)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        assert_eq!(b["user_code"].as_str().unwrap().len(), 9, "XXXX-XXXX");
        codes.push(b["user_code"].as_str().unwrap().to_owned());
    }
    let guesses = spend_budget(&s, 100).await;
    assert!(guesses >= 500, "paused after only {guesses} wrong codes");
    // Anonymous entry of the right code is refused, from a fresh address too.
    let person = addr(7);
    let flow = flow_from(&s, &person).await;
    let (status, b) = enter(&s, &person, &flow, &code).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("sign_on_required"))
    );
    // Signed on first, the same person enters the code.
    let (status, b) = sign_on(&s, &person, &flow, PASSWORD).await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("USER_CODE_REQUIRED")),
        "{b}"
    );
    let (status, b) = enter(&s, &person, &flow, &code).await;
    assert_eq!(
        (status, b["status"].as_str()),
        (StatusCode::OK, Some("CONSENT_REQUIRED")),
        "{b}"
    );

    // On the pages: the code entry leads to sign-in, then the code is accepted. (Longer
    // codes, issued since, weigh little: guesses of their length are still admitted.)
    let other = codes.pop().unwrap();
    // Spent again just before: the budget refills one eight-letter guess each 7 s.
    spend_budget(&s, 400).await;
    let b = browser();
    let p = enter_on_pages(&s, &b, &other).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert!(p.location().ends_with("/device/signin"));
    let form = get(&b, s.url("/device/signin")).await;
    assert!(
        form.html.contains("only be entered after signing in"),
        "{}",
        form.html
    );
    let p = submit_password(&s, &b, &form).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert!(p.location().ends_with("/device"), "{}", p.location());
    let p = enter_on_pages(&s, &b, &other).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert!(
        p.location().ends_with("/device/consent"),
        "{}",
        p.location()
    );
}

/// Wrong eight-letter codes from addresses `first`, `first + 1`, … (four each, under their
/// own limit) until anonymous entry pauses; how many were admitted.
async fn spend_budget(s: &TestServer, first: u32) -> usize {
    let mut admitted = 0;
    for from in first..first + 300 {
        let from = addr(from);
        let flow = flow_from(s, &from).await;
        for _ in 0..4 {
            let (status, b) = enter(s, &from, &flow, "BCDF-BCDF").await;
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(b["error"], "sign_on_required", "{b}");
                return admitted;
            }
            assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
            admitted += 1;
        }
    }
    panic!("the budget never ran out");
}

/// Finding 2: 100 parallel wrong passwords got 99 × 401 and then the right password in.
/// Attempts are paid for before the password is checked: exactly 10 are tried.
#[tokio::test]
async fn a_burst_of_wrong_passwords_gets_exactly_the_limit_through() {
    let s = behind_proxy().await;
    s.user("ann").await;
    let attacker = addr(5);
    let flow = flow_from(&s, &attacker).await;
    let s = std::sync::Arc::new(s);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (s, flow, attacker) = (s.clone(), flow.clone(), attacker.clone());
            tokio::spawn(
                async move { sign_on(&s, &attacker, &flow, &format!("wrong {i}")).await.0 },
            )
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(counts, [(401, 10), (429, 90)].into_iter().collect());
    let (status, _) = sign_on(&s, &attacker, &flow, PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the burst's address stays limited"
    );
    // Finding 3: the owner, from another address, is not locked out.
    let owner = addr(6);
    let flow = flow_from(&s, &owner).await;
    let (status, b) = sign_on(&s, &owner, &flow, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{b}");
}

/// Finding 3: ten wrong passwords from one address locked the account everywhere for 15
/// minutes. Now they lock only that address; failures from many addresses slow the account
/// to one attempt per 30 s rather than lock it; a browser that signed in before is not slowed.
#[tokio::test]
async fn strangers_slow_an_account_down_but_cannot_lock_its_owner_out() {
    let s = behind_proxy().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    // The owner's browser signs in once (and becomes known to the account).
    let known = browser();
    let p = sign_in_on_pages(&s, &known).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    // Ten failures from one address: the right password from another address works.
    let stranger = addr(8);
    let flow = flow_from(&s, &stranger).await;
    for _ in 0..10 {
        assert_eq!(
            sign_on(&s, &stranger, &flow, "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        sign_on(&s, &stranger, &flow, "guess").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let elsewhere = addr(9);
    let flow = flow_from(&s, &elsewhere).await;
    assert_eq!(
        sign_on(&s, &elsewhere, &flow, PASSWORD).await.0,
        StatusCode::OK
    );
    // A stranger at the owner's own address (a shared NAT, a café): ten failures there lock
    // that address out of ann, but not the owner's known browser.
    let shared = "127.0.0.1";
    let flow = flow_from(&s, shared).await;
    for _ in 0..10 {
        assert_eq!(
            sign_on(&s, shared, &flow, "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let p = sign_in_on_pages(&s, &browser()).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.html);
    let p = sign_in_on_pages(&s, &known).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    // Failures spread over many addresses: the account is slowed, not locked.
    let mut throttled = None;
    for n in 300..400 {
        let from = addr(n);
        let flow = flow_from(&s, &from).await;
        let res = s
            .http
            .post(s.url(&format!("/api/v1/flows/{flow}")))
            .header("x-forwarded-for", &from)
            .json(&json!({"action": "sign_on", "username": "ann", "password": "guess"}))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            throttled = Some((n, retry));
            break;
        }
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let (n, retry) = throttled.expect("spread failures were never slowed");
    // 50 failures from anywhere (20 of them above), then one per 30 s.
    assert!(
        (29..=31).contains(&(n - 300)),
        "slowed after {} spread failures",
        n - 300
    );
    assert!(
        retry <= 30,
        "the account is slowed for {retry} s, not locked"
    );
    // A new address, even with the right password, waits its turn...
    let fresh = addr(10);
    let flow = flow_from(&s, &fresh).await;
    assert_eq!(
        sign_on(&s, &fresh, &flow, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...and so does a browser on the pages that never signed in to ann...
    let p = sign_in_on_pages(&s, &browser()).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.html);
    // ...but the browser that signed in before (and signed out since) goes straight in.
    let p = sign_in_on_pages(&s, &known).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    assert!(
        p.location().ends_with("/device/consent"),
        "{}",
        p.location()
    );
}

/// Opens the code-entry page in browser `b` and enters `code`.
async fn enter_on_pages(s: &TestServer, b: &reqwest::Client, code: &str) -> Page {
    let entry = get(b, s.url("/device")).await;
    post(
        b,
        s.url("/device"),
        &[("csrf", &entry.csrf()), ("user_code", code)],
    )
    .await
}

/// Posts ann's password to the sign-in form `form` in browser `b`.
async fn submit_password(s: &TestServer, b: &reqwest::Client, form: &Page) -> Page {
    post(
        b,
        s.url("/device/signin"),
        &[
            ("csrf", &form.csrf()),
            ("username", "ann"),
            ("password", PASSWORD),
        ],
    )
    .await
}

/// Enters a fresh code in browser `b`, signed out, and signs in as ann with her password:
/// the answer to the password.
async fn sign_in_on_pages(s: &TestServer, b: &reqwest::Client) -> Page {
    let d = s.device_authorization("tv", None).await;
    let p = enter_on_pages(s, b, d["user_code"].as_str().unwrap()).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.html);
    let form = get(b, s.url("/device/signin")).await;
    assert_eq!(
        form.status,
        StatusCode::OK,
        "signed out, so asked to sign in"
    );
    let p = submit_password(s, b, &form).await;
    // Sign out again: what stays is only the mark that this browser signed in before.
    let consent = get(b, s.url("/device/consent")).await;
    if let Some(csrf) = crate::pages::input_value(&consent.html, "csrf") {
        post(b, s.url("/device/signout"), &[("csrf", &csrf)]).await;
    }
    p
}

/// Finding 8: 2,000 cookie-less GETs of `/device` wrote 2,000 session rows, and 2,000
/// `POST /api/v1/flows` wrote 2,000 flows. Reading a page stores nothing, and flows are
/// capped per address.
#[tokio::test]
async fn reading_pages_stores_nothing_and_flows_are_capped_per_address() {
    let s = behind_proxy().await;
    for _ in 0..50 {
        let p = get(&browser(), s.url("/device")).await;
        assert_eq!(p.status, StatusCode::OK);
        assert!(p.headers.contains_key("set-cookie"));
    }
    let conn = rusqlite::Connection::open(s.dir.path().join("devicegate.db")).unwrap();
    let rows = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows("browser_sessions"), 0);
    let from = addr(11);
    for i in 0..100 {
        let (status, b) = api_from(&s, &from, "/api/v1/flows", json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "flow {i}: {b}");
    }
    let (status, b) = api_from(&s, &from, "/api/v1/flows", json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(rows("flows"), 100);
    // Another address still starts flows.
    flow_from(&s, &addr(12)).await;
    // Replaying one pre-session cookie and its token: each POST would store a session; they
    // stop at the address's cap.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let from = addr(13);
    let page = plain
        .get(s.url("/device"))
        .header("x-forwarded-for", &from)
        .send()
        .await
        .unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let csrf = crate::pages::input_value(&page.text().await.unwrap(), "csrf").unwrap();
    let before = rows("browser_sessions");
    let mut last = StatusCode::OK;
    for _ in 0..110 {
        let res = plain
            .post(s.url("/device"))
            .header("x-forwarded-for", &from)
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("user_code", "BCDF-BCDF")])
            .send()
            .await
            .unwrap();
        last = res.status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rows("browser_sessions") - before, 100);
}
