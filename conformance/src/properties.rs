//! Model-based property tests: random op sequences applied to a store and to [`Model`];
//! every answer must agree.
//!
//! Topics `t0` (2 partitions), `t1` (1 partition, `max_record_bytes` 8) and `dlq` (1 partition,
//! created before the first op and never deleted). Two consumer/lease groups, whose configs
//! dead-letter to `dlq` or archive; lease-start resets (forward, back and clamped), lease-group
//! deletions and group configs among the ops.
//!
//! Where the contract leaves a choice the driver accepts either answer: `dead_lettered` may
//! leave out records a reset's start passed over, and `delete_lease_group` of a group that
//! only ever leased without leasing anything may answer either.
//!
//! Reopen and in-flight leases: the contract lets in-flight leases come back available after a
//! reopen. After each reopen the driver asks the store's `lease_counts` for every
//! (topic, partition, group) with leases in flight: if the store still counts them all as
//! leased the model keeps them; if it counts none the model lets them lapse at that instant;
//! anything in between fails. Delivery counts survive either way.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    Clock, FetchLimits, Header, Lease, LeaseCounts, LeaseGroupConfig, LeaseToken, OffsetCommit,
    Record, Store, StoreError, StoreResult, StoredRecord, TopicConfig,
};
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::harness::{Backend, Subject};
use crate::model::Model;

const TOPICS: [&str; 3] = ["t0", "t1", "dlq"];
const GROUPS: [&str; 2] = ["g0", "g1"];
const SLOT: &str = "model_properties";

fn topic_config(topic: &str) -> TopicConfig {
    match topic {
        "t0" => TopicConfig {
            partitions: 2,
            retention_ms: Some(4_000),
            segment_bytes: Some(1),
            ..TopicConfig::default()
        },
        "t1" => TopicConfig {
            max_record_bytes: 8,
            ..TopicConfig::default()
        },
        _ => TopicConfig::default(),
    }
}

/// One record of a generated append.
#[derive(Debug, Clone)]
pub struct GenRecord {
    key: Option<u8>,
    value_len: usize,
    /// Timestamp as an offset from now (`None`: append time).
    ts_delta: Option<i64>,
    /// Not-before as an offset from now.
    not_before_delta: Option<i64>,
}

/// One generated operation.
#[derive(Debug, Clone)]
pub enum Op {
    CreateTopic {
        topic: usize,
    },
    DeleteTopic {
        topic: usize,
    },
    Append {
        topic: usize,
        partition: i32,
        records: Vec<GenRecord>,
    },
    Fetch {
        topic: usize,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    },
    /// Fetches everything from the log start, as often as needed, and compares it all.
    ReadAll {
        topic: usize,
        partition: i32,
    },
    DeleteRecords {
        topic: usize,
        partition: i32,
        before: i64,
    },
    EnforceRetention {
        topic: usize,
    },
    Offsets {
        topic: usize,
        partition: i32,
    },
    OffsetForTimestamp {
        topic: usize,
        partition: i32,
        delta: i64,
    },
    Commit {
        group: usize,
        topic: usize,
        partition: i32,
        offset: i64,
        epoch: Option<i32>,
        meta: u8,
    },
    /// `delete_committed` of some (topic, partition)s, or of all when `None`.
    DeleteCommitted {
        group: usize,
        which: Option<Vec<(usize, i32)>>,
    },
    /// `update_topic_config` with the current config and `partitions` set to this.
    SetPartitions {
        topic: usize,
        partitions: u32,
    },
    MaxTimestamp {
        topic: usize,
        partition: i32,
    },
    Committed {
        group: usize,
        topic: usize,
        partition: i32,
    },
    ListCommitted {
        group: usize,
    },
    ListGroups,
    SetLeaseGroup {
        topic: usize,
        group: usize,
        max_deliveries: Option<u32>,
        /// With `max_deliveries`: records past it go to `dlq`, or are archived when false.
        dead_letter: bool,
        ordered: bool,
    },
    ResetLeaseStart {
        topic: usize,
        partition: i32,
        group: usize,
        start: i64,
    },
    DeleteLeaseGroup {
        topic: usize,
        group: usize,
    },
    /// `set_group_config` with settings `k<a>` = `v<b>` for each pair.
    SetGroupConfig {
        group: usize,
        settings: Vec<(u8, u8)>,
    },
    /// `group_config` of the group and `list_group_configs`.
    ReadGroupConfigs {
        group: usize,
    },
    Lease {
        topic: usize,
        partition: i32,
        group: usize,
        max: usize,
        visibility: i64,
    },
    Ack {
        picks: Vec<usize>,
    },
    Release {
        pick: usize,
        delay: i64,
    },
    Extend {
        pick: usize,
        visibility: i64,
    },
    Counts {
        topic: usize,
        partition: i32,
        group: usize,
    },
    Advance {
        ms: i64,
    },
    Reopen,
}

