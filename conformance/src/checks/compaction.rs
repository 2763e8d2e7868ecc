//! Checks of the Compaction rules. Topics use `segment_bytes: Some(1)` so that stores with
//! segments close a segment after every batch, and no compaction lag, so the cleanable end
//! reaches at least the newest batch. What survives is computed from the `cleaned_to` the
//! store reports.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use broker_api::{
    BatchLimits, CleanupPolicy, CompactionStats, FetchLimits, ProducerBatch, Record, Store,
    StoreError, StoredRecord, TimestampType, TopicConfig, TxnMarker,
};
use bytes::Bytes;
use kafka_batch::BatchHeader;

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

const DELETE_RETENTION_MS: i64 = 10_000;

fn compacted() -> TopicConfig {
    TopicConfig {
        segment_bytes: Some(1),
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
            min_compaction_lag_ms: 0,
            delete_retention_ms: DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: 0.0,
        },
        ..TopicConfig::default()
    }
}

async fn create(st: &Arc<dyn Store>, config: TopicConfig) -> CheckStep {
    st.create_topic("t", config)
        .await
        .ctx("create_topic(t)")
        .map(|_| ())
}

/// A record `key=value`, or a tombstone when `value` is `None`.
fn kv(key: &str, value: Option<&str>) -> Record {
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: value.map(|v| Bytes::from(v.to_string())),
        ..Record::default()
    }
}

/// Appends batches of `(key, value)` pairs; returns every record as (offset, key, value).
async fn append_batches(
    st: &Arc<dyn Store>,
    batches: &[&[(&str, Option<&str>)]],
) -> Result<Vec<(i64, String, Option<String>)>, String> {
    let mut out = Vec::new();
    for b in batches {
        let records = b.iter().map(|(k, v)| kv(k, *v)).collect();
        let res = append(st, "t", 0, records).await?;
        for (i, (k, v)) in b.iter().enumerate() {
            out.push((
                res.base_offset + i as i64,
                k.to_string(),
                v.map(str::to_string),
            ));
        }
    }
    Ok(out)
}

/// Compacts until the cleanable end stops moving (a store may clean a prefix per call).
async fn compact_fully(st: &Arc<dyn Store>) -> Result<CompactionStats, String> {
    let mut total = CompactionStats::default();
    for _ in 0..20 {
        let s = st.compact("t", 0, None).await.ctx("compact(t, 0)")?;
        total.records_removed += s.records_removed;
        let done = s.cleaned_to <= total.cleaned_to && s.records_removed == 0;
        total.cleaned_to = total.cleaned_to.max(s.cleaned_to);
        if done {
            return Ok(total);
        }
    }
    Ok(total)
}

/// Every surviving record from the log start, fetching as often as needed; offsets must
/// grow and none may reach the high watermark.
async fn survivors(st: &Arc<dyn Store>) -> Result<Vec<StoredRecord>, String> {
    let o = st
        .partition_offsets("t", 0)
        .await
        .ctx("partition_offsets")?;
    let mut out: Vec<StoredRecord> = Vec::new();
    let mut next = o.log_start_offset;
    while next < o.high_watermark {
        let res = st
            .fetch("t", 0, next, FetchLimits::default())
            .await
            .ctx(&format!("fetch at {next}"))?;
        let Some(last) = res.records.last() else {
            break;
        };
        let last = last.offset;
        for r in res.records {
            ensure!(
                r.offset >= next && r.offset < o.high_watermark,
                "fetch at {next} returned offset {} (high watermark {})",
                r.offset,
                o.high_watermark
            );
            out.push(r);
        }
        next = last + 1;
    }
    Ok(out)
}

fn view(records: &[StoredRecord]) -> Vec<(i64, String, Option<String>)> {
    records
        .iter()
        .map(|r| {
            let s = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            (r.offset, s(&r.key).unwrap_or_default(), s(&r.value))
        })
        .collect()
}

/// What must survive a compaction to `end`: below it, the newest record of each key
/// (tombstones included unless `drop_tombstones`); at or after it, everything.
fn expected(
    all: &[(i64, String, Option<String>)],
    end: i64,
    drop_tombstones: bool,
) -> Vec<(i64, String, Option<String>)> {
    let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
    for (o, k, _) in all.iter().filter(|(o, _, _)| *o < end) {
        newest.insert(k, *o);
    }
    all.iter()
        .filter(|(o, k, v)| {
            *o >= end || (newest[k.as_str()] == *o && !(drop_tombstones && v.is_none()))
        })
        .cloned()
        .collect()
}

