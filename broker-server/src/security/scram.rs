//! SCRAM (RFC 5802, with SHA-256 and SHA-512 per RFC 7677) as Kafka speaks it, and PLAIN
//! checked against the same salted credentials. Only StoredKey and ServerKey are kept; every
//! comparison of secrets is constant-time. Nothing here panics on any client input.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use broker_api::{ScramCredential, ScramMechanism};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's lowest and highest accepted iteration counts.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// Longest client message accepted (a SCRAM message is a few hundred bytes).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Why an exchange failed. The text goes to the client and the log: it never holds a
/// password or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SaslFailure(pub String);

fn fail<T>(why: impl Into<String>) -> Result<T, SaslFailure> {
    Err(SaslFailure(why.into()))
}

fn hmac(m: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        ScramMechanism::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(m: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match m {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// The hash's output length.
pub fn hash_len(m: ScramMechanism) -> usize {
    match m {
        ScramMechanism::Sha256 => 32,
        ScramMechanism::Sha512 => 64,
    }
}

/// RFC 5802's SaltedPassword: PBKDF2 with HMAC of the mechanism's hash.
pub fn salted_password(
    m: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    let mut out = vec![0u8; hash_len(m)];
    match m {
        ScramMechanism::Sha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
        }
        ScramMechanism::Sha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
        }
    }
    out
}

/// The stored credential of a salted password (what AlterUserScramCredentials sends).
pub fn credential_from_salted(
    user: &str,
    m: ScramMechanism,
    salt: Vec<u8>,
    iterations: u32,
    salted: &[u8],
) -> ScramCredential {
    let client_key = hmac(m, salted, b"Client Key");
    ScramCredential {
        user: user.to_string(),
        mechanism: m,
        salt,
        iterations,
        stored_key: hash(m, &client_key),
        server_key: hmac(m, salted, b"Server Key"),
    }
}

/// A new credential for `password` with a random 32-byte salt.
pub fn new_credential(
    user: &str,
    m: ScramMechanism,
    password: &str,
    iterations: u32,
) -> ScramCredential {
    let mut salt = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    let salted = salted_password(m, password.as_bytes(), &salt, iterations);
    credential_from_salted(user, m, salt, iterations, &salted)
}

/// Whether `password` is the one `cred` was made from (PLAIN logins); constant-time.
pub fn password_matches(cred: &ScramCredential, password: &str) -> bool {
    let salted = salted_password(
        cred.mechanism,
        password.as_bytes(),
        &cred.salt,
        cred.iterations,
    );
    let client_key = hmac(cred.mechanism, &salted, b"Client Key");
    let stored = hash(cred.mechanism, &client_key);
    stored.ct_eq(&cred.stored_key).into()
}

/// A PLAIN message `[authzid] NUL authcid NUL password`, split. Kafka's rules: exactly three
/// parts, a user and a password, and an authorization id that is empty or the user.
pub fn parse_plain(msg: &[u8]) -> Result<(String, String), SaslFailure> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return fail("Invalid SASL/PLAIN response: too long");
    }
    let text =
        std::str::from_utf8(msg).or_else(|_| fail("Invalid SASL/PLAIN response: not UTF-8"))?;
    let parts: Vec<&str> = text.split('\0').collect();
    let [authzid, user, password] = parts[..] else {
        return fail("Invalid SASL/PLAIN response: expected 3 tokens");
    };
    if user.is_empty() {
        return fail("Authentication failed: username not specified");
    }
    if password.is_empty() {
        return fail("Authentication failed: password not specified");
    }
    if !authzid.is_empty() && authzid != user {
        return fail("Authentication failed: Client requested an authorization id that is different from username");
    }
    Ok((user.to_string(), password.to_string()))
}

/// The parts of a client-first message the server needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user, `=2C` and `=3D` decoded.
    pub user: String,
    nonce: String,
    gs2_header: String,
    bare: String,
}

fn utf8(msg: &[u8]) -> Result<&str, SaslFailure> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return fail("Invalid SCRAM message: too long");
    }
    std::str::from_utf8(msg).or_else(|_| fail("Invalid SCRAM message: not UTF-8"))
}