fn gen_record() -> impl Strategy<Value = GenRecord> {
    (
        prop::option::of(0u8..3),
        0usize..10,
        prop::option::weighted(0.3, (-12i64..3).prop_map(|k| k * 500)),
        prop::option::weighted(0.3, (-1i64..8).prop_map(|k| k * 500)),
    )
        .prop_map(|(key, value_len, ts_delta, not_before_delta)| GenRecord {
            key,
            value_len,
            ts_delta,
            not_before_delta,
        })
}

fn time_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        Just(499),
        Just(500),
        Just(1_000),
        Just(2_000),
        Just(3_000)
    ]
}

fn topic_idx() -> impl Strategy<Value = usize> {
    prop_oneof![6 => Just(0usize), 2 => Just(1), 1 => Just(2)]
}

fn group_idx() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 1 => Just(1)]
}

fn partition() -> impl Strategy<Value = i32> {
    prop_oneof![4 => Just(0i32), 1 => Just(1)]
}

fn any_partition() -> impl Strategy<Value = i32> {
    prop_oneof![1 => Just(-1i32), 6 => Just(0), 2 => Just(1), 1 => Just(2)]
}

fn set_lease_group() -> impl Strategy<Value = Op> {
    (
        topic_idx(),
        group_idx(),
        prop::option::of(1u32..4),
        prop::bool::weighted(0.7),
        any::<bool>(),
    )
        .prop_map(
            |(topic, group, max_deliveries, dead_letter, ordered)| Op::SetLeaseGroup {
                topic,
                group,
                max_deliveries,
                dead_letter,
                ordered,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => topic_idx().prop_map(|topic| Op::CreateTopic { topic }),
        1 => (0usize..2).prop_map(|topic| Op::DeleteTopic { topic }),
        10 => (topic_idx(), partition(), prop::collection::vec(gen_record(), 0..4))
            .prop_map(|(topic, partition, records)| Op::Append { topic, partition, records }),
        4 => (topic_idx(), any_partition(), -1i64..12, 1usize..6, 0usize..24).prop_map(
            |(topic, partition, offset, max_records, max_bytes)| Op::Fetch {
                topic, partition, offset, max_records, max_bytes
            }),
        1 => (topic_idx(), any_partition())
            .prop_map(|(topic, partition)| Op::Offsets { topic, partition }),
        1 => (topic_idx(), any_partition(), -1i64..12).prop_map(|(topic, partition, before)| {
            Op::DeleteRecords { topic, partition, before }
        }),
        2 => topic_idx().prop_map(|topic| Op::EnforceRetention { topic }),
        2 => (0usize..3, partition())
            .prop_map(|(topic, partition)| Op::ReadAll { topic, partition }),
        2 => (topic_idx(), partition(), (-14i64..4).prop_map(|k| k * 500)).prop_map(|(topic, partition, delta)| {
            Op::OffsetForTimestamp { topic, partition, delta }
        }),
        2 => (group_idx(), topic_idx(), any_partition(), 0i64..10, prop::option::of(-1i32..3), 0u8..4).prop_map(
            |(group, topic, partition, offset, epoch, meta)| Op::Commit { group, topic, partition, offset, epoch, meta }),
        1 => (group_idx(), prop::option::of(prop::collection::vec((topic_idx(), any_partition()), 0..3)))
            .prop_map(|(group, which)| Op::DeleteCommitted { group, which }),
        1 => (0usize..2, 1u32..4).prop_map(|(topic, partitions)| Op::SetPartitions { topic, partitions }),
        1 => (topic_idx(), any_partition())
            .prop_map(|(topic, partition)| Op::MaxTimestamp { topic, partition }),
        1 => (group_idx(), topic_idx(), partition()).prop_map(|(group, topic, partition)| {
            Op::Committed { group, topic, partition }
        }),
        1 => group_idx().prop_map(|group| Op::ListCommitted { group }),
        1 => Just(Op::ListGroups),
        2 => set_lease_group(),
        12 => (topic_idx(), partition(), group_idx(), 1usize..5, time_step()).prop_map(
            |(topic, partition, group, max, visibility)| Op::Lease { topic, partition, group, max, visibility }),
        4 => prop::collection::vec(any::<usize>(), 1..3).prop_map(|picks| Op::Ack { picks }),
        3 => (any::<usize>(), time_step()).prop_map(|(pick, delay)| Op::Release { pick, delay }),
        2 => (any::<usize>(), time_step()).prop_map(|(pick, visibility)| Op::Extend { pick, visibility }),
        3 => (topic_idx(), partition(), group_idx())
            .prop_map(|(topic, partition, group)| Op::Counts { topic, partition, group }),
        6 => time_step().prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Reopen),
        2 => (topic_idx(), any_partition(), group_idx(), -1i64..12).prop_map(
            |(topic, partition, group, start)| Op::ResetLeaseStart { topic, partition, group, start }),
        1 => (topic_idx(), group_idx()).prop_map(|(topic, group)| Op::DeleteLeaseGroup { topic, group }),
        1 => (group_idx(), prop::collection::vec((0u8..3, 0u8..3), 0..3))
            .prop_map(|(group, settings)| Op::SetGroupConfig { group, settings }),
        1 => group_idx().prop_map(|group| Op::ReadGroupConfigs { group }),
    ]
}

