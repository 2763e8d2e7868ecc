//! Kafka APIs beyond produce and fetch, through the wire: configs, topic ids, fetch sessions,
//! cluster and leader-epoch APIs, record headers, and requests with trailing bytes.

use broker_api::{Header, StoredRecord};
use broker_server::kafka::records::{decode_batches, encode_batch};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

mod common;
use common::*;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn create(c: &mut broker_server::kafka::client::RawClient, t: CreatableTopic) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(1000);
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &req).await.unwrap();
    resp.topics[0].error_code
}

async fn describe_topic_config(
    c: &mut broker_server::kafka::client::RawClient,
    topic: &str,
    key: &str,
) -> (String, i8) {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configuration_keys(Some(vec![s(key)])),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).await.unwrap();
    let r = &resp.results[0];
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let c = &r.configs[0];
    (c.value.as_ref().unwrap().to_string(), c.config_source)
}

#[tokio::test]
async fn topic_settings_are_checked_altered_and_described() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    let bad = CreatableTopic::default()
        .with_name(name("cfg"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(s("no.such.setting"))
            .with_value(Some(s("1")))]);
    assert_eq!(
        create(&mut c, bad).await,
        ResponseError::InvalidConfig.code()
    );
    let good = CreatableTopic::default()
        .with_name(name("cfg"))
        .with_num_partitions(1)
        .with_replication_factor(3)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(s("min.insync.replicas"))
            .with_value(Some(s("2")))]);
    assert_eq!(create(&mut c, good).await, 0);
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "min.insync.replicas").await,
        ("2".to_string(), 1)
    );

    let alter = |name: &str, op: i8, value: Option<&str>| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("cfg"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s(name))
                    .with_config_operation(op)
                    .with_value(value.map(s))]),
        ])
    };
    let resp: IncrementalAlterConfigsResponse = c
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter("retention.ms", 0, Some("60000")),
        )
        .await
        .unwrap();
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "retention.ms").await.0,
        "60000"
    );
    let resp: IncrementalAlterConfigsResponse = c
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter("retention.ms", 0, Some("soon")),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let msg = resp.responses[0]
        .error_message
        .as_ref()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("soon") && msg.contains("retention.ms"),
        "{msg}"
    );
    // DELETE puts a setting back to its default.
    let resp: IncrementalAlterConfigsResponse = c
        .call(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter("min.insync.replicas", 1, None),
        )
        .await
        .unwrap();
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "min.insync.replicas").await,
        ("1".to_string(), 5)
    );
    // The legacy AlterConfigs replaces the whole set: retention goes back to its default.
    let req = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s("cfg"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s("preallocate"))
                .with_value(Some(s("true")))]),
    ]);
    let resp: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, 1, &req).await.unwrap();
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "retention.ms").await.0,
        "-1"
    );
    assert_eq!(
        describe_topic_config(&mut c, "cfg", "preallocate").await.0,
        "true"
    );
    // GROUP resources hold the share-group settings (defaults until set); an unknown resource
    // type is INVALID_REQUEST, naming it.
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(32)
            .with_resource_name(s("some-group")),
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(99)
            .with_resource_name(s("x")),
    ]);
    let resp: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &req).await.unwrap();
    assert_eq!(resp.results[0].error_code, 0);
    let reset = resp.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "share.auto.offset.reset")
        .expect("share.auto.offset.reset is described");
    assert_eq!(reset.value.as_ref().map(|v| v.as_str()), Some("latest"));
    assert_eq!(
        resp.results[1].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert!(resp.results[1]
        .error_message
        .as_ref()
        .is_some_and(|m| m.as_str().contains("99")));
    srv.shutdown().await;
}

