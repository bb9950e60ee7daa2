//! Passkeys in real headless Chromium with a WebDriver virtual authenticator (the W3C
//! WebAuthn extension commands chromedriver implements): registered on the account page,
//! used to sign in without a username on the pages and through the flows API, refused when
//! cloned or made for another relying party. The server's issuer is `http://localhost:PORT`
//! (an IP address cannot be a relying party); `evil.localhost` is another site on the same
//! machine, which Chromium resolves to the loopback address like `localhost`.

use fantoccini::wd::WebDriverCompatibleCommand;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::browser::{Browser, DESKTOP};
use crate::support::*;

/// One command of the WebDriver WebAuthn extension.
#[derive(Debug)]
struct WebAuthn {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(|b| b.to_string()),
        )
    }
}

async fn webauthn(b: &Browser, method: http::Method, path: &str, body: Option<Value>) -> Value {
    b.client
        .issue_cmd(WebAuthn {
            method,
            path: path.to_owned(),
            body,
        })
        .await
        .unwrap_or_else(|e| panic!("webauthn {path}: {e}"))
}

/// A platform authenticator that keeps discoverable credentials and verifies its user (as a
/// phone's or laptop's screen lock does); returns its id.
async fn add_authenticator(b: &Browser) -> String {
    add_authenticator_syncing(b, false).await
}

/// The same, `synced` or not: a passkey provider that backs its keys up to the person's
/// other devices sets the backup flags.
async fn add_authenticator_syncing(b: &Browser, synced: bool) -> String {
    let v = webauthn(
        b,
        http::Method::POST,
        "authenticator",
        Some(json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
            "defaultBackupEligibility": synced,
            "defaultBackupState": synced,
        })),
    )
    .await;
    v.as_str().unwrap().to_owned()
}

async fn credentials(b: &Browser, authenticator: &str) -> Vec<Value> {
    let v = webauthn(
        b,
        http::Method::GET,
        &format!("authenticator/{authenticator}/credentials"),
        None,
    )
    .await;
    v.as_array().unwrap().clone()
}

/// A server on `http://localhost:PORT` and a browser with an authenticator in which `ann`
/// registered a passkey named `name`: the base URL and the authenticator's id.
async fn registered(name: &str) -> (TestServer, String, Browser, String) {
    let (s, web) = server().await;
    let b = Browser::start(DESKTOP).await;
    let authenticator = add_authenticator(&b).await;
    register_passkey(&b, &web, "", name).await;
    (s, web, b, authenticator)
}

/// A server on `http://localhost:PORT`, with a public client `tv` and a person `ann`.
async fn server() -> (TestServer, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let issuer = web.clone();
    let s = TestServer::start_on(listener, move |st| st.issuer = issuer).await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    (s, web)
}

/// Signs in on the account page under `base` (a tenant's path prefix, or "") with the
/// password and adds a passkey named `name`.
async fn register_passkey(b: &Browser, web: &str, base: &str, name: &str) {
    b.goto(&format!("{web}{base}/account/security")).await;
    b.click(&format!("form[action='{base}/account/signin'] button"))
        .await;
    assert_eq!(b.path().await, format!("{base}/device/signin"));
    b.fill("input[name=username]", "ann").await;
    b.fill("input[name=password]", PASSWORD).await;
    b.click(&format!(
        "form[action^='{base}/device/signin'] button[type=submit]"
    ))
    .await;
    assert_eq!(b.path().await, format!("{base}/account/security"));
    b.shows(&["Passkeys", "You have no passkeys yet."]).await;
    b.fill("input[name=name]", name).await;
    b.click("form[data-passkey=create] button").await;
    assert_eq!(b.path().await, format!("{base}/account/security"));
    b.shows(&["Passkey added.", name, "on one device only"])
        .await;
}

async fn sign_out(b: &Browser, base: &str) {
    b.click("form.signout button").await;
    assert_eq!(b.path().await, format!("{base}/device"));
}

async fn enter_code(b: &Browser, web: &str, base: &str, code: &str) {
    b.goto(&format!("{web}{base}/device")).await;
    b.fill("input[name=user_code]", code).await;
    b.click(&format!("form[action='{base}/device'] button[type=submit]"))
        .await;
}

