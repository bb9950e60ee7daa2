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

    /// Every grant type's name, as records and metadata list them.
    pub fn all_names() -> Vec<String> {
        GrantType::ALL
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect()
    }

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
    /// Flows API: the session presented to `session.resume` is unknown or has ended.
    InvalidSession,
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
    /// Flows API: anonymous code entry is paused (too many wrong codes everywhere); sign on
    /// first, then enter the code.
    SignOnRequired,
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
            ErrorCode::InvalidSession => "invalid_session",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ExpiredFlow => "expired_flow",
            ErrorCode::FlowFailed => "flow_failed",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::SignOnRequired => "sign_on_required",
        }
    }

    /// The code named `s`, if it is one of ours.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        // Through serde so that the list of codes lives in one place, the enum.
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
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
    /// RFC 7009 revocation, RFC 7662 introspection, and how callers authenticate there.
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
}

/// An RFC 6749 §5.2 error body from any server, read by clients: `error` is kept as text so
/// that codes outside [`ErrorCode`] (extensions, other servers' own codes) still parse.
/// devicegate's server sends [`ErrorResponse`], which always parses as this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// RFC 8628 §3.5: some servers say the new interval with `slow_down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
}

impl AnyErrorResponse {
    /// The code as one of ours, or `None` for a code devicegate does not know.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.error)
    }
}

/// An RFC 6749 §5.1 token response from any server, read by clients. `expires_in` is only
/// RECOMMENDED and `scope` OPTIONAL (when it equals the request) there; devicegate's
/// [`TokenResponse`] always carries both and parses as this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyTokenResponse {
    pub access_token: String,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// RFC 8414 / OpenID Connect Discovery metadata from any server, read by clients: only
/// `issuer` and `token_endpoint` are required, since a server may offer the device grant
/// without advertising it and omit what it does not support. Unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnyServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// RFC 7009 via RFC 8414 §2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types_supported: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Status of a verification flow, as the flows API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowStatus {
    UserCodeRequired,
    SignOnRequired,
    /// Signed on with a password; a one-time code (or recovery code) is owed, or, for a
    /// person without an authenticator under a `required` policy, its enrolment.
    SecondFactorRequired,
    ConsentRequired,
    Completed,
    Failed,
}

impl FlowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowStatus::UserCodeRequired => "USER_CODE_REQUIRED",
            FlowStatus::SignOnRequired => "SIGN_ON_REQUIRED",
            FlowStatus::SecondFactorRequired => "SECOND_FACTOR_REQUIRED",
            FlowStatus::ConsentRequired => "CONSENT_REQUIRED",
            FlowStatus::Completed => "COMPLETED",
            FlowStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<FlowStatus> {
        [
            FlowStatus::UserCodeRequired,
            FlowStatus::SignOnRequired,
            FlowStatus::SecondFactorRequired,
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
    /// Returned once, by a successful `sign_on`: the person's session, which later flows
    /// present with `session.resume` instead of signing on again (until it ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Returned by `totp.enroll`: the authenticator's secret (base32) and its `otpauth://`
    /// URI (for a QR code). Shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_enrolment: Option<TotpEnrolment>,
    /// Returned once, when an enrolment is confirmed: ten single-use recovery codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
    /// While `SECOND_FACTOR_REQUIRED`: what the person may answer with (`totp`,
    /// `recovery_code`, `webauthn`), or `totp.enroll` when they must enrol first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factors: Option<Vec<String>>,
    /// Returned by `upstream.start`: where to send the browser to sign in at the upstream
    /// provider. It comes back to devicegate's callback, then to `return_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// Once a code is entered: where the device asked from, and where the caller is seen from
    /// it (RFC 10027 proximity), for a custom UI to show beside the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<FlowDevice>,
    /// Returned by `webauthn.options`: the WebAuthn request options (`{"publicKey": …}`, with
    /// binary fields in base64url) for `navigator.credentials.get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webauthn_options: Option<serde_json::Value>,
}

/// The device of a flow, as its approver should see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDevice {
    /// The address the device asked for its code from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `same_address`, `same_network`, `elsewhere` or `unknown`.
    pub relation: String,
    /// The client's proximity policy: `off`, `warn`, `same_network` (approval refused from
    /// elsewhere).
    pub proximity: String,
    /// Where the device is, when the server has a GeoIP database that knows its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Place>,
    /// Where the person asking is, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_location: Option<Place>,
}

/// A place from the server's GeoIP database, named in the request's language.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// ISO 3166-1 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
}

