//! ShareFetch and ShareAcknowledge: records acquired under a share session are the store's
//! leases of the group's lease group, sent as record batches with their acquired ranges and
//! delivery counts; acknowledgements are the store's acks (accept, reject) and releases.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broker_api::{Lease, LeaseToken, StoreError, StoreResult};
use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch as AckLeader, PartitionData as AckPartition, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, warn};
use uuid::Uuid;

use super::config::{Reset, ShareSettings};
use super::session::{expand, AckType, Epoch, Session, Tp};
use crate::kafka::errors::code_for;
use crate::kafka::records::encode_batch;
use crate::kafka::topics::stored_topic_id;
use crate::kafka::KafkaServer;

/// How long the share session of a member that left its group stays for the client to
/// close it (with its last acknowledgements).
const LEFT_GRACE: Duration = Duration::from_secs(2);
/// Longest long poll honoured.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Records acquired per request when the client names no limit.
const DEFAULT_MAX_RECORDS: usize = 500;
/// A long poll looks again at least this often (locks expire, releases end).
const POLL_STEP: Duration = Duration::from_millis(500);

/// An error of one partition: code and message.
type Fault = (i16, String);

/// Bytes a record takes in a fetched batch beyond its key, value and headers (its framing,
/// and a share of its batch's header), for the fetch byte limit.
const RECORD_OVERHEAD: usize = 64;

