//! TLS for the listeners (rustls over ring; TLS 1.2 and 1.3 only): the certificate and key
//! from PEM files, reloaded on demand (SIGHUP) so that new connections get the new
//! certificate while open ones keep theirs; optional client certificates (mTLS) whose subject
//! becomes the principal `User:CN=...,O=...` as Kafka's default SSL principal builder makes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// The PEM files of the TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
    /// CA certificates that sign client certificates (`--tls-client-ca`); enables mTLS.
    pub client_ca: Option<PathBuf>,
}

/// Whether a listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A certificate signed by `--tls-client-ca` is required (SSL listeners with a client CA).
    Required,
    /// A certificate is verified when the client sends one (SASL_SSL listeners).
    Optional,
    /// None is asked for (no client CA; the HTTP listener).
    None,
}

/// The server configurations built from one reading of the files.
struct Loaded {
    required: Arc<ServerConfig>,
    optional: Arc<ServerConfig>,
    none: Arc<ServerConfig>,
}

/// The TLS settings in force; [`TlsState::reload`] swaps them atomically.
pub struct TlsState {
    files: TlsFiles,
    loaded: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("files", &self.files)
            .finish()
    }
}

impl TlsState {
    /// Reads and checks the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<Arc<TlsState>, String> {
        let loaded = build(&files)?;
        Ok(Arc::new(TlsState {
            files,
            loaded: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// Whether client certificates are checked against a CA.
    pub fn has_client_ca(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// Reads the files again; on success new handshakes use them, on failure the previous
    /// certificate stays in force and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = build(&self.files)?;
        *self.loaded.write() = Arc::new(loaded);
        Ok(())
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self, auth: ClientAuth) -> TlsAcceptor {
        let loaded = self.loaded.read().clone();
        TlsAcceptor::from(match auth {
            ClientAuth::Required => loaded.required.clone(),
            ClientAuth::Optional => loaded.optional.clone(),
            ClientAuth::None => loaded.none.clone(),
        })
    }

    /// The server configuration in force for `auth` (for the HTTP listener's ALPN).
    pub fn config(&self, auth: ClientAuth) -> Arc<ServerConfig> {
        let loaded = self.loaded.read().clone();
        match auth {
            ClientAuth::Required => loaded.required.clone(),
            ClientAuth::Optional => loaded.optional.clone(),
            ClientAuth::None => loaded.none.clone(),
        }
    }
}

/// Reloads `state` on every SIGHUP until `stop` turns true; a failed reload is logged and
/// the old certificate kept. The handler is installed at the call (inside the runtime), so a
/// SIGHUP right after start-up already reloads instead of ending the process.
pub fn reload_on_sighup(
    state: Arc<TlsState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hup = match hup {
                Ok(s) => s,
                Err(e) => {
                    warn!("cannot watch SIGHUP, certificates will not reload: {e}");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = crate::kafka::stopped(&mut stop) => return,
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        match state.reload() {
                            Ok(()) => info!(cert = %state.files.cert.display(), "TLS certificate reloaded (SIGHUP); new connections use it"),
                            Err(e) => warn!("TLS reload failed, the previous certificate stays in force: {e}"),
                        }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (state, &mut stop);
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The PEM certificates of `path` (at least one); errors name `what` (the flag) and the file.
pub(crate) fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM in {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no CERTIFICATE block",
            path.display()
        ));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<Loaded, String> {
    let certs = read_certs(&files.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "--tls-key {}: no usable private key (PKCS#8, RSA or EC PEM): {e}",
            files.key.display()
        )
    })?;
    let base = || {
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))
    };
    let finish = |b: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>| {
        b.with_single_cert(certs.clone(), key.clone_key())
            .map(Arc::new)
            .map_err(|e| {
                format!(
                    "--tls-cert {} and --tls-key {} do not make a usable pair: {e}",
                    files.cert.display(),
                    files.key.display()
                )
            })
    };
    let none = finish(base()?.with_no_client_auth())?;
    let (required, optional) = match &files.client_ca {
        None => (none.clone(), none.clone()),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca, "--tls-client-ca")? {
                roots
                    .add(c)
                    .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            }
            let roots = Arc::new(roots);
            let strict = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            let lenient = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
            (
                finish(base()?.with_client_cert_verifier(strict))?,
                finish(base()?.with_client_cert_verifier(lenient))?,
            )
        }
    };
    Ok(Loaded {
        required,
        optional,
        none,
    })
}

/// The principal of a verified client certificate: `User:` and its subject as RFC 2253
/// writes it (most specific first, `CN=client,OU=eng,O=Example`), which is Kafka's default.
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(format!("User:{}", rfc2253(cert.subject())))
}

fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    use x509_parser::der_parser::oid;
    let rdns: Vec<_> = name.iter().collect();
    let mut out = Vec::new();
    for rdn in rdns.iter().rev() {
        let mut parts = Vec::new();
        for atv in rdn.iter() {
            let oid = atv.attr_type();
            let short = [
                (oid!(2.5.4 .3), "CN"),
                (oid!(2.5.4 .6), "C"),
                (oid!(2.5.4 .7), "L"),
                (oid!(2.5.4 .8), "ST"),
                (oid!(2.5.4 .9), "STREET"),
                (oid!(2.5.4 .10), "O"),
                (oid!(2.5.4 .11), "OU"),
                (oid!(0.9.2342 .19200300 .100 .1 .25), "DC"),
                (oid!(0.9.2342 .19200300 .100 .1 .1), "UID"),
            ]
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| oid.to_id_string());
            let value = atv
                .as_str()
                .map(escape)
                .unwrap_or_else(|_| format!("#{}", hex::encode(atv.attr_value().data)));
            parts.push(format!("{short}={value}"));
        }
        out.push(parts.join("+"));
    }
    out.join(",")
}

/// RFC 2253 escaping of an attribute value.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == ' ' || c == '#'))
            || (i == last && c == ' ');
        if special {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_become_kafka_principals() {
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_principal(cert.der()).as_deref(),
            Some("User:CN=alice,O=Example\\, Inc")
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not pem").unwrap();
        let e = TlsState::load(TlsFiles {
            cert: cert.clone(),
            key: cert.clone(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(e.contains("--tls-cert") && e.contains("c.pem"), "{e}");
    }
}
