//! Browser sessions of the verification pages: a cookie holding a secret id, a record in the
//! store under the id's hash, and an anti-CSRF token derived from the id.
//!
//! The token is `SHA-256("devicegate-csrf\0" ‖ session id)`: bound to the session, useless
//! without the (HttpOnly) cookie, and needing no storage.
//!
//! A visit that only reads a page writes nothing: the browser gets a session id that is not
//! stored (a *pre-session*), whose anti-CSRF token works like any other (a double-submit
//! cookie). The first POST that needs state stores a session under a new id. So a flood of
//! cookie-less GETs costs the store nothing.
//!
//! A browser that signs in also gets a long-lived *known-browser* mark (`dgk_…`, stored as a
//! hash with the person's id): its later sign-ins to that account are not slowed by
//! strangers' failures from elsewhere (`limits`). It ends with the person's password.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devicegate_core::flow::Flow;
use devicegate_core::secret::{Secret, SecretHash, SecretKind};
use devicegate_store::{BrowserSession, DEFAULT_TENANT, StoreError};
use http::{HeaderMap, HeaderValue, header};

use crate::limits::KnownBrowser;
use crate::scoped::Held;
use crate::tenant::Tenant;
use crate::verification;
use crate::{AppState, now};

/// The cookie's name and attributes: `__Host-` and `Secure` when the issuer is https.
#[derive(Debug, Clone)]
pub struct SessionCookie {
    name: String,
    secure: bool,
}

impl SessionCookie {
    /// One cookie per tenant, so that a browser can be signed in to several.
    pub fn new(https: bool, tenant: &str) -> SessionCookie {
        let prefix = if https {
            "__Host-devicegate"
        } else {
            "devicegate"
        };
        let name = if tenant == DEFAULT_TENANT {
            prefix.to_owned()
        } else {
            format!("{prefix}-{tenant}")
        };
        SessionCookie {
            name,
            secure: https,
        }
    }

    fn header(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.name
        );
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(""))
    }

    /// The cookie binding a round trip to an upstream provider to this browser, beside this
    /// one.
    pub fn upstream(&self) -> SessionCookie {
        SessionCookie {
            name: format!("{}_upstream", self.name),
            secure: self.secure,
        }
    }

    /// Sets this cookie to `value` for `max_age` seconds.
    pub fn set(&self, value: &str, max_age: u64) -> HeaderValue {
        self.header(value, max_age)
    }

    /// The known-browser mark's cookie, beside this one.
    fn known(&self) -> SessionCookie {
        SessionCookie {
            name: format!("{}_known", self.name),
            secure: self.secure,
        }
    }

    pub fn clear(&self) -> HeaderValue {
        self.header("", 0)
    }

    pub fn read<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == self.name)
            .map(|(_, v)| v)
    }
}

#[derive(Debug)]
pub struct Session {
    secret: Secret,
    pub record: BrowserSession,
    pub username: Option<String>,
    /// A new id the browser does not have yet.
    fresh: bool,
    /// Whether the record is in the store (else a pre-session: module docs).
    stored: bool,
}

/// How long a known-browser mark lasts.
const KNOWN_BROWSER_TTL: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

impl Session {
    /// The live session named by the request's cookie, if any; an error only when the store
    /// failed.
    pub async fn load(
        state: &AppState,
        tenant: &Tenant,
        cookie: &SessionCookie,
        headers: &HeaderMap,
    ) -> Result<Option<Session>, StoreError> {
        let Some(value) = cookie.read(headers) else {
            return Ok(None);
        };
        if !value.starts_with(SecretKind::BrowserSession.prefix()) {
            return Ok(None);
        }
        let secret = Secret::from_presented(value);
        let record = match tenant.store.get_session(&secret.hash()).await {
            Ok(r) => r,
            // Never stored (or ended): a pre-session, holding nothing.
            Err(StoreError::NotFound) => {
                return Ok(Some(Session::unstored(secret, &tenant.id, state)));
            }
            Err(e) => return Err(e),
        };
        if record.expires_at <= now() {
            return Ok(None);
        }
        let username = match &record.user_id {
            Some(id) => match tenant.store.get_user(id).await {
                Ok(u) => Some(u.username),
                Err(StoreError::NotFound) => return Ok(None),
                Err(e) => return Err(e),
            },
            None => None,
        };
        Ok(Some(Session {
            secret,
            record,
            username,
            fresh: false,
            stored: true,
        }))
    }

    fn unstored(secret: Secret, tenant: &str, state: &AppState) -> Session {
        let now = now();
        Session {
            record: BrowserSession {
                amr: None,
                idp: None,
                tenant: tenant.to_owned(),
                id_hash: secret.hash(),
                user_id: None,
                signed_on_at: None,
                flow_hash: None,
                created_at: now,
                expires_at: now.plus(state.settings.session_ttl),
            },
            secret,
            username: None,
            fresh: false,
            stored: false,
        }
    }

