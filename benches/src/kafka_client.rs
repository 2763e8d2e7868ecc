//! A minimal Kafka load client built on the kafka-protocol crate: Produce (v7) of record
//! batch v2 and Fetch (v11), one request in flight per connection, over plain TCP or TLS; and
//! what a share-group consumer (KIP-932) needs: CreateTopics, Metadata with topic ids,
//! IncrementalAlterConfigs of a GROUP, ShareGroupHeartbeat, ShareFetch and ShareAcknowledge;
//! and what an idempotent or transactional producer (KIP-98) needs: FindCoordinator of a
//! transactional id, InitProducerId, AddPartitionsToTxn (v3), Produce of producer batches and
//! EndTxn.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition as ShareFetchPartition, FetchTopic as ShareFetchTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, CreateTopicsRequest,
    CreateTopicsResponse, EndTxnRequest, EndTxnResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, InitProducerIdRequest, InitProducerIdResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader,
    ResponseHeader, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareFetchResponse, ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::{BenchError, BenchResult};

const PRODUCE_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 11;
const METADATA_VERSION: i16 = 8;
/// Metadata with topic ids (v10+), which share-group assignments are given by.
const METADATA_ID_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
const ALTER_CONFIGS_VERSION: i16 = 1;
const SHARE_VERSION: i16 = 1;
/// IncrementalAlterConfigs resource type of a group's settings.
const RESOURCE_GROUP: i8 = 32;
/// IncrementalAlterConfigs operation SET.
const OP_SET: i8 = 0;
/// CreateTopics: the topic exists already.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Acknowledge type of a processed record (ShareFetch, ShareAcknowledge).
pub const ACCEPT: i8 = 1;
/// FindCoordinator v1: the first with a key type.
const FIND_COORDINATOR_VERSION: i16 = 1;
/// FindCoordinator key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
const INIT_PRODUCER_ID_VERSION: i16 = 1;
/// AddPartitionsToTxn v3: the last a producer sends (v4+ are broker-to-broker, KIP-890).
const ADD_PARTITIONS_VERSION: i16 = 3;
const END_TXN_VERSION: i16 = 1;
/// Error code of a transaction call made while the previous transaction is still ending;
/// the call is retried.
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
/// Times a call refused with [`CONCURRENT_TRANSACTIONS`] is retried, 1 ms apart, before it
/// fails.
const TXN_RETRIES: u32 = 2000;

fn proto(e: impl std::fmt::Display) -> BenchError {
    BenchError::Protocol(e.to_string())
}

/// A byte stream the client talks over: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where the load client connects: a Kafka listener, with TLS settings for an SSL one.
#[derive(Clone)]
pub struct KafkaTarget {
    pub addr: SocketAddr,
    /// Client settings of an SSL listener (server name `localhost`); `None`: PLAINTEXT.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl KafkaTarget {
    pub fn plain(addr: SocketAddr) -> KafkaTarget {
        KafkaTarget { addr, tls: None }
    }
}

/// One connection to the broker's Kafka listener.
pub struct KafkaConn {
    stream: Box<dyn Stream>,
    correlation: i32,
    buf: BytesMut,
}

impl KafkaConn {
    /// Connects to a PLAINTEXT listener at `addr`.
    pub async fn connect(addr: SocketAddr) -> BenchResult<KafkaConn> {
        Self::open(&KafkaTarget::plain(addr)).await
    }

    /// Connects to `target`, with a TLS handshake for an SSL listener.
    pub async fn open(target: &KafkaTarget) -> BenchResult<KafkaConn> {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match &target.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(|e| BenchError::Protocol(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Box::new(tls)
            }
        };
        Ok(KafkaConn {
            stream,
            correlation: 0,
            buf: BytesMut::with_capacity(1 << 20),
        })
    }

