//! Checks of the Append rules.

use std::sync::Arc;

use broker_api::{
    AppendBatch, AppendResult, Header, ProducerBatch, Record, StoreError, TopicConfig,
};
use bytes::Bytes;

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

/// **offsets_are_dense_from_zero**
pub async fn offsets_are_dense_from_zero(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "offsets_are_dense_from_zero").await?;
    topic(&s.store, "t", 2).await?;
    let mut next = 0;
    let mut want_values = Vec::new();
    for (i, n) in [1usize, 3, 2, 5, 1].into_iter().enumerate() {
        let vals: Vec<String> = (0..n).map(|k| format!("b{i}r{k}")).collect();
        let refs: Vec<&str> = vals.iter().map(String::as_str).collect();
        let r = append_values(&s.store, "t", 0, &refs).await?;
        ensure_eq!(
            (r.base_offset, r.last_offset),
            (next, next + n as i64 - 1),
            "offsets of batch {i} of {n} records"
        );
        ensure_eq!(r.log_start_offset, 0, "log start reported by append");
        ensure!(!r.duplicate, "a plain append reported duplicate = true");
        next += n as i64;
        want_values.extend(vals);
    }
    let r = append_values(&s.store, "t", 1, &["p1"]).await?;
    ensure_eq!(r.base_offset, 0, "first offset of partition 1");
    let off = s.store.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (off.log_start_offset, off.high_watermark),
        (0, next),
        "partition 0 offsets"
    );
    let recs = fetch_all(&s.store, "t", 0, 0).await?;
    let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
    ensure_eq!(offsets, (0..next).collect::<Vec<_>>(), "fetched offsets");
    ensure_eq!(values(&recs), want_values, "fetched values");
    s.finish().await.ctx("close")
}

/// **empty_batch_is_rejected**
pub async fn empty_batch_is_rejected(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "empty_batch_is_rejected").await?;
    topic(&s.store, "t", 1).await?;
    ensure_err!(
        s.store.append("t", 0, AppendBatch::new(vec![])).await,
        StoreError::InvalidArgument(_),
        "empty batch on an empty partition"
    );
    append_values(&s.store, "t", 0, &["a"]).await?;
    ensure_err!(
        s.store.append("t", 0, AppendBatch::new(vec![])).await,
        StoreError::InvalidArgument(_),
        "empty batch after one record"
    );
    let pid = s.store.init_producer_id().await.ctx("init_producer_id")?;
    let idem = AppendBatch {
        records: vec![],
        producer: Some(ProducerBatch {
            producer_id: pid.producer_id,
            epoch: pid.epoch,
            first_sequence: 0,
        }),
    };
    ensure_err!(
        s.store.append("t", 0, idem).await,
        StoreError::InvalidArgument(_),
        "empty idempotent batch"
    );
    let r = append_values(&s.store, "t", 0, &["b"]).await?;
    ensure_eq!(r.base_offset, 1, "offset after refused empty batches");
    s.finish().await.ctx("close")
}

/// **record_too_large_fails_the_batch**
pub async fn record_too_large_fails_the_batch(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "record_too_large_fails_the_batch").await?;
    let config = TopicConfig {
        max_record_bytes: 100,
        ..TopicConfig::default()
    };
    s.store
        .create_topic("t", config)
        .await
        .ctx("create_topic")?;
    // key 30 + value 60 + header key 3 + header value 8 = 101 bytes.
    let big = Record {
        key: Some(Bytes::from(vec![b'k'; 30])),
        value: Some(Bytes::from(vec![b'v'; 60])),
        headers: vec![Header {
            key: "abc".into(),
            value: Some(Bytes::from(vec![b'h'; 8])),
        }],
        ..Record::default()
    };
    let batch = vec![
        Record::from_value("small"),
        big.clone(),
        Record::from_value("x"),
    ];
    match s.store.append("t", 0, AppendBatch::new(batch)).await {
        Err(StoreError::RecordTooLarge { size, limit }) => {
            ensure_eq!((size, limit), (101, 100), "RecordTooLarge fields")
        }
        other => {
            return Err(format!(
                "batch with a 101-byte record: expected RecordTooLarge, got {other:?}"
            ))
        }
    }
    let off = s.store.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        off.high_watermark,
        0,
        "high watermark after the refused batch"
    );
    let mut exact = big;
    exact.key = Some(Bytes::from(vec![b'k'; 29]));
    let r = append(
        &s.store,
        "t",
        0,
        vec![exact.clone(), Record::from_value("y")],
    )
    .await?;
    ensure_eq!(
        (r.base_offset, r.last_offset),
        (0, 1),
        "batch whose largest record is exactly the limit"
    );
    let recs = fetch_all(&s.store, "t", 0, 0).await?;
    ensure_eq!(recs.len(), 2, "records stored");
    ensure_eq!(recs[0].size(), 100, "stored size of the limit-sized record");
    s.finish().await.ctx("close")
}

