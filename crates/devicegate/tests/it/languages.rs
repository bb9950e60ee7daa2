//! The person's own language over real HTTP: pages and the flows API's `error_description`
//! follow `Accept-Language`, OAuth endpoints keep English, and an operator can pin a
//! language or replace its words.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// An HTTP client whose every request asks for `lang`.
fn speaking(lang: &str) -> reqwest::Client {
    crate::pages::browser_sending(&[("accept-language", lang)])
}

async fn page(s: &TestServer, lang: &str) -> (String, String) {
    let res = speaking(lang).get(s.url("/device")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let served = res.headers()["content-language"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(res.headers()["vary"], "accept-language");
    (served, res.text().await.unwrap())
}

/// A wrong code through the flows API, as a custom UI in `lang` would send it.
async fn wrong_code(s: &TestServer, lang: &str) -> (StatusCode, Value) {
    let c = speaking(lang);
    let (_, _, f) = split(
        c.post(s.url("/api/v1/flows"))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let res = c
        .post(s.url(&format!("/api/v1/flows/{}", f["id"].as_str().unwrap())))
        .json(&json!({"action": "user_code.verify", "user_code": "BCDF-BCDF"}))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = split(res).await;
    assert_eq!(headers["content-language"], lang.split('-').next().unwrap());
    (status, body)
}

#[tokio::test]
async fn pages_and_the_flows_api_speak_the_language_the_browser_asks_for() {
    let s = TestServer::start().await;
    s.public_client("tv", 1).await;
    for (asked, served, title) in [
        ("fr-CA,fr;q=0.9,en;q=0.5", "fr", "Connecter un appareil"),
        ("de-AT", "de", "Gerät verbinden"),
        ("ja", "ja", "デバイスを接続"),
        ("es-MX", "es", "Conectar un dispositivo"),
        ("pt-BR", "pt", "Conectar um dispositivo"),
        ("sv,nb;q=0.8", "en", "Connect a device"),
        ("en-GB", "en", "Connect a device"),
    ] {
        let (lang, html) = page(&s, asked).await;
        assert_eq!(lang, served, "{asked}");
        assert!(
            html.contains(&format!(r#"<html lang="{served}">"#)),
            "{html}"
        );
        assert!(html.contains(title), "{asked}: {html}");
    }

    // The flows API: what a person reads, in their language, plurals and all.
    let (status, body) = wrong_code(&s, "de").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_user_code");
    assert_eq!(
        body["error_description"],
        "Dieser Code ist nicht richtig. Prüfen Sie den Code auf Ihrem Gerät und versuchen Sie es erneut. Noch 4 Versuche übrig."
    );
    let (_, body) = wrong_code(&s, "ja").await;
    assert_eq!(
        body["error_description"],
        "コードが正しくありません。デバイスに表示されているコードを確認して、もう一度お試しください。残り 4 回入力できます。"
    );
    let (_, body) = wrong_code(&s, "en").await;
    assert_eq!(
        body["error_description"],
        "That code is not right. Check the code on your device and try again. 4 attempts left."
    );
    // A malformed request and an unknown flow, too.
    let res = speaking("fr")
        .post(s.url("/api/v1/flows/nope"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(res).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let described = body["error_description"].as_str().unwrap();
    assert!(
        described.starts_with("Impossible de lire la requête : "),
        "{body}"
    );
    let res = speaking("es")
        .get(s.url("/api/v1/flows/dgf_unknown"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = split(res).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error_description"],
        "Este inicio de sesión no existe o ya terminó. Vuelve a empezar en tu dispositivo."
    );

    // OAuth endpoints answer developers, in RFC 6749's ASCII English, whatever is asked.
    let res = speaking("de")
        .post(s.url("/oauth2/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", "tv"),
            ("device_code", "nope"),
        ])
        .send()
        .await
        .unwrap();
    let (_, headers, body) = split(res).await;
    assert!(headers.get("content-language").is_none());
    assert!(
        body["error_description"].as_str().unwrap().is_ascii(),
        "{body}"
    );
}

#[tokio::test]
async fn an_operator_pins_a_language_or_replaces_its_words() {
    let words = tempfile::tempdir().unwrap();
    std::fs::write(
        words.path().join("de.ftl"),
        "# Our own wording.\nenter_title = Fernseher verbinden\n",
    )
    .unwrap();
    std::fs::write(
        words.path().join("nl.ftl"),
        "enter_title = Een apparaat koppelen\nenter_help = <script>alert(1)</script> Voer de code in.\n",
    )
    .unwrap();
    let dir = words.path().to_owned();
    let s = TestServer::start_with(|c| c.locales_dir = Some(dir)).await;
    let (_, html) = page(&s, "de").await;
    assert!(html.contains("Fernseher verbinden"), "{html}");
    // The rest of German stays.
    assert!(html.contains("Geben Sie den Code ein"), "{html}");
    // A language the operator added, English beneath it.
    let (lang, html) = page(&s, "nl-BE").await;
    assert_eq!(lang, "nl");
    assert!(html.contains("Een apparaat koppelen"), "{html}");
    assert!(html.contains(">Continue<"), "{html}");
    // Words are text, never markup: a translation cannot put script on the page.
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt; Voer de code in."),
        "{html}"
    );

    let pinned = TestServer::start_with(|c| c.language = Some("ja".into())).await;
    for asked in ["de", "en", "fr"] {
        let (lang, html) = page(&pinned, asked).await;
        assert_eq!(lang, "ja");
        assert!(html.contains("デバイスを接続"), "{html}");
    }

    // Mistakes stop the start, with the file and what is wrong.
    std::fs::write(words.path().join("fr.ftl"), "enter_titel = Oups\n").unwrap();
    let dir = words.path();
    let err = crate::cli::refused_start(dir, &["--locales-dir", dir.to_str().unwrap()]);
    assert!(
        err.contains("fr.ftl") && err.contains("enter_titel"),
        "{err}"
    );
    let err = crate::cli::refused_start(dir, &["--language", "xx"]);
    assert!(err.contains("\"xx\""), "{err}");
}