    async fn call<Req, Resp>(&mut self, key: ApiKey, version: i16, req: &Req) -> BenchResult<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("broker-bench")));
        self.buf.clear();
        self.buf.put_i32(0);
        header
            .encode(&mut self.buf, Req::header_version(version))
            .map_err(proto)?;
        req.encode(&mut self.buf, version).map_err(proto)?;
        let len = (self.buf.len() - 4) as i32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&self.buf).await?;
        self.stream.flush().await?;
        let len = self.stream.read_i32().await?;
        if !(0..=256 << 20).contains(&len) {
            return Err(BenchError::Protocol(format!(
                "response frame of {len} bytes"
            )));
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let rh = ResponseHeader::decode(&mut body, Resp::header_version(version)).map_err(proto)?;
        if rh.correlation_id != self.correlation {
            return Err(BenchError::Protocol(format!(
                "correlation id {} for request {}",
                rh.correlation_id, self.correlation
            )));
        }
        Resp::decode(&mut body, version).map_err(proto)
    }

    /// Asks for `topic`'s metadata, letting the broker create it as clients do; fails unless
    /// the topic then exists.
    pub async fn metadata(&mut self, topic: &str) -> BenchResult<()> {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(true);
        let resp: MetadataResponse = self.call(ApiKey::Metadata, METADATA_VERSION, &req).await?;
        match resp.topics.first() {
            Some(t) if t.error_code == 0 => Ok(()),
            Some(t) => Err(BenchError::Protocol(format!(
                "metadata for {topic}: error code {}",
                t.error_code
            ))),
            None => Err(BenchError::Protocol(format!("no metadata for {topic}"))),
        }
    }

    /// Produces one batch of `count` records with `size`-byte values to partition 0 of
    /// `topic` with acks=-1; returns the base offset.
    pub async fn produce(&mut self, topic: &str, batch: &Bytes) -> BenchResult<i64> {
        self.produce_to(topic, 0, batch).await
    }

    /// [`KafkaConn::produce`] to `partition`.
    pub async fn produce_to(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &Bytes,
    ) -> BenchResult<i64> {
        self.produce_as(topic, partition, batch, None).await
    }

    /// [`KafkaConn::produce_to`] with the producer's transactional id, which transactional
    /// batches need.
    pub async fn produce_as(
        &mut self,
        topic: &str,
        partition: i32,
        batch: &Bytes,
        transactional_id: Option<&str>,
    ) -> BenchResult<i64> {
        let req = ProduceRequest::default()
            .with_transactional_id(
                transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
            )
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.clone()))])]);
        let resp: ProduceResponse = self.call(ApiKey::Produce, PRODUCE_VERSION, &req).await?;
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partition_responses.first())
            .ok_or_else(|| BenchError::Protocol("empty produce response".into()))?;
        if p.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "produce error code {}: {}",
                p.error_code,
                p.error_message.as_ref().map_or("", |m| m.as_str())
            )));
        }
        Ok(p.base_offset)
    }

    /// Fetches from `offset` of partition 0 without waiting; returns the number of records at
    /// or after `offset` (from the batch headers), the next offset and the high watermark.
    pub async fn fetch(&mut self, topic: &str, offset: i64) -> BenchResult<FetchOutcome> {
        self.fetch_from(topic, 0, offset).await
    }

    /// [`KafkaConn::fetch`] from `partition`.
    pub async fn fetch_from(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> BenchResult<FetchOutcome> {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let resp: FetchResponse = self.call(ApiKey::Fetch, FETCH_VERSION, &req).await?;
        if resp.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "fetch error code {}",
                resp.error_code
            )));
        }
        let p = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| BenchError::Protocol("empty fetch response".into()))?;
        if p.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "fetch partition error code {}",
                p.error_code
            )));
        }
        let mut out = FetchOutcome {
            records: 0,
            next_offset: offset,
            high_watermark: p.high_watermark,
        };
        if let Some(mut data) = p.records.clone() {
            // Batch headers only: the client counts records without decoding each one, so the
            // figure is the server's, not this client's decoder's.
            for b in RecordBatchDecoder::decode_batch_info(&mut data).map_err(proto)? {
                let end = b.min_offset + b.record_count as i64;
                let first = b.min_offset.max(offset);
                if end > first {
                    out.records += (end - first) as u64;
                    out.next_offset = end;
                }
            }
        }
        Ok(out)
    }
}

/// Acquired offset ranges of one partition, `(first, last)` inclusive, as ShareFetch gives
/// them and as acknowledgements name them.
pub type Ranges = Vec<(i64, i64)>;

