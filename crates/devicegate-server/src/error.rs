//! The OAuth error type (RFC 6749 §5.2), and [`Failure`]: how a store error reads on every
//! surface.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use devicegate_proto::{ErrorCode, ErrorResponse};
use devicegate_store::StoreError;
use http::header::{self, HeaderValue};

/// An error on an OAuth or API endpoint, rendered as RFC 6749 §5.2 JSON.
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub body: ErrorResponse,
    /// RFC 6749 §5.2: `invalid_client` after Basic auth carries `WWW-Authenticate`;
    /// RFC 6750 §3 bearer errors carry theirs.
    pub www_authenticate: Option<String>,
    /// Seconds for `Retry-After` on 429s.
    pub retry_after: Option<u64>,
    /// The description is already in the request's language (see [`crate::i18n`]).
    pub localized: bool,
}

impl OAuthError {
    pub fn new(status: StatusCode, code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            body: ErrorResponse::new(code, description),
            www_authenticate: None,
            retry_after: None,
            localized: false,
        }
    }

    /// 400 with the given code.
    pub fn bad(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::bad(ErrorCode::InvalidRequest, description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::bad(ErrorCode::InvalidGrant, description)
    }

    pub fn invalid_client(basic: bool) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidClient,
            "client authentication failed",
        );
        if basic {
            e.www_authenticate = Some(r#"Basic realm="devicegate", charset="UTF-8""#.into());
        }
        e
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable, try again shortly",
        )
    }

    /// What a failure this error stands for means to every surface (`Failure`): a dialect
    /// that calls a shared path answers in its own format by this.
    pub fn failure(&self) -> Option<Failure> {
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => Some(Failure::Unavailable),
            StatusCode::INTERNAL_SERVER_ERROR => Some(Failure::Internal),
            _ => None,
        }
    }

    pub fn with_interval(mut self, secs: u32) -> Self {
        self.body.interval = Some(u64::from(secs));
        self
    }
}

/// A store failure that a handler did not map itself, as every surface answers it: each
/// surface's error type converts a `StoreError` through this and only this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The record is not there: the surface's own not-found answer.
    NotFound,
    /// The store cannot be reached: 503, try again.
    Unavailable,
    /// Anything else (a corrupt row, a conflict no handler expected): 500. The detail goes to
    /// the log, never to the caller.
    Internal,
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Failure::NotFound,
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                Failure::Unavailable
            }
            other => {
                tracing::error!(error = %other, "storage error");
                Failure::Internal
            }
        }
    }
}

impl From<Failure> for OAuthError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::NotFound => {
                OAuthError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such record")
            }
            Failure::Unavailable => OAuthError::unavailable(),
            Failure::Internal => OAuthError::internal(),
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        Failure::from(e).into()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(mut self) -> Response {
        // Where the request chose a language (the flows API), a description written for
        // developers becomes one the person can read.
        if !self.localized
            && let Some(t) = crate::i18n::current()
        {
            self.body.error_description =
                Some(t.describe(self.body.error, self.body.error_description.as_deref()));
        }
        let mut res = (self.status, Json(self.body)).into_response();
        if let Some(v) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

pub async fn not_found() -> OAuthError {
    OAuthError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint",
    )
}

pub async fn method_not_allowed() -> OAuthError {
    OAuthError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "this method is not allowed on this endpoint",
    )
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    let mut res = OAuthError::internal().into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
