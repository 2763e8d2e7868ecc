//! Answers to APIs and versions this broker does not serve: the protocol's UNSUPPORTED_VERSION
//! error in a response the client can parse, never a dropped connection.

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{encode, versions};
use crate::ServerError;

/// The response to `api_key` v`api_version` saying UNSUPPORTED_VERSION.
///
/// ApiVersions gets the version-0 answer with the supported list (clients retry with a listed
/// version). Other known APIs get their own response type, empty, with UNSUPPORTED_VERSION in
/// the top-level error code where the type has one. Unknown API keys (and versions the codec
/// cannot encode) get a version-0 header followed by the bare error code.
pub fn unsupported_response(
    api_key: i16,
    api_version: i16,
    cid: i32,
) -> Result<BytesMut, ServerError> {
    let code = ResponseError::UnsupportedVersion.code();
    let Ok(api) = ApiKey::try_from(api_key) else {
        return Ok(bare(cid, code));
    };
    if api == ApiKey::ApiVersions {
        let resp = versions::api_versions_response(Some(ResponseError::UnsupportedVersion));
        return encode(ApiKey::ApiVersions, 0, cid, &resp);
    }
    let range = api.valid_versions();
    if api_version < range.min || api_version > range.max {
        return Ok(bare(cid, code));
    }
    let v = api_version;
    macro_rules! answer {
        (with_code: [$($k:ident => $t:ty),* $(,)?], empty: [$($ek:ident => $et:ty),* $(,)?]) => {
            match api {
                $(ApiKey::$k => encode(api, v, cid, &<$t>::default().with_error_code(code)),)*
                $(ApiKey::$ek => encode(api, v, cid, &<$et>::default()),)*
                _ => Ok(bare(cid, code)),
            }
        };
    }
    answer!(
        with_code: [
            ListGroups => ListGroupsResponse,
            SaslHandshake => SaslHandshakeResponse,
            SaslAuthenticate => SaslAuthenticateResponse,
            DescribeCluster => DescribeClusterResponse,
            GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
            ConsumerGroupHeartbeat => ConsumerGroupHeartbeatResponse,
            AddOffsetsToTxn => AddOffsetsToTxnResponse,
            EndTxn => EndTxnResponse,
            DescribeAcls => DescribeAclsResponse,
            ListTransactions => ListTransactionsResponse,
            OffsetDelete => OffsetDeleteResponse,
            InitProducerId => InitProducerIdResponse,
            JoinGroup => JoinGroupResponse,
            SyncGroup => SyncGroupResponse,
            Heartbeat => HeartbeatResponse,
            LeaveGroup => LeaveGroupResponse,
            FindCoordinator => FindCoordinatorResponse,
            Fetch => FetchResponse,
            OffsetFetch => OffsetFetchResponse,
        ],
        empty: [
            Produce => ProduceResponse,
            Metadata => MetadataResponse,
            ListOffsets => ListOffsetsResponse,
            OffsetCommit => OffsetCommitResponse,
            DescribeGroups => DescribeGroupsResponse,
            OffsetForLeaderEpoch => OffsetForLeaderEpochResponse,
            CreateTopics => CreateTopicsResponse,
            DeleteTopics => DeleteTopicsResponse,
            DeleteRecords => DeleteRecordsResponse,
            DescribeConfigs => DescribeConfigsResponse,
            AlterConfigs => AlterConfigsResponse,
            IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
            CreatePartitions => CreatePartitionsResponse,
            DeleteGroups => DeleteGroupsResponse,
            DescribeProducers => DescribeProducersResponse,
        ]
    )
}

fn bare(cid: i32, code: i16) -> BytesMut {
    let mut out = BytesMut::with_capacity(10);
    out.extend_from_slice(&6i32.to_be_bytes());
    out.extend_from_slice(&cid.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out
}
