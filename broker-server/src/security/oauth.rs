//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255 and KIP-768): the client sends a JWT; the
//! broker checks its signature against the keys of a JWKS file, its expiry (and issuer and
//! audience when configured), and takes `User:<sub>` as the principal. The session lasts
//! until the token expires (or `connections.max.reauth.ms`, whichever is first), after which
//! the client must re-authenticate with a fresh token (KIP-368).
//!
//! Only asymmetric signatures are accepted (RS*, PS*, ES*, EdDSA): a JWKS file holds public
//! keys, and a shared secret there would let anyone who reads it mint tokens.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::Deserialize;

/// Clock skew allowed on `exp` and `nbf`, seconds (Kafka's default is 30 s).
const LEEWAY_S: u64 = 30;
/// Largest token accepted, bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The settings of `--sasl-oauthbearer-*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// JWKS file (JSON `{"keys": [...]}`) of the issuer's public keys; read again when it
    /// changes.
    pub jwks: PathBuf,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), if any.
    pub audience: Option<String>,
}

/// A checked token: who, and until when (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub sub: String,
    pub exp_s: u64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Checks tokens against the JWKS file of [`OAuthSettings`].
pub struct OAuthValidator {
    settings: OAuthSettings,
    /// The file's modification time when read, and its keys.
    keys: Mutex<(Option<SystemTime>, Arc<JwkSet>)>,
}

impl std::fmt::Debug for OAuthValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthValidator")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn read_jwks(path: &std::path::Path) -> Result<(Option<SystemTime>, JwkSet), String> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the JWKS file {} is not a JSON Web Key Set ({{\"keys\": [...]}}): {e}",
            path.display()
        )
    })?;
    if set.keys.is_empty() {
        return Err(format!("the JWKS file {} holds no key", path.display()));
    }
    Ok((modified, set))
}

impl OAuthValidator {
    /// Reads the JWKS file; errors name the file.
    pub fn load(settings: OAuthSettings) -> Result<Arc<OAuthValidator>, String> {
        let (modified, set) = read_jwks(&settings.jwks)?;
        Ok(Arc::new(OAuthValidator {
            settings,
            keys: Mutex::new((modified, Arc::new(set))),
        }))
    }

    /// The keys in force: read again when the file's modification time changed; a file that
    /// no longer parses keeps the old keys (with a warning).
    fn keys(&self) -> Arc<JwkSet> {
        let path = &self.settings.jwks;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut keys = self.keys.lock();
        if modified.is_some() && modified != keys.0 {
            match read_jwks(path) {
                Ok((m, set)) => {
                    tracing::info!(file = %path.display(), keys = set.keys.len(), "JWKS file read again");
                    *keys = (m, Arc::new(set));
                }
                Err(e) => {
                    tracing::warn!("{e}; keeping the keys read before");
                    keys.0 = modified;
                }
            }
        }
        keys.1.clone()
    }

    /// Checks `token` at `now_s` (seconds since the epoch).
    pub fn validate(&self, token: &str, now_s: u64) -> Result<Validated, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(format!("token of {} bytes is too large", token.len()));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(format!(
                "token signed with {:?}: only asymmetric signatures are accepted",
                header.alg
            ));
        }
        let keys = self.keys();
        let jwk: &Jwk = match &header.kid {
            Some(kid) => keys
                .find(kid)
                .ok_or_else(|| format!("no key with kid {kid:?} in the JWKS file"))?,
            None if keys.keys.len() == 1 => &keys.keys[0],
            None => return Err("token without kid and the JWKS file holds several keys".into()),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_S;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        match &self.settings.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.settings.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        // jsonwebtoken checks `exp` against the system clock; check it against `now_s` too
        // (the same clock in the broker; a given one in tests).
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map_err(|e| format!("invalid token: {e}"))?;
        let c = data.claims;
        if c.exp + LEEWAY_S < now_s {
            return Err("invalid token: ExpiredSignature".into());
        }
        if c.sub.is_empty() {
            return Err("invalid token: empty sub".into());
        }
        Ok(Validated {
            sub: c.sub,
            exp_s: c.exp,
        })
    }
}

