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
        let config = Config {
            store: StoreKind::Memory,
            kafka_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            max_frame_bytes,
            default_partitions: 2,
            ..Config::default()
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