#[tokio::test]
async fn replication_factors_and_assignments_follow_the_live_brokers() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    let rf = |n: &str, f: i16| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(2)
            .with_replication_factor(f)
    };
    assert_eq!(create(&mut c, rf("rf3", 3)).await, 0);
    assert_eq!(
        create(&mut c, rf("rf4", 4)).await,
        ResponseError::InvalidReplicationFactor.code()
    );
    let assigned = |n: &str, brokers: Vec<i32>| {
        CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(vec![CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(brokers.into_iter().map(BrokerId).collect())])
    };
    assert_eq!(create(&mut c, assigned("manual", vec![0])).await, 0);
    assert_eq!(
        create(&mut c, assigned("elsewhere", vec![7])).await,
        ResponseError::BrokerNotAvailable.code()
    );
    // Every partition reports the one broker as leader, replica and in-sync replica.
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("rf3")))
        ]))
        .with_include_topic_authorized_operations(true);
    let resp: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await.unwrap();
    let t = &resp.topics[0];
    assert_eq!(t.partitions.len(), 2);
    for p in &t.partitions {
        assert_eq!(p.replica_nodes, vec![BrokerId(0)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(0)]);
        assert_eq!(p.leader_epoch, 0);
    }
    assert!(!t.topic_id.is_nil());
    assert!(t.topic_authorized_operations > 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn duplicate_headers_are_kept_in_order_through_produce_and_fetch() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "hdr", 1).await;
    let header = |k: &str, v: &str| Header {
        key: k.into(),
        value: Some(Bytes::from(v.to_string())),
    };
    let record = StoredRecord {
        offset: 0,
        timestamp_ms: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: vec![header("a", "1"), header("b", "x"), header("a", "2")],
        not_before_ms: None,
    };
    let p = produce(
        &mut c,
        "hdr",
        0,
        encode_batch(std::slice::from_ref(&record), false),
    )
    .await;
    assert_eq!(p.error_code, 0);
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_req("hdr", 0, 0, 0))
        .await
        .unwrap();
    let bytes = resp.responses[0].partitions[0].records.clone().unwrap();
    let batches = decode_batches(&bytes).unwrap();
    assert_eq!(batches[0].records[0].headers, record.headers);
    srv.shutdown().await;
}

fn session_fetch(session: i32, epoch: i32, parts: Vec<FetchTopic>) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(50)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session)
        .with_session_epoch(epoch)
        .with_topics(parts)
}

fn fetch_topic(topic: &str, partitions: &[(i32, i64)]) -> FetchTopic {
    FetchTopic::default()
        .with_topic(name(topic))
        .with_partitions(
            partitions
                .iter()
                .map(|(p, o)| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*o)
                        .with_partition_max_bytes(1 << 20)
                        .with_current_leader_epoch(-1)
                })
                .collect(),
        )
}

fn one_record() -> Bytes {
    encode_batch(
        &[StoredRecord {
            offset: 0,
            timestamp_ms: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from_static(b"x")),
            headers: vec![],
            not_before_ms: None,
        }],
        false,
    )
}