/// Waits until the browser is at `path` (the page's script moves on by itself).
async fn arrives(b: &Browser, path: &str) {
    for _ in 0..250 {
        if b.path().await == path {
            let _ = b
                .client
                .wait()
                .for_element(fantoccini::Locator::Css("body"))
                .await;
            return;
        }
        sleep_ms(20).await;
    }
    panic!(
        "never reached {path}: at {} with {}",
        b.path().await,
        b.text().await
    );
}

#[tokio::test]
async fn a_passkey_from_the_account_page_alone_approves_a_device() {
    let (s, web, b, authenticator) = registered("work laptop").await;
    b.shot("account-security-passkey").await;
    let ann = s
        .store()
        .get_user_by_username(devicegate_store::DEFAULT_TENANT, "ann")
        .await
        .unwrap();
    let stored = s
        .store()
        .list_passkeys(devicegate_store::DEFAULT_TENANT, &ann.id)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "work laptop");
    assert!(!stored[0].backup_eligible);
    // The authenticator made a discoverable credential for this relying party.
    let creds = credentials(&b, &authenticator).await;
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0]["rpId"], "localhost");
    assert_eq!(creds[0]["isResidentCredential"], true);
    sign_out(&b, "").await;

    // A device asks; the person signs in with the passkey alone: no username, no password.
    let d = s
        .device_authorization("tv", Some("openid profile offline_access"))
        .await;
    // The sign-in page offers it in the username field's autofill (conditional mediation),
    // which the virtual authenticator answers at once, as a person picking it would.
    enter_code(&b, &web, "", d["user_code"].as_str().unwrap()).await;
    arrives(&b, "/device/consent").await;
    b.shows(&["ann"]).await;
    b.decide("approve").await;
    assert_eq!(b.path().await, "/device/done");
    let (status, tokens) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, id) = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], json!(["hwk", "mfa"]));
    assert_eq!(id["sub"], ann.id.as_str());
    // The sign-in moved the stored counter forward and noted the use.
    let used = s
        .store()
        .get_passkey(devicegate_store::DEFAULT_TENANT, &stored[0].credential_id)
        .await
        .unwrap();
    assert!(used.sign_count > stored[0].sign_count, "{used:?}");
    assert!(used.last_used_at.is_some());

    // The account page lists it; renaming and removing work, and a removed passkey signs
    // nobody in.
    b.goto(&format!("{web}/account/security")).await;
    b.shows(&["work laptop", "last used"]).await;
    b.fill(
        "form[action='/account/passkeys/rename'] input[name=name]",
        "old laptop",
    )
    .await;
    b.click("form[action='/account/passkeys/rename'] button")
        .await;
    b.shows(&["Passkey renamed.", "old laptop"]).await;
    // Another sign-in of ann's (a custom UI's kept session) ends with the passkey's removal;
    // this browser's stays.
    let other = flow_with_code(&s).await;
    let (status, body) = s
        .act(
            &other,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kept = body["session"].clone();
    b.click("form[action='/account/passkeys/remove'] button")
        .await;
    b.shows(&["Passkey removed.", "You have no passkeys yet."])
        .await;
    let again = flow_with_code(&s).await;
    let (status, body) = s
        .act(&again, json!({"action": "session.resume", "session": kept}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    sign_out(&b, "").await;
    let d = s.device_authorization("tv", Some("openid")).await;
    enter_code(&b, &web, "", d["user_code"].as_str().unwrap()).await;
    for _ in 0..250 {
        if b.text().await.contains("That passkey did not sign you in.") {
            break;
        }
        sleep_ms(20).await;
    }
    assert_eq!(b.path().await, "/device/passkey");
    b.shows(&["That passkey did not sign you in.", "Password"])
        .await;
    // Tried once by the autofill, not again and again: the page with the error offers the
    // button instead.
    let form = b
        .client
        .find(fantoccini::Locator::Css("form[data-passkey=get]"))
        .await
        .unwrap();
    assert_eq!(
        form.attr("data-autofill").await.unwrap().as_deref(),
        Some("off")
    );
    b.finish().await;
}

/// The JavaScript a custom UI runs: asks the browser to sign the options (as the flows API
/// gave them, with `rpId` optionally replaced) and returns the answer as JSON.
const ASSERT: &str = r#"
const [options, rpId, done] = arguments;
const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)).buffer;
const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const pk = options.publicKey;
pk.challenge = dec(pk.challenge);
if (rpId) { pk.rpId = rpId; }
for (const c of pk.allowCredentials || []) { c.id = dec(c.id); }
navigator.credentials.get({ publicKey: pk }).then((cred) => done({
  id: cred.id, rawId: enc(cred.rawId), type: cred.type,
  response: {
    authenticatorData: enc(cred.response.authenticatorData),
    clientDataJSON: enc(cred.response.clientDataJSON),
    signature: enc(cred.response.signature),
    userHandle: cred.response.userHandle ? enc(cred.response.userHandle) : null,
  },
  extensions: {},
}), (err) => done({ error: String(err) }));
"#;

