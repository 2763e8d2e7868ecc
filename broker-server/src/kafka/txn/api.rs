//! The transaction APIs: InitProducerId (with a transactional id), AddPartitionsToTxn,
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions.

use broker_api::{CoordinatorFence, OffsetCommit, StoreError, TxnMarker};
use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use super::{
    now_ms, offsets_prefix, offsets_slot, slot, valid_id, Entry, PendingOffsets, Status, TxnMeta,
    MAX_TIMEOUT_MS, SLOT_PREFIX,
};
use crate::kafka::KafkaServer;

const UNAVAILABLE: i16 = 15; // COORDINATOR_NOT_AVAILABLE

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// Checks a request's producer against the id's state: the error code to answer, if any.
fn producer_error(meta: &Option<TxnMeta>, producer_id: i64, epoch: i16) -> Option<i16> {
    let Some(m) = meta else {
        return Some(code(ResponseError::InvalidProducerIdMapping));
    };
    if m.producer_id != producer_id {
        return Some(code(ResponseError::InvalidProducerIdMapping));
    }
    if m.epoch != epoch {
        return Some(code(ResponseError::ProducerFenced));
    }
    None
}

impl KafkaServer {
    /// Coordinates `id` on this broker (claims it in a cluster): its entry and fence.
    pub(super) async fn txn_entry(
        &self,
        id: &str,
    ) -> Result<(Entry, Option<CoordinatorFence>), i16> {
        let fence = self.coordinate(&slot(id)).await?;
        Ok((self.txns.entry(id), fence))
    }

    /// Saves an id's state before the answer that depends on it.
    pub(super) async fn save_txn(
        &self,
        fence: Option<&CoordinatorFence>,
        id: &str,
        meta: &TxnMeta,
    ) -> Result<(), i16> {
        self.write_group_state(fence, &slot(id), meta.encode())
            .await
    }

    /// Finishes a decided transaction (PrepareCommit or PrepareAbort): a marker on every
    /// partition, the transaction's offsets committed (or dropped), the completion saved.
    /// Safe to run again after a failure or crash part way.
    pub(super) async fn finish_txn(
        &self,
        id: &str,
        meta: &mut TxnMeta,
        fence: Option<&CoordinatorFence>,
    ) -> Result<(), i16> {
        let commit = meta.status == Status::PrepareCommit;
        let marker = TxnMarker {
            producer_id: meta.producer_id,
            producer_epoch: meta.epoch,
            commit,
            coordinator_epoch: fence.map_or(0, |f| f.epoch.min(i32::MAX as i64) as i32),
        };
        let writes = meta
            .partitions
            .iter()
            .map(|(t, p)| self.store.write_txn_marker(t, *p, marker));
        let results = futures::future::join_all(writes).await;
        for (r, (t, p)) in results.into_iter().zip(&meta.partitions) {
            match r {
                // A deleted topic needs no marker; a newer epoch's marker ended it already.
                Ok(_)
                | Err(StoreError::UnknownTopic(_))
                | Err(StoreError::ProducerFenced { .. }) => {}
                Err(e) => {
                    warn!(transactional_id = id, topic = %t, partition = p, "cannot write the transaction marker: {e}");
                    return Err(UNAVAILABLE);
                }
            }
        }
        for g in meta.groups.clone() {
            self.settle_offsets(id, &g, meta, commit).await?;
        }
        meta.status = if commit {
            Status::CompleteCommit
        } else {
            Status::CompleteAbort
        };
        meta.partitions.clear();
        meta.groups.clear();
        meta.updated_ms = now_ms();
        self.save_txn(fence, id, meta).await
    }