/// A case: topics t0 and t1 created, a random lease-group config or two, then random ops.
fn case() -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(set_lease_group(), 0..3),
        prop::collection::vec(op(), 1..48),
    )
        .prop_map(|(setup, ops)| {
            let mut all = vec![Op::CreateTopic { topic: 0 }, Op::CreateTopic { topic: 1 }];
            all.extend(setup);
            all.extend(ops);
            all
        })
}

/// True when the record a token names is below the log start: the contract leaves open
/// whether ack, release and extend then answer Ok (nothing left to change) or `LeaseExpired`.
fn gone(m: &Model, topic: &str, token: &LeaseToken) -> bool {
    token.offset < m.log_start(topic, token.partition)
}

/// A lease handed out during a case: the store's token and the model's.
struct Held {
    topic: &'static str,
    group: &'static str,
    store: LeaseToken,
    model: LeaseToken,
}

fn same_error(got: &StoreError, want: &StoreError) -> bool {
    use StoreError::*;
    match (got, want) {
        (RecordTooLarge { limit: a, .. }, RecordTooLarge { limit: b, .. }) => a == b,
        (OffsetOutOfRange { .. }, OffsetOutOfRange { .. })
        | (OutOfOrderSequence { .. }, OutOfOrderSequence { .. })
        | (ProducerFenced { .. }, ProducerFenced { .. }) => got == want,
        _ => std::mem::discriminant(got) == std::mem::discriminant(want),
    }
}

/// Compares results: equal values, or errors of the same kind.
fn agree<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: &StoreResult<T>,
    want: &StoreResult<T>,
) -> Result<(), String> {
    let ok = match (got, want) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => same_error(a, b),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: store answered {got:?}, model expects {want:?}"
        ))
    }
}

