//! TLS listeners: several listeners at once, each advertising its own address; SSL with and
//! without client certificates (mTLS); TLS 1.2 and 1.3 only.

mod security_support;

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
    let (cert, key) = pki.server();
    let (ccert, ckey) = pki.issue("alice", "alice", &["alice"]);
    let other = Pki::new();
    let (bad_cert, bad_key) = other.issue("mallory", "mallory", &["mallory"]);
    let ca = pki.path("ca.pem");
    let r = Running::start(&[
        "--listener",
        "SSL://127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        ca.to_str().unwrap(),
    ])
    .await;
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
    let (cert, key) = pki.server();
    let r = Running::start(&[
        "--listener",
        "SSL://127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;
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
