//! Slow and greedy clients over raw TCP: the header, body and idle timeouts, the per-address
//! connection cap, and the shutdown drain.

use std::time::{Duration, Instant};

use devicegate_server::ConnectionLimits;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::JsonOf;
use crate::support::TestServer;

/// Far above every short timeout configured here: a loaded machine is slow, not this slow.
const GENEROUS: Duration = Duration::from_secs(10);

async fn server(limits: ConnectionLimits) -> TestServer {
    TestServer::start_with(|s| s.connections = limits).await
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.running.as_ref().unwrap().addr)
        .await
        .unwrap()
}

/// Waits for the server to close `c` (end of stream or reset) and returns what it sent first.
/// Panics if it is still open after `within`.
async fn closed_by_server(c: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .expect("the server did not close the connection");
    String::from_utf8_lossy(&got).into_owned()
}

/// `GET /healthz` on a kept-alive connection; returns the status line.
async fn healthz(c: &mut TcpStream) -> String {
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The whole answer is a short head and `ok`.
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(GENEROUS, c.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_request_head_that_stalls_is_disconnected_at_the_header_timeout() {
    let s = server(ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    })
    .await;
    // Half a head, then nothing (slowloris).
    let mut c = connect(&s).await;
    let started = Instant::now();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    assert_eq!(closed_by_server(&mut c, GENEROUS).await, "");
    assert!(started.elapsed() >= Duration::from_millis(500));
    // A connection that never sends a byte is held to the same clock.
    let mut silent = connect(&s).await;
    assert_eq!(closed_by_server(&mut silent, GENEROUS).await, "");
    // A head sent a byte at a time, each byte well within the timeout, is cut all the same:
    // the clock runs from the head's first byte, not from the last.
    let mut dribble = connect(&s).await;
    let sent = async {
        for b in b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" {
            if dribble.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(GENEROUS, sent).await.unwrap();
    assert_eq!(closed_by_server(&mut dribble, GENEROUS).await, "");
}

#[tokio::test]
async fn a_request_body_that_stalls_is_answered_408_and_the_connection_closed() {
    let s = server(ConnectionLimits {
        body_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    })
    .await;
    let head = "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n";
    let mut c = connect(&s).await;
    c.write_all(format!("{head}grant_type=").as_bytes())
        .await
        .unwrap();
    let answer = closed_by_server(&mut c, GENEROUS).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"error\":\"invalid_request\""), "{answer}");

    // A body trickled a byte at a time is held to the same total, however lively it looks.
    let mut c = connect(&s).await;
    c.write_all(head.as_bytes()).await.unwrap();
    let (mut rx, mut tx) = c.split();
    let trickle = async {
        for _ in 0..100 {
            if tx.write_all(b"a").await.is_err() {
                // Cut off: the answer is the reader's to tell.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let read = async {
        let mut got = Vec::new();
        let _ = rx.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    };
    let answer = tokio::time::timeout(GENEROUS, async {
        tokio::select! {
            answer = read => answer,
            () = trickle => String::from("the whole body went through"),
        }
    })
    .await
    .expect("an answer");
    // The server closes with the rest of the body unread, which TCP may turn into a reset
    // that overtakes the 408; either way the trickle did not get through.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408 "),
        "{answer}"
    );
}

/// A code from Ocient's `sso_device_grant`, whose `verify` long-polls.
async fn ocient_grant(s: &TestServer) -> Value {
    s.http
        .post(s.url("/v1/sso_device_grant"))
        .json(&json!({}))
        .json_of()
        .await
}

/// The body clock is the body's alone: Ocient's `verify` waits on purpose, longer than the
/// body timeout, and answers in its own words.
#[tokio::test]
async fn a_long_poll_outlives_the_body_timeout() {
    let s = server(ConnectionLimits {
        body_read_timeout: Duration::from_secs(1),
        ..ConnectionLimits::default()
    })
    .await;
    let grant = ocient_grant(&s).await;
    let res = s
        .http
        .post(s.url("/v1/sso_device_grant_verify"))
        .json(&json!({"user_code": grant["user_code"], "timeout": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"]["sql_state"], "HYT00", "Ocient's own timeout");
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_refused_until_others_close() {
    let s = server(ConnectionLimits {
        max_per_address: 3,
        ..ConnectionLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&s).await;
        assert_eq!(healthz(&mut c).await, "HTTP/1.1 200 OK");
        held.push(c);
    }
    let mut refused = connect(&s).await;
    assert_eq!(closed_by_server(&mut refused, GENEROUS).await, "");
    // The first three are still served.
    for c in &mut held {
        assert_eq!(healthz(c).await, "HTTP/1.1 200 OK");
    }
    drop(held);
    // Once the server has seen them close, 127.0.0.1 is welcome again.
    let deadline = Instant::now() + GENEROUS;
    loop {
        let mut c = connect(&s).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(GENEROUS, c.read(&mut buf)).await
            && buf[..n].starts_with(b"HTTP/1.1 200 ")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after the others closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    let s = server(ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(4),
        ..ConnectionLimits::default()
    })
    .await;
    let mut c = connect(&s).await;
    assert_eq!(healthz(&mut c).await, "HTTP/1.1 200 OK");
    // Quiet for longer than the header timeout: between requests only the idle clock runs.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(healthz(&mut c).await, "HTTP/1.1 200 OK", "kept alive");
    let answered = Instant::now();
    assert_eq!(closed_by_server(&mut c, GENEROUS).await, "");
    assert!(answered.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_cuts_the_rest_at_the_drain_timeout() {
    let mut s = server(ConnectionLimits {
        shutdown_drain: Duration::from_secs(3),
        ..ConnectionLimits::default()
    })
    .await;
    let grant = ocient_grant(&s).await;
    let verify = s
        .http
        .post(s.url("/v1/sso_device_grant_verify"))
        .json(&json!({"user_code": grant["user_code"], "timeout": 2}))
        .send();
    let mut stalled = connect(&s).await;
    stalled
        .write_all(
            b"POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\n\
            Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 50\r\n\r\n",
        )
        .await
        .unwrap();
    let running = s.running.take().unwrap();
    let (answer, ()) = tokio::join!(verify, async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::time::timeout(Duration::from_secs(3) + GENEROUS, running.stop())
            .await
            .expect("stopped despite the stalled request")
            .unwrap();
    });
    let answer = answer.expect("the in-flight request is answered during the drain");
    assert_eq!(answer.status(), StatusCode::REQUEST_TIMEOUT);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"]["sql_state"], "HYT00", "Ocient's own answer");
    assert_eq!(closed_by_server(&mut stalled, GENEROUS).await, "");
}

/// HTTP/2 without TLS (prior knowledge) is still served, with the same router.
#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    let s = TestServer::start().await;
    let io = hyper_util::rt::TokioIo::new(connect(&s).await);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(s.url("/healthz"))
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(
        (res.status(), res.version()),
        (hyper::StatusCode::OK, hyper::Version::HTTP_2)
    );
}
