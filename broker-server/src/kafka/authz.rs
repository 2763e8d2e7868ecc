//! Authorisation of every Kafka request against the ACLs, as Apache Kafka's KafkaApis does
//! it: resources a principal may not touch are taken out of the request before it is served
//! and answered with Kafka's error (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
//! CLUSTER_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED); listings (Metadata
//! of all topics, ListGroups) leave out what the principal may not describe. With the
//! authoriser off (no security settings) every check passes at once.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::KafkaServer;
pub(super) use crate::security::acl::Op;
use crate::security::acl::{resource, CLUSTER_NAME};

pub(super) const TOPIC_DENIED: i16 = 29;
pub(super) const GROUP_DENIED: i16 = 30;
pub(super) const CLUSTER_DENIED: i16 = 31;
pub(super) const TXN_DENIED: i16 = 53;

impl KafkaServer {
    /// Whether the current connection's principal may do `op` on (type, name).
    pub(super) fn may(&self, op: Op, rtype: i8, name: &str) -> bool {
        if !self.authz.enabled() {
            return true;
        }
        // In-process calls (no connection) are the broker's own: the web console, which
        // admits only authenticated super users while ACLs are on (console/access.rs).
        let Some(conn) = super::conn::current() else {
            return true;
        };
        let ok = self
            .authz
            .allowed(&conn.principal, &conn.host, op, rtype, name);
        if !ok {
            self.metrics.security.denied(false);
        }
        ok
    }

    pub(super) fn may_topic(&self, op: Op, topic: &str) -> bool {
        self.may(op, resource::TOPIC, topic)
    }

    pub(super) fn may_group(&self, op: Op, group: &str) -> bool {
        self.may(op, resource::GROUP, group)
    }

    pub(super) fn may_cluster(&self, op: Op) -> bool {
        self.may(op, resource::CLUSTER, CLUSTER_NAME)
    }

    /// CREATE on the cluster or on the topic (Kafka accepts either).
    fn may_create(&self, topic: &str) -> bool {
        if !self.authz.enabled() {
            return true;
        }
        let Some(conn) = super::conn::current() else {
            return true;
        };
        let (principal, host) = (conn.principal, conn.host);
        self.authz.allowed(
            &principal,
            &host,
            Op::Create,
            resource::CLUSTER,
            CLUSTER_NAME,
        ) || self.may_topic(Op::Create, topic)
    }
}

/// The error code refusing `op` on the cluster to the current principal, if refused.
pub(super) fn cluster_denied(server: &KafkaServer, op: Op) -> Option<i16> {
    (!server.may_cluster(op)).then_some(CLUSTER_DENIED)
}

/// Topics (with partitions) taken out of a request, answered with `code` afterwards.
#[derive(Default)]
pub(super) struct Denied {
    pub topics: Vec<(TopicName, Uuid, Vec<i32>, i16)>,
}

use uuid::Uuid;

