//! Request frames: the size prefix, the request header, and decoding each supported body.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::versions::supported_range;

/// A decoded request of one of the supported APIs.
#[derive(Debug)]
pub enum KafkaRequest {
    ApiVersions(ApiVersionsRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    Metadata(MetadataRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    SyncGroup(SyncGroupRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    DeleteRecords(DeleteRecordsRequest),
    InitProducerId(InitProducerIdRequest),
    DescribeConfigs(DescribeConfigsRequest),
    AlterConfigs(AlterConfigsRequest),
    CreatePartitions(CreatePartitionsRequest),
    CreateAcls(CreateAclsRequest),
    DescribeAcls(DescribeAclsRequest),
    DeleteAcls(DeleteAclsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest),
    DescribeCluster(DescribeClusterRequest),
    DescribeTopicPartitions(DescribeTopicPartitionsRequest),
    DescribeLogDirs(DescribeLogDirsRequest),
    ElectLeaders(ElectLeadersRequest),
    DescribeProducers(DescribeProducersRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    GetTelemetrySubscriptions(GetTelemetrySubscriptionsRequest),
    PushTelemetry(PushTelemetryRequest),
    DescribeUserScramCredentials(DescribeUserScramCredentialsRequest),
    AlterUserScramCredentials(AlterUserScramCredentialsRequest),
    ShareGroupHeartbeat(ShareGroupHeartbeatRequest),
    ShareGroupDescribe(ShareGroupDescribeRequest),
    ShareFetch(ShareFetchRequest),
    ShareAcknowledge(ShareAcknowledgeRequest),
    DescribeShareGroupOffsets(DescribeShareGroupOffsetsRequest),
    AlterShareGroupOffsets(AlterShareGroupOffsetsRequest),
    DeleteShareGroupOffsets(DeleteShareGroupOffsetsRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    EndTxn(EndTxnRequest),
    DescribeTransactions(DescribeTransactionsRequest),
    ListTransactions(ListTransactionsRequest),
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Frame {
    /// A supported API at a supported version.
    Request {
        header: RequestHeader,
        request: Box<KafkaRequest>,
    },
    /// An API or version this broker does not serve; answered with UNSUPPORTED_VERSION.
    Unsupported {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
    },
}

/// Why a frame could not be decoded; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("malformed request header: {0}")]
    Header(String),
    #[error("malformed {api:?} v{version} request: {reason}")]
    Body {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes one frame (without its 4-byte size prefix). Never panics on any input.
pub fn decode_frame(frame: Bytes) -> Result<Frame, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    let mut peek = &frame[..8];
    let api_key = peek.get_i16();
    let api_version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let unsupported = Frame::Unsupported {
        api_key,
        api_version,
        correlation_id,
    };
    let Ok(api) = ApiKey::try_from(api_key) else {
        return Ok(unsupported);
    };
    let Some(range) = supported_range(api) else {
        return Ok(unsupported);
    };
    if api_version < range.0 || api_version > range.1 {
        return Ok(unsupported);
    }
    let mut buf = frame;
    let header_version = api.request_header_version(api_version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| FrameError::Header(e.to_string()))?;
    let v = api_version;
    let body = |e: anyhow::Error| FrameError::Body {
        api,
        version: v,
        reason: e.to_string(),
    };
    let request = match api {
        ApiKey::ApiVersions => KafkaRequest::ApiVersions(decode(&mut buf, v).map_err(body)?),
        ApiKey::Produce => KafkaRequest::Produce(decode(&mut buf, v).map_err(body)?),
        ApiKey::Fetch => KafkaRequest::Fetch(decode(&mut buf, v).map_err(body)?),
        ApiKey::ListOffsets => KafkaRequest::ListOffsets(decode(&mut buf, v).map_err(body)?),
        ApiKey::Metadata => KafkaRequest::Metadata(decode(&mut buf, v).map_err(body)?),
        ApiKey::OffsetCommit => KafkaRequest::OffsetCommit(decode(&mut buf, v).map_err(body)?),
        ApiKey::OffsetFetch => KafkaRequest::OffsetFetch(decode(&mut buf, v).map_err(body)?),
        ApiKey::FindCoordinator => {
            KafkaRequest::FindCoordinator(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::JoinGroup => KafkaRequest::JoinGroup(decode(&mut buf, v).map_err(body)?),
        ApiKey::Heartbeat => KafkaRequest::Heartbeat(decode(&mut buf, v).map_err(body)?),
        ApiKey::LeaveGroup => KafkaRequest::LeaveGroup(decode(&mut buf, v).map_err(body)?),
        ApiKey::SyncGroup => KafkaRequest::SyncGroup(decode(&mut buf, v).map_err(body)?),
        ApiKey::DescribeGroups => KafkaRequest::DescribeGroups(decode(&mut buf, v).map_err(body)?),
        ApiKey::ListGroups => KafkaRequest::ListGroups(decode(&mut buf, v).map_err(body)?),
        ApiKey::CreateTopics => KafkaRequest::CreateTopics(decode(&mut buf, v).map_err(body)?),
        ApiKey::DeleteTopics => KafkaRequest::DeleteTopics(decode(&mut buf, v).map_err(body)?),
        ApiKey::DeleteRecords => KafkaRequest::DeleteRecords(decode(&mut buf, v).map_err(body)?),
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(decode(&mut buf, v).map_err(body)?),
        ApiKey::DescribeConfigs => {
            KafkaRequest::DescribeConfigs(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::AlterConfigs => KafkaRequest::AlterConfigs(decode(&mut buf, v).map_err(body)?),
        ApiKey::CreatePartitions => {
            KafkaRequest::CreatePartitions(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::DeleteGroups => KafkaRequest::DeleteGroups(decode(&mut buf, v).map_err(body)?),
        ApiKey::CreateAcls => KafkaRequest::CreateAcls(decode(&mut buf, v).map_err(body)?),
        ApiKey::DescribeAcls => KafkaRequest::DescribeAcls(decode(&mut buf, v).map_err(body)?),
        ApiKey::DeleteAcls => KafkaRequest::DeleteAcls(decode(&mut buf, v).map_err(body)?),
        ApiKey::OffsetDelete => KafkaRequest::OffsetDelete(decode(&mut buf, v).map_err(body)?),
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::DescribeCluster => {
            KafkaRequest::DescribeCluster(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::DescribeTopicPartitions => {
            KafkaRequest::DescribeTopicPartitions(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::DescribeLogDirs => {
            KafkaRequest::DescribeLogDirs(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ElectLeaders => KafkaRequest::ElectLeaders(decode(&mut buf, v).map_err(body)?),
        ApiKey::DescribeProducers => {
            KafkaRequest::DescribeProducers(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::OffsetForLeaderEpoch => {
            KafkaRequest::OffsetForLeaderEpoch(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::GetTelemetrySubscriptions => {
            KafkaRequest::GetTelemetrySubscriptions(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::PushTelemetry => KafkaRequest::PushTelemetry(decode(&mut buf, v).map_err(body)?),
        ApiKey::DescribeUserScramCredentials => {
            KafkaRequest::DescribeUserScramCredentials(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::AlterUserScramCredentials => {
            KafkaRequest::AlterUserScramCredentials(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ShareGroupHeartbeat => {
            KafkaRequest::ShareGroupHeartbeat(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ShareGroupDescribe => {
            KafkaRequest::ShareGroupDescribe(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ShareFetch => KafkaRequest::ShareFetch(decode(&mut buf, v).map_err(body)?),
        ApiKey::AddPartitionsToTxn => {
            KafkaRequest::AddPartitionsToTxn(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::AddOffsetsToTxn => {
            KafkaRequest::AddOffsetsToTxn(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::TxnOffsetCommit => {
            KafkaRequest::TxnOffsetCommit(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::EndTxn => KafkaRequest::EndTxn(decode(&mut buf, v).map_err(body)?),
        ApiKey::DescribeTransactions => {
            KafkaRequest::DescribeTransactions(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ListTransactions => {
            KafkaRequest::ListTransactions(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ShareAcknowledge => {
            KafkaRequest::ShareAcknowledge(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::DescribeShareGroupOffsets => {
            KafkaRequest::DescribeShareGroupOffsets(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::AlterShareGroupOffsets => {
            KafkaRequest::AlterShareGroupOffsets(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::DeleteShareGroupOffsets => {
            KafkaRequest::DeleteShareGroupOffsets(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            KafkaRequest::ConsumerGroupHeartbeat(decode(&mut buf, v).map_err(body)?)
        }
        ApiKey::ConsumerGroupDescribe => {
            KafkaRequest::ConsumerGroupDescribe(decode(&mut buf, v).map_err(body)?)
        }
        _ => return Ok(unsupported),
    };
    // Like Apache Kafka, bytes after the last known field are ignored: librdkafka's Metadata
    // v9+ request carries some, and newer clients may add fields.
    if buf.has_remaining() {
        tracing::debug!(
            ?api,
            version = v,
            extra = buf.remaining(),
            "ignoring trailing request bytes"
        );
    }
    Ok(Frame::Request {
        header,
        request: Box::new(request),
    })
}

fn decode<T: Decodable>(buf: &mut Bytes, version: i16) -> anyhow::Result<T> {
    T::decode(buf, version)
}

/// Encodes a response frame: size prefix, response header, body.
pub fn encode_response<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<BytesMut> {
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.extend_from_slice(&(size as i32).to_be_bytes());
    header.encode(&mut out, header_version)?;
    body.encode(&mut out, version)?;
    Ok(out)
}