/// Lease counts agree when equal, except that a store may leave out of `dead_lettered` up to
/// `slack` records a reset passed over (they stay done either way).
fn counts_agree(got: &LeaseCounts, want: &LeaseCounts, slack: u64) -> bool {
    let lowest = want.dead_lettered.saturating_sub(slack);
    got.dead_lettered <= want.dead_lettered
        && got.dead_lettered >= lowest
        && LeaseCounts {
            dead_lettered: want.dead_lettered,
            ..*got
        } == *want
}

/// A record with its dead-letter headers in a canonical order (the contract fixes only that
/// the original headers come first).
fn canon(r: &StoredRecord) -> StoredRecord {
    let is_dl = |h: &Header| h.key.starts_with("x-dead-letter-");
    let mut headers: Vec<Header> = r.headers.iter().filter(|h| !is_dl(h)).cloned().collect();
    let mut dl: Vec<Header> = r.headers.iter().filter(|h| is_dl(h)).cloned().collect();
    dl.sort_by(|a, b| a.key.cmp(&b.key));
    headers.extend(dl);
    StoredRecord {
        headers,
        ..r.clone()
    }
}

fn canon_lease(l: &Lease) -> (StoredRecord, i32, i64, u32, i64, i64) {
    (
        canon(&l.record),
        l.token.partition,
        l.token.offset,
        l.delivery_count,
        l.expires_at_ms,
        l.first_leased_at_ms,
    )
}

fn make_records(now: i64, records: &[GenRecord]) -> Vec<Record> {
    records
        .iter()
        .enumerate()
        .map(|(i, g)| Record {
            key: g.key.map(|k| Bytes::from(vec![b'a' + k])),
            value: Some(Bytes::from(
                (0..g.value_len)
                    .map(|j| b'0' + ((i + j) % 10) as u8)
                    .collect::<Vec<u8>>(),
            )),
            headers: if g.value_len % 3 == 0 {
                vec![Header {
                    key: "h".into(),
                    value: None,
                }]
            } else {
                vec![]
            },
            timestamp_ms: g.ts_delta.map(|d| now + d),
            not_before_ms: g.not_before_delta.map(|d| now + d),
        })
        .collect()
}

struct Driver {
    subject: Subject,
    model: Model,
    held: Vec<Held>,
}

impl Driver {
    fn store(&self) -> Arc<dyn Store> {
        self.subject.store.clone()
    }

