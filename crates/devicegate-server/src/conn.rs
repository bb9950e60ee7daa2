//! The accept loop: HTTP/1.1 with keep-alive, and h2c, on hyper, with the limits a server
//! facing untrusted clients needs.
//!
//! - **Per address:** at most `max_per_address` open connections per peer (an IPv6 peer counts
//!   by its /64, which one subscriber usually holds whole); more are closed at accept. Trusted
//!   proxies are exempt: they carry many clients, whom the other limits tell apart.
//! - **Request head:** a connection must deliver a complete request head within
//!   `header_read_timeout` of opening, and of the first byte of each later request, or it is
//!   closed.
//! - **Request body:** a body must arrive whole within `body_read_timeout` of its head, or the
//!   request is answered 408 and the connection closed. The clock runs only while the body is
//!   read: handlers that wait on purpose (the Ocient dialect's long poll) are not cut short.
//! - **Idle:** a connection with no request in flight and nothing written for `idle_timeout`
//!   is closed (for HTTP/1.1 this also bounds a client that stops reading its response).
//! - **Shutdown:** stop accepting, let in-flight requests finish while keep-alive connections
//!   are told to close, and after `shutdown_drain` close whatever is left.
//!
//! hyper's own `header_read_timeout` is not used: its clock also runs while a keep-alive
//! connection waits for its next request, so it would cut idle connections at the header
//! timeout. One watchdog per connection keeps both clocks instead, from the state the
//! connection's I/O and service report to it ([`Watch`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use devicegate_proto::ErrorCode;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::OAuthError;
use crate::metrics::Metrics;

/// How long clients may take and how many connections one may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to send a request head, from the connection's opening or a request's first byte.
    pub header_read_timeout: Duration,
    /// Time to send a request body, from the end of its head.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Open connections per peer address; 0 is unlimited. A proxy in front is one address.
    pub max_per_address: usize,
    /// Time in-flight requests are given to finish at shutdown.
    pub shutdown_drain: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_per_address: 64,
            shutdown_drain: Duration::from_secs(10),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most
/// `limits.shutdown_drain`. `trusted_proxies` carry many clients' connections: the
/// per-address cap does not apply to them (the limits that count clients behind them read
/// `X-Forwarded-For`).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    trusted_proxies: Vec<IpAddr>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Off: the watchdog keeps the head clock (see the module comment). hyper only honours it
    // with a timer, and none is given, but say so rather than rely on that.
    builder.http1().header_read_timeout(None);
    let shared = Arc::new(Shared {
        builder,
        limits: limits.clone(),
        metrics: metrics.clone(),
    });
    let per_address = Arc::new(PerAddress::new(limits.max_per_address, trusted_proxies));
    let (draining, drain_signal) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let Some(slot) = per_address.admit(peer.ip()) else {
                    tracing::debug!(%peer, "connection refused: too many from this address");
                    CloseReason::AddressCap.count(&metrics, 1);
                    drop(stream);
                    continue;
                };
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    shared.clone(),
                    drain_signal.clone(),
                    slot,
                ));
            }
        }
    }
    drop(listener);
    let _ = draining.send(true);
    let drained = tokio::time::timeout(limits.shutdown_drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown drain timed out: closing the remaining connections"
        );
        CloseReason::DrainTimeout.count(&metrics, connections.len() as u64);
        connections.shutdown().await;
    }
    Ok(())
}

/// Connection errors are the peer's business; others (out of file descriptors) get a pause,
/// so that a full table is not retried in a busy loop.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What every connection of one server shares.
struct Shared {
    builder: auto::Builder<TokioExecutor>,
    limits: Arc<ConnectionLimits>,
    metrics: Arc<Metrics>,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    shared: Arc<Shared>,
    mut drain_signal: watch::Receiver<bool>,
    _slot: Slot,
) {
    let (limits, metrics) = (&shared.limits, &shared.metrics);
    let watch = Arc::new(Watch::new());
    let io = TokioIo::new(Watched {
        io: stream,
        watch: watch.clone(),
    });
    let service = ConnService {
        app,
        peer,
        watch: watch.clone(),
        body_read_timeout: limits.body_read_timeout,
        metrics: metrics.clone(),
    };
    let conn = shared.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let expired = watch.expiry(limits);
    tokio::pin!(expired);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            reason = &mut expired => {
                tracing::debug!(%peer, reason = reason.as_str(), "closing connection");
                reason.count(metrics, 1);
                return;
            }
            // An error means the server is gone without a word: drain all the same.
            _ = drain_signal.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why the server closed a connection (or, for HTTP/2's body timeout, ended a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    AddressCap,
    HeaderTimeout,
    BodyTimeout,
    IdleTimeout,
    DrainTimeout,
}

impl CloseReason {
    fn as_str(self) -> &'static str {
        match self {
            CloseReason::AddressCap => "address_cap",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::DrainTimeout => "drain_timeout",
        }
    }

    fn count(self, metrics: &Metrics, n: u64) {
        metrics.connections_closed(self.as_str(), n);
    }
}

/// What a connection is doing, as its I/O and its requests report it, for the watchdog.
#[derive(Debug)]
struct Watch {
    state: Mutex<WatchState>,
    /// Woken when a deadline may have come nearer: a request ended, a head began.
    changed: Notify,
}

#[derive(Debug)]
struct WatchState {
    in_flight: usize,
    /// When the bytes of a request head began to arrive (the opening, for a new connection),
    /// while no request is in flight; `None` when no head is awaited.
    head_since: Option<Instant>,
    /// The last request start or end, or (HTTP/1.1) the last write.
    last_active: Instant,
    /// HTTP/2: frames (pings, window updates) come and go between requests, so neither reads
    /// start the head clock nor writes keep the connection from idling.
    multiplexed: bool,
}