/// What one ShareFetch did.
#[derive(Debug, Default, Clone)]
pub struct ShareFetchOutcome {
    /// Per partition: the ranges of records acquired by this request.
    pub acquired: Vec<(i32, Ranges)>,
    /// Records acquired (the ranges' total).
    pub acquired_count: u64,
    /// Records in the returned batches inside the acquired ranges (from batch headers).
    pub records: u64,
    /// Records whose acknowledgements the response accepted.
    pub acked: u64,
}

/// Who fetches in a share session: the group, the member id, and the topic read.
#[derive(Debug, Clone)]
pub struct ShareMember {
    pub group: String,
    pub member: String,
    pub topic_id: Uuid,
}

/// What a heartbeat answered: the member epoch and, when it changed, the assignment
/// (topic id, partitions).
#[derive(Debug, Clone)]
pub struct ShareHeartbeat {
    pub member_epoch: i32,
    pub assignment: Option<Vec<(Uuid, Vec<i32>)>>,
}

fn count(ranges: &[(i64, i64)]) -> u64 {
    ranges.iter().map(|(f, l)| (l - f + 1).max(0) as u64).sum()
}

fn message(m: &Option<StrBytes>) -> &str {
    m.as_ref().map_or("", |m| m.as_str())
}

impl KafkaConn {
    /// Creates `topic` with `partitions` partitions (the broker's default replication);
    /// a topic that exists already is fine.
    pub async fn create_topic(&mut self, topic: &str, partitions: i32) -> BenchResult<()> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(-1)]);
        let resp: CreateTopicsResponse = self
            .call(ApiKey::CreateTopics, CREATE_TOPICS_VERSION, &req)
            .await?;
        match resp.topics.first() {
            Some(t) if t.error_code == 0 || t.error_code == TOPIC_ALREADY_EXISTS => Ok(()),
            Some(t) => Err(BenchError::Protocol(format!(
                "creating {topic}: error code {}: {}",
                t.error_code,
                message(&t.error_message)
            ))),
            None => Err(BenchError::Protocol(format!(
                "no CreateTopics answer for {topic}"
            ))),
        }
    }

    /// The id of `topic` (Metadata v12), which share-group assignments and ShareFetch use.
    pub async fn topic_id(&mut self, topic: &str) -> BenchResult<Uuid> {
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(topic.to_string())),
            ))]))
            .with_allow_auto_topic_creation(false);
        let resp: MetadataResponse = self
            .call(ApiKey::Metadata, METADATA_ID_VERSION, &req)
            .await?;
        match resp.topics.first() {
            Some(t) if t.error_code == 0 && !t.topic_id.is_nil() => Ok(t.topic_id),
            Some(t) => Err(BenchError::Protocol(format!(
                "metadata for {topic}: error code {}, topic id {}",
                t.error_code, t.topic_id
            ))),
            None => Err(BenchError::Protocol(format!("no metadata for {topic}"))),
        }
    }

    /// Sets one setting of `group` (IncrementalAlterConfigs on resource type GROUP), e.g.
    /// `share.auto.offset.reset`.
    pub async fn set_group_config(
        &mut self,
        group: &str,
        name: &str,
        value: &str,
    ) -> BenchResult<()> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_GROUP)
                .with_resource_name(StrBytes::from_string(group.to_string()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_config_operation(OP_SET)
                    .with_value(Some(StrBytes::from_string(value.to_string())))]),
        ]);
        let resp: IncrementalAlterConfigsResponse = self
            .call(ApiKey::IncrementalAlterConfigs, ALTER_CONFIGS_VERSION, &req)
            .await?;
        match resp.responses.first() {
            Some(r) if r.error_code == 0 => Ok(()),
            Some(r) => Err(BenchError::Protocol(format!(
                "setting {name}={value} on group {group}: error code {}: {}",
                r.error_code,
                message(&r.error_message)
            ))),
            None => Err(BenchError::Protocol(format!(
                "no IncrementalAlterConfigs answer for group {group}"
            ))),
        }
    }

    /// ShareGroupHeartbeat v1: `member_epoch` 0 joins with `topics`, -1 leaves, otherwise
    /// the epoch last received keeps the member in the group.
    pub async fn share_heartbeat(
        &mut self,
        group: &str,
        member: &str,
        member_epoch: i32,
        topics: Option<&[&str]>,
    ) -> BenchResult<ShareHeartbeat> {
        let req = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_member_epoch(member_epoch)
            .with_subscribed_topic_names(topics.map(|ts| {
                ts.iter()
                    .map(|t| TopicName(StrBytes::from_string(t.to_string())))
                    .collect()
            }));
        let resp: ShareGroupHeartbeatResponse = self
            .call(ApiKey::ShareGroupHeartbeat, SHARE_VERSION, &req)
            .await?;
        if resp.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "ShareGroupHeartbeat of {member} in {group}: error code {}: {}",
                resp.error_code,
                message(&resp.error_message)
            )));
        }
        Ok(ShareHeartbeat {
            member_epoch: resp.member_epoch,
            assignment: resp.assignment.map(|a| {
                a.topic_partitions
                    .into_iter()
                    .map(|t| (t.topic_id, t.partitions))
                    .collect()
            }),
        })
    }

    /// ShareFetch v1 of `partitions` of the member's topic in its share session at
    /// `session_epoch`, without waiting, acquiring up to `max_records`; `acks` accepts
    /// (acknowledge type 1) the given ranges per partition (partitions with acks are named in
    /// the request too). Fails on any error of the request, of a partition or of an
    /// acknowledgement.
    pub async fn share_fetch(
        &mut self,
        who: &ShareMember,
        session_epoch: i32,
        partitions: &[i32],
        acks: &[(i32, Ranges)],
        max_records: i32,
    ) -> BenchResult<ShareFetchOutcome> {
        let mut named: Vec<i32> = partitions.to_vec();
        for (p, _) in acks {
            if !named.contains(p) {
                named.push(*p);
            }
        }
        let parts = named
            .iter()
            .map(|p| {
                let batches = acks
                    .iter()
                    .filter(|(ap, _)| ap == p)
                    .flat_map(|(_, rs)| rs.iter())
                    .map(|(first, last)| {
                        AcknowledgementBatch::default()
                            .with_first_offset(*first)
                            .with_last_offset(*last)
                            .with_acknowledge_types(vec![ACCEPT])
                    })
                    .collect();
                ShareFetchPartition::default()
                    .with_partition_index(*p)
                    .with_acknowledgement_batches(batches)
            })
            .collect();
        let req = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_string(who.group.clone()))))
            .with_member_id(Some(StrBytes::from_string(who.member.clone())))
            .with_share_session_epoch(session_epoch)
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_max_records(max_records)
            .with_batch_size(max_records)
            .with_topics(vec![ShareFetchTopic::default()
                .with_topic_id(who.topic_id)
                .with_partitions(parts)]);
        let resp: ShareFetchResponse = self.call(ApiKey::ShareFetch, SHARE_VERSION, &req).await?;
        if resp.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "ShareFetch error code {}: {}",
                resp.error_code,
                message(&resp.error_message)
            )));
        }
        let mut out = ShareFetchOutcome::default();
        let mut answered: Vec<i32> = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(BenchError::Protocol(format!(
                        "ShareFetch of partition {}: error code {}: {}",
                        p.partition_index,
                        p.error_code,
                        message(&p.error_message)
                    )));
                }
                if p.acknowledge_error_code != 0 {
                    return Err(BenchError::Protocol(format!(
                        "acknowledgements of partition {}: error code {}: {}",
                        p.partition_index,
                        p.acknowledge_error_code,
                        message(&p.acknowledge_error_message)
                    )));
                }
                answered.push(p.partition_index);
                let ranges: Ranges = p
                    .acquired_records
                    .iter()
                    .map(|a| (a.first_offset, a.last_offset))
                    .collect();
                if let Some(mut data) = p.records {
                    for b in RecordBatchDecoder::decode_batch_info(&mut data).map_err(proto)? {
                        let end = b.min_offset + b.record_count as i64;
                        for (f, l) in &ranges {
                            let (lo, hi) = (b.min_offset.max(*f), end.min(l + 1));
                            if hi > lo {
                                out.records += (hi - lo) as u64;
                            }
                        }
                    }
                }
                out.acquired_count += count(&ranges);
                if !ranges.is_empty() {
                    out.acquired.push((p.partition_index, ranges));
                }
            }
        }
        for (p, ranges) in acks {
            if !answered.contains(p) {
                return Err(BenchError::Protocol(format!(
                    "ShareFetch did not answer the acknowledgements of partition {p}"
                )));
            }
            out.acked += count(ranges);
        }
        Ok(out)
    }

    /// ShareAcknowledge v1: accepts `acks` in the member's share session at `session_epoch`
    /// (-1 also closes it); returns the number of records acknowledged. Fails on any error.
    pub async fn share_acknowledge(
        &mut self,
        who: &ShareMember,
        session_epoch: i32,
        acks: &[(i32, Ranges)],
    ) -> BenchResult<u64> {
        let req = ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_string(who.group.clone()))))
            .with_member_id(Some(StrBytes::from_string(who.member.clone())))
            .with_share_session_epoch(session_epoch)
            .with_topics(vec![AcknowledgeTopic::default()
                .with_topic_id(who.topic_id)
                .with_partitions(
                    acks.iter()
                        .map(|(p, rs)| {
                            AcknowledgePartition::default()
                                .with_partition_index(*p)
                                .with_acknowledgement_batches(
                                    rs.iter()
                                        .map(|(f, l)| {
                                            AckBatch::default()
                                                .with_first_offset(*f)
                                                .with_last_offset(*l)
                                                .with_acknowledge_types(vec![ACCEPT])
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )]);
        let resp: ShareAcknowledgeResponse = self
            .call(ApiKey::ShareAcknowledge, SHARE_VERSION, &req)
            .await?;
        if resp.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "ShareAcknowledge error code {}: {}",
                resp.error_code,
                message(&resp.error_message)
            )));
        }
        let mut answered = 0;
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(BenchError::Protocol(format!(
                        "ShareAcknowledge of partition {}: error code {}: {}",
                        p.partition_index,
                        p.error_code,
                        message(&p.error_message)
                    )));
                }
                answered += 1;
            }
        }
        if answered != acks.len() {
            return Err(BenchError::Protocol(format!(
                "ShareAcknowledge answered {answered} of {} partitions",
                acks.len()
            )));
        }
        Ok(acks.iter().map(|(_, rs)| count(rs)).sum())
    }
}

