//! SASL on Kafka listeners: SaslHandshake (v0-v1) and SaslAuthenticate (v0-v2) with PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512 against the store's salted credentials; re-authentication
//! (KIP-368: `session_lifetime_ms`, connections whose session expired are closed at their
//! next request); DescribeUserScramCredentials and AlterUserScramCredentials.
//!
//! On a SASL listener nothing but ApiVersions, SaslHandshake and SaslAuthenticate is served
//! before authentication (anything else closes the connection, as Kafka does), and frames are
//! limited to Kafka's `sasl.server.max.receive.size` (512 KiB) until then.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{ScramMechanism, StoreError};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use tracing::{debug, warn};

use super::conn::ConnView;
use super::{encode, KafkaServer};
use crate::security::scram::{self, SaslFailure};

/// Largest frame read before authentication (Kafka's `sasl.server.max.receive.size`).
pub const MAX_RECEIVE_BEFORE_AUTH: usize = 512 * 1024;
/// Every mechanism the broker can serve.
pub const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

const HANDSHAKE: i16 = ApiKey::SaslHandshake as i16;
const AUTHENTICATE: i16 = ApiKey::SaslAuthenticate as i16;
const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;

/// An authenticated SASL session.
struct Session {
    mechanism: &'static str,
    principal: Arc<str>,
    expires: Option<Instant>,
    /// The lifetime told to the client (`session_lifetime_ms`; 0: no limit).
    lifetime_ms: i64,
}

/// Where the exchange is.
enum Step {
    /// No handshake (or the last exchange finished).
    Idle,
    /// Handshake done; `raw` for a v0 handshake, whose tokens come as bare frames.
    Chosen { mechanism: &'static str, raw: bool },
    /// SCRAM server-first sent.
    Scram {
        mechanism: &'static str,
        raw: bool,
        state: Box<scram::ServerFirst>,
    },
}

/// The SASL state of one connection.
pub(super) struct SaslConn {
    /// The listener is SASL_PLAINTEXT or SASL_SSL.
    enabled: bool,
    step: Step,
    session: Option<Session>,
}

/// What the connection does with a frame.
pub(super) enum Gate {
    /// Serve it as usual.
    Serve,
    /// Send this answer; close the connection after it when `close`.
    Reply(BytesMut, bool),
    /// Close the connection without an answer.
    Close(&'static str),
}

impl SaslConn {
    pub(super) fn new(view: &ConnView) -> SaslConn {
        SaslConn {
            enabled: view.listener.protocol.is_sasl(),
            step: Step::Idle,
            session: None,
        }
    }

    /// The largest frame to read next.
    pub(super) fn frame_limit(&self, configured: usize) -> usize {
        if self.enabled && self.session.is_none() {
            configured.min(MAX_RECEIVE_BEFORE_AUTH)
        } else {
            configured
        }
    }