    /// Commits (on commit) the offsets the transaction sent for `group`, then drops them.
    async fn settle_offsets(
        &self,
        id: &str,
        group: &str,
        meta: &TxnMeta,
        commit: bool,
    ) -> Result<(), i16> {
        let key = offsets_slot(id, group);
        let pending = self.store.group_snapshot(&key).await.map_err(|e| {
            warn!(
                transactional_id = id,
                group, "cannot read the transaction's offsets: {e}"
            );
            UNAVAILABLE
        })?;
        let pending = pending.and_then(|b| serde_json::from_slice::<PendingOffsets>(&b).ok());
        if let Some(p) = pending.filter(|p| commit && p.producer_id == meta.producer_id) {
            let commits: Vec<OffsetCommit> = p
                .offsets
                .into_iter()
                .map(
                    |((topic, partition), (offset, leader_epoch, metadata))| OffsetCommit {
                        topic,
                        partition,
                        offset,
                        leader_epoch,
                        metadata,
                    },
                )
                .collect();
            if let Err(e) = self.store.commit_offsets(group, &commits).await {
                if !matches!(e, StoreError::UnknownTopic(_)) {
                    warn!(
                        transactional_id = id,
                        group, "cannot commit the transaction's offsets: {e}"
                    );
                    return Err(UNAVAILABLE);
                }
                // A topic went away: commit the others one by one.
                for c in commits {
                    match self
                        .store
                        .commit_offsets(group, std::slice::from_ref(&c))
                        .await
                    {
                        Ok(()) | Err(StoreError::UnknownTopic(_)) => {}
                        Err(e) => {
                            warn!(
                                transactional_id = id,
                                group, "cannot commit the transaction's offsets: {e}"
                            );
                            return Err(UNAVAILABLE);
                        }
                    }
                }
            }
        }
        self.store
            .save_group_snapshot(&key, Bytes::new())
            .await
            .map_err(|e| {
                warn!(
                    transactional_id = id,
                    group, "cannot drop the transaction's offsets: {e}"
                );
                UNAVAILABLE
            })
    }

    /// Aborts the id's open transaction with a bumped epoch, so its producer is fenced.
    pub(super) async fn fence_and_abort(
        &self,
        id: &str,
        meta: &mut TxnMeta,
        fence: Option<&CoordinatorFence>,
    ) -> Result<(), i16> {
        self.bump_epoch(meta).await?;
        meta.status = Status::PrepareAbort;
        meta.updated_ms = now_ms();
        self.save_txn(fence, id, meta).await?;
        self.finish_txn(id, meta, fence).await
    }

    /// The next epoch of the id's producer (a new producer id once epochs run out).
    async fn bump_epoch(&self, meta: &mut TxnMeta) -> Result<(), i16> {
        if meta.epoch >= i16::MAX - 1 {
            let fresh = self.store.init_producer_id().await.map_err(|e| {
                warn!("cannot allocate a producer id: {e}");
                UNAVAILABLE
            })?;
            meta.producer_id = fresh.producer_id;
            meta.last_epoch = -1;
            meta.epoch = 0;
        } else {
            meta.last_epoch = meta.epoch;
            meta.epoch += 1;
        }
        Ok(())
    }

