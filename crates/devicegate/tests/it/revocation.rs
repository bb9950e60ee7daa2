//! Taking tokens back (RFC 7009) and asking about them (RFC 7662), with the `oauth2` crate
//! as the client and resource server; and a device code presented again after its
//! redemption, which revokes what it gave.

use oauth2::basic::BasicClient;
use oauth2::{
    AccessToken, ClientId, ClientSecret, IntrospectionUrl, RefreshToken, RevocationUrl,
    StandardRevocableToken, TokenIntrospectionResponse,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

/// The `oauth2` crate's HTTP client, trusting the test's https front.
fn http(cert: &[u8]) -> oauth2::reqwest::Client {
    oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .add_root_certificate(oauth2::reqwest::Certificate::from_der(cert).unwrap())
        .build()
        .unwrap()
}

/// A server with a device client `tv`, another `radio`, a resource server `rs` (confidential;
/// its secret returned) and `ann`.
async fn server() -> (TestServer, String) {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.public_client("radio", 1).await;
    let secret = s.confidential_client("rs").await;
    s.user("ann").await;
    (s, secret)
}

async fn userinfo(s: &TestServer, access_token: &str) -> StatusCode {
    s.http
        .get(s.url("/oauth2/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn refresh(s: &TestServer, client: &str, token: &str) -> (StatusCode, Value) {
    let (status, _, body) = s
        .form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client),
                ("refresh_token", token),
            ],
        )
        .await;
    (status, body)
}

fn text<'a>(tokens: &'a Value, name: &str) -> &'a str {
    tokens[name].as_str().unwrap()
}

