//! A disk that fills up, produced with the store's fault injector: appends and other writes
//! fail with `StorageFull`, nothing acknowledged is lost, and writing works again once there
//! is room.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, Durability, FetchLimits, ManualClock, OffsetCommit, Record, Store, StoreError,
    TopicConfig,
};
use store_log::{FaultInjector, LogOptions, LogStore};

fn options(faults: &Arc<FaultInjector>) -> LogOptions {
    LogOptions {
        segment_bytes: 4 << 10,
        index_interval_bytes: 128,
        index_bytes: 1 << 10,
        snapshot_bytes: 4 << 10,
        faults: Some(faults.clone()),
        ..LogOptions::default()
    }
}

fn rec(i: i64) -> Record {
    Record::from_value(format!("rec-{i}-{}", "y".repeat((i % 50) as usize)))
}

async fn check(s: &LogStore, n: i64) {
    let f = s
        .fetch(
            "f",
            0,
            0,
            FetchLimits {
                max_records: 100_000,
                max_bytes: 64 << 20,
            },
        )
        .await
        .unwrap();
    assert_eq!(f.high_watermark, n);
    assert_eq!(f.records.len() as i64, n);
    for r in &f.records {
        assert_eq!(
            r.value.as_deref(),
            rec(r.offset).value.as_deref(),
            "record {}",
            r.offset
        );
    }
}

async fn append(s: &LogStore, next: &mut i64) -> Result<(), StoreError> {
    let recs = vec![rec(*next), rec(*next + 1)];
    let r = s.append("f", 0, AppendBatch::new(recs)).await?;
    assert_eq!(r.base_offset, *next, "offsets stay dense");
    *next += 2;
    Ok(())
}

fn open(dir: &Path, faults: &Arc<FaultInjector>, clock: &ManualClock) -> LogStore {
    LogStore::open(dir, options(faults), Arc::new(clock.clone())).unwrap()
}

#[tokio::test]
async fn full_disk_fails_appends_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let clock = ManualClock::default();
    let s = open(dir.path(), &faults, &clock);
    let cfg = TopicConfig {
        durability: Durability::Always,
        ..TopicConfig::with_partitions(1)
    };
    s.create_topic("f", cfg).await.unwrap();
    let mut next = 0;
    for _ in 0..40 {
        append(&s, &mut next).await.unwrap();
    }
    faults.set_disk_full(true);
    // Appends (also ones that would roll a segment) fail clearly; so do metadata writes.
    for _ in 0..60 {
        match append(&s, &mut next).await {
            Err(StoreError::StorageFull(m)) => assert!(!m.is_empty()),
            other => panic!("expected StorageFull, got {other:?}"),
        }
    }
    let commit = OffsetCommit {
        topic: "f".into(),
        partition: 0,
        offset: 5,
        leader_epoch: None,
        metadata: String::new(),
    };
    assert!(matches!(
        s.commit_offsets("g", std::slice::from_ref(&commit)).await,
        Err(StoreError::StorageFull(_))
    ));
    assert!(StoreError::StorageFull(String::new()).is_retriable());
    check(&s, next).await;
    faults.set_disk_full(false);
    for _ in 0..40 {
        append(&s, &mut next).await.unwrap();
    }
    s.commit_offsets("g", &[commit]).await.unwrap();
    check(&s, next).await;
    s.close().await.unwrap();
    let s = open(dir.path(), &faults, &clock);
    check(&s, next).await;
    assert_eq!(
        s.committed_offset("g", "f", 0)
            .await
            .unwrap()
            .unwrap()
            .offset,
        5
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn torn_writes_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let clock = ManualClock::default();
    let s = open(dir.path(), &faults, &clock);
    s.create_topic("f", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let mut next = 0;
    for round in 0..30 {
        append(&s, &mut next).await.unwrap();
        // The next write stores only a prefix and fails, as on a disk that just filled up.
        faults.fail_write_after(0, 1 + round * 7);
        assert!(matches!(
            append(&s, &mut next).await,
            Err(StoreError::StorageFull(_))
        ));
    }
    check(&s, next).await;
    // Crash (no close): recovery must find exactly the acknowledged records.
    drop(s);
    let s = open(dir.path(), &faults, &clock);
    check(&s, next).await;
    append(&s, &mut next).await.unwrap();
    // Leasing and acking while the journal's writes fail: the ack is refused, not lost.
    let leases = s
        .lease("f", 0, "q", 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leases.len(), 2);
    faults.set_disk_full(true);
    let r = s.ack("f", "q", &[leases[0].token]).await;
    assert!(matches!(r, Err(StoreError::StorageFull(_))), "{r:?}");
    faults.set_disk_full(false);
    let r = s.ack("f", "q", &[leases[0].token]).await.unwrap();
    assert!(r[0].is_ok());
    s.close().await.unwrap();
    let s = open(dir.path(), &faults, &clock);
    check(&s, next).await;
    assert_eq!(s.lease_counts("f", 0, "q").await.unwrap().done, 1);
    s.close().await.unwrap();
}