#[tokio::test]
async fn incremental_fetch_sessions_answer_only_with_news() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "sess", 2).await;
    produce(&mut c, "sess", 0, one_record()).await;
    let full: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &session_fetch(0, 0, vec![fetch_topic("sess", &[(0, 0), (1, 0)])]),
        )
        .await
        .unwrap();
    assert_eq!(full.error_code, 0);
    let session = full.session_id;
    assert!(session > 0, "a session was created");
    assert_eq!(full.responses[0].partitions.len(), 2);
    // Partition 0 moves on to offset 1; nothing is new anywhere.
    let quiet: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &session_fetch(session, 1, vec![fetch_topic("sess", &[(0, 1)])]),
        )
        .await
        .unwrap();
    assert_eq!((quiet.error_code, quiet.session_id), (0, session));
    assert!(quiet.responses.is_empty(), "{quiet:?}");
    // A record on partition 1 (still fetched from 0, as the session remembers).
    produce(&mut c, "sess", 1, one_record()).await;
    let news: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch(session, 2, vec![]))
        .await
        .unwrap();
    let parts: Vec<i32> = news.responses[0]
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .collect();
    assert_eq!(parts, vec![1]);
    // A stale epoch and an unknown session are top-level errors.
    let stale: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch(session, 2, vec![]))
        .await
        .unwrap();
    assert_eq!(
        stale.error_code,
        ResponseError::InvalidFetchSessionEpoch.code()
    );
    let unknown: FetchResponse = c
        .call(ApiKey::Fetch, 12, &session_fetch(session + 1000, 1, vec![]))
        .await
        .unwrap();
    assert_eq!(
        unknown.error_code,
        ResponseError::FetchSessionIdNotFound.code()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn fetch_by_topic_id_and_leader_epochs() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "ids", 1).await;
    produce(&mut c, "ids", 0, one_record()).await;
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("ids")))
            ])),
        )
        .await
        .unwrap();
    let id = md.topics[0].topic_id;
    assert!(!id.is_nil());
    let by_id = |topic_id| {
        session_fetch(
            0,
            -1,
            vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)
                    .with_current_leader_epoch(0)])],
        )
    };
    let resp: FetchResponse = c.call(ApiKey::Fetch, 13, &by_id(id)).await.unwrap();
    assert_eq!(resp.responses[0].topic_id, id);
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 13, &by_id(uuid::Uuid::new_v4()))
        .await
        .unwrap();
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
    // OffsetForLeaderEpoch: epoch 0 ends at the high watermark; a newer epoch is unknown.
    let req = |current: i32| {
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(name("ids"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(0)])])
    };
    let resp: OffsetForLeaderEpochResponse = c
        .call(ApiKey::OffsetForLeaderEpoch, 4, &req(0))
        .await
        .unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 1));
    let resp: OffsetForLeaderEpochResponse = c
        .call(ApiKey::OffsetForLeaderEpoch, 4, &req(5))
        .await
        .unwrap();
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ResponseError::UnknownLeaderEpoch.code()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn cluster_apis_describe_the_one_broker() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "a", 3).await;
    create_topic(&mut c, "b", 2).await;
    let resp: DescribeClusterResponse = c
        .call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        )
        .await
        .unwrap();
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(resp.brokers[0].port, srv.addr.port() as i32);
    assert!(resp.cluster_authorized_operations > 0);
    // DescribeTopicPartitions pages by partition count with a cursor.
    let resp: DescribeTopicPartitionsResponse = c
        .call(
            ApiKey::DescribeTopicPartitions,
            0,
            &DescribeTopicPartitionsRequest::default().with_response_partition_limit(4),
        )
        .await
        .unwrap();
    let seen: Vec<(String, usize)> = resp
        .topics
        .iter()
        .map(|t| (t.name.clone().unwrap().to_string(), t.partitions.len()))
        .collect();
    assert_eq!(seen, vec![("a".into(), 3), ("b".into(), 1)]);
    let cursor = resp.next_cursor.expect("more to come");
    assert_eq!(
        (cursor.topic_name.as_str(), cursor.partition_index),
        ("b", 1)
    );
    let resp: ElectLeadersResponse = c
        .call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(name("a"))
                    .with_partitions(vec![0, 9]),
            ])),
        )
        .await
        .unwrap();
    let codes: Vec<i16> = resp.replica_election_results[0]
        .partition_result
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::ElectionNotNeeded.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn trailing_bytes_after_a_request_are_ignored() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    // librdkafka's all-topics Metadata v12 carries bytes after the last field.
    let (mut frame, cid) = c
        .frame(ApiKey::Metadata, 12, &MetadataRequest::default())
        .unwrap();
    frame.extend_from_slice(&[0, 0, 0]);
    let len = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    c.send_raw(&frame).await.unwrap();
    let raw = c.read_frame().await.unwrap().expect("answered, not closed");
    let resp: MetadataResponse =
        broker_server::kafka::client::decode_response(ApiKey::Metadata, 12, cid, raw).unwrap();
    assert_eq!(resp.brokers.len(), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn partitions_grow_and_never_shrink() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "grow", 2).await;
    let req = |count: i32| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name("grow"))
                    .with_count(count),
            ])
    };
    let resp: CreatePartitionsResponse =
        c.call(ApiKey::CreatePartitions, 3, &req(5)).await.unwrap();
    assert_eq!(resp.results[0].error_code, 0);
    let resp: CreatePartitionsResponse =
        c.call(ApiKey::CreatePartitions, 3, &req(3)).await.unwrap();
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::InvalidPartitions.code()
    );
    // The new partitions take records.
    let p = produce(&mut c, "grow", 4, one_record()).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("grow")))
            ])),
        )
        .await
        .unwrap();
    assert_eq!(md.topics[0].partitions.len(), 5);
    srv.shutdown().await;
}