/// **timestamps_default_to_append_time**
pub async fn timestamps_default_to_append_time(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "timestamps_default_to_append_time").await?;
    topic(&s.store, "t", 1).await?;
    let t0 = clock_now(&s);
    let given = t0 - 5_000;
    let batch = vec![
        Record::from_value("a"),
        Record {
            timestamp_ms: Some(given),
            ..Record::from_value("b")
        },
        Record::from_value("c"),
    ];
    let r = append(&s.store, "t", 0, batch).await?;
    ensure_eq!(r.append_time_ms, t0, "append_time_ms of the first batch");
    s.clock.advance(1_234);
    let r2 = append_values(&s.store, "t", 0, &["d"]).await?;
    ensure_eq!(
        r2.append_time_ms,
        t0 + 1_234,
        "append_time_ms after advancing the clock"
    );
    let future = t0 + 1_000_000;
    append(
        &s.store,
        "t",
        0,
        vec![Record {
            timestamp_ms: Some(future),
            ..Record::from_value("e")
        }],
    )
    .await?;
    let recs = fetch_all(&s.store, "t", 0, 0).await?;
    let ts: Vec<i64> = recs.iter().map(|r| r.timestamp_ms).collect();
    ensure_eq!(
        ts,
        vec![t0, given, t0, t0 + 1_234, future],
        "stored timestamps"
    );
    s.finish().await.ctx("close")
}

pub(crate) fn odd_records(now: i64) -> Vec<Record> {
    let h = |k: &str, v: Option<&[u8]>| Header {
        key: k.into(),
        value: v.map(Bytes::copy_from_slice),
    };
    vec![
        Record::default(),
        Record {
            key: Some(Bytes::from_static(b"key-only")),
            ..Record::default()
        },
        Record {
            key: Some(Bytes::new()),
            value: Some(Bytes::from((0u8..=255).collect::<Vec<u8>>())),
            headers: vec![
                h("z", Some(b"1")),
                h("a", None),
                h("z", Some(b"")),
                h("", Some(b"\0\xff")),
            ],
            timestamp_ms: Some(now - 86_400_000),
            not_before_ms: Some(now + 30_000),
        },
        Record {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"\xe2\x82\xac utf8 and more")),
            headers: vec![h("only", Some(b"one"))],
            timestamp_ms: Some(0),
            not_before_ms: Some(now - 1),
        },
    ]
}

/// **records_round_trip**
pub async fn records_round_trip(backend: Arc<dyn Backend>) -> CheckResult {
    let s = fresh(backend, "records_round_trip").await?;
    topic(&s.store, "t", 1).await?;
    let now = clock_now(&s);
    let sent = odd_records(now);
    append(&s.store, "t", 0, sent.clone()).await?;
    append(&s.store, "t", 0, sent[2..].to_vec()).await?;
    let got = fetch_all(&s.store, "t", 0, 0).await?;
    let sent_all: Vec<&Record> = sent.iter().chain(sent[2..].iter()).collect();
    ensure_eq!(got.len(), sent_all.len(), "records fetched");
    for (i, (g, w)) in got.iter().zip(sent_all).enumerate() {
        ensure_eq!(g.offset, i as i64, "offset of record {i}");
        ensure_eq!(g.key, w.key, "key of record {i}");
        ensure_eq!(g.value, w.value, "value of record {i}");
        ensure_eq!(g.headers, w.headers, "headers of record {i}");
        ensure_eq!(
            g.timestamp_ms,
            w.timestamp_ms.unwrap_or(now),
            "timestamp of record {i}"
        );
        ensure_eq!(g.not_before_ms, w.not_before_ms, "not-before of record {i}");
    }
    s.finish().await.ctx("close")
}

