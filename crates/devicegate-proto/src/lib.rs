//! Wire shapes of the protocols devicegate speaks, in one place.
//!
//! The server and the client library share these types so that the two halves of a device
//! flow cannot drift apart. This crate knows nothing about HTTP frameworks or storage: it is
//! serde shapes and the error codes of RFC 8628, RFC 6749, RFC 8414 and OpenID Connect.
//!
//! # Example
//! ```
//! use devicegate_proto::{ErrorCode, ErrorResponse};
//! let e = ErrorResponse::new(ErrorCode::SlowDown, "polling too fast");
//! let json = serde_json::to_string(&e).unwrap();
//! assert_eq!(json, r#"{"error":"slow_down","error_description":"polling too fast"}"#);
//! ```

use serde::{Deserialize, Serialize};

/// RFC 8628 §7.2: the grant type of the device access token request.
pub const GRANT_TYPE_DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 6749 §6.
pub const GRANT_TYPE_REFRESH_TOKEN: &str = "refresh_token";

/// The grant types devicegate knows, parsed from `grant_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    DeviceCode,
    RefreshToken,
}

impl GrantType {
    pub const ALL: [GrantType; 2] = [GrantType::DeviceCode, GrantType::RefreshToken];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::DeviceCode => GRANT_TYPE_DEVICE_CODE,
            GrantType::RefreshToken => GRANT_TYPE_REFRESH_TOKEN,
        }
    }

    pub fn parse(s: &str) -> Option<GrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// Error codes of RFC 6749 §5.2, RFC 8628 §3.5, RFC 6750 §3.1, and the flows API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    UnsupportedResponseType,
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    InvalidToken,
    ServerError,
    TemporarilyUnavailable,
    /// Flows API: the user code is not known.
    InvalidUserCode,
    /// Flows API: the user code has expired.
    ExpiredUserCode,
    /// Flows API: the user code was already approved, denied or redeemed.
    UsedUserCode,
    /// Flows API: wrong username or password.
    InvalidCredentials,
    /// Flows API: the action does not fit the flow's status.
    InvalidAction,
    /// Flows API: no such flow.
    NotFound,
    /// Flows API: the flow has expired.
    ExpiredFlow,
    /// Flows API: the flow failed (too many wrong codes).
    FlowFailed,
    /// The request body is too large.
    RequestTooLarge,
    /// Flows API: the body is not `application/json`.
    UnsupportedMediaType,
    /// RFC 6750 §3.1: the token lacks a needed scope.
    InsufficientScope,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidUserCode => "invalid_user_code",
            ErrorCode::ExpiredUserCode => "expired_user_code",
            ErrorCode::UsedUserCode => "used_user_code",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidAction => "invalid_action",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ExpiredFlow => "expired_flow",
            ErrorCode::FlowFailed => "flow_failed",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InsufficientScope => "insufficient_scope",
        }
    }
}

/// RFC 6749 §5.2 error body, with the extra members RFC 8628 and the flows API use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// RFC 8628 §3.5: after `slow_down`, the interval the client must now use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Flows API: wrong user codes this flow may still try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

impl ErrorResponse {
    pub fn new(error: ErrorCode, description: impl Into<String>) -> Self {
        ErrorResponse {
            error,
            error_description: Some(description.into()),
            interval: None,
            attempts_left: None,
        }
    }
}

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorizationResponse {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
}

/// RFC 6749 §5.1 token response, with the OpenID Connect `id_token`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

/// RFC 8414 / OpenID Connect Discovery 1.0 metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub issuer: String,
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub claims_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
}

/// Status of a verification flow, as the flows API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowStatus {
    UserCodeRequired,
    SignOnRequired,
    ConsentRequired,
    Completed,
    Failed,
}

impl FlowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::UserCodeRequired => "USER_CODE_REQUIRED",
            FlowStatus::SignOnRequired => "SIGN_ON_REQUIRED",
            FlowStatus::ConsentRequired => "CONSENT_REQUIRED",
            FlowStatus::Completed => "COMPLETED",
            FlowStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<FlowStatus> {
        [
            FlowStatus::UserCodeRequired,
            FlowStatus::SignOnRequired,
            FlowStatus::ConsentRequired,
            FlowStatus::Completed,
            FlowStatus::Failed,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

/// The outcome of a completed flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowResult {
    Approved,
    Denied,
}

/// A client as a person approving it sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowClient {
    pub id: String,
    pub name: String,
}

/// The flows API's view of a verification flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowView {
    pub id: String,
    pub status: FlowStatus,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<FlowClient>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<FlowResult>,
}

/// A body posted to `/api/v1/flows/{id}`, tagged on `action`.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "action", deny_unknown_fields)]
pub enum FlowAction {
    #[serde(rename = "user_code.verify")]
    VerifyUserCode { user_code: String },
    #[serde(rename = "sign_on")]
    SignOn { username: String, password: String },
    #[serde(rename = "consent")]
    Consent { accept: bool },
}

impl std::fmt::Debug for FlowAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlowAction::VerifyUserCode { .. } => f.write_str("VerifyUserCode"),
            FlowAction::SignOn { username, .. } => f
                .debug_struct("SignOn")
                .field("username", username)
                .field("password", &"***")
                .finish(),
            FlowAction::Consent { accept } => {
                f.debug_struct("Consent").field("accept", accept).finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_action_is_tagged_on_action() {
        let a: FlowAction =
            serde_json::from_str(r#"{"action":"user_code.verify","user_code":"bcdf-ghjk"}"#)
                .unwrap();
        assert_eq!(
            a,
            FlowAction::VerifyUserCode {
                user_code: "bcdf-ghjk".into()
            }
        );
        assert!(serde_json::from_str::<FlowAction>(r#"{"action":"nope"}"#).is_err());
    }

    #[test]
    fn sign_on_debug_hides_password() {
        let a = FlowAction::SignOn {
            username: "ann".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn grant_type_round_trips() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        assert_eq!(GrantType::parse("password"), None);
    }
}
