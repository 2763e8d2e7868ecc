//! TLS listeners: several listeners at once, each advertising its own address; SSL with and
//! without client certificates (mTLS); TLS 1.2 and 1.3 only.

mod security_support;

use std::time::Duration;

use kafka_protocol::messages::*;
use security_support::{client_config, tls_client, Pki, Running};

async fn metadata_broker(c: &mut broker_server::kafka::client::RawClient) -> (String, i32) {
    let resp: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await
        .unwrap();
    (resp.brokers[0].host.to_string(), resp.brokers[0].port)
}

/// A broker with one SSL listener whose certificate `pki` signed, and `extra` flags.
async fn ssl_broker(pki: &Pki, extra: &[&str]) -> Running {
    let (cert, key) = pki.server();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut args = vec![
        "--listener",
        "SSL://127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(extra);
    Running::start(&args).await
}

#[tokio::test]
async fn each_listener_advertises_its_own_address() {
    let pki = Pki::new();
    let (cert, key) = pki.server();
    let r = Running::start(&[
        "--kafka-addr",
        "127.0.0.1:0",
        "--listener",
        "SECURE=SSL://127.0.0.1:0",
        "--listener",
        "INTERNAL=PLAINTEXT://127.0.0.1:0",
        "--advertised-listener",
        "SECURE=kafka.example.com:19093",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        r.listeners
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["PLAINTEXT", "SECURE", "INTERNAL"]
    );
    let plain = r.addr("PLAINTEXT");
    let mut c = broker_server::kafka::client::RawClient::connect(plain)
        .await
        .unwrap();
    assert_eq!(
        metadata_broker(&mut c).await,
        ("127.0.0.1".to_string(), plain.port() as i32)
    );
    let internal = r.addr("INTERNAL");
    let mut c = broker_server::kafka::client::RawClient::connect(internal)
        .await
        .unwrap();
    assert_eq!(
        metadata_broker(&mut c).await,
        ("127.0.0.1".to_string(), internal.port() as i32)
    );
    let mut c = tls_client(r.addr("SECURE"), client_config(&pki.path("ca.pem"), None))
        .await
        .unwrap();
    assert_eq!(
        metadata_broker(&mut c).await,
        ("kafka.example.com".to_string(), 19093)
    );
    // FindCoordinator answers with the same listener's address.
    let resp: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key("g".into()),
        )
        .await
        .unwrap();
    assert_eq!(
        (resp.host.as_str(), resp.port),
        ("kafka.example.com", 19093)
    );
    // Plain Kafka bytes on the TLS port get no Kafka answer.
    let mut raw = broker_server::kafka::client::RawClient::connect(r.addr("SECURE"))
        .await
        .unwrap();
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        raw.call::<_, MetadataResponse>(ApiKey::Metadata, 9, &MetadataRequest::default()),
    )
    .await
    .expect("the broker closes a non-TLS client");
    assert!(res.is_err());
    r.shutdown().await;
}