/// **concurrent_appends_are_gapless**
pub async fn concurrent_appends_are_gapless(backend: Arc<dyn Backend>) -> CheckResult {
    const TASKS: usize = 8;
    const BATCHES: usize = 25;
    let s = fresh(backend, "concurrent_appends_are_gapless").await?;
    topic(&s.store, "t", 1).await?;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = s.store.clone();
        handles.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for b in 0..BATCHES {
                let n = 1 + (task + b) % 4;
                let records = (0..n)
                    .map(|k| Record::from_value(format!("{task}/{b}/{k}")))
                    .collect();
                let r = store.append("t", 0, AppendBatch::new(records)).await;
                results.push((b, n, r));
            }
            (task, results)
        }));
    }
    let mut ranges: Vec<(i64, i64, String)> = Vec::new();
    for h in handles {
        let (task, results) = h.await.map_err(|e| format!("append task failed: {e}"))?;
        for (b, n, r) in results {
            let r: AppendResult = r.ctx(&format!("append of task {task} batch {b}"))?;
            ensure_eq!(
                r.last_offset - r.base_offset + 1,
                n as i64,
                "offsets given to task {task} batch {b}"
            );
            ranges.push((r.base_offset, r.last_offset, format!("{task}/{b}")));
        }
    }
    ranges.sort();
    let mut next = 0;
    for (base, last, who) in &ranges {
        ensure!(
            *base == next,
            "batch {who} got {base}..={last}, expected it to start at {next}: ranges overlap or leave a gap"
        );
        next = last + 1;
    }
    let recs = fetch_all(&s.store, "t", 0, 0).await?;
    ensure_eq!(recs.len() as i64, next, "records stored");
    let vals = values(&recs);
    for (base, last, who) in &ranges {
        for o in *base..=*last {
            let want = format!("{who}/{}", o - base);
            ensure_eq!(
                vals[o as usize],
                want,
                "value at offset {o} (batch {who} must be contiguous)"
            );
        }
    }
    s.finish().await.ctx("close")
}

/// **offsets_are_never_reused**
pub async fn offsets_are_never_reused(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "offsets_are_never_reused").await?;
    topic(&s.store, "t", 1).await?;
    append_n(&s.store, "t", 0, 5).await?;
    s.store
        .delete_records("t", 0, 3)
        .await
        .ctx("delete_records")?;
    let r = append_values(&s.store, "t", 0, &["after-delete"]).await?;
    ensure_eq!(r.base_offset, 5, "offset after delete_records");
    ensure_eq!(
        r.log_start_offset,
        3,
        "log start reported after delete_records"
    );

    let config = TopicConfig {
        retention_ms: Some(1_000),
        segment_bytes: Some(1),
        ..TopicConfig::default()
    };
    s.store
        .create_topic("r", config)
        .await
        .ctx("create_topic r")?;
    append_n(&s.store, "r", 0, 3).await?;
    s.clock.advance(5_000);
    append_values(&s.store, "r", 0, &["fresh"]).await?;
    let removed = s
        .store
        .enforce_retention("r")
        .await
        .ctx("enforce_retention")?;
    ensure_eq!(removed, 3, "records removed by retention");
    let r = append_values(&s.store, "r", 0, &["after-retention"]).await?;
    ensure_eq!(r.base_offset, 4, "offset after retention");

    // Empty the log entirely, then reopen: the next offset must still follow the old ones.
    s.store
        .delete_records("t", 0, 6)
        .await
        .ctx("delete_records all")?;
    s.reopen().await.ctx("reopen")?;
    let off = s.store.partition_offsets("t", 0).await.ctx("offsets")?;
    ensure_eq!(
        (off.log_start_offset, off.high_watermark),
        (6, 6),
        "offsets of an emptied partition after reopen"
    );
    let r = append_values(&s.store, "t", 0, &["after-reopen"]).await?;
    ensure_eq!(
        r.base_offset,
        6,
        "offset after emptying the log and reopening"
    );
    let r = append_values(&s.store, "r", 0, &["r-after-reopen"]).await?;
    ensure_eq!(
        r.base_offset,
        5,
        "offset on the retained topic after reopen"
    );
    s.finish().await.ctx("close")
}