/// A device a person approved that still holds access (`GET /api/v1/account/devices`): one
/// refresh token family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    /// The device's sign-in (its refresh family, its access tokens' `sid`).
    pub id: String,
    pub client: FlowClient,
    pub scopes: Vec<String>,
    /// RFC 3339: when it was approved, when it last refreshed (none yet: absent), and when
    /// its access ends unless it refreshes.
    pub approved_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed_at: Option<String>,
    pub expires_at: String,
    /// Where the device asked for its code from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// A one-time-code authenticator being enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpEnrolment {
    /// The shared secret, base32 without padding, for typing in.
    pub secret: String,
    /// `otpauth://totp/…`, for a QR code.
    pub uri: String,
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
    /// Signs the flow on as the person of a session a `sign_on` returned.
    #[serde(rename = "session.resume")]
    SessionResume { session: String },
    /// Starts enrolling a one-time-code authenticator (a flow waiting for a second factor
    /// whose person has none): the answer carries the secret and its `otpauth://` URI.
    #[serde(rename = "totp.enroll")]
    TotpEnroll {},
    /// A one-time code: confirms an enrolment (the answer then carries recovery codes, once)
    /// or completes the second factor.
    #[serde(rename = "totp.verify")]
    TotpVerify { code: String },
    /// A recovery code in place of a one-time code; each works once.
    #[serde(rename = "recovery_code.verify")]
    RecoveryCodeVerify { code: String },
    /// Request options for signing on with a passkey (from `SIGN_ON_REQUIRED`, or while
    /// waiting for a code with nobody signed on) or for giving one as the second factor;
    /// the challenge stands until `webauthn.verify`, once.
    #[serde(rename = "webauthn.options")]
    WebauthnOptions {},
    /// The browser's answer to `webauthn.options` (a `PublicKeyCredential` as JSON, binary
    /// fields in base64url).
    #[serde(rename = "webauthn.verify")]
    WebauthnVerify { credential: serde_json::Value },
    /// Signs on through the tenant's upstream OpenID provider `upstream`: the answer carries
    /// the `authorization_url` to send the browser to; afterwards the browser is sent to
    /// `return_to` (an origin the operator allowed) and the flow waits for consent.
    #[serde(rename = "upstream.start")]
    UpstreamStart {
        upstream: String,
        #[serde(default)]
        return_to: Option<String>,
    },
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
            FlowAction::SessionResume { .. } => f.write_str("SessionResume"),
            FlowAction::TotpEnroll {} => f.write_str("TotpEnroll"),
            FlowAction::TotpVerify { .. } => f.write_str("TotpVerify"),
            FlowAction::RecoveryCodeVerify { .. } => f.write_str("RecoveryCodeVerify"),
            FlowAction::WebauthnOptions {} => f.write_str("WebauthnOptions"),
            FlowAction::WebauthnVerify { .. } => f.write_str("WebauthnVerify"),
            FlowAction::UpstreamStart { upstream, .. } => f
                .debug_struct("UpstreamStart")
                .field("upstream", upstream)
                .finish_non_exhaustive(),
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
    fn error_code_parse_knows_every_code_and_only_those() {
        for c in [
            ErrorCode::SlowDown,
            ErrorCode::InsufficientScope,
            ErrorCode::NotFound,
        ] {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("invalid_dpop_proof"), None);
    }

    #[test]
    fn the_servers_shapes_parse_as_the_lenient_client_shapes() {
        let e = ErrorResponse {
            interval: Some(10),
            ..ErrorResponse::new(ErrorCode::SlowDown, "slow")
        };
        let any: AnyErrorResponse =
            serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(
            (any.code(), any.interval),
            (Some(ErrorCode::SlowDown), Some(10))
        );
        let unknown: AnyErrorResponse =
            serde_json::from_str(r#"{"error":"invalid_dpop_proof"}"#).unwrap();
        assert_eq!(unknown.code(), None);

        let t = TokenResponse {
            access_token: "a".into(),
            token_type: "Bearer".into(),
            expires_in: 60,
            refresh_token: Some("r".into()),
            id_token: None,
            scope: "openid".into(),
        };
        let any: AnyTokenResponse =
            serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(
            (any.expires_in, any.scope.as_deref()),
            (Some(60), Some("openid"))
        );
        let bare: AnyTokenResponse =
            serde_json::from_str(r#"{"access_token":"a","token_type":"bearer"}"#).unwrap();
        assert_eq!((bare.expires_in, bare.scope), (None, None));

        let m: AnyServerMetadata = serde_json::from_str(
            r#"{"issuer":"https://i","token_endpoint":"https://i/t","extra":1}"#,
        )
        .unwrap();
        assert_eq!(m.device_authorization_endpoint, None);
    }

    #[test]
    fn grant_type_round_trips() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        assert_eq!(GrantType::parse("password"), None);
    }
}
