//! Shared by the Kafka protocol tests: an in-process server on a MemoryStore and small
//! request helpers.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use broker_api::{SharedClock, SystemClock};
use broker_server::config::{Config, StoreKind};
use broker_server::kafka::client::RawClient;
use broker_server::Server;
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

pub struct TestServer {
    pub http: std::net::SocketAddr,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), broker_server::ServerError>>>,
}

impl TestServer {
    pub async fn start(max_frame_bytes: usize) -> TestServer {
        TestServer::start_with(Config {
            max_frame_bytes,
            default_partitions: 2,
            ..Config::default()
        })
        .await
    }

    /// A server with `config` on a MemoryStore, its listeners on free loopback ports.
    pub async fn start_with(config: Config) -> TestServer {
        let config = Config {
            store: StoreKind::Memory,
            kafka_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            ..config
        };
        let clock: SharedClock = Arc::new(SystemClock);
        let store = Arc::new(store_memory::MemoryStore::new(clock.clone()));
        let server = Server::bind(&config, store, clock).await.unwrap();
        let addr = server.addrs().kafka;
        let http = server.addrs().http;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            http,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> RawClient {
        RawClient::connect(self.addr).await.unwrap()
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

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub async fn create_topic(c: &mut RawClient, topic: &str, partitions: i32) {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(1000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &req).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

pub async fn produce(
    c: &mut RawClient,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await.unwrap();
    resp.responses[0].partition_responses[0].clone()
}

pub fn fetch_req(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)])])
}

/// Commits `offsets` ((partition, offset)) of `group` on `topic` as an admin tool does
/// (generation -1, no member); every partition must succeed.
pub async fn commit(c: &mut RawClient, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )]);
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &req).await.unwrap();
    for p in &resp.topics[0].partitions {
        assert_eq!(p.error_code, 0, "{p:?}");
    }
}

/// A JoinGroup of a new consumer-protocol member of `group` (range assignor, 30 s timeouts).
pub fn consumer_join(group: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
        )
        .with_name(StrBytes::from_static_str("range"))
        .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))])
}
