//! Extractors whose rejections speak each surface's error format.
//!
//! [`OAuthForm`]: form bodies only, at most [`MAX_FORM_PARAMS`] (64) parameters, a repeated
//! one refused. [`ApiJson`]: `application/json` only (415 otherwise), a repeated key refused.
//! A body over `max_body_bytes` is 413; [`single_header`] refuses a repeated `Authorization`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use devicegate_proto::ErrorCode;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;

use crate::error::OAuthError;
use crate::{AppState, limits};

/// The client's address: the peer's, or behind a trusted proxy the one it forwarded
/// (`limits::client_ip`). Every limit and every record of who asked uses this one.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

impl axum::extract::FromRequestParts<AppState> for ClientAddr {
    type Rejection = OAuthError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> Result<Self, OAuthError> {
        // The server is always served with connect info; without it the limits could not
        // tell clients apart, so refuse rather than guess.
        let Some(axum::extract::ConnectInfo(peer)) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        else {
            tracing::error!("a request without connect info");
            return Err(OAuthError::internal());
        };
        Ok(ClientAddr(limits::client_ip(
            peer.ip(),
            &parts.headers,
            &state.settings.trusted_proxies,
        )))
    }
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, OAuthError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OAuthError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::InvalidRequest,
                "the request body is too large",
            )
        } else {
            OAuthError::invalid_request("the request body could not be read")
        }
    })
}

/// A header sent twice where once is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedHeader;

/// The one value of a header that is not a list, such as `Authorization` (RFC 9110 §11.6.2:
/// one scheme and its credentials). Sent twice, neither counts: which one a proxy in front
/// checked and which one this server would use could differ.
pub fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, RepeatedHeader> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(RepeatedHeader),
        None => Ok(first),
    }
}

/// Parameters a form body may carry. OAuth requests have about six and the pages' forms four;
/// the cap keeps the repeated-parameter check (quadratic, but over a few short names) cheap
/// whatever a body of `max_body_bytes` holds.
pub const MAX_FORM_PARAMS: usize = 64;

/// An `application/x-www-form-urlencoded` body, as RFC 6749 §3.1–3.2 requires: parameters
/// without a value count as omitted, and a repeated parameter is `invalid_request`, as is a
/// body of more than [`MAX_FORM_PARAMS`] parameters.
#[derive(Debug, Default)]
pub struct OAuthForm(Vec<(String, String)>);

impl OAuthForm {
    pub fn parse(body: &[u8]) -> Result<OAuthForm, OAuthError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for (i, (k, v)) in form_urlencoded::parse(body).enumerate() {
            if i == MAX_FORM_PARAMS {
                return Err(OAuthError::invalid_request(format!(
                    "the form has more than {MAX_FORM_PARAMS} parameters"
                )));
            }
            if v.is_empty() {
                continue;
            }
            if params.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{k}` is repeated"
                )));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        Ok(OAuthForm(params))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is missing")))
    }
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if media_type(req.headers()).as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let body = body_bytes(req, state).await?;
        OAuthForm::parse(&body)
    }
}

/// A JSON body for the flows API. Requiring `application/json` keeps cross-site HTML forms,
/// which cannot send it without a CORS preflight, from driving a flow. Read by
/// [`crate::json::from_slice`], so a repeated key is `invalid_request`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if media_type(req.headers()).as_deref() != Some("application/json") {
            return Err(OAuthError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "the body must be application/json",
            ));
        }
        let body = body_bytes(req, state).await?;
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &body
        };
        crate::json::from_slice(body)
            .and_then(serde_json::from_value)
            .map(ApiJson)
            .map_err(|e| OAuthError::invalid_request(format!("the JSON body is not valid: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6749_3_1_repeated_parameters_are_refused_and_empty_ones_omitted() {
        assert!(OAuthForm::parse(b"a=1&a=2").is_err());
        let f = OAuthForm::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(
            (f.get("a"), f.get("b"), f.get("c")),
            (Some("1"), None, Some("x y"))
        );
        // An empty duplicate is an omitted parameter, not a repeat.
        assert!(OAuthForm::parse(b"a=1&a=").is_ok());
    }

    #[test]
    fn forms_hold_at_most_max_form_params_parameters() {
        let form = |n: usize| {
            (0..n)
                .map(|i| format!("p{i}=x"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert!(OAuthForm::parse(form(MAX_FORM_PARAMS).as_bytes()).is_ok());
        assert!(OAuthForm::parse(form(MAX_FORM_PARAMS + 1).as_bytes()).is_err());
    }

    #[test]
    fn a_repeated_header_has_no_value() {
        let mut h = HeaderMap::new();
        let name = http::header::AUTHORIZATION;
        assert_eq!(single_header(&h, &name), Ok(None));
        h.append(&name, HeaderValue::from_static("Basic a"));
        assert!(matches!(single_header(&h, &name), Ok(Some(_))));
        h.append(&name, HeaderValue::from_static("Basic b"));
        assert_eq!(single_header(&h, &name), Err(RepeatedHeader));
    }
}