/// A producer id and epoch from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_string()))
}

impl KafkaConn {
    /// FindCoordinator v1 of transactional id `id`: the coordinator's `host:port`.
    pub async fn txn_coordinator(&mut self, id: &str) -> BenchResult<String> {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(id.to_string()))
            .with_key_type(KEY_TYPE_TRANSACTION);
        let resp: FindCoordinatorResponse = self
            .call(ApiKey::FindCoordinator, FIND_COORDINATOR_VERSION, &req)
            .await?;
        if resp.error_code != 0 {
            return Err(BenchError::Protocol(format!(
                "FindCoordinator of transactional id {id}: error code {}: {}",
                resp.error_code,
                message(&resp.error_message)
            )));
        }
        Ok(format!("{}:{}", resp.host.as_str(), resp.port))
    }

    /// InitProducerId v1: an idempotent producer (`transactional_id` `None`) or the
    /// transactional producer of an id, whose transactions time out after `timeout_ms`.
    pub async fn init_producer_id(
        &mut self,
        transactional_id: Option<&str>,
        timeout_ms: i32,
    ) -> BenchResult<Producer> {
        let req = InitProducerIdRequest::default()
            .with_transactional_id(transactional_id.map(txn_id))
            .with_transaction_timeout_ms(timeout_ms)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let resp: InitProducerIdResponse = self
            .call(ApiKey::InitProducerId, INIT_PRODUCER_ID_VERSION, &req)
            .await?;
        if resp.error_code != 0 || resp.producer_id.0 < 0 {
            return Err(BenchError::Protocol(format!(
                "InitProducerId ({transactional_id:?}): error code {}, producer id {}",
                resp.error_code, resp.producer_id.0
            )));
        }
        Ok(Producer {
            id: resp.producer_id.0,
            epoch: resp.producer_epoch,
        })
    }

    /// AddPartitionsToTxn v3: adds `partitions` of `topic` to the open transaction of `id`
    /// (opening one). A call refused with CONCURRENT_TRANSACTIONS (the previous transaction
    /// still ending) is retried 1 ms later; any other error of a partition fails.
    pub async fn add_partitions_to_txn(
        &mut self,
        id: &str,
        producer: Producer,
        topic: &str,
        partitions: &[i32],
    ) -> BenchResult<()> {
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(id))
            .with_v3_and_below_producer_id(ProducerId(producer.id))
            .with_v3_and_below_producer_epoch(producer.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions.to_vec())]);
        for _ in 0..TXN_RETRIES {
            let resp: AddPartitionsToTxnResponse = self
                .call(ApiKey::AddPartitionsToTxn, ADD_PARTITIONS_VERSION, &req)
                .await?;
            let codes: Vec<i16> = resp
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .collect();
            if codes.len() != partitions.len() {
                return Err(BenchError::Protocol(format!(
                    "AddPartitionsToTxn of {id} answered {} of {} partitions",
                    codes.len(),
                    partitions.len()
                )));
            }
            match codes.iter().find(|c| **c != 0) {
                None => return Ok(()),
                Some(&CONCURRENT_TRANSACTIONS) => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                Some(c) => {
                    return Err(BenchError::Protocol(format!(
                        "AddPartitionsToTxn of {id} to {topic}: error code {c}"
                    )))
                }
            }
        }
        Err(BenchError::Protocol(format!(
            "AddPartitionsToTxn of {id}: CONCURRENT_TRANSACTIONS {TXN_RETRIES} times"
        )))
    }

    /// EndTxn v1: commits (or aborts) the open transaction of `id`; returns once the broker
    /// answered without error (its markers are written). CONCURRENT_TRANSACTIONS is retried
    /// 1 ms later.
    pub async fn end_txn(&mut self, id: &str, producer: Producer, commit: bool) -> BenchResult<()> {
        let req = EndTxnRequest::default()
            .with_transactional_id(txn_id(id))
            .with_producer_id(ProducerId(producer.id))
            .with_producer_epoch(producer.epoch)
            .with_committed(commit);
        for _ in 0..TXN_RETRIES {
            let resp: EndTxnResponse = self.call(ApiKey::EndTxn, END_TXN_VERSION, &req).await?;
            match resp.error_code {
                0 => return Ok(()),
                CONCURRENT_TRANSACTIONS => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await
                }
                c => {
                    return Err(BenchError::Protocol(format!(
                        "EndTxn of {id} (commit {commit}): error code {c}"
                    )))
                }
            }
        }
        Err(BenchError::Protocol(format!(
            "EndTxn of {id}: CONCURRENT_TRANSACTIONS {TXN_RETRIES} times"
        )))
    }
}