/// A flow of the flows API with the device's code entered, waiting for sign-on.
async fn flow_with_code(s: &TestServer) -> String {
    let d = s.device_authorization("tv", Some("openid")).await;
    let flow = s.new_flow().await;
    let (status, body) = s
        .act(
            &flow,
            json!({"action": "user_code.verify", "user_code": d["user_code"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "SIGN_ON_REQUIRED");
    flow
}

async fn options(s: &TestServer, flow: &str) -> Value {
    let (status, body) = s.act(flow, json!({"action": "webauthn.options"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["webauthn_options"].clone()
}

async fn verify(s: &TestServer, flow: &str, answer: &Value) -> (StatusCode, Value) {
    s.act(
        flow,
        json!({"action": "webauthn.verify", "credential": answer}),
    )
    .await
}

/// `answer` is refused (401) and the flow still waits for sign-on.
async fn refused(s: &TestServer, flow: &str, answer: &Value) {
    let (status, body) = verify(s, flow, answer).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (_, _, body) = s.api("GET", &format!("/api/v1/flows/{flow}"), None).await;
    assert_eq!(body["status"], "SIGN_ON_REQUIRED", "{body}");
}

/// Removes authenticator `old` and adds a new one holding `credential`; returns its id.
async fn another_authenticator(b: &Browser, old: &str, credential: Value) -> String {
    webauthn(
        b,
        http::Method::DELETE,
        &format!("authenticator/{old}"),
        None,
    )
    .await;
    let new = add_authenticator(b).await;
    put_credential(b, &new, credential).await;
    new
}

async fn put_credential(b: &Browser, authenticator: &str, credential: Value) {
    webauthn(
        b,
        http::Method::POST,
        &format!("authenticator/{authenticator}/credential"),
        Some(credential),
    )
    .await;
}

async fn assertion(b: &Browser, options: &Value, rp_id: Option<&str>) -> Value {
    let v = b
        .client
        .execute_async(ASSERT, vec![options.clone(), json!(rp_id)])
        .await
        .unwrap();
    assert!(v.get("error").is_none(), "{v}");
    v
}

#[tokio::test]
async fn the_flows_api_signs_on_with_a_passkey_and_refuses_replays_clones_and_other_sites() {
    let (s, web, b, authenticator) = registered("phone").await;
    b.goto(&format!("{web}/device")).await;

    // A custom UI on the issuer's origin: options, the browser's answer, signed on.
    let flow = flow_with_code(&s).await;
    let o = options(&s, &flow).await;
    assert_eq!(o["publicKey"]["rpId"], "localhost");
    assert_eq!(o["publicKey"]["userVerification"], "required");
    let answer = assertion(&b, &o, None).await;
    let (status, body) = verify(&s, &flow, &answer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "CONSENT_REQUIRED");
    assert_eq!(body["username"], "ann");
    assert!(body["session"].as_str().unwrap().starts_with("dga_"));
    // The same answer again, even with fresh options for another flow, is refused: its
    // challenge was taken, and its counter was used.
    let (status, body) = verify(&s, &flow, &answer).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let other = flow_with_code(&s).await;
    options(&s, &other).await;
    refused(&s, &other, &answer).await;

    // A cloned authenticator: the same key in a second authenticator whose counter starts
    // over. Its signature is good; its counter is behind, so it is refused.
    let cred = credentials(&b, &authenticator).await.remove(0);
    let copy = |rp: &str, count: u64| {
        let mut c = cred.clone();
        c["rpId"] = json!(rp);
        c["signCount"] = json!(count);
        c
    };
    let clone = another_authenticator(&b, &authenticator, copy("localhost", 0)).await;
    let flow = flow_with_code(&s).await;
    let o = options(&s, &flow).await;
    refused(&s, &flow, &assertion(&b, &o, None).await).await;

    // Another site (evil.localhost) with the very same key, its counter well ahead: what it
    // gets signed names its own relying party and origin, and is refused here.
    another_authenticator(&b, &clone, copy("evil.localhost", 1000)).await;
    let port = web.rsplit(':').next().unwrap();
    b.goto(&format!("http://evil.localhost:{port}/device"))
        .await;
    let o = options(&s, &flow).await;
    refused(&s, &flow, &assertion(&b, &o, Some("evil.localhost")).await).await;
    b.finish().await;
}

#[tokio::test]
async fn a_passkey_as_the_second_step_and_alone_where_passwords_are_off() {
    let (s, _web, b, authenticator) = registered("laptop").await;
    sign_out(&b, "").await;
    let cred = credentials(&b, &authenticator).await.remove(0);
    let id = cred["credentialId"].as_str().unwrap().to_owned();
    let creds = format!("authenticator/{authenticator}/credentials/{id}");
    let t = devicegate_store::DEFAULT_TENANT;

    // Second factors become optional: a person with a passkey gives it after the password.
    // (The passkey is out of the authenticator while the password is typed, so that the
    // sign-in page's autofill cannot take it first; then it is back, a little further on.)
    s.store().set_second_factor(t, "optional").await.unwrap();
    let (web2, _second) = s.another_instance("localhost").await;
    webauthn(&b, http::Method::DELETE, &creds, None).await;
    let d = s.device_authorization("tv", Some("openid")).await;
    enter_code(&b, &web2, "", d["user_code"].as_str().unwrap()).await;
    assert_eq!(b.path().await, "/device/signin");
    b.sign_in("ann", PASSWORD).await;
    assert_eq!(b.path().await, "/device/factor");
    b.shows(&["Use a passkey"]).await;
    b.shot("factor-passkey").await;
    let mut back = cred.clone();
    back["signCount"] = json!(cred["signCount"].as_u64().unwrap() + 10);
    put_credential(&b, &authenticator, back).await;
    b.click("form[data-passkey=get] button").await;
    assert_eq!(b.path().await, "/device/consent");
    b.decide("approve").await;
    let (status, tokens) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, idt) = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(idt["amr"], json!(["pwd", "hwk", "mfa"]));
    sign_out(&b, "").await;

    // Passwords off: the sign-in page is the passkey alone, and it signs in.
    s.store().set_local_passwords(t, false).await.unwrap();
    let (web3, _third) = s.another_instance("localhost").await;
    let d = s.device_authorization("tv", Some("openid")).await;
    enter_code(&b, &web3, "", d["user_code"].as_str().unwrap()).await;
    assert_eq!(b.path().await, "/device/signin");
    assert!(
        b.client
            .find(fantoccini::Locator::Css("input[name=password]"))
            .await
            .is_err()
    );
    b.shot("signin-passkeys-only").await;
    b.click("form[data-passkey=get] button").await;
    assert_eq!(b.path().await, "/device/consent");
    b.decide("approve").await;
    let (status, tokens) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, idt) = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(idt["amr"], json!(["hwk", "mfa"]));
    // And the next device of this browser goes straight to consent: a passkey's sign-on
    // carries over where passwords are off.
    let d = s.device_authorization("tv", Some("openid")).await;
    enter_code(&b, &web3, "", d["user_code"].as_str().unwrap()).await;
    assert_eq!(b.path().await, "/device/consent");
    sign_out(&b, "").await;

    // Someone new, with no password at all: the operator's one-time link lets them set up a
    // passkey, and signs them in to nothing else.
    let cat = devicegate_store::UserRecord {
        id: devicegate_core::secret::random_id(),
        tenant: t.into(),
        username: "cat".into(),
        password_hash: String::new(),
        name: None,
        email: None,
        created_at: devicegate_server::now(),
        disabled: false,
    };
    s.store().create_user(&cat).await.unwrap();
    let (ok, out, err) = crate::cli::run(
        s.dir.path(),
        &["user", "passkey-link", "cat", "--issuer", &web3],
        None,
    );
    assert!(ok, "{err}");
    let link = out.split_whitespace().next().unwrap().to_owned();
    assert!(
        link.starts_with(&format!("{web3}/account/enroll?token=dge_")),
        "{out}"
    );
    // Cat's passkey provider syncs her keys (a software key, `swk`).
    webauthn(
        &b,
        http::Method::DELETE,
        &format!("authenticator/{authenticator}"),
        None,
    )
    .await;
    add_authenticator_syncing(&b, true).await;
    b.goto(&link).await;
    b.shows(&["set up a passkey for cat"]).await;
    b.click("form[action='/account/enroll'] button").await;
    assert_eq!(b.path().await, "/account/security");
    b.shows(&["cat", "You have no passkeys yet."]).await;
    b.fill("input[name=name]", "cat's phone").await;
    b.click("form[data-passkey=create] button").await;
    b.shows(&[
        "Passkey added.",
        "cat's phone",
        "synced between your devices",
    ])
    .await;
    // The link worked once.
    b.goto(&link).await;
    b.shows(&["This link has expired or was already used."])
        .await;
    // The link's sign-in approves no device: the passkey does.
    let d = s.device_authorization("tv", Some("openid")).await;
    enter_code(&b, &web3, "", d["user_code"].as_str().unwrap()).await;
    assert_eq!(b.path().await, "/device/signin");
    b.click("form[data-passkey=get] button").await;
    assert_eq!(b.path().await, "/device/consent");
    b.shows(&["cat"]).await;
    b.decide("approve").await;
    let (status, tokens) = s.poll("tv", d["device_code"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let (_, idt) = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(idt["amr"], json!(["swk", "mfa"]));
    assert_eq!(idt["sub"], cat.id.as_str());
    b.finish().await;
}

/// A well-formed answer that no authenticator made.
fn forged_answer() -> Value {
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    json!({
        "id": b64("no such credential"),
        "rawId": b64("no such credential"),
        "type": "public-key",
        "response": {
            "authenticatorData": b64("authenticator data"),
            "clientDataJSON": b64("{}"),
            "signature": b64("signature"),
            "userHandle": b64("0123456789abcdef"),
        },
        "extensions": {},
    })
}

#[tokio::test]
async fn failed_assertions_are_limited_per_address_and_bad_input_is_refused_plainly() {
    let (s, _web) = server().await;
    let flow = flow_with_code(&s).await;
    // Not JSON of a credential: 400, the flow as it was.
    let (status, body) = s
        .act(
            &flow,
            json!({"action": "webauthn.verify", "credential": {"id": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_request");
    // An answer with no options asked for: refused.
    refused(&s, &flow, &forged_answer()).await;
    // Forged answers, each against fresh options: the address's failed sign-ons run out
    // (30 a quarter hour), then every answer is refused before it is looked at.
    let mut refused = 1;
    loop {
        options(&s, &flow).await;
        let (status, body) = verify(&s, &flow, &forged_answer()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(body["retry_after"].as_u64().is_some() || body["error"] == "slow_down");
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        refused += 1;
        assert!(refused <= 30, "never limited");
    }
    assert_eq!(refused, 30);
    // The same address's password attempts share that limit.
    let (status, _) = s
        .act(
            &flow,
            json!({"action": "sign_on", "username": "ann", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (_, _, body) = s.api("GET", &format!("/api/v1/flows/{flow}"), None).await;
    assert_eq!(body["status"], "SIGN_ON_REQUIRED", "{body}");
}

#[tokio::test]
async fn a_server_that_cannot_be_a_relying_party_offers_no_passkeys() {
    // An IP address is no relying party id: passkeys are off, and the pages say nothing of
    // them.
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    s.user("ann").await;
    let flow = flow_with_code(&s).await;
    let (status, body) = s.act(&flow, json!({"action": "webauthn.options"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "invalid_action");
    let d = s.device_authorization("tv", Some("openid")).await;
    let b = crate::pages::browser();
    let entry = crate::pages::get(&b, s.url("/device")).await;
    let next = crate::pages::post(
        &b,
        s.url("/device"),
        &[
            ("csrf", &entry.csrf()),
            ("user_code", d["user_code"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(next.location(), "/device/signin");
    let page = crate::pages::get(&b, s.url("/device/signin")).await;
    assert!(page.html.contains("name=\"password\""), "{}", page.html);
    assert!(!page.html.contains("passkey"), "{}", page.html);
}