fn tn(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl KafkaServer {
    // ---- Produce ----
    pub(super) fn authz_produce(&self, req: &mut ProduceRequest) -> Denied {
        let mut d = Denied::default();
        if !self.authz.enabled() {
            return d;
        }
        let txn_denied = req
            .transactional_id
            .as_ref()
            .is_some_and(|t| !self.may(Op::Write, resource::TRANSACTIONAL_ID, t.0.as_str()));
        req.topic_data.retain(|t| {
            let code = if txn_denied {
                TXN_DENIED
            } else if !self.may_topic(Op::Write, t.name.0.as_str()) {
                TOPIC_DENIED
            } else {
                return true;
            };
            d.topics.push((
                t.name.clone(),
                t.topic_id,
                t.partition_data.iter().map(|p| p.index).collect(),
                code,
            ));
            false
        });
        d
    }

    // ---- Fetch ----
    pub(super) async fn authz_fetch(&self, req: &mut FetchRequest) -> Denied {
        let mut d = Denied::default();
        if !self.authz.enabled() {
            return d;
        }
        let mut names = std::collections::HashMap::new();
        if req.topics.iter().any(|t| t.topic.0.is_empty()) {
            if let Ok(list) = self.store.list_topics().await {
                for info in list {
                    if let Some(id) = super::topics::stored_topic_id(&info.config) {
                        names.insert(id, info.name.clone());
                    }
                }
            }
        }
        req.topics.retain(|t| {
            let name = if t.topic.0.is_empty() {
                names.get(&t.topic_id).cloned().unwrap_or_default()
            } else {
                t.topic.0.to_string()
            };
            // An unknown id is left to the handler (UNKNOWN_TOPIC_ID).
            if name.is_empty() || self.may_topic(Op::Read, &name) {
                return true;
            }
            d.topics.push((
                t.topic.clone(),
                t.topic_id,
                t.partitions.iter().map(|p| p.partition).collect(),
                TOPIC_DENIED,
            ));
            false
        });
        d
    }
}

/// Adds the denied topics to a Produce response.
pub(super) fn produce_denied(mut resp: ProduceResponse, d: Denied) -> ProduceResponse {
    for (name, id, parts, code) in d.topics {
        resp.responses.push(
            produce_response::TopicProduceResponse::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partition_responses(
                    parts
                        .into_iter()
                        .map(|p| {
                            produce_response::PartitionProduceResponse::default()
                                .with_index(p)
                                .with_error_code(code)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                ),
        );
    }
    resp
}

/// Adds the denied topics to a Fetch response.
pub(super) fn fetch_denied(mut resp: FetchResponse, d: Denied) -> FetchResponse {
    for (name, id, parts, code) in d.topics {
        resp.responses.push(
            fetch_response::FetchableTopicResponse::default()
                .with_topic(name)
                .with_topic_id(id)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            fetch_response::PartitionData::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                ),
        );
    }
    resp
}

/// What Metadata must add or hide after serving.
pub(super) struct MetadataPost {
    denied: Vec<(String, i16)>,
    filter_all: bool,
}

impl KafkaServer {
    /// Metadata: named topics the principal may not describe are answered
    /// TOPIC_AUTHORIZATION_FAILED; missing topics it may not create are not created
    /// (UNKNOWN_TOPIC_OR_PARTITION); a listing of all topics leaves out the undescribable.
    pub(super) async fn authz_metadata(
        &self,
        req: &mut MetadataRequest,
        version: i16,
    ) -> MetadataPost {
        let mut post = MetadataPost {
            denied: Vec::new(),
            filter_all: false,
        };
        if !self.authz.enabled() {
            return post;
        }
        let all = match &req.topics {
            None => true,
            Some(t) => t.is_empty() && version == 0,
        };
        if all {
            post.filter_all = true;
            return post;
        }
        if let Some(topics) = &mut req.topics {
            let mut kept = Vec::new();
            for t in topics.drain(..) {
                let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                    kept.push(t);
                    continue;
                };
                if !self.may_topic(Op::Describe, &name) {
                    post.denied.push((name, TOPIC_DENIED));
                } else if !self.may_create(&name)
                    && matches!(
                        self.store.describe_topic(&name).await,
                        Err(broker_api::StoreError::UnknownTopic(_))
                    )
                {
                    post.denied
                        .push((name, ResponseError::UnknownTopicOrPartition.code()));
                } else {
                    kept.push(t);
                }
            }
            *topics = kept;
        }
        post
    }

    pub(super) fn metadata_post(
        &self,
        mut resp: MetadataResponse,
        post: MetadataPost,
    ) -> MetadataResponse {
        if post.filter_all {
            resp.topics.retain(|t| {
                t.name
                    .as_ref()
                    .is_none_or(|n| self.may_topic(Op::Describe, n.0.as_str()))
            });
        }
        for (name, code) in post.denied {
            resp.topics.push(
                metadata_response::MetadataResponseTopic::default()
                    .with_name(Some(tn(&name)))
                    .with_error_code(code),
            );
        }
        resp
    }

    // ---- ListOffsets, DeleteRecords, OffsetForLeaderEpoch, DescribeProducers ----
    pub(super) fn authz_list_offsets(&self, req: &mut ListOffsetsRequest) -> Denied {
        self.deny_topics(
            &mut req.topics,
            Op::Describe,
            |t| &t.name,
            |t| t.partitions.iter().map(|p| p.partition_index).collect(),
        )
    }

    pub(super) fn authz_delete_records(&self, req: &mut DeleteRecordsRequest) -> Denied {
        self.deny_topics(
            &mut req.topics,
            Op::Delete,
            |t| &t.name,
            |t| t.partitions.iter().map(|p| p.partition_index).collect(),
        )
    }

    /// Leaves out of `topics` those the principal may not `op`; they come back with their
    /// partitions, to be answered TOPIC_AUTHORIZATION_FAILED.
    fn deny_topics<T>(
        &self,
        topics: &mut Vec<T>,
        op: Op,
        name: impl Fn(&T) -> &TopicName,
        partitions: impl Fn(&T) -> Vec<i32>,
    ) -> Denied {
        let mut d = Denied::default();
        if self.authz.enabled() {
            topics.retain(|t| {
                if self.may_topic(op, name(t).0.as_str()) {
                    return true;
                }
                d.topics.push((
                    name(t).clone(),
                    Uuid::default(),
                    partitions(t),
                    TOPIC_DENIED,
                ));
                false
            });
        }
        d
    }

    /// Topics of OffsetForLeaderEpoch, DescribeProducers and DescribeTopicPartitions the
    /// principal may not see are left out of the request (and so of the answer).
    pub(super) fn authz_retain_topics<T>(
        &self,
        topics: &mut Vec<T>,
        op: Op,
        name: impl Fn(&T) -> &str,
    ) {
        if self.authz.enabled() {
            topics.retain(|t| self.may_topic(op, name(t)));
        }
    }
}

pub(super) fn list_offsets_denied(mut resp: ListOffsetsResponse, d: Denied) -> ListOffsetsResponse {
    for (name, _, parts, code) in d.topics {
        resp.topics.push(
            list_offsets_response::ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            list_offsets_response::ListOffsetsPartitionResponse::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_timestamp(-1)
                                .with_offset(-1)
                        })
                        .collect(),
                ),
        );
    }
    resp
}

