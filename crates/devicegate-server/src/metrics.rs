//! Prometheus metrics, served as OpenMetrics text on `GET /metrics`.
//!
//! - `devicegate_http_requests_total{route,status}`: every request, by matched route (the
//!   route pattern, never the path, so flow ids stay out) and status class (`2xx` …).
//! - `devicegate_http_request_duration_seconds{route}`: time in the handler. The handlers of
//!   the OAuth endpoints are a few microseconds of CPU around their store calls, so this is
//!   the store latency as the server sees it, per route, without wrapping the `Store` trait.
//! - The device-flow funnel: `devicegate_device_codes_issued_total`,
//!   `…_codes_verified_total`, `…_codes_approved_total`, `…_codes_denied_total`,
//!   `…_expired_token_answers_total`, `…_slow_down_answers_total`, and
//!   `devicegate_code_to_approval_seconds` (code issued to approval).
//! - `devicegate_connections_closed_total{reason}`: connections the server cut
//!   (`address_cap`, `header_timeout`, `body_timeout`, `idle_timeout`, `drain_timeout`; see
//!   `conn.rs`). A climbing `header_timeout` or `address_cap` is a slow-client attack.
//!
//! Each server has a registry of its own (`AppState::metrics`), so that several servers in one
//! process (the tests) count apart and a count can be asserted exactly.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use devicegate_core::Timestamp;
use http::header::{self, HeaderValue};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// One server's registry and the handles its hooks count into.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    issued: Counter,
    verified: Counter,
    approved: Counter,
    denied: Counter,
    expired: Counter,
    slow_down: Counter,
    to_approval: Histogram,
    closed: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("devicegate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests by matched route and status class",
            requests.clone(),
        );
        // 50 µs to about 3 s: polls answer in well under a millisecond, sign-ons in tens.
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 3.0, 11))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time in the handler by matched route, store calls included",
            duration.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let issued = counter("device_codes_issued", "Device codes issued (RFC 8628 §3.2)");
        let verified = counter("codes_verified", "User codes entered and bound to a flow");
        let approved = counter("codes_approved", "Device grants approved");
        let denied = counter("codes_denied", "Device grants denied");
        let expired = counter("expired_token_answers", "Polls answered expired_token");
        let slow_down = counter("slow_down_answers", "Polls answered slow_down (§3.5)");
        // 1 s to about 18 minutes: people take seconds to minutes; codes live 10 minutes.
        let to_approval = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "code_to_approval_seconds",
            "Time from a device code's issue to its approval",
            to_approval.clone(),
        );
        let closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections closed by the server's limits, by reason",
            closed.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            issued,
            verified,
            approved,
            denied,
            expired,
            slow_down,
            to_approval,
            closed,
        }
    }

    pub fn code_issued(&self) {
        self.issued.inc();
    }

    pub fn code_verified(&self) {
        self.verified.inc();
    }

    /// A grant issued at `issued_at` was approved (`accept`) or denied at `now`.
    pub fn code_decided(&self, accept: bool, issued_at: Timestamp, now: Timestamp) {
        if accept {
            self.approved.inc();
            let waited: Duration = issued_at.until(now);
            self.to_approval.observe(waited.as_secs_f64());
        } else {
            self.denied.inc();
        }
    }

    pub fn expired_token(&self) {
        self.expired.inc();
    }

    pub fn slow_down(&self) {
        self.slow_down.inc();
    }

    /// The server closed `n` connections for `reason` (`conn.rs`).
    pub(crate) fn connections_closed(&self, reason: &'static str, n: u64) {
        self.closed
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }
}

/// Middleware: counts and times every request by its matched route.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    let m = &state.metrics;
    m.duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    let status = match res.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    m.requests
        .get_or_create(&RequestLabels { route, status })
        .inc();
    res
}

/// `GET /metrics`.
pub async fn endpoint(State(state): State<AppState>) -> Response {
    let mut body = String::new();
    if encode(&mut body, &state.metrics.registry).is_err() {
        return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