    fn raw_pending(&self) -> bool {
        matches!(
            self.step,
            Step::Chosen { raw: true, .. } | Step::Scram { raw: true, .. }
        )
    }
}

fn header(frame: &Bytes) -> Option<(i16, i16, i32)> {
    let mut p = frame.get(..8)?;
    Some((p.get_i16(), p.get_i16(), p.get_i32()))
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

impl KafkaServer {
    /// Decides what to do with `frame` on a connection in SASL state `sasl`; handles the SASL
    /// requests themselves, updating the connection's principal in `view`.
    pub(super) async fn sasl_gate(
        &self,
        frame: &Bytes,
        sasl: &mut SaslConn,
        view: &mut ConnView,
    ) -> Gate {
        if sasl.raw_pending() {
            return self.raw_token(frame.clone(), sasl, view).await;
        }
        let Some((api, version, cid)) = header(frame) else {
            return Gate::Serve;
        };
        if api == HANDSHAKE || api == AUTHENTICATE {
            return match self
                .sasl_request(frame.clone(), api, version, sasl, view)
                .await
            {
                Ok(g) => g,
                Err(why) => {
                    debug!(cid, "closing: {why}");
                    Gate::Close("malformed SASL request")
                }
            };
        }
        if !sasl.enabled {
            return Gate::Serve;
        }
        match &sasl.session {
            None if api == API_VERSIONS => Gate::Serve,
            None => Gate::Close("a request other than ApiVersions or SASL before authentication"),
            Some(s) if s.expires.is_some_and(|e| Instant::now() >= e) => {
                Gate::Close("the SASL session expired without re-authentication (KIP-368)")
            }
            Some(_) => Gate::Serve,
        }
    }

    async fn sasl_request(
        &self,
        frame: Bytes,
        api: i16,
        version: i16,
        sasl: &mut SaslConn,
        view: &mut ConnView,
    ) -> Result<Gate, String> {
        let key = ApiKey::try_from(api).map_err(|_| "bad api key".to_string())?;
        let range = key.valid_versions();
        if version < range.min || version > range.max {
            return super::unsupported::unsupported_response(
                api,
                version,
                header(&frame).map_or(0, |h| h.2),
            )
            .map(|r| Gate::Reply(r, false))
            .map_err(|e| e.to_string());
        }
        let mut buf = frame;
        let hdr = RequestHeader::decode(&mut buf, key.request_header_version(version))
            .map_err(|e| e.to_string())?;
        let cid = hdr.correlation_id;
        let reply = |resp: BytesMut, close: bool| Ok(Gate::Reply(resp, close));
        let enc = |k: ApiKey, body: &dyn EncodableDyn| body.encode_frame(k, version, cid);
        if api == HANDSHAKE {
            let req = SaslHandshakeRequest::decode(&mut buf, version).map_err(|e| e.to_string())?;
            let enabled = self.enabled_mechanisms();
            let mechanisms: Vec<StrBytes> = enabled.iter().map(|m| s(*m)).collect();
            let mut resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
            if !sasl.enabled {
                // Kafka answers on a listener without SASL and keeps the connection.
                resp.error_code = ResponseError::IllegalSaslState.code();
                resp.mechanisms.clear();
                return reply(enc(ApiKey::SaslHandshake, &resp)?, false);
            }
            let wanted = req.mechanism.as_str();
            let Some(mechanism) = enabled.iter().copied().find(|m| *m == wanted) else {
                resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
                return reply(enc(ApiKey::SaslHandshake, &resp)?, true);
            };
            let illegal = !matches!(sasl.step, Step::Idle)
                || sasl
                    .session
                    .as_ref()
                    .is_some_and(|s| version == 0 || s.mechanism != mechanism);
            if illegal {
                resp.error_code = ResponseError::IllegalSaslState.code();
                return reply(enc(ApiKey::SaslHandshake, &resp)?, true);
            }
            sasl.step = Step::Chosen {
                mechanism,
                raw: version == 0,
            };
            return reply(enc(ApiKey::SaslHandshake, &resp)?, false);
        }
        let req = SaslAuthenticateRequest::decode(&mut buf, version).map_err(|e| e.to_string())?;
        let mut resp = SaslAuthenticateResponse::default();
        if !sasl.enabled {
            resp.error_code = ResponseError::IllegalSaslState.code();
            resp.error_message = Some(s("This listener does not use SASL"));
            return reply(enc(ApiKey::SaslAuthenticate, &resp)?, false);
        }
        if matches!(sasl.step, Step::Idle) || sasl.raw_pending() {
            resp.error_code = ResponseError::IllegalSaslState.code();
            resp.error_message = Some(s("SaslAuthenticate without a SaslHandshake before it"));
            return reply(enc(ApiKey::SaslAuthenticate, &resp)?, true);
        }
        match self.sasl_token(req.auth_bytes.to_vec(), sasl, view).await {
            Ok((bytes, done)) => {
                resp.auth_bytes = Bytes::from(bytes);
                if done {
                    resp.session_lifetime_ms = sasl.session.as_ref().map_or(0, |s| s.lifetime_ms);
                }
                reply(enc(ApiKey::SaslAuthenticate, &resp)?, false)
            }
            Err(f) => {
                resp.error_code = ResponseError::SaslAuthenticationFailed.code();
                resp.error_message = Some(s(f.0));
                reply(enc(ApiKey::SaslAuthenticate, &resp)?, true)
            }
        }
    }

    /// A v0 exchange: the frame is the bare token and so is the answer.
    async fn raw_token(&self, token: Bytes, sasl: &mut SaslConn, view: &mut ConnView) -> Gate {
        match self.sasl_token(token.to_vec(), sasl, view).await {
            Ok((bytes, _)) => {
                let mut out = BytesMut::with_capacity(4 + bytes.len());
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(&bytes);
                Gate::Reply(out, false)
            }
            Err(_) => Gate::Close("SASL authentication failed (v0 exchange)"),
        }
    }

    /// One client token of the chosen mechanism: the answer, and whether the client is now
    /// authenticated. A failure ends the exchange (the connection is closed after it).
    async fn sasl_token(
        &self,
        token: Vec<u8>,
        sasl: &mut SaslConn,
        view: &mut ConnView,
    ) -> Result<(Vec<u8>, bool), SaslFailure> {
        let step = std::mem::replace(&mut sasl.step, Step::Idle);
        // When the credential itself expires (an OAUTHBEARER token).
        let mut credential_expires: Option<Instant> = None;
        let (mechanism, outcome) = match step {
            Step::Idle => return Err(SaslFailure("no SASL handshake".into())),
            Step::Chosen {
                mechanism: "PLAIN", ..
            } => ("PLAIN", self.plain(&token).await),
            Step::Chosen {
                mechanism: "OAUTHBEARER",
                ..
            } => (
                "OAUTHBEARER",
                self.oauthbearer(&token).map(|(user, expires)| {
                    credential_expires = Some(expires);
                    (user, Vec::new())
                }),
            ),
            Step::Chosen { mechanism, raw } => {
                let m: ScramMechanism = mechanism.parse().map_err(SaslFailure)?;
                let first = scram::parse_client_first(&token);
                let first = match first {
                    Ok(f) => f,
                    Err(e) => return Err(self.sasl_failed(mechanism, view, e)),
                };
                let cred = match self.store.get_credential(&first.user, m).await {
                    Ok(c) => c,
                    Err(e) => return Err(self.sasl_failed(mechanism, view, store_failure(e))),
                };
                let (state, msg) = scram::server_first(m, first, cred);
                sasl.step = Step::Scram {
                    mechanism,
                    raw,
                    state: Box::new(state),
                };
                return Ok((msg, false));
            }
            Step::Scram {
                mechanism, state, ..
            } => {
                let user = state.user.clone();
                (mechanism, state.client_final(&token).map(|msg| (user, msg)))
            }
        };
        let (user, answer) = outcome.map_err(|e| self.sasl_failed(mechanism, view, e))?;
        let principal: Arc<str> = format!("User:{user}").into();
        if let Some(old) = &sasl.session {
            if old.principal != principal {
                return Err(self.sasl_failed(
                    mechanism,
                    view,
                    SaslFailure("Cannot change principals during re-authentication".into()),
                ));
            }
        }
        self.metrics.security.sasl(mechanism, true);
        debug!(principal = %principal, mechanism, "SASL authentication succeeded");
        // The session lasts the configured lifetime, or until the credential expires if
        // that is sooner (KIP-368).
        let now = Instant::now();
        let reauth =
            (self.config.reauth_ms > 0).then(|| Duration::from_millis(self.config.reauth_ms));
        let credential = credential_expires.map(|e| e.saturating_duration_since(now));
        let lifetime = match (reauth, credential) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        sasl.session = Some(Session {
            mechanism,
            principal: principal.clone(),
            expires: lifetime.map(|l| now + l),
            lifetime_ms: lifetime.map_or(0, |l| l.as_millis() as i64),
        });
        view.principal = principal;
        Ok((answer, true))
    }

    /// OAUTHBEARER: the user (the token's `sub`) and when the token expires.
    fn oauthbearer(&self, msg: &[u8]) -> Result<(String, Instant), SaslFailure> {
        let validator = self
            .config
            .oauth
            .as_ref()
            .ok_or_else(|| SaslFailure("OAUTHBEARER is not configured".into()))?;
        let (authzid, token) = crate::security::oauth::parse_client_message(msg)
            .map_err(|e| SaslFailure(format!("Invalid OAUTHBEARER message: {e}")))?;
        let now = crate::security::oauth::now_s();
        let v = validator
            .validate(&token, now)
            .map_err(|e| SaslFailure(format!("Authentication failed: {e}")))?;
        if authzid.as_ref().is_some_and(|a| *a != v.sub) {
            return Err(SaslFailure(
                "Authentication failed: the authorisation id is not the token's subject".into(),
            ));
        }
        let expires = Instant::now() + Duration::from_secs(v.exp_s.saturating_sub(now));
        Ok((v.sub, expires))
    }

    async fn plain(&self, token: &[u8]) -> Result<(String, Vec<u8>), SaslFailure> {
        let (user, password) = scram::parse_plain(token)?;
        let invalid = || SaslFailure("Authentication failed: Invalid username or password".into());
        let mut cred = None;
        for m in ScramMechanism::ALL {
            if let Some(c) = self
                .store
                .get_credential(&user, m)
                .await
                .map_err(store_failure)?
            {
                cred = Some(c);
                break;
            }
        }
        let Some(cred) = cred else {
            return Err(invalid());
        };
        let ok = tokio::task::spawn_blocking(move || scram::password_matches(&cred, &password))
            .await
            .unwrap_or(false);
        if ok {
            Ok((user, Vec::new()))
        } else {
            Err(invalid())
        }
    }

    /// Counts and logs a failed login (never with the password or the user's name, which
    /// people mistype passwords into).
    fn sasl_failed(&self, mechanism: &str, view: &ConnView, e: SaslFailure) -> SaslFailure {
        self.metrics.security.sasl(mechanism, false);
        let v = crate::LOG_LIMIT.check(&format!("sasl-failed:{}", view.host));
        if v != broker_api::log_limit::Verdict::Suppress {
            warn!(
                client = %view.host,
                listener = %view.listener.name,
                mechanism,
                "failed authentication: {e}{}",
                v.suffix()
            );
        }
        e
    }

    fn enabled_mechanisms(&self) -> Vec<&'static str> {
        MECHANISMS
            .iter()
            .copied()
            .filter(|m| self.config.sasl_mechanisms.iter().any(|e| e == m))
            .collect()
    }

    /// DescribeUserScramCredentials: mechanisms and iteration counts, never salts or keys.
    pub(super) async fn describe_user_scram_credentials(
        &self,
        req: DescribeUserScramCredentialsRequest,
    ) -> DescribeUserScramCredentialsResponse {
        let mut resp = DescribeUserScramCredentialsResponse::default();
        if let Some(code) = super::authz::cluster_denied(self, super::authz::Op::Describe) {
            resp.error_code = code;
            return resp;
        }
        let all = match self.store.list_credentials().await {
            Ok(a) => a,
            Err(e) => {
                resp.error_code = ResponseError::UnknownServerError.code();
                resp.error_message = Some(s(e.to_string()));
                return resp;
            }
        };
        let mut by_user: BTreeMap<String, Vec<CredentialInfo>> = BTreeMap::new();
        for c in &all {
            by_user.entry(c.user.clone()).or_default().push(
                CredentialInfo::default()
                    .with_mechanism(c.mechanism.code())
                    .with_iterations(c.iterations as i32),
            );
        }
        let result = |user: &str, infos: Vec<CredentialInfo>| {
            DescribeUserScramCredentialsResult::default()
                .with_user(s(user))
                .with_credential_infos(infos)
        };
        match req.users.filter(|u| !u.is_empty()) {
            None => {
                resp.results = by_user.into_iter().map(|(u, i)| result(&u, i)).collect();
            }
            Some(users) => {
                let names: Vec<String> = users.iter().map(|u| u.name.to_string()).collect();
                for name in &names {
                    let mut r = result(name, Vec::new());
                    if names.iter().filter(|n| *n == name).count() > 1 {
                        r.error_code = ResponseError::DuplicateResource.code();
                        r.error_message = Some(s("Cannot describe SCRAM credentials for the same user twice in a single request"));
                    } else if let Some(infos) = by_user.get(name) {
                        r.credential_infos = infos.clone();
                    } else {
                        r.error_code = ResponseError::ResourceNotFound.code();
                        r.error_message = Some(s(
                            "Attempt to describe a user credential that does not exist",
                        ));
                    }
                    if !resp.results.iter().any(|x| x.user.as_str() == name) {
                        resp.results.push(r);
                    }
                }
            }
        }
        resp
    }

    /// AlterUserScramCredentials: upsertions carry the client-salted password (the broker
    /// keeps StoredKey and ServerKey only); deletions name (user, mechanism).
    pub(super) async fn alter_user_scram_credentials(
        &self,
        req: AlterUserScramCredentialsRequest,
    ) -> AlterUserScramCredentialsResponse {
        let mut resp = AlterUserScramCredentialsResponse::default();
        let mut users: Vec<String> = req
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(req.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        let counts = users
            .iter()
            .fold(BTreeMap::<String, usize>::new(), |mut m, u| {
                *m.entry(u.clone()).or_default() += 1;
                m
            });
        let mut seen = std::collections::HashSet::new();
        users.retain(|u| seen.insert(u.clone()));
        let denied = super::authz::cluster_denied(self, super::authz::Op::Alter);
        let mut results: BTreeMap<String, (i16, Option<String>)> = BTreeMap::new();
        fn set(
            results: &mut BTreeMap<String, (i16, Option<String>)>,
            user: &str,
            code: ResponseError,
            msg: &str,
        ) {
            results
                .entry(user.to_string())
                .or_insert((code.code(), Some(msg.to_string())));
        }
        for (user, n) in &counts {
            if let Some(code) = denied {
                results.insert(user.clone(), (code, None));
            } else if *n > 1 {
                set(
                    &mut results,
                    user,
                    ResponseError::DuplicateResource,
                    "A user credential cannot be altered twice in the same request",
                );
            } else if user.is_empty() {
                set(
                    &mut results,
                    user,
                    ResponseError::UnacceptableCredential,
                    "Username must not be empty",
                );
            }
        }
        for d in &req.deletions {
            let user = d.name.to_string();
            if results.contains_key(&user) {
                continue;
            }
            let Some(m) = ScramMechanism::from_code(d.mechanism) else {
                set(
                    &mut results,
                    &user,
                    ResponseError::UnsupportedSaslMechanism,
                    "Unknown SCRAM mechanism",
                );
                continue;
            };
            match self.store.delete_credential(&user, m).await {
                Ok(true) => {
                    results.insert(user, (0, None));
                }
                Ok(false) => set(
                    &mut results,
                    &user,
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                ),
                Err(e) => set(
                    &mut results,
                    &user,
                    ResponseError::UnknownServerError,
                    &e.to_string(),
                ),
            }
        }
        for u in &req.upsertions {
            let user = u.name.to_string();
            if results.contains_key(&user) {
                continue;
            }
            let Some(m) = ScramMechanism::from_code(u.mechanism) else {
                set(
                    &mut results,
                    &user,
                    ResponseError::UnsupportedSaslMechanism,
                    "Unknown SCRAM mechanism",
                );
                continue;
            };
            let iterations = u.iterations;
            if iterations < scram::MIN_ITERATIONS as i32 {
                set(
                    &mut results,
                    &user,
                    ResponseError::UnacceptableCredential,
                    &format!(
                        "Too few iterations: {iterations} (minimum {})",
                        scram::MIN_ITERATIONS
                    ),
                );
                continue;
            }
            if iterations > scram::MAX_ITERATIONS as i32 {
                set(
                    &mut results,
                    &user,
                    ResponseError::UnacceptableCredential,
                    &format!(
                        "Too many iterations: {iterations} (maximum {})",
                        scram::MAX_ITERATIONS
                    ),
                );
                continue;
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                set(
                    &mut results,
                    &user,
                    ResponseError::UnacceptableCredential,
                    "Salt and salted password must not be empty",
                );
                continue;
            }
            let cred = scram::credential_from_salted(
                &user,
                m,
                u.salt.to_vec(),
                iterations as u32,
                &u.salted_password,
            );
            match self.store.put_credential(cred).await {
                Ok(()) => {
                    results.insert(user, (0, None));
                }
                Err(StoreError::InvalidArgument(e)) => set(
                    &mut results,
                    &user,
                    ResponseError::UnacceptableCredential,
                    &e,
                ),
                Err(e) => set(
                    &mut results,
                    &user,
                    ResponseError::UnknownServerError,
                    &e.to_string(),
                ),
            }
        }
        resp.results = users
            .iter()
            .filter_map(|u| results.get(u).map(|r| (u, r)))
            .map(|(u, (code, msg))| {
                AlterUserScramCredentialsResult::default()
                    .with_user(s(u.clone()))
                    .with_error_code(*code)
                    .with_error_message(msg.clone().map(s))
            })
            .collect();
        resp
    }
}

fn store_failure(e: StoreError) -> SaslFailure {
    SaslFailure(format!(
        "Authentication failed: the credential store is unavailable ({e})"
    ))
}

/// Encodes any response body into a frame (object-safe helper for the closures above).
trait EncodableDyn {
    fn encode_frame(&self, api: ApiKey, version: i16, cid: i32) -> Result<BytesMut, String>;
}

impl<T: kafka_protocol::protocol::Encodable> EncodableDyn for T {
    fn encode_frame(&self, api: ApiKey, version: i16, cid: i32) -> Result<BytesMut, String> {
        encode(api, version, cid, self).map_err(|e| e.to_string())
    }
}