async fn commit(
    c: &mut broker_server::kafka::client::RawClient,
    group: &str,
    topic: &str,
    offset: i64,
    epoch: i32,
) {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_committed_metadata(Some(s("meta\u{0}data"))),
                ]),
        ]);
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &req).await.unwrap();
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
}

async fn committed(
    c: &mut broker_server::kafka::client::RawClient,
    group: &str,
    topic: &str,
) -> (i64, i32) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(name(topic))
                .with_partition_indexes(vec![0]),
        ]));
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.committed_offset, p.committed_leader_epoch)
}

#[tokio::test]
async fn commits_keep_their_leader_epoch_and_groups_can_be_deleted() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "t1", 1).await;
    create_topic(&mut c, "t2", 1).await;
    commit(&mut c, "g1", "t1", 5, 3).await;
    commit(&mut c, "g1", "t2", 7, -1).await;
    assert_eq!(committed(&mut c, "g1", "t1").await, (5, 3));
    assert_eq!(committed(&mut c, "g1", "t2").await, (7, -1));

    // OffsetDelete of one topic; the group keeps the other.
    let req = OffsetDeleteRequest::default()
        .with_group_id(GroupId(s("g1")))
        .with_topics(vec![
            offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(name("t1"))
                .with_partitions(vec![
                    offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(0),
                ]),
        ]);
    let resp: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &req).await.unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    assert_eq!(committed(&mut c, "g1", "t1").await.0, -1);
    assert_eq!(committed(&mut c, "g1", "t2").await.0, 7);

    let delete = |groups: &[&str]| {
        DeleteGroupsRequest::default()
            .with_groups_names(groups.iter().map(|g| GroupId(s(g))).collect())
    };
    let resp: DeleteGroupsResponse = c
        .call(ApiKey::DeleteGroups, 2, &delete(&["g1", "never-seen"]))
        .await
        .unwrap();
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![0, ResponseError::GroupIdNotFound.code()]);
    assert_eq!(committed(&mut c, "g1", "t2").await.0, -1);
    let resp: ListGroupsResponse = c
        .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
        .await
        .unwrap();
    assert!(resp.groups.iter().all(|g| g.group_id.as_str() != "g1"));
    srv.shutdown().await;
}

#[tokio::test]
async fn list_offsets_finds_the_largest_timestamp() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "ts", 1).await;
    let at = |offset: i64, ts: i64| StoredRecord {
        offset,
        timestamp_ms: ts,
        key: None,
        value: Some(Bytes::from_static(b"x")),
        headers: vec![],
        not_before_ms: None,
    };
    let batch = encode_batch(
        &[at(0, 1_000), at(1, 9_000), at(2, 5_000), at(3, 9_000)],
        false,
    );
    assert_eq!(produce(&mut c, "ts", 0, batch).await.error_code, 0);
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("ts"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-3),
            ])]);
    let resp: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 7, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.timestamp), (0, 1, 9_000));
    srv.shutdown().await;
}