#[tokio::test]
async fn ssl_listener_with_a_client_ca_requires_a_client_certificate() {
    let pki = Pki::new();
    let (ccert, ckey) = pki.issue("alice", "alice", &["alice"]);
    let other = Pki::new();
    let (bad_cert, bad_key) = other.issue("mallory", "mallory", &["mallory"]);
    let ca = pki.path("ca.pem");
    let r = ssl_broker(&pki, &["--tls-client-ca", ca.to_str().unwrap()]).await;
    let addr = r.addr("SSL");
    // With a certificate signed by the client CA: served.
    let mut c = tls_client(addr, client_config(&ca, Some((&ccert, &ckey))))
        .await
        .unwrap();
    let (_, port) = metadata_broker(&mut c).await;
    assert_eq!(port, addr.port() as i32);
    // Without one, or with one from another CA: refused (at the handshake, or at the first
    // read under TLS 1.3 where the server checks the client's certificate last).
    for config in [
        client_config(&ca, None),
        client_config(&ca, Some((&bad_cert, &bad_key))),
    ] {
        let refused = match tls_client(addr, config).await {
            Err(_) => true,
            Ok(mut c) => c
                .call::<_, MetadataResponse>(ApiKey::Metadata, 9, &MetadataRequest::default())
                .await
                .is_err(),
        };
        assert!(refused, "a client without a valid certificate was served");
    }
    r.shutdown().await;
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_offered() {
    let pki = Pki::new();
    let r = ssl_broker(&pki, &[]).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_file_iter(pki.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut c = tls_client(r.addr("SSL"), std::sync::Arc::new(config))
            .await
            .unwrap();
        metadata_broker(&mut c).await;
    }
    r.shutdown().await;
}

#[test]
fn tls_settings_are_checked_at_start() {
    use broker_server::config::{Cli, Config};
    let resolve = |args: &[&str]| {
        let mut all = vec!["broker"];
        all.extend_from_slice(args);
        Config::resolve(<Cli as clap::Parser>::try_parse_from(all).unwrap())
    };
    let e = resolve(&["--listener", "S=SSL://127.0.0.1:0"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs --tls-cert"), "{e}");
    let e = resolve(&["--http-tls"]).unwrap_err().to_string();
    assert!(e.contains("--http-tls needs --tls-cert"), "{e}");
    let e = resolve(&[
        "--listener",
        "A=SSL://127.0.0.1:0",
        "--advertised-listener",
        "B=h:1",
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("no --listener is named B"), "{e}");
    let e = resolve(&[
        "--listener",
        "A=PLAINTEXT://127.0.0.1:0",
        "--listener",
        "A=PLAINTEXT://127.0.0.1:0",
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("used twice"), "{e}");
    // --listener alone replaces the default PLAINTEXT listener; with --kafka-addr both serve.
    let c = resolve(&["--listener", "A=PLAINTEXT://127.0.0.1:0"]).unwrap();
    assert_eq!(c.security.kafka_listeners(c.kafka_addr, None).len(), 1);
    let c = resolve(&[
        "--kafka-addr",
        "127.0.0.1:0",
        "--listener",
        "A=PLAINTEXT://127.0.0.1:0",
    ])
    .unwrap();
    assert_eq!(c.security.kafka_listeners(c.kafka_addr, None).len(), 2);
}

/// A small deterministic generator (xorshift64*), so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The first flight a real rustls client sends (its ClientHello record).
fn client_hello(config: std::sync::Arc<rustls::ClientConfig>) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        config,
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Inputs for the handshake: the real ClientHello with bytes flipped, cut short, record
/// lengths made huge, garbage after it, or plain noise.
fn mutations(hello: &[u8], n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let mut m = hello.to_vec();
            match i % 5 {
                0 => {
                    for _ in 0..1 + rng.below(8) {
                        let at = rng.below(m.len());
                        m[at] ^= 1 << rng.below(8);
                    }
                }
                1 => m.truncate(rng.below(m.len())),
                2 => {
                    // Record length, or handshake length, set to a large value.
                    let at = if rng.below(2) == 0 { 3 } else { 6 };
                    m[at] = 0xff;
                    m[at + 1] = 0xff;
                }
                3 => m.extend((0..rng.below(4096)).map(|_| rng.next() as u8)),
                _ => {
                    m = (0..1 + rng.below(20_000))
                        .map(|_| rng.next() as u8)
                        .collect();
                    if rng.below(2) == 0 {
                        // Looks like a handshake record from the first bytes on.
                        m.splice(0..0, [0x16, 0x03, 0x03]);
                    }
                }
            }
            m
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tls_handshakes_never_crash_the_broker() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let r = ssl_broker(&pki, &[]).await;
    let addr = r.addr("SSL");
    // A panic in a connection task would not stop an in-process server: count them.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        previous(info);
    }));
    let config = client_config(&pki.path("ca.pem"), None);
    let hello = client_hello(config.clone());
    assert_eq!(hello[0], 0x16, "a handshake record");
    let inputs = mutations(&hello, 300, 0x5eed_7153);
    for chunk in inputs.chunks(25) {
        let mut tasks = tokio::task::JoinSet::new();
        for input in chunk {
            let input = input.clone();
            tasks.spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                // The broker may close before reading everything: write errors are fine.
                let _ = s.write_all(&input).await;
                let mut buf = vec![0u8; 16 * 1024];
                let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
                while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
        while let Some(res) = tasks.join_next().await {
            res.unwrap();
        }
        // After every batch a real client still completes a handshake and is served.
        let mut c = tls_client(addr, config.clone()).await.unwrap();
        metadata_broker(&mut c).await;
    }
    assert_eq!(
        PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "panics"
    );
    r.shutdown().await;
}
