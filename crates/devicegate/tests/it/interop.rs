//! Independent client libraries against devicegate: the `oauth2` crate's device flow, and the
//! `openidconnect` crate's discovery and ID-token verification.

use std::sync::Arc;

use devicegate_core::keys::Algorithm;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, ClientId, DeviceAuthorizationUrl, IssuerUrl, Nonce,
    OAuth2TokenResponse, ProviderMetadata, Scope,
};
use serde::{Deserialize, Serialize};

use crate::support::*;

fn http() -> openidconnect::reqwest::Client {
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Approves `user_code` as `ann` once the device starts polling.
fn approve_soon(s: &Arc<TestServer>, user_code: String) -> tokio::task::JoinHandle<()> {
    let s = s.clone();
    tokio::spawn(async move {
        sleep_ms(300).await;
        s.decide(&user_code, "ann", true).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_crate_device_flow_completes() {
    use oauth2::basic::BasicClient;
    use oauth2::{
        DeviceAuthorizationUrl, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
    };

    let s = Arc::new(TestServer::start().await);
    s.public_client("cli", 1).await;
    s.user("ann").await;
    let client = BasicClient::new(oauth2::ClientId::new("cli".into()))
        .set_auth_type(oauth2::AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(s.url("/oauth2/token")).unwrap())
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(s.url("/oauth2/device_authorization")).unwrap(),
        );
    let http = http();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(oauth2::Scope::new("openid".into()))
        .add_scope(oauth2::Scope::new("offline_access".into()))
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(details.verification_uri().as_str(), s.url("/device"));
    let approver = approve_soon(&s, details.user_code().secret().clone());
    let token = client
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, None)
        .await
        .unwrap();
    approver.await.unwrap();
    assert!(token.refresh_token().is_some());
    assert_eq!(token.scopes().map(|s| s.len()), Some(2));
    let (header, _) = claims(token.access_token().secret());
    assert_eq!(header["typ"], "at+jwt");

    // And the library's refresh request works against the rotation.
    let refreshed = client
        .exchange_refresh_token(token.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        token.refresh_token().unwrap().secret()
    );
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceEndpoint {
    device_authorization_endpoint: DeviceAuthorizationUrl,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}
type DeviceProviderMetadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openidconnect_crate_discovers_and_verifies_the_id_token() {
    for (alg, lib_alg) in [
        (
            Algorithm::Rs256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ),
        (Algorithm::Es256, CoreJwsSigningAlgorithm::EcdsaP256Sha256),
        (Algorithm::EdDsa, CoreJwsSigningAlgorithm::EdDsa),
    ] {
        let s = Arc::new(TestServer::start_with(|c| c.signing_alg = alg).await);
        s.public_client("cli", 1).await;
        let sub = s.user("ann").await;
        let http = http();
        let meta =
            DeviceProviderMetadata::discover_async(IssuerUrl::new(s.base.clone()).unwrap(), &http)
                .await
                .unwrap();
        let device_url = meta
            .additional_metadata()
            .device_authorization_endpoint
            .clone();
        let client = CoreClient::from_provider_metadata(meta, ClientId::new("cli".into()), None)
            .set_device_authorization_url(device_url)
            .set_auth_type(AuthType::RequestBody);
        let details: CoreDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .request_async(&http)
            .await
            .unwrap();
        let approver = approve_soon(&s, details.user_code().secret().clone());
        let token = client
            .exchange_device_access_token(&details)
            .unwrap()
            .request_async(&http, tokio::time::sleep, None)
            .await
            .unwrap();
        approver.await.unwrap();
        let id_token = token
            .extra_fields()
            .id_token()
            .expect("an ID token for openid");
        let verifier = client.id_token_verifier().set_allowed_algs([lib_alg]);
        let c = id_token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .unwrap();
        assert_eq!(c.subject().as_str(), sub, "{alg:?}");
        assert_eq!(c.email().map(|e| e.as_str()), Some("ann@example.com"));
        assert_eq!(c.preferred_username().map(|u| u.as_str()), Some("ann"));
        assert!(token.access_token().secret().starts_with("ey"));
    }
}
