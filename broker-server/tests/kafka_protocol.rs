//! The Kafka listener, in process on a MemoryStore, driven by a client built on the
//! `kafka-protocol` codecs.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{SharedClock, SystemClock};
use broker_server::config::{Config, StoreKind};
use broker_server::kafka::client::{decode_response, RawClient};
use broker_server::Server;
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;

mod common;
use common::*;
use tokio::sync::oneshot;

fn batch(values: &[&str], producer: Option<(i64, i16, i32)>, compression: Compression) -> Bytes {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut headers = IndexMap::new();
            headers.insert(
                StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"1")),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if seq < 0 { -1 } else { seq + i as i32 },
                timestamp: 1_700_000_000_000 + i as i64,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(v.to_string())),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

fn fetched_values(resp: &FetchResponse) -> Vec<(i64, String)> {
    let p = &resp.responses[0].partitions[0];
    let mut bytes = p.records.clone().expect("records are never null");
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
        for r in set.records {
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            ));
        }
    }
    out
}

#[tokio::test]
async fn api_versions_v3_is_plain_and_complete() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("test"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let (frame, cid) = c.frame(ApiKey::ApiVersions, 3, &req).unwrap();
    c.send_raw(&frame).await.unwrap();
    let raw = c.read_frame().await.unwrap().unwrap();
    // Header v0 (correlation id only), and the body ends with an empty tagged-field section.
    assert_eq!(&raw[..4], &cid.to_be_bytes());
    assert_eq!(
        *raw.last().unwrap(),
        0,
        "no tagged fields in the ApiVersions body"
    );
    let resp: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 3, cid, raw).unwrap();
    assert_eq!(resp.error_code, 0);
    assert!(resp.supported_features.is_empty() && resp.finalized_features.is_empty());
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    assert_eq!((produce.min_version, produce.max_version), (3, 10));
    for key in [
        ApiKey::Fetch,
        ApiKey::JoinGroup,
        ApiKey::InitProducerId,
        ApiKey::DescribeConfigs,
    ] {
        assert!(
            resp.api_keys.iter().any(|k| k.api_key == key as i16),
            "{key:?} missing"
        );
    }
    s.shutdown().await;
}