    async fn step(&mut self, op: &Op) -> Result<(), String> {
        let st = self.store();
        let m = &mut self.model;
        match op {
            Op::CreateTopic { topic } => {
                let t = TOPICS[*topic];
                let got = st.create_topic(t, topic_config(t)).await.map(|_| ());
                agree("create_topic", &got, &m.create_topic(t, topic_config(t)))
            }
            Op::DeleteTopic { topic } => {
                let t = TOPICS[*topic];
                agree(
                    "delete_topic",
                    &st.delete_topic(t).await,
                    &m.delete_topic(t),
                )
            }
            Op::Append {
                topic,
                partition,
                records,
            } => {
                let t = TOPICS[*topic];
                let recs = make_records(m.now, records);
                let now = m.now;
                let got = st
                    .append(t, *partition, broker_api::AppendBatch::new(recs.clone()))
                    .await
                    .map(|r| {
                        let fields = (r.append_time_ms, r.log_start_offset, r.duplicate);
                        (r.base_offset, r.last_offset, fields)
                    });
                let want = m
                    .append(t, *partition, recs)
                    .map(|(base, last)| (base, last, (now, m.log_start(t, *partition), false)));
                agree(
                    "append (base, last, (append time, log start, duplicate))",
                    &got,
                    &want,
                )
            }
            Op::Fetch {
                topic,
                partition,
                offset,
                max_records,
                max_bytes,
            } => {
                let t = TOPICS[*topic];
                let limits = FetchLimits {
                    max_records: *max_records,
                    max_bytes: *max_bytes,
                };
                let got = st.fetch(t, *partition, *offset, limits).await;
                let want = m.fetch(t, *partition, *offset, limits);
                match (&got, &want) {
                    (Ok(g), Ok(w)) => {
                        let gr: Vec<_> = g.records.iter().map(canon).collect();
                        let wr: Vec<_> = w.records.iter().map(canon).collect();
                        let prefix_ok = gr.len() <= wr.len()
                            && gr[..] == wr[..gr.len()]
                            && (gr.is_empty() == wr.is_empty());
                        if !prefix_ok
                            || g.high_watermark != w.high_watermark
                            || g.log_start_offset != w.log_start_offset
                        {
                            return Err(format!(
                                "fetch: store answered {g:?}, model expects a non-empty prefix of {w:?}"
                            ));
                        }
                        Ok(())
                    }
                    _ => agree("fetch", &got.map(|_| ()), &want.map(|_| ())),
                }
            }
            Op::ReadAll { topic, partition } => {
                let t = TOPICS[*topic];
                let all = FetchLimits::default();
                let start = m.log_start(t, *partition);
                let want = m.fetch(t, *partition, start, all).map(|r| r.records);
                let mut got = Vec::new();
                let mut next = start;
                let got = loop {
                    match st.fetch(t, *partition, next, all).await {
                        Err(e) => break Err(e),
                        Ok(r) if r.records.is_empty() => break Ok(got),
                        Ok(r) => {
                            next = r.records.last().map_or(next, |l| l.offset + 1);
                            got.extend(r.records);
                        }
                    }
                };
                let canon_all = |r: StoreResult<Vec<StoredRecord>>| {
                    r.map(|v| v.iter().map(canon).collect::<Vec<_>>())
                };
                agree("read all records", &canon_all(got), &canon_all(want))
            }
            Op::DeleteRecords {
                topic,
                partition,
                before,
            } => {
                let t = TOPICS[*topic];
                agree(
                    "delete_records",
                    &st.delete_records(t, *partition, *before).await,
                    &m.delete_records(t, *partition, *before),
                )
            }
            Op::EnforceRetention { topic } => {
                let t = TOPICS[*topic];
                agree(
                    "enforce_retention",
                    &st.enforce_retention(t).await,
                    &m.enforce_retention(t),
                )
            }
            Op::Offsets { topic, partition } => {
                let t = TOPICS[*topic];
                agree(
                    "partition_offsets",
                    &st.partition_offsets(t, *partition).await,
                    &m.offsets(t, *partition),
                )
            }
            Op::OffsetForTimestamp {
                topic,
                partition,
                delta,
            } => {
                let t = TOPICS[*topic];
                let ts = m.now + delta;
                agree(
                    "offset_for_timestamp",
                    &st.offset_for_timestamp(t, *partition, ts).await,
                    &m.offset_for_timestamp(t, *partition, ts),
                )
            }
            Op::Commit {
                group,
                topic,
                partition,
                offset,
                epoch,
                meta,
            } => {
                let c = OffsetCommit {
                    topic: TOPICS[*topic].into(),
                    partition: *partition,
                    offset: *offset,
                    leader_epoch: *epoch,
                    metadata: ["", "m", "meta-\u{e9}", "nul\0\u{e9}"][*meta as usize].into(),
                };
                let g = GROUPS[*group];
                agree(
                    "commit_offsets",
                    &st.commit_offsets(g, std::slice::from_ref(&c)).await,
                    &m.commit(g, &c),
                )
            }
            Op::Committed {
                group,
                topic,
                partition,
            } => {
                let (g, t) = (GROUPS[*group], TOPICS[*topic]);
                let got = st
                    .committed_offset(g, t, *partition)
                    .await
                    .map(|o| o.map(|o| (o.offset, o.leader_epoch, o.metadata)));
                agree("committed_offset", &got, &m.committed(g, t, *partition))
            }
            Op::DeleteCommitted { group, which } => {
                let g = GROUPS[*group];
                let list: Option<Vec<(String, i32)>> = which.as_ref().map(|w| {
                    w.iter()
                        .map(|(t, p)| (TOPICS[*t].to_string(), *p))
                        .collect()
                });
                agree(
                    "delete_committed",
                    &st.delete_committed(g, list.as_deref()).await,
                    &Ok(m.delete_committed(g, list.as_deref())),
                )
            }
            Op::SetPartitions { topic, partitions } => {
                let t = TOPICS[*topic];
                let mut config = m.config(t).unwrap_or_else(|| topic_config(t));
                config.partitions = *partitions;
                let got = st
                    .update_topic_config(t, config.clone())
                    .await
                    .map(|info| info.config);
                let want = m.update_topic_config(t, config.clone()).map(|()| config);
                agree("update_topic_config", &got, &want)
            }
            Op::MaxTimestamp { topic, partition } => {
                let t = TOPICS[*topic];
                agree(
                    "max_timestamp_offset",
                    &st.max_timestamp_offset(t, *partition).await,
                    &m.max_timestamp_offset(t, *partition),
                )
            }
            Op::ListCommitted { group } => {
                let g = GROUPS[*group];
                agree(
                    "list_committed",
                    &st.list_committed(g).await,
                    &Ok(m.list_committed(g)),
                )
            }
            Op::ListGroups => agree(
                "list_consumer_groups",
                &st.list_consumer_groups().await,
                &Ok(m.groups()),
            ),
            Op::SetLeaseGroup {
                topic,
                group,
                max_deliveries,
                dead_letter,
                ordered,
            } => {
                let (t, g) = (TOPICS[*topic], GROUPS[*group]);
                let config = LeaseGroupConfig {
                    read_uncommitted: false,
                    max_deliveries: *max_deliveries,
                    dead_letter_topic: max_deliveries
                        .filter(|_| *dead_letter)
                        .map(|_| "dlq".to_string()),
                    ordered_by_key: *ordered,
                };
                agree(
                    "set_lease_group",
                    &st.set_lease_group(t, g, config.clone()).await,
                    &m.set_lease_group(t, g, config),
                )
            }
            Op::Lease {
                topic,
                partition,
                group,
                max,
                visibility,
            } => {
                let (t, g) = (TOPICS[*topic], GROUPS[*group]);
                let vis = Duration::from_millis(*visibility as u64);
                let got = st.lease(t, *partition, g, *max, vis).await;
                let want = m.lease(t, *partition, g, *max, *visibility);
                let got_c = got
                    .as_ref()
                    .map(|v| v.iter().map(canon_lease).collect::<Vec<_>>());
                let want_c = want
                    .as_ref()
                    .map(|v| v.iter().map(canon_lease).collect::<Vec<_>>());
                agree(
                    "lease",
                    &got_c.map_err(Clone::clone),
                    &want_c.map_err(Clone::clone),
                )?;
                if let (Ok(g_l), Ok(w_l)) = (got, want) {
                    for (a, b) in g_l.iter().zip(w_l.iter()) {
                        self.held.push(Held {
                            topic: t,
                            group: g,
                            store: a.token,
                            model: b.token,
                        });
                    }
                }
                Ok(())
            }
            Op::Ack { picks } => {
                if self.held.is_empty() {
                    return Ok(());
                }
                let h = &self.held[picks[0] % self.held.len()];
                let (t, g) = (h.topic, h.group);
                let chosen: Vec<&Held> = picks
                    .iter()
                    .map(|p| &self.held[p % self.held.len()])
                    .filter(|x| x.topic == t && x.group == g)
                    .collect();
                let st_tokens: Vec<LeaseToken> = chosen.iter().map(|x| x.store).collect();
                let m_tokens: Vec<LeaseToken> = chosen.iter().map(|x| x.model).collect();
                let gone: Vec<bool> = m_tokens.iter().map(|k| gone(m, t, k)).collect();
                let got = st.ack(t, g, &st_tokens).await;
                let want = m.ack(t, g, &m_tokens);
                if let (Ok(gv), Ok(wv)) = (&got, &want) {
                    let each_ok = gv.len() == wv.len()
                        && gv.iter().zip(wv).zip(&gone).all(|((a, b), gone)| {
                            (*gone && matches!(a, Ok(()) | Err(StoreError::LeaseExpired)))
                                || agree("", a, b).is_ok()
                        });
                    if each_ok {
                        return Ok(());
                    }
                }
                agree("ack", &got, &want)
            }
            Op::Release { pick, delay } => {
                if self.held.is_empty() {
                    return Ok(());
                }
                let h = &self.held[pick % self.held.len()];
                let d = Duration::from_millis(*delay as u64);
                let gone = gone(m, h.topic, &h.model);
                let got = st.release(h.topic, h.group, h.store, d).await;
                if gone
                    && matches!(
                        got,
                        Ok(()) | Err(StoreError::LeaseExpired | StoreError::LeaseLapsed)
                    )
                {
                    return Ok(());
                }
                agree(
                    "release",
                    &got,
                    &m.release(h.topic, h.group, &h.model, *delay),
                )
            }
            Op::Extend { pick, visibility } => {
                if self.held.is_empty() {
                    return Ok(());
                }
                let h = &self.held[pick % self.held.len()];
                let v = Duration::from_millis(*visibility as u64);
                let gone = gone(m, h.topic, &h.model);
                let got = st.extend(h.topic, h.group, h.store, v).await;
                let new_expiry = m.now + visibility;
                if gone
                    && (got == Ok(new_expiry)
                        || matches!(got, Err(StoreError::LeaseExpired | StoreError::LeaseLapsed)))
                {
                    return Ok(());
                }
                agree(
                    "extend",
                    &got,
                    &m.extend(h.topic, h.group, &h.model, *visibility),
                )
            }
            Op::Counts {
                topic,
                partition,
                group,
            } => {
                let (t, g) = (TOPICS[*topic], GROUPS[*group]);
                let got = st.lease_counts(t, *partition, g).await;
                let want = m.counts(t, *partition, g);
                if let (Ok(got), Ok(want)) = (&got, &want) {
                    if counts_agree(got, want, m.dead_slack(t, *partition, g)) {
                        return Ok(());
                    }
                }
                agree("lease_counts", &got, &want)
            }
            Op::ResetLeaseStart {
                topic,
                partition,
                group,
                start,
            } => {
                let (t, g) = (TOPICS[*topic], GROUPS[*group]);
                agree(
                    "reset_lease_start",
                    &st.reset_lease_start(t, *partition, g, *start).await,
                    &m.reset_lease_start(t, *partition, g, *start),
                )
            }
            Op::DeleteLeaseGroup { topic, group } => {
                let (t, g) = (TOPICS[*topic], GROUPS[*group]);
                let got = st.delete_lease_group(t, g).await;
                let want = m.delete_lease_group(t, g);
                if let (Ok(_), Ok((true, false))) = (&got, &want) {
                    // A group that only leased without leasing anything: either answer.
                    return Ok(());
                }
                agree("delete_lease_group", &got, &want.map(|(had, _)| had))
            }
            Op::SetGroupConfig { group, settings } => {
                let g = GROUPS[*group];
                let configs: std::collections::BTreeMap<String, String> = settings
                    .iter()
                    .map(|(k, v)| (format!("k{k}"), format!("v{v}")))
                    .collect();
                m.set_group_config(g, configs.clone());
                agree(
                    "set_group_config",
                    &st.set_group_config(g, configs).await,
                    &Ok(()),
                )
            }
            Op::ReadGroupConfigs { group } => {
                let g = GROUPS[*group];
                agree(
                    "group_config",
                    &st.group_config(g).await,
                    &Ok(m.group_config(g)),
                )?;
                agree(
                    "list_group_configs",
                    &st.list_group_configs().await,
                    &Ok(m.list_group_configs()),
                )
            }
            Op::Advance { ms } => {
                self.subject.clock.advance(*ms);
                m.now += ms;
                Ok(())
            }
            Op::Reopen => self.reopen().await,
        }
    }