const HISTORY: &[&[(&str, Option<&str>)]] = &[
    &[("a", Some("a1")), ("b", Some("b1"))],
    &[("a", Some("a2")), ("c", Some("c1")), ("b", Some("b2"))],
    &[("d", Some("d1"))],
    &[("c", Some("c2")), ("a", Some("a3"))],
    &[("e", Some("e1")), ("a", Some("a4"))],
];

/// **compaction_keeps_newest_per_key**
pub async fn compaction_keeps_newest_per_key(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "compaction_keeps_newest_per_key").await?;
    let st = &s.store;
    create(st, compacted()).await?;
    let all = append_batches(st, HISTORY).await?;
    let stats = compact_fully(st).await?;
    let newest_base = 8;
    ensure!(
        stats.cleaned_to >= newest_base && stats.cleaned_to <= 10,
        "cleaned_to {} is not between the newest batch's base {newest_base} and the high \
         watermark 10",
        stats.cleaned_to
    );
    let want = expected(&all, stats.cleaned_to, false);
    ensure_eq!(
        view(&survivors(st).await?),
        want,
        "records after compacting to {}",
        stats.cleaned_to
    );
    ensure_eq!(
        stats.records_removed,
        (all.len() - want.len()) as u64,
        "records_removed"
    );
    // Nothing new: compacting again removes nothing.
    let again = st.compact("t", 0, None).await.ctx("second compact")?;
    ensure_eq!(
        again.records_removed,
        0,
        "records removed by a second compact"
    );
    // Newer records make older ones cleanable.
    let more = append_batches(st, &[&[("b", Some("b3"))], &[("f", Some("f1"))]]).await?;
    let stats = compact_fully(st).await?;
    let mut all2 = want;
    all2.extend(more);
    ensure_eq!(
        view(&survivors(st).await?),
        expected(&all2, stats.cleaned_to, false),
        "records after the second round of compaction to {}",
        stats.cleaned_to
    );
    s.finish().await.ctx("finish")
}

/// **compaction_keeps_offsets**
pub async fn compaction_keeps_offsets(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "compaction_keeps_offsets").await?;
    let st = &s.store;
    create(st, compacted()).await?;
    st.set_lease_group("t", "q", Default::default())
        .await
        .ctx("set_lease_group")?;
    let all = append_batches(st, HISTORY).await?;
    let stats = compact_fully(st).await?;
    let want = expected(&all, stats.cleaned_to, false);
    let o = st
        .partition_offsets("t", 0)
        .await
        .ctx("partition_offsets")?;
    ensure_eq!(
        (o.log_start_offset, o.high_watermark),
        (0, 10),
        "log start and high watermark after compaction"
    );
    // a1@0 and b1@1 are superseded whatever the cleanable end: fetch at 0 starts at the
    // next survivor.
    let res = st
        .fetch("t", 0, 0, FetchLimits::default())
        .await
        .ctx("fetch at 0")?;
    ensure_eq!(
        res.records.first().map(|r| r.offset),
        Some(want[0].0),
        "first record fetched at the removed offset 0"
    );
    // Batches: valid, original bounds, exactly the survivors.
    let got = st
        .fetch_batches(
            "t",
            0,
            0,
            BatchLimits {
                max_bytes: 1 << 20,
                min_one: true,
                read_committed: false,
            },
        )
        .await
        .ctx("fetch_batches at 0")?;
    let all_bytes = got.concat();
    let batches = kafka_batch::split_batches(&all_bytes)
        .map_err(|e| format!("fetched batches do not split: {e}"))?;
    let mut from_batches = Vec::new();
    for b in &batches {
        ensure!(kafka_batch::crc_ok(b), "a fetched batch fails its CRC");
        let h = BatchHeader::read(b).ok_or("a fetched batch without a header")?;
        let first = all
            .iter()
            .position(|(o, _, _)| *o == h.base_offset)
            .ok_or_else(|| {
                format!(
                    "a fetched batch starts at {}, not a batch base",
                    h.base_offset
                )
            })?;
        ensure!(
            HISTORY
                .iter()
                .scan(0i64, |at, b| {
                    let r = (*at, *at + b.len() as i64 - 1);
                    *at += b.len() as i64;
                    Some(r)
                })
                .any(|(base, last)| base == all[first].0 && last == h.last_offset()),
            "batch at {} ends at {}: not an original batch's last offset",
            h.base_offset,
            h.last_offset()
        );
        kafka_batch::decode_records(b, 0, |r| {
            from_batches.push(r);
            true
        })
        .map_err(|e| format!("a fetched batch does not decode: {e}"))?;
    }
    ensure_eq!(view(&from_batches), want, "records of the fetched batches");
    // Leases deliver survivors only.
    let leased = lease(st, "t", 0, "q", 100, 30_000).await?;
    ensure_eq!(
        leased_offsets(&leased),
        want.iter().map(|(o, _, _)| *o).collect::<Vec<_>>(),
        "offsets leased after compaction"
    );
    // Timestamps: every record was appended at the same clock time, so the first
    // survivor answers both lookups.
    let ts = st
        .offset_for_timestamp("t", 0, 0)
        .await
        .ctx("offset_for_timestamp")?
        .map(|t| t.offset);
    ensure_eq!(ts, Some(want[0].0), "offset_for_timestamp(0)");
    let max = st
        .max_timestamp_offset("t", 0)
        .await
        .ctx("max_timestamp_offset")?
        .map(|t| t.offset);
    ensure_eq!(max, Some(want[0].0), "max_timestamp_offset");
    s.finish().await.ctx("finish")
}

