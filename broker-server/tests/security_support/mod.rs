//! Shared by the security tests: certificates made on the fly (rcgen), TLS clients, and an
//! in-process server with chosen listeners.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{SharedClock, Store, SystemClock};
use broker_server::config::{Config, StoreKind};
use broker_server::kafka::client::RawClient;
use broker_server::Server;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::oneshot;

/// A CA with a server certificate (localhost, 127.0.0.1) and client certificates, as PEM
/// files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "broker test CA");
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `<name>.pem` and `<name>.key` signed by the CA, for `sans` and subject CN `cn`.
    pub fn issue(&self, name: &str, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(DnType::OrganizationName, "Example");
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (c, k) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    pub fn server(&self) -> (PathBuf, PathBuf) {
        self.issue("server", "localhost", &["localhost", "127.0.0.1"])
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A TLS client trusting `ca`, with an optional client certificate.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((cert, key)) => b
            .with_client_auth_cert(certs(cert), PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// Connects over TLS (server name localhost) and returns a Kafka client on the session.
pub async fn tls_client(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<RawClient> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(RawClient::over(tls))
}

/// An in-process broker on a memory store (or the given store).
pub struct Running {
    pub listeners: Vec<(String, SocketAddr)>,
    pub http: SocketAddr,
    pub store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), broker_server::ServerError>>>,
}

impl Running {
    /// Starts a broker with `args` (flags as on the command line) on a memory store.
    pub async fn start(args: &[&str]) -> Running {
        let mut all = vec!["broker", "--store", "memory", "--http-addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let cli = <broker_server::config::Cli as clap::Parser>::try_parse_from(all).unwrap();
        let config = Config::resolve(cli).unwrap();
        assert_eq!(config.store, StoreKind::Memory);
        let clock: SharedClock = Arc::new(SystemClock);
        let store: Arc<dyn Store> = Arc::new(store_memory::MemoryStore::new(clock.clone()));
        let server = Server::bind(&config, store.clone(), clock).await.unwrap();
        let listeners = server.listener_addrs();
        let http = server.addrs().http;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Running {
            listeners,
            http,
            store,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("server stops within 30 s")
            .unwrap()
            .unwrap();
    }
}