#[tokio::test]
async fn log_append_time_topics_stamp_records_with_the_broker_clock() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    let topic = CreatableTopic::default()
        .with_name(name("lat"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(s("message.timestamp.type"))
            .with_value(Some(s("LogAppendTime")))]);
    assert_eq!(create(&mut c, topic).await, 0);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // one_record() carries a CreateTime from 2023.
    let p = produce(&mut c, "lat", 0, one_record()).await;
    assert_eq!(p.error_code, 0);
    assert!(p.log_append_time_ms >= before, "{p:?}");
    let resp: FetchResponse = c
        .call(ApiKey::Fetch, 12, &fetch_req("lat", 0, 0, 0))
        .await
        .unwrap();
    let bytes = resp.responses[0].partitions[0].records.clone().unwrap();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
    let r = &set.records[0];
    assert_eq!(
        r.timestamp_type,
        kafka_protocol::records::TimestampType::LogAppend
    );
    // As Kafka does, the broker stamps the batch (its max timestamp) and leaves the records'
    // timestamp deltas alone; clients take a LogAppendTime batch's max timestamp as every
    // record's timestamp (this codec crate does not, so the header is read here).
    let max_ts = i64::from_be_bytes(bytes[35..43].try_into().unwrap());
    assert!(max_ts >= before, "{max_ts}");
    assert_eq!(max_ts, p.log_append_time_ms);
    assert_eq!(
        r.timestamp, 1_700_000_000_000,
        "the record itself is unchanged"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn only_the_first_non_empty_partition_may_exceed_the_request_limit() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "kip74", 2).await;
    let big = |offset| StoredRecord {
        offset,
        timestamp_ms: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(vec![b'v'; 300])),
        headers: vec![],
        not_before_ms: None,
    };
    for p in 0..2 {
        for o in 0..2 {
            let r = produce(&mut c, "kip74", p, encode_batch(&[big(o)], false)).await;
            assert_eq!(r.error_code, 0);
        }
    }
    let mut req = session_fetch(0, -1, vec![fetch_topic("kip74", &[(0, 0), (1, 0)])]);
    req.max_bytes = 100;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await.unwrap();
    let sizes: Vec<usize> = resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect();
    // One batch (of one record) of the first partition (over the limit), nothing of the
    // second.
    assert!(sizes[0] > 300 && sizes[0] < 500, "{sizes:?}");
    assert_eq!(sizes[1], 0, "{sizes:?}");
    // With room for almost three batches, two come (whole batches only).
    req.max_bytes = 1100;
    let resp: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await.unwrap();
    let total: usize = resp.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    assert!(total <= 1100 && total > 700, "{total}");
    srv.shutdown().await;
}

#[tokio::test]
async fn acl_apis_answer_security_disabled_as_kafka_without_an_authorizer() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    let resp: DescribeAclsResponse = c
        .call(ApiKey::DescribeAcls, 3, &DescribeAclsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, ResponseError::SecurityDisabled.code());
    let req = CreateAclsRequest::default()
        .with_creations(vec![create_acls_request::AclCreation::default()]);
    let resp: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &req).await.unwrap();
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::SecurityDisabled.code()
    );
    srv.shutdown().await;
}

