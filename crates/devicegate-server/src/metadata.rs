//! RFC 8414 and OpenID Connect Discovery metadata, and the JWK Set, as a tenant's documents:
//! built once when the tenant is loaded, served by `discovery.rs`. Builders apart from
//! handlers, so that the tenant (which holds these) and the handlers (which read the tenant)
//! do not import each other.

use devicegate_core::scope;
use devicegate_proto::{GrantType, ServerMetadata};

use crate::KeySet;

#[derive(Debug)]
pub struct Documents {
    pub(crate) openid: String,
    pub(crate) oauth: String,
    pub(crate) jwks: String,
}

impl Documents {
    pub fn new(issuer: &str, keys: &KeySet) -> Documents {
        let meta = ServerMetadata {
            issuer: issuer.to_owned(),
            device_authorization_endpoint: format!("{issuer}/oauth2/device_authorization"),
            token_endpoint: format!("{issuer}/oauth2/token"),
            jwks_uri: format!("{issuer}/oauth2/jwks"),
            userinfo_endpoint: format!("{issuer}/oauth2/userinfo"),
            grant_types_supported: GrantType::all_names(),
            scopes_supported: scope::KNOWN.iter().map(|s| (*s).to_owned()).collect(),
            // Only the device grant issues tokens: no browser redirect flow is offered, and
            // `none` says so while keeping the member that both specifications require.
            response_types_supported: vec!["none".into()],
            subject_types_supported: vec!["public".into()],
            id_token_signing_alg_values_supported: keys.id_token_algorithms(),
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic".into(),
                "client_secret_post".into(),
                "none".into(),
            ],
            claims_supported: [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "azp",
                "name",
                "preferred_username",
                "email",
                "email_verified",
            ]
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
            revocation_endpoint: format!("{issuer}/oauth2/revoke"),
            revocation_endpoint_auth_methods_supported: vec![
                "client_secret_basic".into(),
                "client_secret_post".into(),
                "none".into(),
            ],
            introspection_endpoint: format!("{issuer}/oauth2/introspect"),
            // Resource servers hold a secret: no `none`.
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic".into(),
                "client_secret_post".into(),
            ],
            authorization_endpoint: None,
        };
        // OpenID Connect Discovery requires an authorization endpoint; ours refuses every
        // response type with `unsupported_response_type`. RFC 8414 lets us leave it out.
        let openid = ServerMetadata {
            authorization_endpoint: Some(format!("{issuer}/oauth2/authorize")),
            ..meta.clone()
        };
        Documents {
            openid: serde_json::to_string(&openid).unwrap_or_default(),
            oauth: serde_json::to_string(&meta).unwrap_or_default(),
            jwks: keys.jwks().to_string(),
        }
    }
}