/// Decodes a SCRAM `saslname` (`=2C` is `,`, `=3D` is `=`).
fn decode_saslname(s: &str) -> Result<String, SaslFailure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3);
        match esc {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return fail("Invalid SCRAM username: bad '=' escape"),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Parses a client-first message (`n,,n=user,r=nonce[,ext...]`).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslFailure> {
    let text = utf8(msg)?;
    let mut parts = text.splitn(3, ',');
    let flag = parts.next().unwrap_or("");
    let authzid = parts
        .next()
        .ok_or_else(|| SaslFailure("Invalid SCRAM client first message: no GS2 header".into()))?;
    let bare = parts.next().ok_or_else(|| {
        SaslFailure("Invalid SCRAM client first message: no client-first-bare".into())
    })?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return fail("SCRAM channel binding is not supported"),
        _ => return fail("Invalid SCRAM client first message: bad GS2 flag"),
    }
    let gs2_header = format!("{flag},{authzid},");
    let authzid = match authzid {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=").ok_or_else(|| {
            SaslFailure("Invalid SCRAM client first message: bad authzid".into())
        })?)?),
    };
    let mut fields = bare.split(',');
    let user = fields.next().unwrap_or("");
    if user.starts_with("m=") {
        return fail("Invalid SCRAM client first message: mandatory extensions are not supported");
    }
    let user =
        decode_saslname(user.strip_prefix("n=").ok_or_else(|| {
            SaslFailure("Invalid SCRAM client first message: no username".into())
        })?)?;
    if user.is_empty() {
        return fail("Invalid SCRAM client first message: empty username");
    }
    let nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .filter(|n| printable_nonce(n))
        .ok_or_else(|| SaslFailure("Invalid SCRAM client first message: bad nonce".into()))?;
    for ext in fields {
        if ext.starts_with("tokenauth=") {
            return fail("Delegation token authentication is not supported");
        }
    }
    if let Some(a) = authzid {
        if a != user {
            return fail("Authentication failed: Client requested an authorization id that is different from username");
        }
    }
    Ok(ClientFirst {
        user,
        nonce: nonce.to_string(),
        gs2_header,
        bare: bare.to_string(),
    })
}

/// The server between its first message and the client's final message.
pub struct ServerFirst {
    mechanism: ScramMechanism,
    /// `None`: the user is unknown; the exchange goes on with a made-up salt and fails at
    /// the proof, so the answer does not tell whether a user exists.
    credential: Option<ScramCredential>,
    nonce: String,
    client_nonce: String,
    gs2_header: String,
    auth_prefix: String,
    pub user: String,
}

/// A salt for users that do not exist: the same for the same name within one process.
fn fake_salt(user: &str) -> Vec<u8> {
    static KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        k
    });
    hmac(ScramMechanism::Sha256, &*KEY, user.as_bytes())
}

/// Answers a client-first message; returns the server-first message and the state.
pub fn server_first(
    mechanism: ScramMechanism,
    first: ClientFirst,
    credential: Option<ScramCredential>,
) -> (ServerFirst, Vec<u8>) {
    let mut rnd = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut rnd);
    let nonce = format!("{}{}", first.nonce, B64.encode(rnd));
    let (salt, iterations) = match &credential {
        Some(c) => (c.salt.clone(), c.iterations),
        None => (fake_salt(&first.user), MIN_ITERATIONS),
    };
    let msg = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
    let state = ServerFirst {
        mechanism,
        credential,
        nonce,
        client_nonce: first.nonce,
        gs2_header: first.gs2_header,
        auth_prefix: format!("{},{msg}", first.bare),
        user: first.user,
    };
    (state, msg.into_bytes())
}

