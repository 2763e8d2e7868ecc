//! The store's own checks of its core behaviour, reopen and recovery.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, Durability, FetchLimits, Header, ManualClock, ProducerBatch, Record, Store,
    StoreError, TopicConfig,
};
use bytes::Bytes;
use store_log::{LogOptions, LogStore};

fn small_opts() -> LogOptions {
    LogOptions {
        index_interval_bytes: 256,
        segment_bytes: 4096,
        index_bytes: 4096,
        ..LogOptions::default()
    }
}

fn open(dir: &Path, clock: &ManualClock) -> LogStore {
    LogStore::open(dir, small_opts(), Arc::new(clock.clone())).expect("open")
}

fn rec(i: usize) -> Record {
    Record {
        key: Some(Bytes::from(format!("k{}", i % 7))),
        value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50)))),
        headers: vec![Header {
            key: "h".into(),
            value: Some(Bytes::from(i.to_string())),
        }],
        timestamp_ms: Some(1000 + i as i64),
        not_before_ms: None,
    }
}

async fn fill(s: &LogStore, topic: &str, n: usize, per_batch: usize) {
    let mut i = 0;
    while i < n {
        let k = per_batch.min(n - i);
        let r = s
            .append(topic, 0, AppendBatch::new((i..i + k).map(rec).collect()))
            .await
            .unwrap();
        assert_eq!(r.base_offset, i as i64);
        assert_eq!(r.last_offset, (i + k - 1) as i64);
        i += k;
    }
}

async fn check_all(s: &LogStore, topic: &str, from: usize, n: usize) {
    let mut next = from;
    while next < n {
        let f = s
            .fetch(
                topic,
                0,
                next as i64,
                FetchLimits {
                    max_records: 37,
                    max_bytes: 1 << 20,
                },
            )
            .await
            .unwrap();
        assert!(!f.records.is_empty(), "nothing at {next}");
        for r in &f.records {
            let want = rec(next);
            assert_eq!(r.offset, next as i64);
            assert_eq!(r.key, want.key);
            assert_eq!(r.value, want.value);
            assert_eq!(r.headers, want.headers);
            assert_eq!(r.timestamp_ms, want.timestamp_ms.unwrap());
            next += 1;
        }
    }
    assert_eq!(next, n);
}

#[tokio::test]
async fn append_fetch_roll_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock);
    s.create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    fill(&s, "t", 500, 7).await;
    check_all(&s, "t", 0, 500).await;
    check_all(&s, "t", 123, 500).await;
    let segs = std::fs::read_dir(dir.path().join("topics/t~0/0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segs > 3, "expected several segments, got {segs}");
    let ts = s.offset_for_timestamp("t", 0, 1250).await.unwrap().unwrap();
    assert_eq!((ts.offset, ts.timestamp_ms), (250, 1250));
    assert!(s
        .offset_for_timestamp("t", 0, 99999)
        .await
        .unwrap()
        .is_none());
    s.close().await.unwrap();
    assert!(matches!(
        s.fetch("t", 0, 0, FetchLimits::default()).await,
        Err(StoreError::Closed)
    ));
    drop(s);

    let s = open(dir.path(), &clock);
    check_all(&s, "t", 0, 500).await;
    let r = s
        .append("t", 0, AppendBatch::new(vec![rec(500)]))
        .await
        .unwrap();
    assert_eq!(r.base_offset, 500);
    let ts = s.offset_for_timestamp("t", 0, 1400).await.unwrap().unwrap();
    assert_eq!(ts.offset, 400);
    // Unclean: no close.
    drop(s);
    let s = open(dir.path(), &clock);
    check_all(&s, "t", 0, 501).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn idempotent_producer_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock);
    let cfg = TopicConfig {
        retention_bytes: Some(2000),
        durability: Durability::Always,
        ..TopicConfig::with_partitions(1)
    };
    s.create_topic("t", cfg).await.unwrap();
    let pid = s.init_producer_id().await.unwrap();
    let pb = |seq| {
        Some(ProducerBatch {
            producer_id: pid.producer_id,
            epoch: 0,
            first_sequence: seq,
        })
    };
    let b = |seq| AppendBatch {
        records: vec![rec(0), rec(1)],
        producer: pb(seq),
    };
    let r1 = s.append("t", 0, b(0)).await.unwrap();
    let r2 = s.append("t", 0, b(0)).await.unwrap();
    assert!(r2.duplicate && r2.base_offset == r1.base_offset);
    assert!(matches!(
        s.append("t", 0, b(5)).await,
        Err(StoreError::OutOfOrderSequence {
            expected: 2,
            got: 5
        })
    ));
    s.append("t", 0, b(2)).await.unwrap();
    fill_more(&s, 200).await;
    let removed = s.enforce_retention("t").await.unwrap();
    assert!(removed > 0);
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!(o.high_watermark, 204);
    s.close().await.unwrap();
    let s = open(dir.path(), &clock);
    let o2 = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!(o, o2);
    let r3 = s.append("t", 0, b(2)).await.unwrap();
    assert!(r3.duplicate, "producer state must survive reopen");
    assert_ne!(
        s.init_producer_id().await.unwrap().producer_id,
        pid.producer_id
    );
    s.close().await.unwrap();
}