/// What a fetch may still acquire.
#[derive(Debug, Clone, Copy)]
struct Budget {
    records: usize,
    /// At least 1: a request with MaxBytes 0 acquires nothing and gets no budget.
    bytes: usize,
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn fault(e: ResponseError, msg: impl Into<String>) -> Fault {
    (e.code(), msg.into())
}

fn store_fault(e: &StoreError) -> Fault {
    (code_for(e), e.to_string())
}

/// Acknowledgements of one partition: (topic id, topic name if known, partition, acks).
struct PartAcks {
    topic_id: Uuid,
    topic: Option<String>,
    partition: i32,
    batches: Vec<(i64, i64, Vec<i8>)>,
}

/// What a request did to one partition.
#[derive(Default)]
struct Outcome {
    error: Option<Fault>,
    ack_error: Option<Fault>,
    acked: bool,
    leases: Vec<Lease>,
}

impl KafkaServer {
    pub(in crate::kafka) async fn share_fetch(&self, req: ShareFetchRequest) -> ShareFetchResponse {
        let top = |e: ResponseError, msg: String| {
            ShareFetchResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(s(msg)))
        };
        let (group, member) = match ids(&req.group_id.as_ref().map(|g| g.0.clone()), &req.member_id)
        {
            Ok(v) => v,
            Err((e, m)) => return top(e, m),
        };
        let epoch = match Epoch::of(req.share_session_epoch) {
            Ok(e) => e,
            Err(e) => {
                return top(
                    e,
                    format!("share session epoch {}", req.share_session_epoch),
                )
            }
        };
        let mut acks = Vec::new();
        let mut wanted: Vec<(Uuid, Option<String>, i32)> = Vec::new();
        for t in &req.topics {
            let name = self
                .topic_name_by_id(t.topic_id)
                .await
                .map(|n| n.to_string());
            for p in &t.partitions {
                wanted.push((t.topic_id, name.clone(), p.partition_index));
                if !p.acknowledgement_batches.is_empty() {
                    acks.push(PartAcks {
                        topic_id: t.topic_id,
                        topic: name.clone(),
                        partition: p.partition_index,
                        batches: p
                            .acknowledgement_batches
                            .iter()
                            .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                            .collect(),
                    });
                }
            }
        }
        if epoch == Epoch::Open && !acks.is_empty() {
            return top(
                ResponseError::InvalidRequest,
                "acknowledgements are not allowed when opening a share session (epoch 0)".into(),
            );
        }
        let mut forgotten: Vec<Tp> = Vec::new();
        for f in &req.forgotten_topics_data {
            if let Some(name) = self.topic_name_by_id(f.topic_id).await {
                forgotten.extend(f.partitions.iter().map(|p| (name.to_string(), *p)));
            }
        }
        let settings = match self.share_settings(&group).await {
            Ok(st) => st,
            Err(e) => return top(ResponseError::CoordinatorNotAvailable, e.to_string()),
        };
        self.expire_share_sessions(settings.session_timeout).await;
        // The session: opened, continued or checked before closing.
        let key = (group.clone(), member.clone());
        {
            let mut sessions = self.shares.sessions.lock();
            match epoch {
                Epoch::Open => {
                    let mut fresh = Session::new();
                    if let Some(old) = sessions.remove(&key) {
                        fresh.acquired = old.acquired;
                    }
                    sessions.insert(key.clone(), fresh);
                }
                Epoch::Next(_) | Epoch::Close => {
                    let expected = match epoch {
                        Epoch::Next(n) => Some(n),
                        _ => None,
                    };
                    match sessions.get(&key) {
                        None => {
                            return top(
                                ResponseError::ShareSessionNotFound,
                                format!("no share session for member {member} of group {group}"),
                            )
                        }
                        Some(sess) if expected.is_some_and(|n| n != sess.next_epoch) => {
                            return top(
                                ResponseError::InvalidShareSessionEpoch,
                                format!(
                                    "share session epoch {} but {} was expected",
                                    req.share_session_epoch, sess.next_epoch
                                ),
                            )
                        }
                        Some(_) => {}
                    }
                }
            }
            let sess = sessions.get_mut(&key).expect("session exists");
            if let Epoch::Next(n) = epoch {
                sess.next_epoch = n.checked_add(1).unwrap_or(1);
            }
            sess.last_used = Instant::now();
            sess.add(
                wanted
                    .iter()
                    .filter_map(|(_, name, p)| name.clone().map(|n| (n, *p))),
            );
            sess.forget(&forgotten);
        }
        let mut outcomes: BTreeMap<(Uuid, i32), Outcome> = BTreeMap::new();
        for (id, name, p) in &wanted {
            if name.is_none() {
                outcomes.entry((*id, *p)).or_default().error = Some(fault(
                    ResponseError::UnknownTopicId,
                    format!("unknown topic id {id}"),
                ));
            }
        }
        for a in acks {
            let result = self.acknowledge_part(&group, &member, &a).await;
            let o = outcomes.entry((a.topic_id, a.partition)).or_default();
            o.acked = true;
            o.ack_error = result.err();
        }
        let mut names: BTreeMap<String, Uuid> = BTreeMap::new();
        if epoch == Epoch::Close {
            self.drop_member_session(&group, &member).await;
        } else {
            let max = match req.max_records {
                n if n > 0 => n as usize,
                _ => DEFAULT_MAX_RECORDS,
            };
            let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
            // MaxBytes 0 acquires nothing (as Kafka does); the request still waits its
            // MaxWaitMs so such a client does not spin.
            let max_bytes = req.max_bytes.max(0) as usize;
            let got = if max_bytes == 0 {
                tokio::time::sleep(wait).await;
                Vec::new()
            } else {
                self.acquire(
                    &key,
                    &settings,
                    Budget {
                        records: max,
                        bytes: max_bytes,
                    },
                    wait,
                )
                .await
            };
            for (tp, result) in got {
                let info = match self.cached_topic(&tp.0).await {
                    Ok(info) => info,
                    Err(_) => continue,
                };
                let id = self.topic_id(&info).await;
                names.insert(tp.0.clone(), id);
                let o = outcomes.entry((id, tp.1)).or_default();
                match result {
                    Ok(leases) => o.leases = leases,
                    Err(f) => o.error = Some(f),
                }
            }
        }
        let mut by_topic: BTreeMap<Uuid, Vec<PartitionData>> = BTreeMap::new();
        for ((id, p), o) in outcomes {
            if o.error.is_none() && !o.acked && o.leases.is_empty() {
                continue;
            }
            let log_append = match names.iter().find(|(_, v)| **v == id) {
                Some((name, _)) => self.uses_log_append_time(name).await,
                None => false,
            };
            let (records, acquired) = encode_leases(&o.leases, log_append);
            let (code, msg) = o.error.unwrap_or((0, String::new()));
            let (ack_code, ack_msg) = o.ack_error.unwrap_or((0, String::new()));
            by_topic.entry(id).or_default().push(
                PartitionData::default()
                    .with_partition_index(p)
                    .with_error_code(code)
                    .with_error_message((code != 0).then(|| s(msg)))
                    .with_acknowledge_error_code(ack_code)
                    .with_acknowledge_error_message((ack_code != 0).then(|| s(ack_msg)))
                    .with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(-1)
                            .with_leader_epoch(-1),
                    )
                    .with_records(Some(records))
                    .with_acquired_records(acquired),
            );
        }
        ShareFetchResponse::default()
            .with_acquisition_lock_timeout_ms(settings.lock.as_millis().min(i32::MAX as u128) as i32)
            .with_responses(
                by_topic
                    .into_iter()
                    .map(|(id, parts)| {
                        ShareFetchableTopicResponse::default()
                            .with_topic_id(id)
                            .with_partitions(parts)
                    })
                    .collect(),
            )
    }

    pub(in crate::kafka) async fn share_acknowledge(
        &self,
        req: ShareAcknowledgeRequest,
    ) -> ShareAcknowledgeResponse {
        let top = |e: ResponseError, msg: String| {
            ShareAcknowledgeResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(s(msg)))
        };
        let (group, member) = match ids(&req.group_id.as_ref().map(|g| g.0.clone()), &req.member_id)
        {
            Ok(v) => v,
            Err((e, m)) => return top(e, m),
        };
        let epoch = match Epoch::of(req.share_session_epoch) {
            Ok(Epoch::Open) | Err(_) => {
                return top(
                    ResponseError::InvalidShareSessionEpoch,
                    format!(
                        "ShareAcknowledge needs an open share session (epoch {})",
                        req.share_session_epoch
                    ),
                )
            }
            Ok(e) => e,
        };
        let key = (group.clone(), member.clone());
        {
            let mut sessions = self.shares.sessions.lock();
            let Some(sess) = sessions.get_mut(&key) else {
                return top(
                    ResponseError::ShareSessionNotFound,
                    format!("no share session for member {member} of group {group}"),
                );
            };
            if let Epoch::Next(n) = epoch {
                if n != sess.next_epoch {
                    return top(
                        ResponseError::InvalidShareSessionEpoch,
                        format!(
                            "share session epoch {n} but {} was expected",
                            sess.next_epoch
                        ),
                    );
                }
                sess.next_epoch = n.checked_add(1).unwrap_or(1);
            }
            sess.last_used = Instant::now();
        }
        let mut by_topic: BTreeMap<Uuid, Vec<AckPartition>> = BTreeMap::new();
        for t in &req.topics {
            let name = self
                .topic_name_by_id(t.topic_id)
                .await
                .map(|n| n.to_string());
            for p in &t.partitions {
                let a = PartAcks {
                    topic_id: t.topic_id,
                    topic: name.clone(),
                    partition: p.partition_index,
                    batches: p
                        .acknowledgement_batches
                        .iter()
                        .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                        .collect(),
                };
                let (code, msg) = match self.acknowledge_part(&group, &member, &a).await {
                    Ok(()) => (0, None),
                    Err((c, m)) => (c, Some(s(m))),
                };
                by_topic.entry(t.topic_id).or_default().push(
                    AckPartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                        .with_error_message(msg)
                        .with_current_leader(
                            AckLeader::default()
                                .with_leader_id(-1)
                                .with_leader_epoch(-1),
                        ),
                );
            }
        }
        if epoch == Epoch::Close {
            self.drop_member_session(&group, &member).await;
        }
        ShareAcknowledgeResponse::default().with_responses(
            by_topic
                .into_iter()
                .map(|(id, parts)| {
                    ShareAcknowledgeTopicResponse::default()
                        .with_topic_id(id)
                        .with_partitions(parts)
                })
                .collect(),
        )
    }

    /// Applies one partition's acknowledgements of a member's acquired records.
    async fn acknowledge_part(&self, group: &str, member: &str, a: &PartAcks) -> Result<(), Fault> {
        let Some(topic) = a.topic.clone() else {
            return Err(fault(
                ResponseError::UnknownTopicId,
                format!("unknown topic id {}", a.topic_id),
            ));
        };
        let acks = expand(&a.batches).map_err(|(e, m)| fault(e, m))?;
        let tp: Tp = (topic.clone(), a.partition);
        let mut finish: Vec<LeaseToken> = Vec::new();
        let mut release: Vec<LeaseToken> = Vec::new();
        let mut missing: Vec<i64> = Vec::new();
        {
            let mut sessions = self.shares.sessions.lock();
            let held = sessions
                .get_mut(&(group.to_string(), member.to_string()))
                .and_then(|sess| sess.acquired.get_mut(&tp));
            match held {
                None => missing.extend(
                    acks.iter()
                        .filter(|(_, t)| *t != AckType::Gap)
                        .map(|(o, _)| *o),
                ),
                Some(held) => {
                    // A lock that expired gave the record back to the group (Kafka refuses
                    // its acknowledgement; the store would still take an ack of it).
                    let now = now_ms();
                    for (offset, t) in &acks {
                        match (held.remove(offset), t) {
                            (Some((_, expires)), _) if expires <= now => missing.push(*offset),
                            (Some((tok, _)), AckType::Release) => release.push(tok),
                            (Some((tok, _)), _) => finish.push(tok),
                            (None, AckType::Gap) => {}
                            (None, _) => missing.push(*offset),
                        }
                    }
                }
            }
        }
        let mut bad: Vec<i64> = missing;
        if !finish.is_empty() {
            let results = self
                .store
                .ack(&topic, group, &finish)
                .await
                .map_err(|e| store_fault(&e))?;
            for (tok, r) in finish.iter().zip(results) {
                if let Err(e) = r {
                    debug!(
                        topic,
                        partition = a.partition,
                        offset = tok.offset,
                        "ack refused: {e}"
                    );
                    bad.push(tok.offset);
                }
            }
        }
        for tok in release {
            match self.store.release(&topic, group, tok, Duration::ZERO).await {
                Ok(()) | Err(StoreError::LeaseLapsed) => {}
                Err(StoreError::LeaseExpired) => bad.push(tok.offset),
                Err(e) => return Err(store_fault(&e)),
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        bad.sort_unstable();
        Err(fault(
            ResponseError::InvalidRecordState,
            format!(
                "{} offset(s) of {topic}-{} are not acquired by member {member} (first {})",
                bad.len(),
                a.partition,
                bad[0]
            ),
        ))
    }

    /// Acquires up to `max` records over the session's partitions, waiting up to `wait` for
    /// some to become available.
    async fn acquire(
        &self,
        key: &(String, String),
        settings: &ShareSettings,
        budget: Budget,
        wait: Duration,
    ) -> Vec<(Tp, Result<Vec<Lease>, Fault>)> {
        let deadline = Instant::now() + wait;
        loop {
            let order: Vec<Tp> = {
                let mut sessions = self.shares.sessions.lock();
                let Some(sess) = sessions.get_mut(key) else {
                    return Vec::new();
                };
                let n = sess.partitions.len();
                if n == 0 {
                    return Vec::new();
                }
                let start = sess.cursor % n;
                sess.cursor = sess.cursor.wrapping_add(1);
                (0..n)
                    .map(|i| sess.partitions[(start + i) % n].clone())
                    .collect()
            };
            let mut out = Vec::new();
            let mut marks = Vec::new();
            let mut left = budget;
            let mut total = 0;
            for tp in &order {
                if left.records == 0 || left.bytes == 0 {
                    break;
                }
                let result = self
                    .acquire_part(key, tp, settings, &mut left, total == 0)
                    .await;
                match result {
                    Ok((leases, hw)) => {
                        total += leases.len();
                        marks.push((tp.clone(), hw));
                        if !leases.is_empty() {
                            out.push((tp.clone(), Ok(leases)));
                        }
                    }
                    Err(f) => out.push((tp.clone(), Err(f))),
                }
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline || marks.is_empty() {
                return out;
            }
            let step = (deadline - now).min(POLL_STEP);
            let waits = marks.into_iter().map(|((topic, p), hw)| {
                let store = self.store.clone();
                Box::pin(async move { store.wait_for(&topic, p, hw, step).await })
            });
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = select_all(waits) => {}
                _ = stop.wait_for(|v| *v) => return out,
            }
        }
    }

    /// Leases records of one partition for the session's member within `left` (taking what
    /// it uses; at least one record when `first`); returns them and the partition's high
    /// watermark before leasing. Records held back by an earlier fetch's byte limit go first.
    /// Under a byte limit, how many to lease is estimated from the sizes the partition gave
    /// before (one record is leased first to learn it); leased records that do not fit are
    /// held back for the member's next fetch (their locks run meanwhile), so a response never
    /// passes the limit except by its first record (as Kafka's fetches do).
    async fn acquire_part(
        &self,
        key: &(String, String),
        tp: &Tp,
        settings: &ShareSettings,
        left: &mut Budget,
        first: bool,
    ) -> Result<(Vec<Lease>, i64), Fault> {
        let (topic, p) = (tp.0.as_str(), tp.1);
        let group = key.0.as_str();
        self.ensure_share_partitions(topic, group, settings)
            .await
            .map_err(|e| store_fault(&e))?;
        let hw = self
            .store
            .partition_offsets(topic, p)
            .await
            .map_err(|e| store_fault(&e))?
            .high_watermark;
        let (mut estimate, mut pending) = {
            let mut sessions = self.shares.sessions.lock();
            match sessions.get_mut(key) {
                Some(sess) => {
                    let now = now_ms();
                    let held: VecDeque<Lease> = sess
                        .held_back
                        .remove(tp)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|l| l.expires_at_ms > now)
                        .collect();
                    (sess.record_sizes.get(tp).copied(), held)
                }
                None => (None, VecDeque::new()),
            }
        };
        let mut leases: Vec<Lease> = Vec::new();
        take_within(&mut pending, &mut leases, left, first);
        while pending.is_empty() {
            let n = match estimate {
                Some(e) => (left.bytes / e.max(1)).min(left.records),
                None => 1,
            };
            let n = if n == 0 && first && leases.is_empty() {
                1
            } else {
                n
            };
            if n == 0 {
                break;
            }
            let got = self
                .store
                .lease(topic, p, group, n, settings.lock)
                .await
                .map_err(|e| store_fault(&e))?;
            if got.is_empty() {
                break;
            }
            let used: usize = got.iter().map(lease_size).sum();
            let learned = estimate.is_none();
            estimate = Some(used / got.len());
            pending.extend(got);
            take_within(&mut pending, &mut leases, left, first);
            if !learned {
                break;
            }
        }
        if !pending.is_empty() {
            if let Some(sess) = self.shares.sessions.lock().get_mut(key) {
                sess.held_back.insert(tp.clone(), pending);
            }
        }
        if !leases.is_empty() {
            let mut sessions = self.shares.sessions.lock();
            match sessions.get_mut(key) {
                Some(sess) => {
                    if let Some(e) = estimate {
                        sess.record_sizes.insert(tp.clone(), e);
                    }
                    let held = sess.acquired.entry(tp.clone()).or_default();
                    for l in &leases {
                        held.insert(l.record.offset, (l.token, l.expires_at_ms));
                    }
                }
                None => {
                    // The session closed meanwhile: hand nothing out; the locks lapse.
                    return Ok((Vec::new(), hw));
                }
            }
        }
        Ok((leases, hw))
    }

    /// Sets the group's lease group up on `topic` the first time the group subscribes to or
    /// reads it (at the start `share.auto.offset.reset` names), and keeps its config in line
    /// with the settings. Returns whether it was set up before this call.
    pub(super) async fn ensure_share_partitions(
        &self,
        topic: &str,
        group: &str,
        settings: &ShareSettings,
    ) -> StoreResult<bool> {
        let want = settings.lease_config();
        // Keyed by the topic's id too: a topic deleted and created again (through any broker)
        // is set up afresh.
        let id = self
            .cached_topic(topic)
            .await
            .ok()
            .and_then(|info| stored_topic_id(&info.config));
        let key = (topic.to_string(), group.to_string(), id);
        if self.shares.ready.lock().get(&key) == Some(&want) {
            return Ok(true);
        }
        let groups = self.store.lease_groups(topic).await?;
        let existed = groups.contains_key(group);
        match groups.get(group) {
            Some(have) if *have == want => {}
            Some(_) => {
                self.store
                    .set_lease_group(topic, group, want.clone())
                    .await?
            }
            None => {
                self.store
                    .set_lease_group(topic, group, want.clone())
                    .await?;
                let partitions = self.store.describe_topic(topic).await?.config.partitions as i32;
                for p in 0..partitions {
                    let start = match settings.reset {
                        Reset::Earliest => continue,
                        Reset::Latest => {
                            self.store.partition_offsets(topic, p).await?.high_watermark
                        }
                        Reset::ByDuration(d) => {
                            let at = now_ms() - d.as_millis() as i64;
                            match self.store.offset_for_timestamp(topic, p, at).await? {
                                Some(found) => found.offset,
                                None => {
                                    self.store.partition_offsets(topic, p).await?.high_watermark
                                }
                            }
                        }
                    };
                    self.store.reset_lease_start(topic, p, group, start).await?;
                }
            }
        }
        self.shares.ready.lock().insert(key, want);
        Ok(existed)
    }

    /// Closes a member's share session on this broker and releases what it still holds.
    pub(super) async fn drop_member_session(&self, group: &str, member: &str) {
        let sess = self
            .shares
            .sessions
            .lock()
            .remove(&(group.to_string(), member.to_string()));
        if let Some(mut sess) = sess {
            self.release_all(group, sess.take_all()).await;
        }
    }

    /// Marks the sessions of a member that left its group; they close after [`LEFT_GRACE`]
    /// unless the client closes them first.
    pub(super) fn member_left(&self, group: &str, member: &str) {
        if let Some(sess) = self
            .shares
            .sessions
            .lock()
            .get_mut(&(group.to_string(), member.to_string()))
        {
            sess.left_at = Some(Instant::now());
        }
    }

    /// Closes sessions unused for longer than `timeout`, or whose member left the group,
    /// releasing their records.
    async fn expire_share_sessions(&self, timeout: Duration) {
        let stale: Vec<((String, String), Session)> = {
            let mut sessions = self.shares.sessions.lock();
            let keys: Vec<(String, String)> = sessions
                .iter()
                .filter(|(_, s)| {
                    s.last_used.elapsed() > timeout
                        || s.left_at.is_some_and(|t| t.elapsed() > LEFT_GRACE)
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| sessions.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for ((group, member), mut sess) in stale {
            debug!(group, member, "share session expired");
            self.release_all(&group, sess.take_all()).await;
        }
    }

    async fn release_all(&self, group: &str, held: Vec<(Tp, Vec<LeaseToken>)>) {
        for ((topic, _), tokens) in held {
            for tok in tokens {
                match self.store.release(&topic, group, tok, Duration::ZERO).await {
                    Ok(()) | Err(StoreError::LeaseLapsed) | Err(StoreError::LeaseExpired) => {}
                    // The topic is gone: so are its other records' locks.
                    Err(StoreError::UnknownTopic(_)) => break,
                    Err(e) => warn!(topic, group, "cannot release an acquired record: {e}"),
                }
            }
        }
    }
}

/// What a leased record takes of a fetch's byte budget.
fn lease_size(l: &Lease) -> usize {
    l.record.size() + RECORD_OVERHEAD
}

/// Moves leases from the front of `pending` into `out` while they fit `left` (the first of a
/// response always does when `first`), taking what they use from `left`.
fn take_within(
    pending: &mut VecDeque<Lease>,
    out: &mut Vec<Lease>,
    left: &mut Budget,
    first: bool,
) {
    while let Some(l) = pending.front() {
        let size = lease_size(l);
        let fits = size <= left.bytes || (first && out.is_empty());
        if left.records == 0 || !fits {
            break;
        }
        left.records -= 1;
        left.bytes = left.bytes.saturating_sub(size);
        out.extend(pending.pop_front());
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// The group and member ids of a request; INVALID_REQUEST when either is missing.
fn ids(
    group: &Option<StrBytes>,
    member: &Option<StrBytes>,
) -> Result<(String, String), (ResponseError, String)> {
    let group = group.as_ref().map(|g| g.to_string()).unwrap_or_default();
    let member = member.as_ref().map(|m| m.to_string()).unwrap_or_default();
    if group.is_empty() {
        return Err((ResponseError::InvalidRequest, "GroupId must be set".into()));
    }
    if member.is_empty() {
        return Err((ResponseError::InvalidRequest, "MemberId must be set".into()));
    }
    Ok((group, member))
}

/// Leased records as record batches (one per run of consecutive offsets) and their acquired
/// ranges (one per run of consecutive offsets with one delivery count).
fn encode_leases(leases: &[Lease], log_append: bool) -> (Bytes, Vec<AcquiredRecords>) {
    let mut sorted: Vec<&Lease> = leases.iter().collect();
    sorted.sort_by_key(|l| l.record.offset);
    let mut out = Vec::new();
    let mut ranges: Vec<AcquiredRecords> = Vec::new();
    let mut run: Vec<broker_api::StoredRecord> = Vec::new();
    for l in &sorted {
        let o = l.record.offset;
        if run.last().is_some_and(|r| r.offset + 1 != o) {
            out.extend_from_slice(&encode_batch(&run, log_append));
            run.clear();
        }
        run.push(l.record.clone());
        let count = l.delivery_count.min(i16::MAX as u32) as i16;
        match ranges.last_mut() {
            Some(r) if r.last_offset + 1 == o && r.delivery_count == count => r.last_offset = o,
            _ => ranges.push(
                AcquiredRecords::default()
                    .with_first_offset(o)
                    .with_last_offset(o)
                    .with_delivery_count(count),
            ),
        }
    }
    if !run.is_empty() {
        out.extend_from_slice(&encode_batch(&run, log_append));
    }
    (Bytes::from(out), ranges)
}
