//! The error codes a response carries, for `broker_kafka_errors_total`: the top-level code and,
//! where a request names partitions or resources, each of theirs (Produce and Fetch per
//! partition, admin APIs per topic, group or resource).

use kafka_protocol::messages::*;

/// A response whose non-zero error codes can be counted.
pub trait ResponseErrors {
    /// Calls `f` with every error code in the response (zeros included; the caller skips them).
    fn error_codes(&self, _f: &mut dyn FnMut(i16)) {}
}

/// Responses with one top-level `error_code`.
macro_rules! top_level {
    ($($t:ty),* $(,)?) => {$(
        impl ResponseErrors for $t {
            fn error_codes(&self, f: &mut dyn FnMut(i16)) {
                f(self.error_code);
            }
        }
    )*};
}

/// Responses whose codes are not counted (they carry none, or only deep inside).
macro_rules! none {
    ($($t:ty),* $(,)?) => {$( impl ResponseErrors for $t {} )*};
}

top_level!(
    ApiVersionsResponse,
    FindCoordinatorResponse,
    JoinGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    SyncGroupResponse,
    ListGroupsResponse,
    InitProducerIdResponse,
    DescribeClusterResponse,
    DescribeAclsResponse,
    GetTelemetrySubscriptionsResponse,
    PushTelemetryResponse,
    OffsetDeleteResponse,
    DescribeUserScramCredentialsResponse,
    ShareGroupHeartbeatResponse,
    AlterShareGroupOffsetsResponse,
    DeleteShareGroupOffsetsResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    ListTransactionsResponse,
);

impl ResponseErrors for AddPartitionsToTxnResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.results_by_topic_v3_and_below {
            for p in &t.results_by_partition {
                f(p.partition_error_code);
            }
        }
    }
}

impl ResponseErrors for TxnOffsetCommitResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(p.error_code);
            }
        }
    }
}

impl ResponseErrors for DescribeTransactionsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for s in &self.transaction_states {
            f(s.error_code);
        }
    }
}

none!(
    AlterUserScramCredentialsResponse,
    DeleteRecordsResponse,
    CreateAclsResponse,
    DeleteAclsResponse,
    AlterConfigsResponse,
    DescribeTopicPartitionsResponse,
    DescribeLogDirsResponse,
    ElectLeadersResponse,
    DescribeProducersResponse,
    OffsetForLeaderEpochResponse,
    DescribeShareGroupOffsetsResponse,
);

impl ResponseErrors for ProduceResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.responses {
            for p in &t.partition_responses {
                f(p.error_code);
            }
        }
    }
}

impl ResponseErrors for FetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.responses {
            for p in &t.partitions {
                f(p.error_code);
            }
        }
    }
}

impl ResponseErrors for ListOffsetsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(p.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetCommitResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            for p in &t.partitions {
                f(p.error_code);
            }
        }
    }
}

impl ResponseErrors for OffsetFetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for g in &self.groups {
            f(g.error_code);
        }
    }
}

impl ResponseErrors for MetadataResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            f(t.error_code);
        }
    }
}

impl ResponseErrors for CreateTopicsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.topics {
            f(t.error_code);
        }
    }
}

impl ResponseErrors for DeleteTopicsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.responses {
            f(t.error_code);
        }
    }
}

impl ResponseErrors for CreatePartitionsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for t in &self.results {
            f(t.error_code);
        }
    }
}

impl ResponseErrors for DeleteGroupsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for g in &self.results {
            f(g.error_code);
        }
    }
}

impl ResponseErrors for DescribeGroupsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for g in &self.groups {
            f(g.error_code);
        }
    }
}

impl ResponseErrors for DescribeConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for r in &self.results {
            f(r.error_code);
        }
    }
}

impl ResponseErrors for IncrementalAlterConfigsResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for r in &self.responses {
            f(r.error_code);
        }
    }
}

impl ResponseErrors for ShareGroupDescribeResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        for g in &self.groups {
            f(g.error_code);
        }
    }
}

impl ResponseErrors for ShareFetchResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.responses {
            for p in &t.partitions {
                f(p.error_code);
                f(p.acknowledge_error_code);
            }
        }
    }
}

impl ResponseErrors for ShareAcknowledgeResponse {
    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for t in &self.responses {
            for p in &t.partitions {
                f(p.error_code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    #[test]
    fn produce_codes_are_per_partition() {
        let resp = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_partition_responses(vec![
                PartitionProduceResponse::default().with_error_code(3),
                PartitionProduceResponse::default(),
            ])]);
        let mut seen = Vec::new();
        resp.error_codes(&mut |c| seen.push(c));
        assert_eq!(seen, vec![3, 0]);
    }
}
