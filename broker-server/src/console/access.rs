//! Who may use the console. Without ACLs (no SASL or mTLS listener, no `--super-users`
//! rules in force) the console is as open as the HTTP listener. With ACLs on, it reads and
//! changes everything past the per-topic checks, so it admits only super users: the browser
//! sends HTTP Basic credentials, checked against the same salted SCRAM credentials as SASL
//! (`broker users add`), and the user's `User:NAME` must be in `--super-users`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use broker_api::{ScramMechanism, Store};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::security::acl::Authorizer;
use crate::security::scram;

/// How long a checked login is remembered (the pages poll every few seconds; a SCRAM
/// password check costs thousands of hash rounds).
const REMEMBER: Duration = Duration::from_secs(60);
/// Most remembered logins.
const MAX_REMEMBERED: usize = 64;

/// The console's gate while ACLs are on.
pub struct Access {
    authz: Arc<Authorizer>,
    store: Arc<dyn Store>,
    /// SHA-256 of an accepted `Authorization` header -> when it must be checked again.
    remembered: Mutex<HashMap<[u8; 32], Instant>>,
}

impl Access {
    pub fn new(authz: Arc<Authorizer>, store: Arc<dyn Store>) -> Arc<Access> {
        Arc::new(Access {
            authz,
            store,
            remembered: Mutex::new(HashMap::new()),
        })
    }

    /// Ok when `authorization` holds Basic credentials of a super user.
    async fn check(&self, authorization: Option<&str>) -> Result<(), &'static str> {
        let value = authorization.ok_or("the console needs a super user's name and password")?;
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        if self
            .remembered
            .lock()
            .get(&digest)
            .is_some_and(|until| *until > Instant::now())
        {
            return Ok(());
        }
        let encoded = value
            .strip_prefix("Basic ")
            .ok_or("the console accepts Basic credentials only")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| "malformed Basic credentials")?;
        let text = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
        let (user, password) = text.split_once(':').ok_or("malformed Basic credentials")?;
        let invalid = "invalid user name or password, or not a super user";
        if !self.authz.is_super_user(&format!("User:{user}")) {
            return Err(invalid);
        }
        let mut cred = None;
        for m in ScramMechanism::ALL {
            if let Ok(Some(c)) = self.store.get_credential(user, m).await {
                cred = Some(c);
                break;
            }
        }
        let cred = cred.ok_or(invalid)?;
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || scram::password_matches(&cred, &password))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(invalid);
        }
        let mut remembered = self.remembered.lock();
        let now = Instant::now();
        remembered.retain(|_, until| *until > now);
        if remembered.len() < MAX_REMEMBERED {
            remembered.insert(digest, now + REMEMBER);
        }
        Ok(())
    }
}

/// Middleware: passes requests of super users; answers 401 with a Basic challenge otherwise.
pub async fn require_super_user(
    State(access): State<Arc<Access>>,
    req: Request,
    next: Next,
) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match access.check(authorization.as_deref()).await {
        Ok(()) => next.run(req).await,
        Err(why) => {
            tracing::debug!("console request refused: {why}");
            let mut resp = (StatusCode::UNAUTHORIZED, format!("{why}\n")).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"broker console\", charset=\"UTF-8\""),
            );
            resp
        }
    }
}