pub(super) fn delete_records_denied(
    mut resp: DeleteRecordsResponse,
    d: Denied,
) -> DeleteRecordsResponse {
    for (name, _, parts, code) in d.topics {
        resp.topics.push(
            delete_records_response::DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            delete_records_response::DeleteRecordsPartitionResult::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_low_watermark(-1)
                        })
                        .collect(),
                ),
        );
    }
    resp
}

// ---- consumer groups ----
impl KafkaServer {
    /// OffsetCommit: READ on the group (else every partition GROUP_AUTHORIZATION_FAILED) and
    /// READ on each topic.
    pub(super) fn authz_offset_commit(&self, req: &mut OffsetCommitRequest) -> Denied {
        let mut d = Denied::default();
        if !self.authz.enabled() {
            return d;
        }
        let group_ok = self.may_group(Op::Read, req.group_id.0.as_str());
        req.topics.retain(|t| {
            let code = if !group_ok {
                GROUP_DENIED
            } else if !self.may_topic(Op::Read, t.name.0.as_str()) {
                TOPIC_DENIED
            } else {
                return true;
            };
            d.topics.push((
                t.name.clone(),
                t.topic_id,
                t.partitions.iter().map(|p| p.partition_index).collect(),
                code,
            ));
            false
        });
        d
    }

    /// OffsetFetch: DESCRIBE on the group(s); commits of topics the principal may not
    /// describe are left out.
    pub(super) fn offset_fetch_post(
        &self,
        mut resp: OffsetFetchResponse,
        req_groups: &[String],
        version: i16,
    ) -> OffsetFetchResponse {
        if !self.authz.enabled() {
            return resp;
        }
        if version < 8 {
            if let Some(g) = req_groups.first() {
                if !self.may_group(Op::Describe, g) {
                    resp.topics.clear();
                    resp.error_code = GROUP_DENIED;
                    return resp;
                }
            }
            resp.topics
                .retain(|t| self.may_topic(Op::Describe, t.name.0.as_str()));
        } else {
            for g in &mut resp.groups {
                if !self.may_group(Op::Describe, g.group_id.0.as_str()) {
                    g.topics.clear();
                    g.error_code = GROUP_DENIED;
                } else {
                    g.topics
                        .retain(|t| self.may_topic(Op::Describe, t.name.0.as_str()));
                }
            }
        }
        resp
    }