/// **tombstones_expire_after_delete_retention**
pub async fn tombstones_expire_after_delete_retention(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "tombstones_expire_after_delete_retention").await?;
    let st = &s.store;
    create(st, compacted()).await?;
    let all = append_batches(
        st,
        &[
            &[("a", Some("a1")), ("b", Some("b1"))],
            &[("a", None)],
            &[("c", Some("c1"))],
        ],
    )
    .await?;
    let first = compact_fully(st).await?;
    ensure!(
        first.cleaned_to >= 3,
        "cleaned_to {} does not reach the newest batch (3)",
        first.cleaned_to
    );
    let kept = expected(&all, first.cleaned_to, false);
    ensure_eq!(
        view(&survivors(st).await?),
        kept.clone(),
        "the first compaction keeps the tombstone of a"
    );
    s.clock.advance(DELETE_RETENTION_MS - 1);
    compact_fully(st).await?;
    ensure_eq!(
        view(&survivors(st).await?),
        kept,
        "the tombstone 1 ms before delete_retention_ms has passed"
    );
    s.clock.advance(1);
    let last = compact_fully(st).await?;
    ensure_eq!(
        view(&survivors(st).await?),
        expected(&all, last.cleaned_to, true),
        "records once delete_retention_ms has passed"
    );
    s.finish().await.ctx("finish")
}

fn txn_batch(producer_id: i64, first_sequence: i32, records: &[Record]) -> Bytes {
    let producer = ProducerBatch {
        producer_id,
        epoch: 0,
        first_sequence,
    };
    transactional_batch(producer, records)
}