#[tokio::test]
async fn too_new_api_versions_gets_v0_unsupported_version() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    let (frame, cid) = c
        .frame(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default())
        .unwrap();
    c.send_raw(&frame).await.unwrap();
    let raw = c.read_frame().await.unwrap().unwrap();
    let resp: ApiVersionsResponse = decode_response(ApiKey::ApiVersions, 0, cid, raw).unwrap();
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    assert!(!resp.api_keys.is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn unsupported_api_gets_unsupported_version_and_connection_stays() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    // EndTxn v4 (transaction version 2's error codes) is past the served 0-3.
    let resp: EndTxnResponse = c
        .call(ApiKey::EndTxn, 4, &EndTxnRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    // SASL on a PLAINTEXT listener: Kafka's ILLEGAL_SASL_STATE, and the connection stays.
    let resp: SaslHandshakeResponse = c
        .call(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, ResponseError::IllegalSaslState.code());
    // A served API at a version beyond the advertised range.
    let resp: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, 9, &JoinGroupRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, ResponseError::UnsupportedVersion.code());
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_frame_is_refused_from_its_size_prefix() {
    let s = TestServer::start(64 * 1024).await;
    let mut c = s.client().await;
    // Only the size prefix is sent: the broker must close without waiting for the body.
    c.send_raw(&(1_000_000i32).to_be_bytes()).await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), c.read_frame())
        .await
        .expect("closed without reading the body");
    assert!(
        matches!(r, Ok(None) | Err(_)),
        "expected a closed connection, got {r:?}"
    );
    let mut c2 = s.client().await;
    let _: ApiVersionsResponse = c2
        .call(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
        .await
        .unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn garbage_frames_close_the_connection_and_the_server_keeps_serving() {
    let s = TestServer::start(1 << 20).await;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0, 0],
        vec![0, 18, 0, 3, 0, 0, 0, 1, 255, 255, 255],
        vec![0, 0, 0, 9, 0, 0, 0, 7, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0xff],
        vec![0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f],
        vec![0xff; 64],
        (0..200u8).collect(),
    ];
    for g in garbage {
        let mut c = s.client().await;
        let mut frame = (g.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&g);
        c.send_raw(&frame).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(30), c.read_frame())
            .await
            .expect("the broker answers or closes");
    }
    let mut c = s.client().await;
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn half_a_frame_does_not_block_other_clients() {
    let s = TestServer::start(1 << 20).await;
    let mut staller = s.client().await;
    staller.send_raw(&[0, 0, 0, 100, 0, 18]).await.unwrap();
    let mut c = s.client().await;
    for _ in 0..3 {
        let resp: MetadataResponse = tokio::time::timeout(
            Duration::from_secs(30),
            c.call(ApiKey::Metadata, 9, &MetadataRequest::default()),
        )
        .await
        .expect("another client is served while one stalls")
        .unwrap();
        assert_eq!(resp.brokers.len(), 1);
    }
    drop(staller);
    s.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    create_topic(&mut c, "ordered", 1).await;
    let mut expected = Vec::new();
    let mut out = BytesMut::new();
    for i in 0..60 {
        let (frame, cid) = match i % 3 {
            0 => c
                .frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())
                .unwrap(),
            1 => c
                .frame(ApiKey::Metadata, 4, &MetadataRequest::default())
                .unwrap(),
            _ => c
                .frame(ApiKey::Fetch, 11, &fetch_req("ordered", 0, 0, 0))
                .unwrap(),
        };
        expected.push(cid);
        out.extend_from_slice(&frame);
    }
    c.send_raw(&out).await.unwrap();
    for cid in expected {
        let raw = c.read_frame().await.unwrap().unwrap();
        assert_eq!(&raw[..4], &cid.to_be_bytes(), "responses out of order");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn produce_fetch_and_idempotent_retry() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    create_topic(&mut c, "idem", 2).await;
    let init: InitProducerIdResponse = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);

    let b0 = batch(&["a", "b", "c"], Some((pid, 0, 0)), Compression::None);
    let first = produce(&mut c, "idem", 1, b0.clone()).await;
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    // The same batch again (a retry): same offsets, nothing appended.
    let retry = produce(&mut c, "idem", 1, b0).await;
    assert_eq!((retry.error_code, retry.base_offset), (0, 0));
    // A gap in the sequence is refused.
    let gap = produce(
        &mut c,
        "idem",
        1,
        batch(&["x"], Some((pid, 0, 7)), Compression::None),
    )
    .await;
    assert_eq!(
        gap.error_code,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    let next = produce(
        &mut c,
        "idem",
        1,
        batch(&["d"], Some((pid, 0, 3)), Compression::Gzip),
    )
    .await;
    assert_eq!((next.error_code, next.base_offset), (0, 3));

    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 11, &fetch_req("idem", 1, 1, 0))
        .await
        .unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.last_stable_offset),
        (0, 4, 4)
    );
    // Whole stored batches come back, as from Kafka: the first one also holds offset 0,
    // which a client skips.
    let got = fetched_values(&resp);
    assert_eq!(got.first(), Some(&(0, "a".into())), "{got:?}");
    assert_eq!(
        got.into_iter().filter(|(o, _)| *o >= 1).collect::<Vec<_>>(),
        vec![(1, "b".into()), (2, "c".into()), (3, "d".into())]
    );
    // Fetching at the end returns empty bytes, never null.
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 4, &fetch_req("idem", 1, 4, 10))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partitions[0].records.as_deref(),
        Some(&b""[..])
    );
    // Out of range.
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 11, &fetch_req("idem", 1, 99, 0))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );

    // ListOffsets: earliest, latest and by timestamp.
    let lo = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("idem"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(1)
                    .with_timestamp(ts)])])
    };
    for (ts, want) in [
        (-2, 0),
        (-1, 4),
        (1_700_000_000_001, 1),
        (1_800_000_000_000, -1),
    ] {
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &lo(ts)).await.unwrap();
        assert_eq!(r.topics[0].partitions[0].offset, want, "timestamp {ts}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    create_topic(&mut c, "poll", 1).await;
    let addr = s.addr;
    let waiter = tokio::spawn(async move {
        let mut c = RawClient::connect(addr).await.unwrap();
        let resp: FetchResponse = c
            .call(ApiKey::Fetch, 11, &fetch_req("poll", 0, 0, 20_000))
            .await
            .unwrap();
        resp
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = produce(&mut c, "poll", 0, batch(&["late"], None, Compression::None)).await;
    assert_eq!(r.error_code, 0);
    let resp = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("the long poll returns when data arrives, before its max wait")
        .unwrap();
    assert_eq!(fetched_values(&resp), vec![(0, "late".into())]);
    s.shutdown().await;
}

#[tokio::test]
async fn metadata_auto_creates_and_describe_configs_reports_settings() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name("auto")))]))
        .with_allow_auto_topic_creation(true);
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 9, &req).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 2);

    let req = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(name("conf"))
            .with_num_partitions(3)
            .with_replication_factor(-1)
            .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("60000")))]),
    ]);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 7, &req).await.unwrap();
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );

    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("conf"))
            .with_configuration_keys(None),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).await.unwrap();
    let configs = &resp.results[0].configs;
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_ref().unwrap().as_str(), "60000");

    let req = DeleteTopicsRequest::default().with_topic_names(vec![name("conf")]);
    let resp: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, 4, &req).await.unwrap();
    assert_eq!(resp.responses[0].error_code, 0);
    s.shutdown().await;
}