    /// FindCoordinator: DESCRIBE on the group or transactional id; the refusal code, if any,
    /// for one key.
    pub(super) fn coordinator_denied(&self, key_type: i8, key: &str) -> Option<i16> {
        match key_type {
            0 => (!self.may_group(Op::Describe, key)).then_some(GROUP_DENIED),
            1 => (!self.may(Op::Describe, resource::TRANSACTIONAL_ID, key)).then_some(TXN_DENIED),
            _ => None,
        }
    }

    pub(super) fn find_coordinator_post(
        &self,
        mut resp: FindCoordinatorResponse,
        req: &FindCoordinatorRequest,
        version: i16,
    ) -> FindCoordinatorResponse {
        if !self.authz.enabled() {
            return resp;
        }
        if version < 4 {
            if let Some(code) = self.coordinator_denied(req.key_type, req.key.as_str()) {
                resp.error_code = code;
                resp.error_message = None;
                resp.node_id = BrokerId(-1);
                resp.host = StrBytes::default();
                resp.port = -1;
            }
        } else {
            for c in &mut resp.coordinators {
                if let Some(code) = self.coordinator_denied(req.key_type, c.key.as_str()) {
                    c.error_code = code;
                    c.error_message = None;
                    c.node_id = BrokerId(-1);
                    c.host = StrBytes::default();
                    c.port = -1;
                }
            }
        }
        resp
    }

    /// Transaction APIs: WRITE on the transactional id.
    pub(super) fn txn_write_denied(&self, id: &str) -> bool {
        self.authz.enabled() && !self.may(Op::Write, resource::TRANSACTIONAL_ID, id)
    }

    /// Group membership APIs: READ on the group.
    pub(super) fn group_read_denied(&self, group: &str) -> Option<i16> {
        (!self.may_group(Op::Read, group)).then_some(GROUP_DENIED)
    }

    pub(super) fn authz_groups(&self, groups: &mut Vec<GroupId>, op: Op) -> Vec<GroupId> {
        let mut denied = Vec::new();
        if self.authz.enabled() {
            groups.retain(|g| {
                let ok = self.may_group(op, g.0.as_str());
                if !ok {
                    denied.push(g.clone());
                }
                ok
            });
        }
        denied
    }

    pub(super) fn list_groups_post(&self, mut resp: ListGroupsResponse) -> ListGroupsResponse {
        if self.authz.enabled() && !self.may_cluster(Op::Describe) {
            resp.groups
                .retain(|g| self.may_group(Op::Describe, g.group_id.0.as_str()));
        }
        resp
    }
}

pub(super) fn describe_groups_denied(
    mut resp: DescribeGroupsResponse,
    denied: Vec<GroupId>,
) -> DescribeGroupsResponse {
    for g in denied {
        resp.groups.push(
            describe_groups_response::DescribedGroup::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED),
        );
    }
    resp
}

pub(super) fn delete_groups_denied(
    mut resp: DeleteGroupsResponse,
    denied: Vec<GroupId>,
) -> DeleteGroupsResponse {
    for g in denied {
        resp.results.push(
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(GROUP_DENIED),
        );
    }
    resp
}

// ---- topics and configs ----
impl KafkaServer {
    pub(super) fn authz_create_topics(&self, req: &mut CreateTopicsRequest) -> Vec<TopicName> {
        let mut denied = Vec::new();
        if self.authz.enabled() {
            req.topics.retain(|t| {
                let ok = self.may_create(t.name.0.as_str());
                if !ok {
                    denied.push(t.name.clone());
                }
                ok
            });
        }
        denied
    }

    pub(super) fn authz_delete_topics(&self, req: &mut DeleteTopicsRequest) -> Vec<TopicName> {
        let mut denied = Vec::new();
        if self.authz.enabled() {
            req.topic_names.retain(|t| {
                let ok = self.may_topic(Op::Delete, t.0.as_str());
                if !ok {
                    denied.push(t.clone());
                }
                ok
            });
            req.topics.retain(|t| {
                let name = t.name.as_ref().map(|n| n.0.as_str()).unwrap_or("");
                let ok = name.is_empty() || self.may_topic(Op::Delete, name);
                if !ok {
                    denied.push(t.name.clone().unwrap_or_default());
                }
                ok
            });
        }
        denied
    }

