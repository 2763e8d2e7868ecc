//! SASL on the wire against an in-process broker: only ApiVersions and SASL before
//! authentication, the 512 KiB frame limit until then, SCRAM and PLAIN exchanges, sessions
//! that expire without re-authentication, a per-IP connection limit, and malformed tokens
//! (random and mutated SCRAM messages) that never crash the broker.

mod security_support;

use std::time::Duration;

use broker_api::ScramMechanism;
use broker_server::kafka::client::RawClient;
use broker_server::security::scram;
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use security_support::Running;

async fn start(extra: &[&str]) -> Running {
    let mut args = vec!["--listener", "SASL=SASL_PLAINTEXT://127.0.0.1:0"];
    args.extend_from_slice(extra);
    let r = Running::start(&args).await;
    for m in ScramMechanism::ALL {
        r.store
            .put_credential(scram::new_credential("alice", m, "secret", 4096))
            .await
            .unwrap();
    }
    r
}

async fn handshake(c: &mut RawClient, mechanism: &str) -> SaslHandshakeResponse {
    c.call(
        ApiKey::SaslHandshake,
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
    .await
    .unwrap()
}

async fn authenticate(
    c: &mut RawClient,
    bytes: Vec<u8>,
) -> anyhow::Result<SaslAuthenticateResponse> {
    c.call(
        ApiKey::SaslAuthenticate,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
    )
    .await
}

async fn scram_login(
    c: &mut RawClient,
    m: ScramMechanism,
    password: &str,
) -> SaslAuthenticateResponse {
    assert_eq!(handshake(c, m.name()).await.error_code, 0);
    let (client, first) = scram::client::Client::new(m, "alice", password);
    let r = authenticate(c, first).await.unwrap();
    assert_eq!(r.error_code, 0, "{r:?}");
    let (fin, expect) = client.final_message(&r.auth_bytes).unwrap();
    let r = authenticate(c, fin).await.unwrap();
    if r.error_code == 0 {
        assert_eq!(r.auth_bytes.to_vec(), expect, "server signature");
    }
    r
}

async fn metadata(c: &mut RawClient) -> anyhow::Result<MetadataResponse> {
    c.call(ApiKey::Metadata, 9, &MetadataRequest::default())
        .await
}

#[tokio::test]
async fn sasl_listener_serves_only_authenticated_clients() {
    let r = start(&["--connections-max-reauth-ms", "1500"]).await;
    let addr = r.addr("SASL");
    // ApiVersions is served before authentication; anything else closes the connection.
    let mut c = RawClient::connect(addr).await.unwrap();
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert!(v
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslAuthenticate as i16));
    assert!(
        metadata(&mut c).await.is_err(),
        "metadata before authentication"
    );
    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the list.
    let mut c = RawClient::connect(addr).await.unwrap();
    let h = handshake(&mut c, "GSSAPI").await;
    assert_eq!(h.error_code, ResponseError::UnsupportedSaslMechanism.code());
    assert_eq!(h.mechanisms.len(), 3);
    // SCRAM with each hash, and PLAIN, then requests are served.
    for m in ScramMechanism::ALL {
        let mut c = RawClient::connect(addr).await.unwrap();
        let resp = scram_login(&mut c, m, "secret").await;
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.session_lifetime_ms, 1500);
        metadata(&mut c).await.unwrap();
        // Wrong password: SASL_AUTHENTICATION_FAILED, then closed.
        let mut c = RawClient::connect(addr).await.unwrap();
        let resp = scram_login(&mut c, m, "wrong").await;
        assert_eq!(
            resp.error_code,
            ResponseError::SaslAuthenticationFailed.code()
        );
        assert!(metadata(&mut c).await.is_err());
    }
    let mut c = RawClient::connect(addr).await.unwrap();
    assert_eq!(handshake(&mut c, "PLAIN").await.error_code, 0);
    let r2 = authenticate(&mut c, b"\0alice\0secret".to_vec())
        .await
        .unwrap();
    assert_eq!(r2.error_code, 0);
    metadata(&mut c).await.unwrap();
    // Re-authentication on the same connection keeps it going past the first lifetime.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(handshake(&mut c, "PLAIN").await.error_code, 0);
    assert_eq!(
        authenticate(&mut c, b"\0alice\0secret".to_vec())
            .await
            .unwrap()
            .error_code,
        0
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    metadata(&mut c)
        .await
        .expect("re-authenticated session still valid");
    // Without re-authentication the session ends and the next request closes it.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert!(
        metadata(&mut c).await.is_err(),
        "an expired session was served"
    );
    // Frames before authentication are limited to 512 KiB.
    let mut c = RawClient::connect(addr).await.unwrap();
    c.send_raw(&(600_000i32).to_be_bytes()).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read_frame())
        .await
        .unwrap();
    assert!(matches!(closed, Ok(None) | Err(_)), "{closed:?}");
    r.shutdown().await;
}