/// Every advertised version of the APIs whose answers carry fields newer than some of
/// their versions: the broker must encode each answer (a field set beyond its version makes
/// the encoder fail and the connection close).
#[tokio::test]
async fn every_advertised_version_is_answered() {
    use broker_server::kafka::versions::supported_range;
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "vers", 1).await;
    produce(&mut c, "vers", 0, one_record()).await;
    commit(&mut c, "gv", "vers", 1, 0).await;
    let range = |api| {
        let (lo, hi) = supported_range(api).unwrap();
        lo..=hi
    };
    for v in range(ApiKey::ListOffsets) {
        for ts in [-1, -2, 0] {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("vers"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ])]);
            let resp: ListOffsetsResponse = c
                .call(ApiKey::ListOffsets, v, &req)
                .await
                .unwrap_or_else(|e| panic!("ListOffsets v{v} ts {ts}: {e}"));
            assert_eq!(resp.topics[0].partitions[0].error_code, 0, "v{v}");
        }
    }
    for v in range(ApiKey::Metadata) {
        let topics = if v == 0 {
            Some(vec![])
        } else {
            Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("vers")))
            ])
        };
        let req = MetadataRequest::default()
            .with_topics(topics)
            .with_include_cluster_authorized_operations((8..=10).contains(&v))
            .with_include_topic_authorized_operations(v >= 8);
        let _: MetadataResponse = c
            .call(ApiKey::Metadata, v, &req)
            .await
            .unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("vers")),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(s("0")),
        ]);
        let resp: DescribeConfigsResponse = c
            .call(ApiKey::DescribeConfigs, v, &req)
            .await
            .unwrap_or_else(|e| panic!("DescribeConfigs v{v}: {e}"));
        assert!(!resp.results[0].configs.is_empty());
    }
    for v in range(ApiKey::OffsetFetch) {
        let req = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("gv")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("gv")))
                .with_topics(if v >= 2 { None } else { Some(vec![]) })
        };
        let _: OffsetFetchResponse = c
            .call(ApiKey::OffsetFetch, v, &req)
            .await
            .unwrap_or_else(|e| panic!("OffsetFetch v{v}: {e}"));
    }
    for v in range(ApiKey::DescribeGroups) {
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(s("gv"))])
            .with_include_authorized_operations(v >= 3);
        let _: DescribeGroupsResponse = c
            .call(ApiKey::DescribeGroups, v, &req)
            .await
            .unwrap_or_else(|e| panic!("DescribeGroups v{v}: {e}"));
    }
    for v in range(ApiKey::CreateTopics) {
        let t = CreatableTopic::default()
            .with_name(name(&format!("vers-{v}")))
            .with_num_partitions(1)
            .with_replication_factor(1);
        let req = CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(1000);
        let resp: CreateTopicsResponse = c
            .call(ApiKey::CreateTopics, v, &req)
            .await
            .unwrap_or_else(|e| panic!("CreateTopics v{v}: {e}"));
        assert_eq!(resp.topics[0].error_code, 0, "v{v}");
    }
    for v in range(ApiKey::Fetch) {
        let mut req = fetch_req("vers", 0, 0, 0);
        if v >= 13 {
            let md: MetadataResponse = c
                .call(
                    ApiKey::Metadata,
                    12,
                    &MetadataRequest::default().with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(name("vers"))),
                    ])),
                )
                .await
                .unwrap();
            req.topics[0].topic_id = md.topics[0].topic_id;
        }
        let resp: FetchResponse = c
            .call(ApiKey::Fetch, v, &req)
            .await
            .unwrap_or_else(|e| panic!("Fetch v{v}: {e}"));
        assert_eq!(resp.responses[0].partitions[0].error_code, 0, "v{v}");
    }
    srv.shutdown().await;
}

/// A Fetch waiting for data answers as soon as the next request arrives on its connection, so
/// the request behind it (here ApiVersions; for librdkafka, ListOffsets, Metadata and its
/// final PushTelemetry) is not held for the whole wait.
#[tokio::test]
async fn a_waiting_fetch_answers_when_the_next_request_arrives() {
    let srv = TestServer::start(1 << 20).await;
    let mut c = srv.client().await;
    create_topic(&mut c, "lp", 1).await;
    // Without a following request the Fetch waits (the wait is what the test then cuts).
    let (frame, _) = c
        .frame(ApiKey::Fetch, 12, &fetch_req("lp", 0, 0, 800))
        .unwrap();
    let started = std::time::Instant::now();
    c.send_raw(&frame).await.unwrap();
    c.read_frame().await.unwrap().unwrap();
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(700),
        "a lone fetch on an empty partition waits for max_wait_ms"
    );
    // A Fetch that would wait 30 s, then ApiVersions on the same connection.
    let (fetch, fetch_cid) = c
        .frame(ApiKey::Fetch, 12, &fetch_req("lp", 0, 0, 30_000))
        .unwrap();
    let (versions, versions_cid) = c
        .frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    c.send_raw(&fetch).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.send_raw(&versions).await.unwrap();
    let answers = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let f = c.read_frame().await.unwrap().unwrap();
        let v = c.read_frame().await.unwrap().unwrap();
        (f, v)
    })
    .await
    .expect("both answers long before the fetch's 30 s wait");
    let fetched: FetchResponse =
        broker_server::kafka::client::decode_response(ApiKey::Fetch, 12, fetch_cid, answers.0)
            .unwrap();
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    let _: ApiVersionsResponse = broker_server::kafka::client::decode_response(
        ApiKey::ApiVersions,
        3,
        versions_cid,
        answers.1,
    )
    .unwrap();
    srv.shutdown().await;
}
