//! How `broker admin` reaches a listener that is not PLAINTEXT: a TLS session (trusting the
//! CA of `--tls-ca`, with an optional client certificate), then a SASL exchange (PLAIN or
//! SCRAM) with the user of `--sasl-username` and the password of `BROKER_SASL_PASSWORD`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use broker_api::ScramMechanism;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::kafka::client::RawClient;
use crate::security::listener::SecurityProtocol;
use crate::security::scram;

/// The environment variable `broker admin` reads the SASL password from (never a flag, so
/// that it does not show in process lists or shell history).
pub const PASSWORD_ENV: &str = "BROKER_SASL_PASSWORD";

/// The client side of a listener's security protocol.
pub struct ClientSecurity {
    protocol: SecurityProtocol,
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Sasl>,
}

struct Sasl {
    mechanism: String,
    user: String,
    password: String,
}

/// What the admin flags say about security.
pub struct SecurityFlags {
    pub protocol: String,
    pub tls_ca: Option<PathBuf>,
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
    pub sasl_mechanism: String,
    pub sasl_username: Option<String>,
}

fn pem_certs(path: &std::path::Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    crate::security::tls::read_certs(path, flag).map_err(anyhow::Error::msg)
}

impl ClientSecurity {
    /// Checks the flags (and reads the files and the password) before connecting.
    pub fn from_flags(f: &SecurityFlags) -> anyhow::Result<ClientSecurity> {
        let protocol: SecurityProtocol = f
            .protocol
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--security-protocol: {e}"))?;
        let tls = if protocol.is_tls() {
            let ca = f.tls_ca.as_ref().context(
                "--security-protocol SSL/SASL_SSL needs --tls-ca (the CA that signed the broker's certificate)",
            )?;
            let mut roots = rustls::RootCertStore::empty();
            for c in pem_certs(ca, "--tls-ca")? {
                roots
                    .add(c)
                    .with_context(|| format!("--tls-ca {}: unusable CA", ca.display()))?;
            }
            let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .context("TLS settings")?
            .with_root_certificates(roots);
            let config = match (&f.tls_client_cert, &f.tls_client_key) {
                (Some(cert), Some(key)) => {
                    let chain = pem_certs(cert, "--tls-client-cert")?;
                    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
                        format!("--tls-client-key {}: not a PEM private key", key.display())
                    })?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .context("--tls-client-cert/--tls-client-key do not match")?
                }
                (None, None) => builder.with_no_client_auth(),
                _ => bail!("--tls-client-cert and --tls-client-key go together"),
            };
            Some(Arc::new(config))
        } else {
            None
        };
        let sasl = if protocol.is_sasl() {
            let mechanism = f.sasl_mechanism.to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                bail!(
                    "--sasl-mechanism {:?}: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    f.sasl_mechanism
                );
            }
            let user = f
                .sasl_username
                .clone()
                .context("--security-protocol SASL_* needs --sasl-username")?;
            let password = std::env::var(PASSWORD_ENV).map_err(|_| {
                anyhow::anyhow!("--security-protocol SASL_* needs the password in {PASSWORD_ENV}")
            })?;
            Some(Sasl {
                mechanism,
                user,
                password,
            })
        } else {
            None
        };
        Ok(ClientSecurity {
            protocol,
            tls,
            sasl,
        })
    }

    /// Connects to `addr` (`HOST:PORT`): TCP, then TLS and SASL as the protocol says.
    pub async fn connect(&self, addr: &str) -> anyhow::Result<RawClient> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut client = match &self.tls {
            None => RawClient::over(tcp),
            Some(config) => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .with_context(|| format!("{host:?} is not a TLS server name"))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {addr} ({})", self.protocol))?;
                RawClient::over(tls)
            }
        };
        if let Some(sasl) = &self.sasl {
            authenticate(&mut client, sasl)
                .await
                .with_context(|| format!("SASL {} as {:?}", sasl.mechanism, sasl.user))?;
        }
        Ok(client)
    }
}

/// One SaslAuthenticate round: the server's answer, or its error message.
async fn sasl_step(c: &mut RawClient, bytes: Vec<u8>) -> anyhow::Result<Bytes> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    let r: SaslAuthenticateResponse = c.call(ApiKey::SaslAuthenticate, 2, &req).await?;
    if r.error_code != 0 {
        bail!(
            "{}",
            r.error_message
                .as_ref()
                .map_or("authentication failed", |m| m.as_str())
        );
    }
    Ok(r.auth_bytes)
}

async fn authenticate(c: &mut RawClient, sasl: &Sasl) -> anyhow::Result<()> {
    let h: SaslHandshakeResponse = c
        .call(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(sasl.mechanism.clone())),
        )
        .await?;
    if h.error_code != 0 {
        let offered: Vec<&str> = h.mechanisms.iter().map(|m| m.as_str()).collect();
        bail!(
            "the broker refused the mechanism (error {}); it offers {offered:?}",
            h.error_code
        );
    }
    if sasl.mechanism == "PLAIN" {
        let mut msg = vec![0u8];
        msg.extend_from_slice(sasl.user.as_bytes());
        msg.push(0);
        msg.extend_from_slice(sasl.password.as_bytes());
        sasl_step(c, msg).await?;
        return Ok(());
    }
    let m: ScramMechanism = sasl.mechanism.parse().map_err(anyhow::Error::msg)?;
    let (client, first) = scram::client::Client::new(m, &sasl.user, &sasl.password);
    let server_first = sasl_step(c, first).await?;
    let (last, expected) = client
        .final_message(&server_first)
        .map_err(|e| anyhow::anyhow!("unexpected SCRAM server message: {e}"))?;
    let server_final = sasl_step(c, last).await?;
    if server_final.as_ref() != expected.as_slice() {
        bail!("the broker's SCRAM signature is wrong (not the broker that holds the credential)");
    }
    Ok(())
}