    async fn reopen(&mut self) -> Result<(), String> {
        self.subject
            .reopen()
            .await
            .map_err(|e| format!("reopen failed: {e:?}"))?;
        let st = self.store();
        for (t, p, g) in self.model.in_flight() {
            let want = self
                .model
                .counts(&t, p, &g)
                .map_err(|e| format!("model: {e:?}"))?;
            let got = st
                .lease_counts(&t, p, &g)
                .await
                .map_err(|e| format!("lease_counts after reopen: {e:?}"))?;
            if got.leased == 0 && want.leased > 0 {
                self.model.drop_in_flight(&t, p, &g);
            }
            let want = self
                .model
                .counts(&t, p, &g)
                .map_err(|e| format!("model: {e:?}"))?;
            if !counts_agree(&got, &want, self.model.dead_slack(&t, p, &g)) {
                return Err(format!(
                    "lease_counts of {t}/{p} {g} after reopen: store answered {got:?}, model \
                     expects {want:?} (in-flight leases must all survive or all come back)"
                ));
            }
        }
        Ok(())
    }
}

async fn run_case(backend: Arc<dyn Backend>, ops: &[Op]) -> Result<(), String> {
    let subject = Subject::fresh(backend, SLOT)
        .await
        .map_err(|e| format!("opening a fresh store: {e:?}"))?;
    let mut model = Model::new(subject.clock.now_ms());
    subject
        .store
        .create_topic("dlq", topic_config("dlq"))
        .await
        .map_err(|e| format!("create dlq: {e:?}"))?;
    model
        .create_topic("dlq", topic_config("dlq"))
        .map_err(|e| format!("model: {e:?}"))?;
    let mut d = Driver {
        subject,
        model,
        held: Vec::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = d.step(op).await {
            // Close anyway so the next case can open the slot again.
            let _ = d.subject.store.close().await;
            return Err(format!("op #{i} {op:?}: {e}"));
        }
    }
    d.subject
        .finish()
        .await
        .map_err(|e| format!("close: {e:?}"))
}

