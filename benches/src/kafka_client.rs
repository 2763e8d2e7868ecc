//! A minimal Kafka load client built on the kafka-protocol crate: Produce (v7) of record
//! batch v2 and Fetch (v11), one request in flight per connection, over plain TCP or TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{BenchError, BenchResult};

const PRODUCE_VERSION: i16 = 7;
const FETCH_VERSION: i16 = 11;
const METADATA_VERSION: i16 = 8;

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
        let req = ProduceRequest::default()
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