#[tokio::test]
async fn revoke_and_introspect_with_the_oauth2_crate() {
    let (s, rs_secret) = server().await;
    // The oauth2 crate revokes over https only (RFC 7009 §2 requires TLS).
    let addr = s.running.as_ref().unwrap().addr;
    let (https, cert) = https_front(addr).await;
    let http = http(&cert);
    let resource_server = BasicClient::new(ClientId::new("rs".into()))
        .set_client_secret(ClientSecret::new(rs_secret.clone()))
        .set_introspection_url(
            IntrospectionUrl::new(format!("{https}/oauth2/introspect")).unwrap(),
        );
    let device = BasicClient::new(ClientId::new("tv".into()))
        .set_auth_type(oauth2::AuthType::RequestBody)
        .set_revocation_url(RevocationUrl::new(format!("{https}/oauth2/revoke")).unwrap());
    let introspect = async |token: &str| {
        resource_server
            .introspect(&AccessToken::new(token.to_owned()))
            .request_async(&http)
            .await
            .unwrap()
    };

    // Discovery names both endpoints.
    let (_, _, meta) = s
        .api("GET", "/.well-known/openid-configuration", None)
        .await;
    assert_eq!(meta["revocation_endpoint"], s.url("/oauth2/revoke"));
    assert_eq!(meta["introspection_endpoint"], s.url("/oauth2/introspect"));

    // A live token set: both tokens are active, with their claims.
    let t = s.tokens("tv", "openid offline_access", "ann").await;
    let at = introspect(text(&t, "access_token")).await;
    assert!(at.active());
    assert_eq!(at.client_id().map(|c| c.as_str()), Some("tv"));
    assert!(at.sub().is_some());
    assert_eq!(
        at.scopes().map(|s| s.len()),
        Some(2),
        "openid offline_access"
    );
    let rt = introspect(text(&t, "refresh_token")).await;
    assert!(rt.active());
    // Garbage and unknown tokens are inactive, not errors.
    for junk in ["x.y.z", "dgr_nope", "eyJhbGciOiJub25lIn0.e30."] {
        assert!(!introspect(junk).await.active(), "{junk:?}");
    }
    // A device may not introspect: it is no resource server.
    let (status, _, body) = s
        .form(
            "/oauth2/introspect",
            &[("client_id", "tv"), ("token", text(&t, "access_token"))],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unauthorized_client");

    // Another client's token is not revoked by `tv` (200 all the same).
    let radio = s.tokens("radio", "openid offline_access", "ann").await;
    device
        .revoke_token(StandardRevocableToken::RefreshToken(RefreshToken::new(
            text(&radio, "refresh_token").to_owned(),
        )))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let (status, _) = refresh(&s, "radio", text(&radio, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);

    // An access token alone: refused by userinfo and introspection from now on; the device's
    // refresh token still works, and the next access token with it.
    assert_eq!(userinfo(&s, text(&t, "access_token")).await, StatusCode::OK);
    device
        .revoke_token(StandardRevocableToken::AccessToken(AccessToken::new(
            text(&t, "access_token").to_owned(),
        )))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        userinfo(&s, text(&t, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!introspect(text(&t, "access_token")).await.active());
    let (status, renewed) = refresh(&s, "tv", text(&t, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(
        userinfo(&s, text(&renewed, "access_token")).await,
        StatusCode::OK
    );

    // A refresh token: its whole family goes, and the family's access tokens with it.
    device
        .revoke_token(StandardRevocableToken::RefreshToken(RefreshToken::new(
            text(&renewed, "refresh_token").to_owned(),
        )))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    let (status, body) = refresh(&s, "tv", text(&renewed, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        userinfo(&s, text(&renewed, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(!introspect(text(&renewed, "access_token")).await.active());
    assert!(!introspect(text(&renewed, "refresh_token")).await.active());

    // An unknown token: 200, as RFC 7009 §2.2 says. A bad client: 401.
    let (status, _, _) = s
        .form("/oauth2/revoke", &[("client_id", "tv"), ("token", "nope")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = s
        .form(
            "/oauth2/revoke",
            &[("client_id", "nobody"), ("token", "nope")],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let (status, _, body) = s.form("/oauth2/revoke", &[("client_id", "tv")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");

    // Another tenant's resource server learns nothing of this tenant's tokens.
    s.tenant("acme").await;
    let acme_secret =
        devicegate_core::Secret::generate(devicegate_core::secret::SecretKind::ClientSecret);
    s.client(devicegate_store::ClientRecord {
        tenant: "acme".into(),
        ..client_record("rs", Some(acme_secret.hash()))
    })
    .await;
    let live = s.tokens("tv", "openid offline_access", "ann").await;
    for token in [text(&live, "access_token"), text(&live, "refresh_token")] {
        let (status, _, body) = s
            .form(
                "/t/acme/oauth2/introspect",
                &[
                    ("client_id", "rs"),
                    ("client_secret", acme_secret.expose()),
                    ("token", token),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, serde_json::json!({"active": false}));
    }
    assert!(introspect(text(&live, "access_token")).await.active());
}

#[tokio::test]
async fn a_device_code_presented_again_revokes_what_it_gave() {
    let (s, rs_secret) = server().await;
    let d = s
        .device_authorization("tv", Some("openid offline_access"))
        .await;
    s.decide(text(&d, "user_code"), "ann", true).await;
    let (status, t) = s.poll("tv", text(&d, "device_code")).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    // At once again (a retried request of the same device): refused, and nothing revoked.
    let (status, body) = s.poll("tv", text(&d, "device_code")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(userinfo(&s, text(&t, "access_token")).await, StatusCode::OK);
    // Later: someone else holds the code. Everything it gave is revoked.
    sleep_ms(2_100).await;
    let (status, body) = s.poll("tv", text(&d, "device_code")).await;
    assert_eq!(body["error"], "invalid_grant", "{status}");
    assert_eq!(
        userinfo(&s, text(&t, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = refresh(&s, "tv", text(&t, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, _, body) = s
        .form(
            "/oauth2/introspect",
            &[
                ("client_id", "rs"),
                ("client_secret", &rs_secret),
                ("token", text(&t, "access_token")),
            ],
        )
        .await;
    assert_eq!(body, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn a_custom_ui_lists_and_signs_out_a_persons_devices_with_its_kept_session() {
    let (s, _) = server().await;
    s.user("bob").await;
    let tv = s.tokens("tv", "openid offline_access", "ann").await;
    let radio = s.tokens("radio", "openid offline_access", "ann").await;
    let bobs = s.tokens("tv", "openid offline_access", "bob").await;
    // Ann signs on in a custom UI, which keeps her session.
    let flow = s.new_flow().await;
    let (status, on) = s
        .act(
            &flow,
            serde_json::json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{on}");
    let session = text(&on, "session").to_owned();
    let devices = async |session: &str| {
        s.http
            .get(s.url("/api/v1/account/devices"))
            .bearer_auth(session)
            .send()
            .await
            .unwrap()
    };
    let listed: Value = devices(&session).await.json().await.unwrap();
    let listed = listed.as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["client"]["id"], "radio", "newest first");
    assert_eq!(listed[1]["client"]["name"], "tv app");
    assert_eq!(listed[1]["ip"], "127.0.0.1");
    assert!(
        listed[1]["scopes"]
            .as_array()
            .unwrap()
            .contains(&"offline_access".into())
    );
    let sid = |t: &Value| {
        claims(text(t, "access_token")).1["sid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(listed[1]["id"], sid(&tv).as_str());
    // Without a kept session, or with a browser's, nothing.
    assert_eq!(devices("dga_nope").await.status(), StatusCode::UNAUTHORIZED);
    let res = s
        .http
        .get(s.url("/api/v1/account/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Bob's device is not Ann's to sign out.
    let delete = async |id: &str| {
        s.http
            .delete(s.url(&format!("/api/v1/account/devices/{id}")))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(delete(&sid(&bobs)).await, StatusCode::NOT_FOUND);
    let (status, _) = refresh(&s, "tv", text(&bobs, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    // Her tv: signed out, its tokens refused; her radio stays.
    assert_eq!(delete(&sid(&tv)).await, StatusCode::NO_CONTENT);
    assert_eq!(delete(&sid(&tv)).await, StatusCode::NOT_FOUND);
    let (status, _) = refresh(&s, "tv", text(&tv, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        userinfo(&s, text(&tv, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        userinfo(&s, text(&radio, "access_token")).await,
        StatusCode::OK
    );
    let listed: Value = devices(&session).await.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn operators_list_and_revoke_devices_revoke_and_disable_people_and_update_clients() {
    let (s, rs_secret) = server().await;
    let dir = s.dir.path().to_owned();
    let cli = |args: &[&str]| {
        let (ok, out, err) = crate::cli::run(&dir, args, None);
        assert!(ok, "{args:?}: {err}");
        out
    };
    let introspect = async |token: &str| {
        let (_, _, body) = s
            .form(
                "/oauth2/introspect",
                &[
                    ("client_id", "rs"),
                    ("client_secret", &rs_secret),
                    ("token", token),
                ],
            )
            .await;
        body["active"] == true
    };

    // grant list / grant revoke.
    let tv = s.tokens("tv", "openid offline_access", "ann").await;
    let radio = s.tokens("radio", "openid offline_access", "ann").await;
    let listed: Value = serde_json::from_str(&cli(&["grant", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let only_tv: Value =
        serde_json::from_str(&cli(&["grant", "list", "--client", "tv", "--json"])).unwrap();
    let only_tv = only_tv.as_array().unwrap();
    assert_eq!(only_tv.len(), 1);
    assert_eq!(only_tv[0]["user"], "ann");
    assert_eq!(only_tv[0]["ip"], "127.0.0.1");
    let id = only_tv[0]["id"].as_str().unwrap().to_owned();
    cli(&["grant", "revoke", &id]);
    assert!(!introspect(text(&tv, "access_token")).await);
    let (status, _) = refresh(&s, "tv", text(&tv, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        introspect(text(&radio, "access_token")).await,
        "the radio stays"
    );
    let (ok, _, err) = crate::cli::run(&dir, &["grant", "revoke", &id], None);
    assert!(!ok && err.contains(&id), "{err}");

    // user revoke: every device, and a code ann approved that no device redeemed yet.
    let d = s
        .device_authorization("tv", Some("openid offline_access"))
        .await;
    s.decide(text(&d, "user_code"), "ann", true).await;
    cli(&["user", "revoke", "ann"]);
    let (status, body) = s.poll("tv", text(&d, "device_code")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "access_denied");
    assert!(!introspect(text(&radio, "access_token")).await);
    assert_eq!(
        userinfo(&s, text(&radio, "access_token")).await,
        StatusCode::UNAUTHORIZED
    );
    // She signs in again afterwards (past the second of the revocation, whose tokens all
    // count as revoked), and that works.
    sleep_ms(1_100).await;
    let again = s.tokens("tv", "openid offline_access", "ann").await;
    assert!(introspect(text(&again, "access_token")).await);

    // user disable: nothing of hers stands, and she cannot sign in; enable lets her back.
    cli(&["user", "disable", "ann"]);
    assert!(!introspect(text(&again, "access_token")).await);
    let (status, _) = refresh(&s, "tv", text(&again, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let flow = s.new_flow().await;
    let (status, body) = s
        .act(
            &flow,
            serde_json::json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    cli(&["user", "enable", "ann"]);
    let (status, body) = s
        .act(
            &flow,
            serde_json::json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !introspect(text(&again, "access_token")).await,
        "what was revoked stays revoked"
    );

    // client update: a new name and a narrower scope, without delete and re-create.
    cli(&[
        "client",
        "update",
        "tv",
        "--name",
        "Living room TV",
        "--scope",
        "openid",
    ]);
    let clients: Value = serde_json::from_str(&cli(&["client", "list", "--json"])).unwrap();
    let tv_client = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "tv")
        .unwrap()
        .clone();
    assert_eq!(tv_client["name"], "Living room TV");
    assert_eq!(tv_client["scope"], "openid");
    assert_eq!(tv_client["public"], true, "still public, no secret made");
    let (ok, _, err) = crate::cli::run(&dir, &["client", "update", "nope", "--name", "x"], None);
    assert!(!ok && err.contains("nope"), "{err}");

    // key rotate: published at once (pending), while the old key still signs.
    let signing_kid = |t: &Value| claims(text(t, "access_token")).0["kid"].clone();
    let before = s.tokens("radio", "openid", "ann").await;
    cli(&["key", "rotate", "--key-publish-secs", "3600"]);
    let keys: Value = serde_json::from_str(&cli(&["key", "list", "--json"])).unwrap();
    let state_of = |kid: &Value| {
        keys.as_array()
            .unwrap()
            .iter()
            .find(|k| &k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&signing_kid(&before)), Some("signing".into()));
    let pending: Vec<_> = keys
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{keys}");
    // Running servers read the keys again within seconds: the JWKS names it, nothing signs
    // with it yet.
    let mut published = false;
    for _ in 0..70 {
        let (_, _, jwks) = s.api("GET", "/oauth2/jwks", None).await;
        if jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == pending[0]["kid"])
        {
            published = true;
            break;
        }
        sleep_ms(100).await;
    }
    assert!(published, "the new key is never published");
    let after = s.tokens("radio", "openid", "ann").await;
    assert_eq!(signing_kid(&after), signing_kid(&before));
}