    /// InitProducerId with a transactional id: a new producer id (epoch 0) for a new id;
    /// otherwise the open transaction is aborted (fencing the previous producer) and the
    /// epoch bumped.
    pub(crate) async fn init_txn_producer(
        &self,
        id: &str,
        req: &InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let fail = |code: i16| {
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        if !valid_id(id) {
            return fail(code(ResponseError::InvalidRequest));
        }
        if req.transaction_timeout_ms <= 0 || req.transaction_timeout_ms > MAX_TIMEOUT_MS {
            return fail(code(ResponseError::InvalidTransactionTimeout));
        }
        let (entry, fence) = match self.txn_entry(id).await {
            Ok(x) => x,
            Err(c) => return fail(c),
        };
        let mut held = entry.lock().await;
        self.txns.settle(id, &mut held);
        let (rpid, repoch) = (req.producer_id.0, req.producer_epoch);
        let mut meta = match held.clone() {
            None => {
                let fresh = match self.store.init_producer_id().await {
                    Ok(p) => p,
                    Err(e) => {
                        warn!("cannot allocate a producer id: {e}");
                        return fail(UNAVAILABLE);
                    }
                };
                TxnMeta {
                    producer_id: fresh.producer_id,
                    epoch: 0,
                    last_epoch: -1,
                    timeout_ms: req.transaction_timeout_ms,
                    status: Status::Empty,
                    partitions: Default::default(),
                    groups: Default::default(),
                    started_ms: now_ms(),
                    updated_ms: now_ms(),
                }
            }
            Some(mut m) => {
                if rpid >= 0 {
                    let known =
                        rpid == m.producer_id && (repoch == m.epoch || repoch == m.last_epoch);
                    if !known {
                        return fail(code(ResponseError::ProducerFenced));
                    }
                    if repoch == m.last_epoch && m.status == Status::Empty {
                        // A retry of the call that bumped the epoch.
                        return InitProducerIdResponse::default()
                            .with_producer_id(ProducerId(m.producer_id))
                            .with_producer_epoch(m.epoch);
                    }
                }
                let finished = match m.status {
                    Status::PrepareCommit | Status::PrepareAbort => {
                        self.finish_txn(id, &mut m, fence.as_ref()).await
                    }
                    Status::Ongoing => self.fence_and_abort(id, &mut m, fence.as_ref()).await,
                    _ => Ok(()),
                };
                if let Err(c) = finished {
                    *held = Some(m);
                    return fail(c);
                }
                if let Err(c) = self.bump_epoch(&mut m).await {
                    *held = Some(m);
                    return fail(c);
                }
                m.status = Status::Empty;
                m
            }
        };
        meta.timeout_ms = req.transaction_timeout_ms;
        meta.updated_ms = now_ms();
        if let Err(c) = self.save_txn(fence.as_ref(), id, &meta).await {
            return fail(c);
        }
        info!(
            transactional_id = id,
            producer_id = meta.producer_id,
            epoch = meta.epoch,
            "transactional producer initialized"
        );
        let resp = InitProducerIdResponse::default()
            .with_producer_id(ProducerId(meta.producer_id))
            .with_producer_epoch(meta.epoch);
        *held = Some(meta);
        resp
    }

    /// Locks `id`'s state for a call of its producer: the fence and the locked entry, or the
    /// error code (coordinator moved, unknown producer, fenced, a transaction ending).
    async fn txn_call(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(Entry, Option<CoordinatorFence>), i16> {
        if !valid_id(id) {
            return Err(code(ResponseError::InvalidRequest));
        }
        let (entry, fence) = self.txn_entry(id).await?;
        {
            let mut held = entry.lock().await;
            self.txns.settle(id, &mut held);
            if let Some(c) = producer_error(&held, producer_id, epoch) {
                return Err(c);
            }
        }
        Ok((entry, fence))
    }

    /// Adds partitions and groups to the id's transaction (starting one if none is open)
    /// and saves it; the error code, if any.
    async fn add_to_txn(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        group: Option<&str>,
    ) -> i16 {
        let (entry, fence) = match self.txn_call(id, producer_id, epoch).await {
            Ok(x) => x,
            Err(c) => return c,
        };
        let mut held = entry.lock().await;
        let Some(meta) = held.as_mut() else {
            return code(ResponseError::InvalidProducerIdMapping);
        };
        if let Some(c) = producer_error(&Some(meta.clone()), producer_id, epoch) {
            return c;
        }
        if meta.status.preparing() {
            return code(ResponseError::ConcurrentTransactions);
        }
        let mut next = meta.clone();
        if next.status != Status::Ongoing {
            next.status = Status::Ongoing;
            next.started_ms = now_ms();
            next.partitions.clear();
            next.groups.clear();
        }
        next.partitions.extend(partitions.iter().cloned());
        if let Some(g) = group {
            next.groups.insert(g.to_string());
        }
        if next == *meta {
            return 0;
        }
        next.updated_ms = now_ms();
        if let Err(c) = self.save_txn(fence.as_ref(), id, &next).await {
            return c;
        }
        *meta = next;
        0
    }

    pub(crate) async fn add_partitions_to_txn(
        &self,
        req: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        let id = req.v3_and_below_transactional_id.0.to_string();
        // Unknown topics or partitions fail the call; the others are not attempted.
        let mut unknown = std::collections::HashSet::new();
        let mut wanted = Vec::new();
        for t in &req.v3_and_below_topics {
            let name = t.name.0.to_string();
            let count = self
                .store
                .describe_topic(&name)
                .await
                .map(|i| i.config.partitions as i32)
                .unwrap_or(0);
            for &p in &t.partitions {
                if p < 0 || p >= count {
                    unknown.insert((name.clone(), p));
                }
                wanted.push((name.clone(), p));
            }
        }
        let result = if unknown.is_empty() {
            self.add_to_txn(
                &id,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                &wanted,
                None,
            )
            .await
        } else {
            code(ResponseError::OperationNotAttempted)
        };
        let topics = req
            .v3_and_below_topics
            .iter()
            .map(|t| {
                let results = t
                    .partitions
                    .iter()
                    .map(|&p| {
                        let c = if unknown.contains(&(t.name.0.to_string(), p)) {
                            code(ResponseError::UnknownTopicOrPartition)
                        } else {
                            result
                        };
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(p)
                            .with_partition_error_code(c)
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(results)
            })
            .collect();
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
    }

    pub(crate) async fn add_offsets_to_txn(
        &self,
        req: AddOffsetsToTxnRequest,
    ) -> AddOffsetsToTxnResponse {
        let group = req.group_id.0.to_string();
        let c = if broker_api::validate_group_name(&group).is_err() {
            code(ResponseError::InvalidGroupId)
        } else {
            self.add_to_txn(
                req.transactional_id.0.as_str(),
                req.producer_id.0,
                req.producer_epoch,
                &[],
                Some(&group),
            )
            .await
        };
        AddOffsetsToTxnResponse::default().with_error_code(c)
    }

    /// TxnOffsetCommit: the offsets wait in the transaction's offsets slot of the group
    /// until EndTxn commits (or drops) them.
    pub(crate) async fn txn_offset_commit(
        &self,
        req: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let id = req.transactional_id.0.to_string();
        let group = req.group_id.0.to_string();
        let answer = |req: &TxnOffsetCommitRequest, f: &dyn Fn(&str, i32) -> i16| {
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
                                            .with_error_code(f(
                                                t.name.0.as_str(),
                                                p.partition_index,
                                            ))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
        if !valid_id(&id) {
            return answer(&req, &|_, _| code(ResponseError::InvalidRequest));
        }
        if broker_api::validate_group_name(&group).is_err() {
            return answer(&req, &|_, _| code(ResponseError::InvalidGroupId));
        }
        // The producer must be the id's current one where this broker knows it.
        if let Some(entry) = self.txns.existing(&id) {
            let mut held = entry.lock().await;
            self.txns.settle(&id, &mut held);
            if held.is_some() {
                if let Some(c) = producer_error(&held, req.producer_id.0, req.producer_epoch) {
                    return answer(&req, &|_, _| c);
                }
            }
        }
        let mut unknown = std::collections::HashSet::new();
        for t in &req.topics {
            let count = self
                .store
                .describe_topic(t.name.0.as_str())
                .await
                .map(|i| i.config.partitions as i32)
                .unwrap_or(0);
            for p in &t.partitions {
                if p.partition_index < 0 || p.partition_index >= count {
                    unknown.insert((t.name.0.to_string(), p.partition_index));
                }
            }
        }
        let key = offsets_slot(&id, &group);
        let result = async {
            let mut pending = match self.store.group_snapshot(&key).await {
                Ok(b) => b
                    .and_then(|b| serde_json::from_slice::<PendingOffsets>(&b).ok())
                    .unwrap_or_default(),
                Err(e) => {
                    warn!(transactional_id = %id, group = %group, "cannot read the transaction's offsets: {e}");
                    return UNAVAILABLE;
                }
            };
            if pending.producer_id != req.producer_id.0 || pending.epoch != req.producer_epoch {
                pending = PendingOffsets {
                    producer_id: req.producer_id.0,
                    epoch: req.producer_epoch,
                    offsets: Vec::new(),
                };
            }
            for t in &req.topics {
                for p in &t.partitions {
                    let k = (t.name.0.to_string(), p.partition_index);
                    if unknown.contains(&k) {
                        continue;
                    }
                    let v = (
                        p.committed_offset,
                        (p.committed_leader_epoch >= 0).then_some(p.committed_leader_epoch),
                        p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default(),
                    );
                    match pending.offsets.iter_mut().find(|(kk, _)| *kk == k) {
                        Some(e) => e.1 = v,
                        None => pending.offsets.push((k, v)),
                    }
                }
            }
            let bytes = serde_json::to_vec(&pending).expect("plain data encodes");
            match self.store.save_group_snapshot(&key, Bytes::from(bytes)).await {
                Ok(()) => 0,
                Err(e) => {
                    warn!(transactional_id = %id, group = %group, "cannot save the transaction's offsets: {e}");
                    UNAVAILABLE
                }
            }
        }
        .await;
        answer(&req, &|t, p| {
            if unknown.contains(&(t.to_string(), p)) {
                code(ResponseError::UnknownTopicOrPartition)
            } else {
                result
            }
        })
    }

    /// The partitions of `group` with offsets a transaction committed that its end has not
    /// settled yet (an OffsetFetch that requires stable offsets gets UNSTABLE_OFFSET_COMMIT
    /// for them, KIP-447); `Err` when the store cannot tell.
    pub(crate) async fn unsettled_txn_offsets(
        &self,
        group: &str,
    ) -> Result<std::collections::HashSet<(String, i32)>, i16> {
        let listed = self
            .store
            .list_group_snapshots(&offsets_prefix(group))
            .await
            .map_err(|e| {
                warn!(group, "cannot list the group's transactional offsets: {e}");
                UNAVAILABLE
            })?;
        Ok(listed
            .into_iter()
            .filter_map(|(_, b)| serde_json::from_slice::<PendingOffsets>(&b).ok())
            .flat_map(|p| p.offsets.into_iter().map(|(k, _)| k))
            .collect())
    }

    pub(crate) async fn end_txn(&self, req: EndTxnRequest) -> EndTxnResponse {
        let id = req.transactional_id.0.to_string();
        let fail = |c: i16| EndTxnResponse::default().with_error_code(c);
        let (entry, fence) = match self
            .txn_call(&id, req.producer_id.0, req.producer_epoch)
            .await
        {
            Ok(x) => x,
            Err(c) => return fail(c),
        };
        let mut held = entry.lock().await;
        let Some(mut meta) = held.clone() else {
            return fail(code(ResponseError::InvalidProducerIdMapping));
        };
        if let Some(c) = producer_error(&held, req.producer_id.0, req.producer_epoch) {
            return fail(c);
        }
        let commit = req.committed;
        let resume = match (meta.status, commit) {
            (Status::Ongoing, _) => {
                meta.status = if commit {
                    Status::PrepareCommit
                } else {
                    Status::PrepareAbort
                };
                meta.updated_ms = now_ms();
                if let Err(c) = self.save_txn(fence.as_ref(), &id, &meta).await {
                    return fail(c);
                }
                true
            }
            (Status::PrepareCommit, true) | (Status::PrepareAbort, false) => true,
            (Status::CompleteCommit, true) | (Status::CompleteAbort, false) => false,
            _ => return fail(code(ResponseError::InvalidTxnState)),
        };
        if resume {
            let r = self.finish_txn(&id, &mut meta, fence.as_ref()).await;
            *held = Some(meta);
            if let Err(c) = r {
                return fail(c);
            }
        }
        EndTxnResponse::default()
    }

    pub(crate) async fn describe_transactions(
        &self,
        req: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let mut states = Vec::with_capacity(req.transactional_ids.len());
        for tid in req.transactional_ids {
            let id = tid.0.to_string();
            let base = describe_transactions_response::TransactionState::default()
                .with_transactional_id(tid)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
                .with_transaction_start_time_ms(-1);
            if !valid_id(&id) {
                states.push(base.with_error_code(code(ResponseError::TransactionalIdNotFound)));
                continue;
            }
            let meta = match self.txn_entry(&id).await {
                Ok((entry, _)) => {
                    let mut held = entry.lock().await;
                    self.txns.settle(&id, &mut held);
                    held.clone()
                }
                Err(c) => {
                    states.push(base.with_error_code(c));
                    continue;
                }
            };
            let Some(m) = meta else {
                states.push(base.with_error_code(code(ResponseError::TransactionalIdNotFound)));
                continue;
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (t, p) in &m.partitions {
                match topics.last_mut() {
                    Some(last) if last.topic.0.as_str() == t => last.partitions.push(*p),
                    _ => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(StrBytes::from_string(t.clone())))
                            .with_partitions(vec![*p]),
                    ),
                }
            }
            states.push(
                base.with_transaction_state(StrBytes::from_static_str(m.status.name()))
                    .with_transaction_timeout_ms(m.timeout_ms)
                    .with_transaction_start_time_ms(if m.status == Status::Empty {
                        -1
                    } else {
                        m.started_ms
                    })
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.epoch)
                    .with_topics(topics),
            );
        }
        DescribeTransactionsResponse::default().with_transaction_states(states)
    }

    pub(crate) async fn list_transactions(
        &self,
        req: ListTransactionsRequest,
    ) -> ListTransactionsResponse {
        const NAMES: [&str; 6] = [
            "Empty",
            "Ongoing",
            "PrepareCommit",
            "PrepareAbort",
            "CompleteCommit",
            "CompleteAbort",
        ];
        let unknown: Vec<StrBytes> = req
            .state_filters
            .iter()
            .filter(|s| !NAMES.contains(&s.as_str()))
            .cloned()
            .collect();
        let listed: Vec<(String, TxnMeta)> = if self.store.cluster().is_some() {
            // In a cluster each coordinator lists its own; the admin client asks them all.
            let mut v = Vec::new();
            for (id, entry) in self.txns.all() {
                if let Some(m) = entry.lock().await.clone() {
                    v.push((id, m));
                }
            }
            v
        } else {
            match self.store.list_group_snapshots(SLOT_PREFIX).await {
                Ok(all) => all
                    .into_iter()
                    .filter_map(|(k, b)| {
                        Some((
                            k.strip_prefix(SLOT_PREFIX)?.to_string(),
                            TxnMeta::decode(&b)?,
                        ))
                    })
                    .collect(),
                Err(e) => {
                    warn!("cannot list transactions: {e}");
                    return ListTransactionsResponse::default().with_error_code(UNAVAILABLE);
                }
            }
        };
        let now = now_ms();
        let states = listed
            .into_iter()
            .filter(|(_, m)| {
                req.state_filters.is_empty()
                    || req
                        .state_filters
                        .iter()
                        .any(|s| s.as_str() == m.status.name())
            })
            .filter(|(_, m)| {
                req.producer_id_filters.is_empty()
                    || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id)
            })
            .filter(|(_, m)| {
                req.duration_filter < 0
                    || (m.status == Status::Ongoing && now - m.started_ms >= req.duration_filter)
            })
            .map(|(id, m)| {
                list_transactions_response::TransactionState::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_transaction_state(StrBytes::from_static_str(m.status.name()))
            })
            .collect();
        ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(states)
    }
}