async fn fill_more(s: &LogStore, n: usize) {
    for i in 0..n {
        s.append("t", 0, AppendBatch::new(vec![rec(i)]))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn leases_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock);
    s.create_topic("q", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    for i in 0..10 {
        s.append(
            "q",
            0,
            AppendBatch::new(vec![Record::from_value(format!("m{i}"))]),
        )
        .await
        .unwrap();
    }
    let l = s
        .lease("q", 0, "g", 3, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        l.iter().map(|l| l.record.offset).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let acks = s.ack("q", "g", &[l[0].token, l[2].token]).await.unwrap();
    assert!(acks.iter().all(|r| r.is_ok()));
    assert!(matches!(
        s.ack("q", "g", &[l[0].token]).await.unwrap()[0],
        Err(StoreError::LeaseExpired)
    ));
    let c = s.lease_counts("q", 0, "g").await.unwrap();
    assert_eq!((c.done, c.leased, c.available), (2, 1, 7));
    s.close().await.unwrap();
    let s = open(dir.path(), &clock);
    let c2 = s.lease_counts("q", 0, "g").await.unwrap();
    assert_eq!(c2.done, 2);
    clock.advance(31_000);
    let l = s
        .lease("q", 0, "g", 100, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(l.len(), 8);
    assert_eq!(l[0].record.offset, 1);
    assert_eq!(l[0].delivery_count, 2);
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_newer_format_version_is_refused_and_nothing_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock);
    s.create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    fill(&s, "t", 50, 10).await;
    s.close().await.unwrap();
    let version_file = dir.path().join(store_log::FORMAT_VERSION_FILE);
    assert_eq!(
        std::fs::read_to_string(&version_file).unwrap().trim(),
        store_log::FORMAT_VERSION.to_string(),
        "a store records its format version"
    );

    // A newer binary wrote the directory: refused, by name, before any recovery runs.
    let newer = store_log::FORMAT_VERSION + 1;
    std::fs::write(&version_file, format!("{newer}\n")).unwrap();
    let snapshot = |d: &Path| {
        let mut files = Vec::new();
        for e in walk(d) {
            files.push((e.clone(), std::fs::read(&e).unwrap_or_default()));
        }
        files
    };
    let before = snapshot(&dir.path().join("topics"));
    let err = LogStore::open(dir.path(), small_opts(), Arc::new(clock.clone()))
        .err()
        .expect("a newer format is refused");
    let text = err.to_string();
    assert!(
        text.contains(&format!("format version {newer}"))
            && text.contains(&format!("newer than the {}", store_log::FORMAT_VERSION)),
        "{text}"
    );
    assert_eq!(
        before,
        snapshot(&dir.path().join("topics")),
        "segments untouched"
    );

    // An older format (the store's own batch framing) is refused too, naming the file and
    // the version, and nothing is touched; so is a store from before the version file.
    for (older, write) in [(2u32, true), (1, false)] {
        if write {
            std::fs::write(&version_file, format!("{older}\n")).unwrap();
        } else {
            std::fs::remove_file(&version_file).unwrap();
        }
        let err = LogStore::open(dir.path(), small_opts(), Arc::new(clock.clone()))
            .err()
            .expect("an older format is refused");
        let text = err.to_string();
        assert!(
            text.contains(&version_file.display().to_string())
                && text.contains(&format!("format version {older}"))
                && text.contains(&format!("reads format {}", store_log::FORMAT_VERSION)),
            "{text}"
        );
        assert_eq!(
            before,
            snapshot(&dir.path().join("topics")),
            "segments untouched"
        );
    }

    // Back at this binary's version, the data is all there.
    std::fs::write(&version_file, format!("{}\n", store_log::FORMAT_VERSION)).unwrap();
    let s = open(dir.path(), &clock);
    check_all(&s, "t", 0, 50).await;
    s.close().await.unwrap();
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn directory_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock);
    let second = LogStore::open(dir.path(), small_opts(), Arc::new(clock.clone()));
    let err = StoreError::from(second.err().expect("a second store on the same directory"));
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    s.close().await.unwrap();
    let again = open(dir.path(), &clock);
    again.close().await.unwrap();
}

#[tokio::test]
async fn retention_over_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let s = open(dir.path(), &clock);
    s.create_topic("r", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    // 300 one-record batches; record i has timestamp 1000 + i and an (i % 13)-byte pad.
    let value = |i: i64| format!("r{i:04}{}", "q".repeat((i % 13) as usize));
    // A Kafka batch header (61 bytes), then the record's varint framing (docs/log-format.md):
    // length, attributes, timestamp delta (0: the batch's base timestamp is the record's),
    // offset delta, null key, value length and header count take 1 byte each.
    let batch_len = |i: i64| 61 + 7 + value(i).len() as u64;
    for i in 0..300 {
        let r = Record {
            value: Some(Bytes::from(value(i))),
            timestamp_ms: Some(1000 + i),
            ..Record::default()
        };
        s.append("r", 0, AppendBatch::new(vec![r])).await.unwrap();
    }
    let cfg = |ms: Option<i64>, bytes: Option<u64>| TopicConfig {
        retention_ms: ms,
        retention_bytes: bytes,
        ..TopicConfig::with_partitions(1)
    };
    // Time: everything with timestamp < 1000 + 150 goes, segment by segment and batch by batch.
    s.update_topic_config("r", cfg(Some(1_000_000 - 1150), None))
        .await
        .unwrap();
    assert_eq!(s.enforce_retention("r").await.unwrap(), 150);
    assert_eq!(
        s.partition_offsets("r", 0).await.unwrap().log_start_offset,
        150
    );
    // Size: keep the newest batches that fit in the limit, at least the newest one.
    let limit = 5000u64;
    s.update_topic_config("r", cfg(None, Some(limit)))
        .await
        .unwrap();
    s.enforce_retention("r").await.unwrap();
    let start = s.partition_offsets("r", 0).await.unwrap().log_start_offset;
    let kept: u64 = (start..300).map(batch_len).sum();
    assert!(kept <= limit, "{kept} bytes kept over a {limit} limit");
    assert!(
        kept + batch_len(start - 1) > limit,
        "retention removed too much (start {start})"
    );
    // Whole segments below the log start are gone from disk.
    let segs = std::fs::read_dir(dir.path().join("topics/r~0/0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(segs <= 3, "{segs} segments left");
    // Retention never removes the newest batch.
    s.update_topic_config("r", cfg(Some(1), Some(1)))
        .await
        .unwrap();
    s.enforce_retention("r").await.unwrap();
    let o = s.partition_offsets("r", 0).await.unwrap();
    assert_eq!((o.log_start_offset, o.high_watermark), (299, 300));
    s.close().await.unwrap();
    let s = open(dir.path(), &clock);
    let f = s.fetch("r", 0, 299, FetchLimits::default()).await.unwrap();
    assert_eq!(f.records.len(), 1);
    assert_eq!(f.log_start_offset, 299);
    s.close().await.unwrap();
}

#[tokio::test]
async fn lease_state_past_a_lost_log_tail_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock);
    s.create_topic("l", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    for i in 0..10 {
        s.append(
            "l",
            0,
            AppendBatch::new(vec![Record::from_value(format!("m{i}"))]),
        )
        .await
        .unwrap();
    }
    let leases = s
        .lease("l", 0, "g", 10, Duration::from_secs(60))
        .await
        .unwrap();
    let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
    assert!(s
        .ack("l", "g", &tokens)
        .await
        .unwrap()
        .iter()
        .all(|r| r.is_ok()));
    s.close().await.unwrap();
    // The log loses its last 5 batches (as after a machine crash); the journal kept the acks.
    let seg = dir.path().join("topics/l~0/0/00000000000000000000.log");
    let data = std::fs::read(&seg).unwrap();
    let mut pos = 0;
    for _ in 0..5 {
        pos += 12 + u32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(pos as u64)
        .unwrap();
    std::fs::remove_file(dir.path().join(store_log::CLEAN_SHUTDOWN)).unwrap();
    for round in 0..2 {
        let s = open(dir.path(), &clock);
        if round == 0 {
            for i in 0..5 {
                let r = s
                    .append(
                        "l",
                        0,
                        AppendBatch::new(vec![Record::from_value(format!("n{i}"))]),
                    )
                    .await
                    .unwrap();
                assert_eq!(r.base_offset, 5 + i);
            }
        }
        let c = s.lease_counts("l", 0, "g").await.unwrap();
        assert_eq!(
            (c.done, c.available),
            (5, 5),
            "round {round}: new records count as done"
        );
        s.close().await.unwrap();
    }
    let s = open(dir.path(), &clock);
    let l = s
        .lease("l", 0, "g", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        l.iter().map(|l| l.record.offset).collect::<Vec<_>>(),
        vec![5, 6, 7, 8, 9]
    );
    assert_eq!(l[0].record.value.as_deref(), Some(&b"n0"[..]));
    s.close().await.unwrap();
}

/// A segment of many small batches (more than one read window of the scan), with delayed
/// records and one batch larger than a window, reopens cleanly and after a crash with every
/// record, and the delays still apply.
#[tokio::test]
async fn reopen_scans_segments_of_small_and_huge_batches() {
    const BIG: usize = 40;
    const BIG_VALUE: usize = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let opts = || LogOptions::default();
    let s = LogStore::open(dir.path(), opts(), Arc::new(clock.clone())).unwrap();
    s.create_topic("w", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let n = 12_000;
    let delayed = |i: usize| i % 1000 == 999;
    let record = |i: usize| {
        let mut r = rec(i);
        if delayed(i) {
            r.not_before_ms = Some(broker_api::Clock::now_ms(&clock) + 3_600_000);
        }
        r
    };
    for i in 0..n {
        if i == n / 2 {
            // One batch of 2.4 MB (more than a read window) in the middle.
            let big = Record::from_value(Bytes::from(vec![7u8; BIG_VALUE]));
            s.append("w", 0, AppendBatch::new(vec![big; BIG]))
                .await
                .unwrap();
        }
        s.append("w", 0, AppendBatch::new(vec![record(i)]))
            .await
            .unwrap();
    }
    let total = (n + BIG) as i64;
    s.close().await.unwrap();
    drop(s);
    // First after the clean close above; then after a drop without close (recovery).
    for clean in [true, false] {
        let s = LogStore::open(dir.path(), opts(), Arc::new(clock.clone())).unwrap();
        let offs = s.partition_offsets("w", 0).await.unwrap();
        assert_eq!(offs.high_watermark, total, "clean reopen: {clean}");
        let mut next = 0i64;
        while next < total {
            let f = s
                .fetch(
                    "w",
                    0,
                    next,
                    FetchLimits {
                        max_records: 5000,
                        max_bytes: 4 << 20,
                    },
                )
                .await
                .unwrap();
            for r in &f.records {
                assert_eq!(r.offset, next);
                let o = next as usize;
                let i = if o >= n / 2 + BIG { o - BIG } else { o };
                if (n / 2..n / 2 + BIG).contains(&o) {
                    assert_eq!(r.value.as_ref().map(|v| v.len()), Some(BIG_VALUE));
                } else {
                    assert_eq!(r.value, rec(i).value, "offset {next}");
                    assert_eq!(r.not_before_ms.is_some(), delayed(i), "offset {next}");
                }
                next += 1;
            }
        }
        // The delayed records are not leased while their not-before is in the future.
        let leased = s
            .lease(
                "w",
                0,
                &format!("g{clean}"),
                100_000,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(leased.len() as i64, total - (n / 1000) as i64);
        assert!(leased.iter().all(|l| l.record.not_before_ms.is_none()));
        if !clean {
            s.close().await.unwrap();
        }
        drop(s);
    }
}