    /// A pre-session for a browser that has none: a cookie and an anti-CSRF token, nothing
    /// stored.
    pub fn start(state: &AppState, tenant: &Tenant) -> Session {
        let mut s = Self::unstored(
            Secret::generate(SecretKind::BrowserSession),
            &tenant.id,
            state,
        );
        s.fresh = true;
        s
    }

    /// This session, stored: a pre-session becomes a stored session under a new id.
    pub async fn stored(self, state: &AppState, tenant: &Tenant) -> Result<Session, StoreError> {
        if self.stored {
            return Ok(self);
        }
        Self::create(state, tenant, Held::default(), None).await
    }

    pub fn is_stored(&self) -> bool {
        self.stored
    }

    async fn create(
        state: &AppState,
        tenant: &Tenant,
        held: Held,
        username: Option<String>,
    ) -> Result<Session, StoreError> {
        let (secret, record) =
            verification::new_session(state, tenant, SecretKind::BrowserSession, held).await?;
        Ok(Session {
            secret,
            record,
            username,
            fresh: true,
            stored: true,
        })
    }

    /// After sign-on: a new session id carrying the person and the flow; the old id dies.
    pub async fn rotate(
        self,
        state: &AppState,
        tenant: &Tenant,
        flow: &Flow,
        username: &str,
    ) -> Result<Session, StoreError> {
        // A second factor still owed: the session holds the flow, not yet the person.
        let signed_on = flow.status != devicegate_proto::FlowStatus::SecondFactorRequired;
        let held = Held {
            user_id: flow.user_id.clone().filter(|_| signed_on),
            signed_on_at: flow.signed_on_at.filter(|_| signed_on),
            idp: flow.idp.clone(),
            amr: flow.amr.clone(),
            flow_hash: Some(flow.secret_hash),
        };
        let next = Self::create(state, tenant, held, Some(username.to_owned())).await?;
        match tenant.store.delete_session(&self.record).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(next),
            Err(e) => Err(e),
        }
    }

    /// A new session id holding `held` (a sign-on made outside a flow: an operator's
    /// enrolment link); the old id dies.
    pub async fn replace(
        self,
        state: &AppState,
        tenant: &Tenant,
        held: Held,
        username: &str,
    ) -> Result<Session, StoreError> {
        let next = Self::create(state, tenant, held, Some(username.to_owned())).await?;
        match tenant.store.delete_session(&self.record).await {
            Ok(()) | Err(StoreError::NotFound) => Ok(next),
            Err(e) => Err(e),
        }
    }

    /// Marks this browser as known to `user_id`: returns the cookie to set.
    pub async fn mark_known(
        cookie: &SessionCookie,
        tenant: &Tenant,
        user_id: &str,
    ) -> Result<HeaderValue, StoreError> {
        let held = Held {
            user_id: Some(user_id.to_owned()),
            ..Held::default()
        };
        let (secret, _) = tenant
            .store
            .start_session(SecretKind::KnownBrowser, held, KNOWN_BROWSER_TTL, now())
            .await?;
        Ok(cookie
            .known()
            .header(secret.expose(), KNOWN_BROWSER_TTL.as_secs()))
    }

    /// The person this browser signed in as before, by its known-browser mark.
    pub async fn known_browser(
        tenant: &Tenant,
        cookie: &SessionCookie,
        headers: &HeaderMap,
    ) -> Option<KnownBrowser> {
        let value = cookie.known().read(headers)?;
        if !value.starts_with(SecretKind::KnownBrowser.prefix()) {
            return None;
        }
        let hash = Secret::from_presented(value).hash();
        let record = tenant.store.get_session(&hash).await.ok()?;
        if record.expires_at <= now() {
            return None;
        }
        Some(KnownBrowser {
            // A prefix of the hash names the bucket; the secret never reaches a key.
            mark: URL_SAFE_NO_PAD.encode(&hash.as_bytes()[..12]),
            user_id: record.user_id?,
        })
    }

    pub fn csrf(&self) -> String {
        let mut input = b"devicegate-csrf\0".to_vec();
        input.extend_from_slice(self.secret.expose().as_bytes());
        URL_SAFE_NO_PAD.encode(SecretHash::of(&input).as_bytes())
    }

    /// Constant-time check of a posted token.
    pub fn csrf_matches(&self, given: &str) -> bool {
        SecretHash::of(given.as_bytes()).matches(&SecretHash::of(self.csrf().as_bytes()))
    }

    /// `Set-Cookie` for a session the browser does not hold yet.
    pub fn set_cookie(&self, cookie: &SessionCookie) -> Option<HeaderValue> {
        let ttl = self.record.expires_at.as_secs() - self.record.created_at.as_secs();
        self.fresh
            .then(|| cookie.header(self.secret.expose(), ttl.max(0) as u64))
    }
}