/// What one fetch returned.
#[derive(Debug, Clone, Copy)]
pub struct FetchOutcome {
    pub records: u64,
    pub next_offset: i64,
    pub high_watermark: i64,
}

/// A record batch v2 of `count` records with `size`-byte values, uncompressed.
pub fn encode_batch(count: usize, size: usize) -> BenchResult<Bytes> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let value = Bytes::from(vec![0x5a_u8; size]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes; this keeps
            // every record in one batch while the batch's base sequence stays -1 (none).
            sequence: i as i32 - 1,
            timestamp: now,
            key: None,
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(proto)?;
    Ok(buf.freeze())
}

/// A record batch v2 of `count` records with `size`-byte values, uncompressed, carrying
/// `producer`'s id, epoch and first sequence (which must advance by `count` per batch on the
/// partition), with the transactional bit when `transactional`.
pub fn encode_producer_batch(
    count: usize,
    size: usize,
    producer: broker_api::ProducerBatch,
    transactional: bool,
) -> BenchResult<Bytes> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let value = Bytes::from(vec![0x5a_u8; size]);
    let records: Vec<broker_api::Record> = (0..count)
        .map(|_| broker_api::Record::from_value(value.clone()))
        .collect();
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, &records, now, Some(producer)).map_err(proto)?;
    if transactional {
        kafka_batch::set_transactional(&mut buf);
    }
    Ok(Bytes::from(buf))
}