/// Runs `cases` random op sequences against stores of `backend` and the model; panics with
/// the shortest failing sequence found. Call it from a plain `#[test]` (it builds its own
/// tokio runtime), not from inside a runtime.
pub fn check_properties(backend: Arc<dyn Backend>, cases: u32) {
    check_properties_seeded(backend, cases, None)
}

/// [`check_properties`] with the op sequences drawn from `seed` when given, so the same
/// sequences run every time (for tests that must catch a known fault on every run).
pub fn check_properties_seeded(backend: Arc<dyn Backend>, cases: u32, seed: Option<[u8; 32]>) {
    run_seeded(
        "model-based property test",
        case(),
        cases,
        seed,
        120_000,
        |ops| {
            let backend = backend.clone();
            async move { run_case(backend, &ops).await }
        },
    );
}

/// Runs `cases` values of `strategy` through `run` on a fresh tokio runtime (drawn from
/// `seed` when given); panics with the shortest failing value found, named by `label`.
pub(crate) fn run_seeded<S, F, Fut>(
    label: &str,
    strategy: S,
    cases: u32,
    seed: Option<[u8; 32]>,
    max_shrink_time: u32,
    run: F,
) where
    S: Strategy,
    S::Value: std::fmt::Debug + HasLen,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building a tokio runtime for the property tests");
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_time,
        ..Config::default()
    };
    let mut runner = match seed {
        Some(seed) => {
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
        }
        None => TestRunner::new(config),
    };
    let result = runner.run(&strategy, |ops| {
        rt.block_on(run(ops)).map_err(TestCaseError::fail)
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => panic!(
            "{label} failed: {why}\nminimal failing op sequence ({} ops):\n{ops:#?}",
            ops.len()
        ),
        Err(TestError::Abort(why)) => panic!("{label} aborted: {why}"),
    }
}

/// The length of a generated op sequence, for the failure message.
pub(crate) trait HasLen {
    fn len(&self) -> usize;
}

impl<T> HasLen for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}