impl Watch {
    fn new() -> Watch {
        let now = Instant::now();
        Watch {
            state: Mutex::new(WatchState {
                in_flight: 0,
                head_since: Some(now),
                last_active: now,
                multiplexed: false,
            }),
            changed: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && s.head_since.is_none() && !s.multiplexed {
            s.head_since = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        let mut s = self.state();
        if !s.multiplexed {
            s.last_active = Instant::now();
        }
    }

    fn request_started(self: &Arc<Self>, multiplexed: bool) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.head_since = None;
        s.multiplexed |= multiplexed;
        s.last_active = Instant::now();
        InFlight(self.clone())
    }

    /// The deadline, if any, and what passing it means: while a head is awaited, only the
    /// head clock runs (a slow head is not idle); between requests, the idle clock.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, CloseReason)> {
        let s = self.state();
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.head_since {
            Some(since) => (
                since + limits.header_read_timeout,
                CloseReason::HeaderTimeout,
            ),
            None => (
                s.last_active + limits.idle_timeout,
                CloseReason::IdleTimeout,
            ),
        })
    }

    /// Resolves when a deadline passes.
    async fn expiry(&self, limits: &ConnectionLimits) -> CloseReason {
        loop {
            match self.deadline(limits) {
                Some((at, reason)) if at <= Instant::now() => return reason,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

/// A request in flight; dropped when its response is ready (or the request is abandoned).
#[derive(Debug)]
struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.last_active = Instant::now();
        let idle = s.in_flight == 0;
        drop(s);
        if idle {
            self.0.changed.notify_one();
        }
    }
}

/// The TCP stream, reporting reads and writes to the connection's [`Watch`].
#[derive(Debug)]
struct Watched {
    io: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.watch.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.watch.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The router as one connection's hyper service: the peer's address as `ConnectInfo`, the
/// body clock, and in-flight accounting for the watchdog.
#[derive(Debug, Clone)]
struct ConnService {
    app: Router,
    peer: SocketAddr,
    watch: Arc<Watch>,
    body_read_timeout: Duration,
    metrics: Arc<Metrics>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, req: Request<Incoming>) -> ServiceFuture {
        let h1 = req.version() < http::Version::HTTP_2;
        let in_flight = self.watch.request_started(!h1);
        let (parts, body) = req.into_parts();
        let (body, late) = if http_body::Body::is_end_stream(&body) {
            (Body::new(body), None)
        } else {
            let late = Arc::new(AtomicBool::new(false));
            let body = BodyDeadline {
                body,
                at: Instant::now() + self.body_read_timeout,
                sleep: None,
                late: late.clone(),
            };
            (Body::new(body), Some(late))
        };
        let mut req = Request::from_parts(parts, body);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let answer = self.app.clone().oneshot(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let res = answer.await;
            drop(in_flight);
            match late {
                Some(late) if late.load(Ordering::Relaxed) => {
                    CloseReason::BodyTimeout.count(&metrics, 1);
                    Ok(body_too_slow(h1))
                }
                _ => res,
            }
        })
    }
}

/// 408, whatever the handler made of the failed read; the rest of the body is not awaited.
fn body_too_slow(h1: bool) -> Response {
    let mut res = OAuthError::new(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::InvalidRequest,
        "the request body did not arrive in time",
    )
    .into_response();
    let headers = res.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if h1 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// A request body that fails once its deadline has passed, and says so through `late`.
#[derive(Debug)]
struct BodyDeadline {
    body: Incoming,
    at: Instant,
    /// Made on the first wait: a body that arrived with its head never needs a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("request body timed out")]
struct BodyTimedOut;

impl http_body::Body for BodyDeadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let at = this.at;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Open connections per peer address.
#[derive(Debug)]
struct PerAddress {
    max: usize,
    exempt: Vec<IpAddr>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    fn new(max: usize, exempt: Vec<IpAddr>) -> PerAddress {
        PerAddress {
            max,
            exempt,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `ip`, unless it holds the most already.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        if self.max == 0 || self.exempt.contains(&ip.to_canonical()) {
            return Some(Slot(None));
        }
        let key = address_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot(Some((self.clone(), key))))
    }
}

/// One admitted connection; gives its place back when the connection ends.
#[derive(Debug)]
struct Slot(Option<(Arc<PerAddress>, IpAddr)>);

impl Drop for Slot {
    fn drop(&mut self) {
        let Some((table, key)) = self.0.take() else {
            return;
        };
        let mut open = table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// What connections are counted by: an IPv4 address (also when mapped into IPv6), or an IPv6
/// address's /64.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_count_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(address_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn slots_are_given_back_and_the_table_forgets_empty_addresses() {
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let table = Arc::new(PerAddress::new(2, vec![proxy]));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = table.admit(ip).unwrap();
        let second = table.admit(ip).unwrap();
        assert!(table.admit(ip).is_none());
        assert!(table.admit("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        let third = table.admit(ip).unwrap();
        drop((second, third));
        assert!(table.open.lock().unwrap().is_empty());
        let behind: Vec<_> = (0..10).map(|_| table.admit(proxy).unwrap()).collect();
        assert_eq!(behind.len(), 10, "a trusted proxy carries many clients");
        let unlimited = Arc::new(PerAddress::new(0, Vec::new()));
        let many: Vec<_> = (0..100).map(|_| unlimited.admit(ip).unwrap()).collect();
        assert_eq!(many.len(), 100);
        assert!(unlimited.open.lock().unwrap().is_empty());
    }
}
