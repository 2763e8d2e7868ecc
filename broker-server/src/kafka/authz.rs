//! Authorisation of Kafka requests against the ACLs (filled in by the ACL step).

use super::KafkaServer;

/// Kafka's ACL operations that requests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Describe,
    Alter,
}

/// The error code refusing `op` on the cluster to the current principal, if refused.
pub(super) fn cluster_denied(_server: &KafkaServer, _op: Op) -> Option<i16> {
    None
}