#[tokio::test]
async fn fetch_reads_only_what_fits_the_byte_limits() {
    let s = TestServer::start(8 << 20).await;
    let mut c = s.client().await;
    create_topic(&mut c, "backlog", 1).await;
    let values: Vec<String> = (0..5000).map(|i| format!("value-{i:06}")).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    for _ in 0..40 {
        let r = produce(&mut c, "backlog", 0, batch(&refs, None, Compression::Lz4)).await;
        assert_eq!(r.error_code, 0);
    }
    // 200,000 records behind the fetch offset; the partition limit allows about 4 KiB.
    let mut req = fetch_req("backlog", 0, 1234, 10_000);
    req.topics[0].partitions[0].partition_max_bytes = 4096;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await.unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 200_000);
    let got = fetched_values(&resp);
    assert!(
        !got.is_empty() && got.len() < 400,
        "{} records for a 4 KiB limit",
        got.len()
    );
    assert_eq!(got[0], (1234, "value-001234".to_string()));
    let encoded = p.records.as_ref().unwrap().len();
    assert!(
        encoded <= 4096 + 200,
        "{encoded} bytes for {} records",
        got.len()
    );
    // The request-wide limit caps the sum over partitions in the same way.
    let mut req = fetch_req("backlog", 0, 0, 10_000);
    req.max_bytes = 2048;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &req).await.unwrap();
    let n = fetched_values(&resp).len();
    assert!(n > 0 && n < 200, "{n} records for a 2 KiB request limit");
    s.shutdown().await;
}

#[tokio::test]
async fn acks_zero_gets_no_response_and_delete_records_moves_the_log_start() {
    let s = TestServer::start(1 << 20).await;
    let mut c = s.client().await;
    create_topic(&mut c, "acks0", 1).await;
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("acks0"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(
                    &["a", "b", "c", "d"],
                    None,
                    Compression::Snappy,
                )))])]);
    let (frame, _) = c.frame(ApiKey::Produce, 9, &req).unwrap();
    c.send_raw(&frame).await.unwrap();
    // The next response on the connection belongs to the next request.
    let resp: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);

    let req = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("acks0"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(2),
            ]),
    ]);
    let resp: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 2));
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 11, &fetch_req("acks0", 0, 2, 0))
        .await
        .unwrap();
    assert_eq!(resp.responses[0].partitions[0].log_start_offset, 2);
    assert_eq!(
        fetched_values(&resp),
        vec![(2, "c".to_string()), (3, "d".to_string())]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn unknown_topics_are_reported_when_auto_create_is_off() {
    let config = Config {
        store: StoreKind::Memory,
        kafka_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        auto_create_topics: false,
        ..Config::default()
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Arc::new(store_memory::MemoryStore::new(clock.clone()));
    let server = Server::bind(&config, store, clock).await.unwrap();
    let addr = server.addrs().kafka;
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    let mut c = RawClient::connect(addr).await.unwrap();
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name("missing")))]))
        .with_allow_auto_topic_creation(true);
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 9, &req).await.unwrap();
    assert_eq!(
        resp.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let r = produce(&mut c, "missing", 0, batch(&["x"], None, Compression::None)).await;
    assert_eq!(r.error_code, ResponseError::UnknownTopicOrPartition.code());
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}