/// **compaction_removes_aborted_records**
pub async fn compaction_removes_aborted_records(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "compaction_removes_aborted_records").await?;
    let st = &s.store;
    create(st, compacted()).await?;
    let aborting = st.init_producer_id().await.ctx("init_producer_id")?;
    let committing = st.init_producer_id().await.ctx("init_producer_id")?;
    let mut want = Vec::new();
    // 0: aborted x, 1: committed y, 2: abort marker, 3: commit marker, 4: z, 5: z.
    st.append_batch(
        "t",
        0,
        txn_batch(aborting.producer_id, 0, &[kv("x", Some("x-aborted"))]),
        TimestampType::CreateTime,
    )
    .await
    .ctx("aborted transactional batch")?;
    st.append_batch(
        "t",
        0,
        txn_batch(committing.producer_id, 0, &[kv("y", Some("y-committed"))]),
        TimestampType::CreateTime,
    )
    .await
    .ctx("committed transactional batch")?;
    want.push((1, "y".to_string(), Some("y-committed".to_string())));
    for (p, commit) in [
        (aborting.producer_id, false),
        (committing.producer_id, true),
    ] {
        st.write_txn_marker(
            "t",
            0,
            TxnMarker {
                producer_id: p,
                producer_epoch: 0,
                commit,
                coordinator_epoch: 0,
            },
        )
        .await
        .ctx("write_txn_marker")?;
    }
    append_batches(st, &[&[("z", Some("z1"))], &[("z", Some("z2"))]]).await?;
    let stats = compact_fully(st).await?;
    ensure!(
        stats.cleaned_to >= 5,
        "cleaned_to {} does not reach the newest batch (5)",
        stats.cleaned_to
    );
    // z1@4 goes only when z2@5 is below the cleanable end.
    if stats.cleaned_to <= 5 {
        want.push((4, "z".to_string(), Some("z1".to_string())));
    }
    want.push((5, "z".to_string(), Some("z2".to_string())));
    ensure_eq!(
        view(&survivors(st).await?),
        want,
        "records after compacting aborted, committed and plain batches"
    );
    ensure!(
        stats.records_removed >= 1,
        "records_removed {} does not count the aborted record",
        stats.records_removed
    );
    // The markers stay: a read-committed fetch still ends both transactions.
    let o = st
        .partition_offsets("t", 0)
        .await
        .ctx("partition_offsets")?;
    ensure_eq!(
        o.last_stable_offset,
        6,
        "last stable offset after compaction"
    );
    s.finish().await.ctx("finish")
}

/// **compaction_needs_the_policy**
pub async fn compaction_needs_the_policy(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "compaction_needs_the_policy").await?;
    let st = &s.store;
    create(
        st,
        TopicConfig {
            segment_bytes: Some(1),
            ..TopicConfig::default()
        },
    )
    .await?;
    let all = append_batches(st, HISTORY).await?;
    let stats = st.compact("t", 0, None).await.ctx("compact")?;
    ensure_eq!(
        stats.records_removed,
        0,
        "records removed without the policy"
    );
    ensure_eq!(
        view(&survivors(st).await?),
        all,
        "records after compact on a delete-only topic"
    );
    s.finish().await.ctx("finish")
}

/// **compacted_topics_need_keys**
pub async fn compacted_topics_need_keys(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "compacted_topics_need_keys").await?;
    let st = &s.store;
    create(st, compacted()).await?;
    append_batches(st, &[&[("a", Some("1"))]]).await?;
    let res = st
        .append(
            "t",
            0,
            broker_api::AppendBatch::new(vec![kv("b", Some("2")), Record::from_value("no key")]),
        )
        .await;
    ensure_err!(
        res,
        StoreError::InvalidBatch(_),
        "append of a record without a key to a compacted topic"
    );
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, &[Record::from_value("no key")], 1_000, None)
        .expect("encoding a test batch");
    let res = st
        .append_batch("t", 0, Bytes::from(buf), TimestampType::CreateTime)
        .await;
    match &res {
        Err(StoreError::InvalidBatch(m)) => ensure!(
            m.contains("t") && m.contains("key"),
            "the error does not name the topic or the missing key: {m}"
        ),
        other => return Err(format!("append_batch without a key: {other:?}")),
    }
    let o = st
        .partition_offsets("t", 0)
        .await
        .ctx("partition_offsets")?;
    ensure_eq!(
        o.high_watermark,
        1,
        "high watermark after the refused appends"
    );
    s.finish().await.ctx("finish")
}

/// **compaction_survives_reopen**
pub async fn compaction_survives_reopen(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "compaction_survives_reopen").await?;
    create(&s.store, compacted()).await?;
    let all = append_batches(&s.store, HISTORY).await?;
    let stats = compact_fully(&s.store).await?;
    let want = expected(&all, stats.cleaned_to, false);
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        view(&survivors(&s.store).await?),
        want,
        "records after compaction and reopen"
    );
    let res = append(&s.store, "t", 0, vec![kv("a", Some("a5"))]).await?;
    ensure_eq!(
        res.base_offset,
        10,
        "offset of the first append after reopen"
    );
    let offsets: BTreeSet<i64> = survivors(&s.store)
        .await?
        .iter()
        .map(|r| r.offset)
        .collect();
    ensure_eq!(
        offsets.len(),
        want.len() + 1,
        "distinct offsets after reopen and one append"
    );
    s.finish().await.ctx("finish")
}