/// The token of a client's initial response, `gs2-header %x01 auth=Bearer <token> %x01
/// [key=value %x01]* %x01`, and the authorisation id of its GS2 header if any.
pub fn parse_client_message(msg: &[u8]) -> Result<(Option<String>, String), String> {
    let text = std::str::from_utf8(msg).map_err(|_| "the message is not UTF-8".to_string())?;
    let mut parts = text.split('\u{1}');
    let gs2 = parts.next().unwrap_or("");
    let mut gs2_fields = gs2.split(',');
    match gs2_fields.next() {
        Some("n") | Some("y") => {}
        _ => return Err("the message does not start with a GS2 header (n,,)".into()),
    }
    let authzid = match gs2_fields.next() {
        Some("") | None => None,
        Some(a) => Some(
            a.strip_prefix("a=")
                .ok_or_else(|| format!("malformed authorisation id {a:?}"))?
                .replace("=2C", ",")
                .replace("=3D", "="),
        ),
    };
    let mut token = None;
    for kv in parts {
        if kv.is_empty() {
            continue;
        }
        if let Some(auth) = kv.strip_prefix("auth=") {
            let t = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .ok_or("the auth value is not a Bearer token")?;
            token = Some(t.trim().to_string());
        }
    }
    let token = token.ok_or("the message has no auth=Bearer value")?;
    if token.is_empty() {
        return Err("the Bearer token is empty".into());
    }
    Ok((authzid, token))
}

/// Seconds since the epoch, now.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};

    struct Issuer {
        key: rcgen::KeyPair,
        dir: tempfile::TempDir,
    }

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    impl Issuer {
        /// An ES256 key and a JWKS file with its public half under kid `k1`.
        fn new() -> Issuer {
            let key = rcgen::KeyPair::generate().unwrap();
            let raw = key.public_key_raw();
            assert_eq!(raw.len(), 65);
            let jwks = serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
                "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
            }]});
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
            Issuer { key, dir }
        }

        fn validator(&self, issuer: Option<&str>) -> Arc<OAuthValidator> {
            OAuthValidator::load(OAuthSettings {
                jwks: self.dir.path().join("jwks.json"),
                issuer: issuer.map(str::to_string),
                audience: None,
            })
            .unwrap()
        }

        fn token(&self, claims: serde_json::Value) -> String {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some("k1".into());
            let k = EncodingKey::from_ec_der(&self.key.serialize_der());
            jsonwebtoken::encode(&h, &claims, &k).unwrap()
        }
    }

    #[test]
    fn a_signed_unexpired_token_names_its_subject() {
        let i = Issuer::new();
        let now = now_s();
        let t = i.token(serde_json::json!({"sub": "alice", "exp": now + 600, "iss": "idp"}));
        let v = i.validator(Some("idp")).validate(&t, now).unwrap();
        assert_eq!(v.sub, "alice");
        assert_eq!(v.exp_s, now + 600);
    }

    #[test]
    fn expired_foreign_and_misissued_tokens_are_refused() {
        let i = Issuer::new();
        let now = now_s();
        let expired = i.token(serde_json::json!({"sub": "a", "exp": now - 3600}));
        assert!(i.validator(None).validate(&expired, now).is_err());
        let other = Issuer::new();
        let foreign = other.token(serde_json::json!({"sub": "a", "exp": now + 600}));
        let e = i.validator(None).validate(&foreign, now).unwrap_err();
        assert!(e.contains("invalid token"), "{e}");
        let wrong_iss = i.token(serde_json::json!({"sub": "a", "exp": now + 600, "iss": "x"}));
        assert!(i.validator(Some("idp")).validate(&wrong_iss, now).is_err());
        let no_sub = i.token(serde_json::json!({"exp": now + 600}));
        assert!(i.validator(None).validate(&no_sub, now).is_err());
        // A shared-secret token is refused whatever its claims.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now + 600}),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let e = i.validator(None).validate(&hs, now).unwrap_err();
        assert!(e.contains("asymmetric"), "{e}");
        assert!(i.validator(None).validate("not.a.jwt", now).is_err());
    }

    #[test]
    fn client_messages_are_parsed_as_rfc_7628_says() {
        assert_eq!(
            parse_client_message(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap(),
            (None, "abc.def.ghi".to_string())
        );
        assert_eq!(
            parse_client_message(b"n,a=alice,\x01host=h\x01auth=Bearer t\x01x=1\x01\x01").unwrap(),
            (Some("alice".to_string()), "t".to_string())
        );
        for bad in [
            &b""[..],
            b"p=x,,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"\xff\xfe",
        ] {
            assert!(parse_client_message(bad).is_err(), "{bad:?}");
        }
    }
}