    pub(super) fn authz_create_partitions(
        &self,
        req: &mut CreatePartitionsRequest,
    ) -> Vec<TopicName> {
        let mut denied = Vec::new();
        if self.authz.enabled() {
            req.topics.retain(|t| {
                let ok = self.may_topic(Op::Alter, t.name.0.as_str());
                if !ok {
                    denied.push(t.name.clone());
                }
                ok
            });
        }
        denied
    }

    /// InitProducerId: WRITE on the transactional id, or (idempotent producers) IDEMPOTENT_WRITE
    /// on the cluster or WRITE on some topic, as Kafka 2.8+ (KIP-679).
    pub(super) fn init_producer_id_denied(&self, req: &InitProducerIdRequest) -> Option<i16> {
        if !self.authz.enabled() {
            return None;
        }
        match &req.transactional_id {
            Some(t) => (!self.may(Op::Write, resource::TRANSACTIONAL_ID, t.0.as_str()))
                .then_some(TXN_DENIED),
            None => {
                // In-process calls are the broker's own (see `may`).
                let conn = super::conn::current()?;
                let (principal, host) = (conn.principal, conn.host);
                let ok =
                    self.authz.allowed(
                        &principal,
                        &host,
                        Op::IdempotentWrite,
                        resource::CLUSTER,
                        CLUSTER_NAME,
                    ) || self
                        .authz
                        .allowed_on_any(&principal, &host, Op::Write, resource::TOPIC);
                (!ok).then_some(CLUSTER_DENIED)
            }
        }
    }

    /// A config resource (topic 2, broker 4) the principal may not `op`: its refusal code.
    pub(super) fn config_resource_denied(&self, rtype: i8, name: &str, op: Op) -> Option<i16> {
        match rtype {
            2 => (!self.may_topic(op, name)).then_some(TOPIC_DENIED),
            _ => (!self.may_cluster(op)).then_some(CLUSTER_DENIED),
        }
    }
}

pub(super) fn create_topics_denied(
    mut resp: CreateTopicsResponse,
    denied: Vec<TopicName>,
) -> CreateTopicsResponse {
    for name in denied {
        resp.topics.push(
            create_topics_response::CreatableTopicResult::default()
                .with_name(name)
                .with_error_code(TOPIC_DENIED)
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        );
    }
    resp
}

pub(super) fn delete_topics_denied(
    mut resp: DeleteTopicsResponse,
    denied: Vec<TopicName>,
) -> DeleteTopicsResponse {
    for name in denied {
        resp.responses.push(
            delete_topics_response::DeletableTopicResult::default()
                .with_name(Some(name))
                .with_error_code(TOPIC_DENIED),
        );
    }
    resp
}

pub(super) fn create_partitions_denied(
    mut resp: CreatePartitionsResponse,
    denied: Vec<TopicName>,
) -> CreatePartitionsResponse {
    for name in denied {
        resp.results.push(
            create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(name)
                .with_error_code(TOPIC_DENIED),
        );
    }
    resp
}

pub(super) fn offset_commit_denied(
    mut resp: OffsetCommitResponse,
    d: Denied,
) -> OffsetCommitResponse {
    for (name, id, parts, code) in d.topics {
        resp.topics.push(
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_topic_id(id)
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|p| {
                            offset_commit_response::OffsetCommitResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                        })
                        .collect(),
                ),
        );
    }
    resp
}

/// AddPartitionsToTxn refused for the transactional id: every partition says so.
pub(super) fn add_partitions_denied(
    mut resp: AddPartitionsToTxnResponse,
) -> AddPartitionsToTxnResponse {
    for t in &mut resp.results_by_topic_v3_and_below {
        for p in &mut t.results_by_partition {
            p.partition_error_code = TXN_DENIED;
        }
    }
    resp
}

/// TxnOffsetCommit refused: every partition gets `code`.
pub(super) fn txn_offset_commit_denied(
    req: &TxnOffsetCommitRequest,
    code: i16,
) -> TxnOffsetCommitResponse {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
