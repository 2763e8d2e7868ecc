//! Consumer groups as the web console shows them: the coordinator's live groups, and one
//! group's members with the partitions each was assigned (decoded from the consumer
//! protocol's assignment).

use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use serde::Serialize;

use super::KafkaServer;

/// A group the coordinator holds now (it has members or is rebalancing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveGroup {
    pub group: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// One group with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    pub state: &'static str,
    pub protocol_type: String,
    /// The assignor, once the group is stable.
    pub protocol: String,
    pub members: Vec<MemberView>,
}

/// A member and what it was assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub host: String,
    /// Topic and partitions; empty while rebalancing or for non-consumer protocols.
    pub assignments: Vec<(String, Vec<i32>)>,
}

impl KafkaServer {
    /// Every group the coordinator holds, sorted by name.
    pub fn live_groups(&self) -> Vec<LiveGroup> {
        let mut out: Vec<LiveGroup> = self
            .coordinator
            .list()
            .into_iter()
            .map(|(group, protocol_type, state)| LiveGroup {
                group,
                protocol_type,
                state,
            })
            .collect();
        out.sort_by(|a, b| a.group.cmp(&b.group));
        out
    }

    /// The group's state and members; `None` when the coordinator does not hold it (no
    /// members: only its committed offsets, if any, remain in the store).
    pub fn group_view(&self, group: &str) -> Option<GroupView> {
        let d = self.coordinator.describe(group)?;
        let consumer = d.protocol_type == "consumer";
        Some(GroupView {
            state: d.state,
            protocol_type: d.protocol_type,
            protocol: d.protocol,
            members: d
                .members
                .into_iter()
                .map(|m| MemberView {
                    assignments: if consumer {
                        assigned_partitions(&m.assignment)
                    } else {
                        Vec::new()
                    },
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    host: m.client_host.trim_start_matches('/').to_string(),
                })
                .collect(),
        })
    }
}

/// The topics and partitions of a consumer protocol assignment (a version, then the
/// assignment); nothing for bytes that do not parse.
pub fn assigned_partitions(assignment: &Bytes) -> Vec<(String, Vec<i32>)> {
    if assignment.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([assignment[0], assignment[1]]);
    let mut body = assignment.slice(2..);
    match ConsumerProtocolAssignment::decode(&mut body, version.clamp(0, 3)) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn assignments_decode_and_garbage_gives_nothing() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&1i16.to_be_bytes());
        a.encode(&mut buf, 1).unwrap();
        assert_eq!(
            assigned_partitions(&buf.freeze()),
            vec![("orders".to_string(), vec![0, 2])]
        );
        assert!(assigned_partitions(&Bytes::from_static(b"\x00\x01\xff")).is_empty());
        assert!(assigned_partitions(&Bytes::new()).is_empty());
    }
}