#[tokio::test]
async fn malformed_sasl_tokens_never_crash_the_broker() {
    let r = start(&[]).await;
    let addr = r.addr("SASL");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid_first = b"n,,n=alice,r=abcdefgh".to_vec();
    for case in 0..150 {
        let mechanism = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"][case % 3];
        let mut c = RawClient::connect(addr).await.unwrap();
        assert_eq!(handshake(&mut c, mechanism).await.error_code, 0);
        // A random token, or a valid first message then a mutated final one.
        let len = (next() % 200) as usize;
        let mut token: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if case % 2 == 1 && mechanism != "PLAIN" {
            let first = authenticate(&mut c, valid_first.clone()).await.unwrap();
            assert_eq!(first.error_code, 0);
            let nonce = String::from_utf8_lossy(&first.auth_bytes)
                .split(',')
                .next()
                .unwrap()
                .to_string();
            let mut fin = format!("c=biws,{nonce},p=").into_bytes();
            fin.extend_from_slice(&token);
            let i = (next() as usize) % fin.len();
            fin[i] = next() as u8;
            token = fin;
        }
        // An answer must be a refusal; a closed connection is one too.
        if let Ok(resp) = authenticate(&mut c, token).await {
            assert_ne!(resp.error_code, 0, "case {case} authenticated");
        }
    }
    // Still serving.
    let mut c = RawClient::connect(addr).await.unwrap();
    scram_login(&mut c, ScramMechanism::Sha256, "secret").await;
    metadata(&mut c).await.unwrap();
    r.shutdown().await;
}

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let r = start(&["--max-connections-per-ip", "2"]).await;
    let addr = r.addr("SASL");
    let mut a = RawClient::connect(addr).await.unwrap();
    let mut b = RawClient::connect(addr).await.unwrap();
    let mut third = RawClient::connect(addr).await.unwrap();
    let v = ApiVersionsRequest::default();
    a.call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 0, &v)
        .await
        .unwrap();
    b.call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 0, &v)
        .await
        .unwrap();
    assert!(third
        .call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 0, &v)
        .await
        .is_err());
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = RawClient::connect(addr).await.unwrap();
    again
        .call::<_, ApiVersionsResponse>(ApiKey::ApiVersions, 0, &v)
        .await
        .unwrap();
    r.shutdown().await;
}

#[tokio::test]
async fn connections_per_principal_are_limited() {
    let r = start(&["--max-connections-per-principal", "2"]).await;
    let addr = r.addr("SASL");
    let m = ScramMechanism::Sha256;
    let mut a = RawClient::connect(addr).await.unwrap();
    let mut b = RawClient::connect(addr).await.unwrap();
    assert_eq!(scram_login(&mut a, m, "secret").await.error_code, 0);
    assert_eq!(scram_login(&mut b, m, "secret").await.error_code, 0);
    metadata(&mut a).await.unwrap();
    metadata(&mut b).await.unwrap();
    // Unauthenticated connections are not the principal's: a third one may connect and
    // log in, and is closed once it is alice's third.
    let mut third = RawClient::connect(addr).await.unwrap();
    assert_eq!(scram_login(&mut third, m, "secret").await.error_code, 0);
    assert!(
        metadata(&mut third).await.is_err(),
        "third connection of alice"
    );
    // The first two keep working; when one closes, alice may connect again.
    metadata(&mut a).await.unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = RawClient::connect(addr).await.unwrap();
    assert_eq!(scram_login(&mut again, m, "secret").await.error_code, 0);
    metadata(&mut again).await.unwrap();
    r.shutdown().await;
}

/// A Produce request of one record batch with `value_len` bytes of value.
fn produce_request(topic: &str, value_len: usize) -> ProduceRequest {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        delete_horizon: false,
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 0,
        key: None,
        value: Some(Bytes::from(vec![b'x'; value_len])),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(buf.freeze())),
            ])])
}

#[tokio::test]
async fn a_produce_over_the_quota_carries_a_throttle_time() {
    // Every principal may produce 10 kB/s.
    let r = start(&[
        "--producer-byte-rate",
        "10000",
        "--allow-everyone-if-no-acl",
    ])
    .await;
    let addr = r.addr("SASL");
    let mut c = RawClient::connect(addr).await.unwrap();
    assert_eq!(
        scram_login(&mut c, ScramMechanism::Sha256, "secret")
            .await
            .error_code,
        0
    );
    // Metadata creates the topic (produce does not, as in Kafka).
    let _: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            9,
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(StrBytes::from_static_str("quota-t"))))]))
                .with_allow_auto_topic_creation(true),
        )
        .await
        .unwrap();
    // 50 kB are due over 5 s, within the window (which counts as at least 10 s).
    let small: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_request("quota-t", 50_000))
        .await
        .unwrap();
    assert_eq!(small.throttle_time_ms, 0, "{small:?}");
    let over: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_request("quota-t", 100_000))
        .await
        .unwrap();
    let errors: Vec<i16> = over
        .responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(errors, vec![0], "the data is stored all the same");
    // 150 kB at 10 kB/s are due over 15 s; the window counts 10 s: about 5 s to wait.
    assert!(
        (4_000..=5_100).contains(&over.throttle_time_ms),
        "throttle {}",
        over.throttle_time_ms
    );
    // The connection is muted meanwhile: the next request is answered after the wait.
    let started = std::time::Instant::now();
    metadata(&mut c).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(3_500),
        "answered after {:?}",
        started.elapsed()
    );
    r.shutdown().await;
}