impl ServerFirst {
    /// Checks the client-final message; on success returns the server-final message.
    pub fn client_final(self, msg: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        let text = utf8(msg)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| SaslFailure("Invalid SCRAM client final message: no proof".into()))?;
        let mut fields = without_proof.split(',');
        let cbind = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or_else(|| {
                SaslFailure("Invalid SCRAM client final message: no channel binding".into())
            })?;
        if cbind != B64.encode(self.gs2_header.as_bytes()) {
            return fail("Invalid SCRAM client final message: channel binding does not match the first message");
        }
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or_else(|| SaslFailure("Invalid SCRAM client final message: no nonce".into()))?;
        // librdkafka before 2.6.1 puts its own nonce in front once more (librdkafka #4895);
        // Kafka 3.8.1-3.9 accept that too, so Debian's kcat and older clients can log in.
        let doubled = format!("{}{}", self.client_nonce, self.nonce);
        let same = nonce.as_bytes().ct_eq(self.nonce.as_bytes()).unwrap_u8() == 1
            || nonce.as_bytes().ct_eq(doubled.as_bytes()).unwrap_u8() == 1;
        if !same {
            return fail("Invalid SCRAM client final message: nonce does not match");
        }
        let proof = B64
            .decode(proof)
            .or_else(|_| fail("Invalid SCRAM client final message: proof is not base64"))?;
        let m = self.mechanism;
        if proof.len() != hash_len(m) {
            return fail("Invalid SCRAM client final message: proof has the wrong length");
        }
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let invalid = || {
            SaslFailure(format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                m.name()
            ))
        };
        let Some(cred) = self.credential else {
            return Err(invalid());
        };
        let client_signature = hmac(m, &cred.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if hash(m, &client_key).ct_eq(&cred.stored_key).unwrap_u8() != 1 {
            return Err(invalid());
        }
        let server_signature = hmac(m, &cred.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// A client side of SCRAM, for tests and the `broker` tools.
pub mod client {
    use super::*;

    /// The client's first message and what it needs for the final one.
    pub struct Client {
        m: ScramMechanism,
        password: String,
        bare: String,
        nonce: String,
    }

    impl Client {
        pub fn new(m: ScramMechanism, user: &str, password: &str) -> (Client, Vec<u8>) {
            let mut rnd = [0u8; 18];
            rand::thread_rng().fill_bytes(&mut rnd);
            let nonce = B64.encode(rnd);
            let user = user.replace('=', "=3D").replace(',', "=2C");
            let bare = format!("n={user},r={nonce}");
            let first = format!("n,,{bare}").into_bytes();
            (
                Client {
                    m,
                    password: password.to_string(),
                    bare,
                    nonce,
                },
                first,
            )
        }

        /// The final message for the server's first one, and the server signature expected.
        pub fn final_message(&self, server_first: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
            let sf = std::str::from_utf8(server_first).map_err(|e| e.to_string())?;
            let mut r = None;
            let mut s = None;
            let mut i = None;
            for f in sf.split(',') {
                match f.split_at(2.min(f.len())) {
                    ("r=", v) => r = Some(v),
                    ("s=", v) => s = Some(B64.decode(v).map_err(|e| e.to_string())?),
                    ("i=", v) => i = Some(v.parse::<u32>().map_err(|e| e.to_string())?),
                    _ => {}
                }
            }
            let (r, s, i) = (r.ok_or("no r")?, s.ok_or("no s")?, i.ok_or("no i")?);
            if !r.starts_with(&self.nonce) {
                return Err("server nonce does not extend ours".into());
            }
            let salted = salted_password(self.m, self.password.as_bytes(), &s, i);
            let client_key = hmac(self.m, &salted, b"Client Key");
            let stored = hash(self.m, &client_key);
            let without_proof = format!("c=biws,r={r}");
            let auth = format!("{},{sf},{without_proof}", self.bare);
            let sig = hmac(self.m, &stored, auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let server_key = hmac(self.m, &salted, b"Server Key");
            let expect = format!(
                "v={}",
                B64.encode(hmac(self.m, &server_key, auth.as_bytes()))
            );
            Ok((
                format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
                expect.into_bytes(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::client::Client;
    use super::*;

    fn exchange(m: ScramMechanism, stored_pw: &str, user_pw: &str) -> Result<(), SaslFailure> {
        let cred = new_credential("al,i=ce", m, stored_pw, MIN_ITERATIONS);
        let (client, first) = Client::new(m, "al,i=ce", user_pw);
        let cf = parse_client_first(&first)?;
        assert_eq!(cf.user, "al,i=ce");
        let (state, sf) = server_first(m, cf, Some(cred));
        let (fin, expect) = client.final_message(&sf).unwrap();
        let server_final = state.client_final(&fin)?;
        assert_eq!(server_final, expect);
        Ok(())
    }

    #[test]
    fn scram_exchanges_succeed_only_with_the_password() {
        for m in ScramMechanism::ALL {
            exchange(m, "pässword", "pässword").unwrap();
            let e = exchange(m, "pässword", "wrong").unwrap_err();
            assert!(e.0.contains("invalid credentials"), "{e}");
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example, with the server nonce fixed.
    #[test]
    fn rfc_7677_test_vector() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(m, b"pencil", &salt, 4096);
        let cred = credential_from_salted("user", m, salt, 4096, &salted);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        let (mut state, _) = server_first(m, first, Some(cred));
        state.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        state.auth_prefix = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let fin = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            state.client_final(fin).unwrap(),
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    #[test]
    fn plain_checks_against_salted_credentials() {
        let cred = new_credential("bob", ScramMechanism::Sha512, "secret", MIN_ITERATIONS);
        assert!(password_matches(&cred, "secret"));
        assert!(!password_matches(&cred, "secreT"));
        assert_eq!(
            parse_plain(b"\0bob\0secret").unwrap(),
            ("bob".into(), "secret".into())
        );
        assert_eq!(parse_plain(b"bob\0bob\0pw").unwrap().0, "bob");
        for bad in [
            &b"bob\0secret"[..],
            b"x\0bob\0pw",
            b"\0\0pw",
            b"\0bob\0",
            b"\0a\0b\0c",
        ] {
            assert!(parse_plain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_users_fail_at_the_proof_with_a_stable_salt() {
        let m = ScramMechanism::Sha256;
        let (client, first) = Client::new(m, "nobody", "pw");
        let (state, sf) = server_first(m, parse_client_first(&first).unwrap(), None);
        let (_, sf2) = server_first(m, parse_client_first(&first).unwrap(), None);
        let salt = |s: &[u8]| {
            String::from_utf8_lossy(s)
                .split(",s=")
                .nth(1)
                .unwrap()
                .to_string()
        };
        assert_eq!(salt(&sf), salt(&sf2));
        let (fin, _) = client.final_message(&sf).unwrap();
        assert!(state.client_final(&fin).is_err());
    }

    #[test]
    fn malformed_first_messages_are_refused() {
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=u,r=abc",
            b"p=tls-unique,,n=u,r=abc",
            b"n,,m=ext,n=u,r=abc",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,n=u=,r=abc",
            b"n,,n=,r=abc",
            b"n,a=other,n=u,r=abc",
            b"n,,n=u,r=abc,tokenauth=true",
            b"\xff\xfe",
        ] {
            assert!(
                parse_client_first(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_client_first(b"n,a=u,n=u,r=abc").is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, failure_persistence: None, ..Default::default() })]
        /// No client message, however malformed, panics the server at any step.
        #[test]
        fn arbitrary_messages_never_panic(first in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                          fin in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                                          tail in "[a-zA-Z0-9=,+/]{0,120}") {
            let _ = parse_plain(&first);
            let m = ScramMechanism::Sha512;
            // PBKDF2 is left out (slow in debug builds): any salted password will do.
            let cred = credential_from_salted("u", m, vec![7; 16], MIN_ITERATIONS, &[9; 64]);
            for msg in [first.clone(), format!("n,,n=u,r=x{tail}").into_bytes()] {
                if let Ok(cf) = parse_client_first(&msg) {
                    let (state, sf) = server_first(m, cf, Some(cred.clone()));
                    let nonce = String::from_utf8_lossy(&sf).split(',').next().unwrap().to_string();
                    let _ = state.client_final(&fin);
                    let (state, _) = server_first(m, parse_client_first(&msg).unwrap(), Some(cred.clone()));
                    let _ = state.client_final(format!("c=biws,{nonce},p={tail}").as_bytes());
                }
            }
        }
    }
}
