//! Group commit: with `always`, appenders (and ackers) that wait together share one fsync.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{AppendBatch, Durability, ManualClock, Record, Store, TopicConfig};
use store_log::{FaultInjector, LogOptions, LogStore};

/// A store on a fresh directory with a fault injector, and a one-partition `always` topic.
async fn store_with_always_topic(
    topic: &str,
) -> (tempfile::TempDir, Arc<FaultInjector>, Arc<LogStore>) {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let opts = LogOptions {
        faults: Some(faults.clone()),
        ..LogOptions::default()
    };
    let s = Arc::new(LogStore::open(dir.path(), opts, Arc::new(ManualClock::default())).unwrap());
    let cfg = TopicConfig {
        durability: Durability::Always,
        ..TopicConfig::with_partitions(1)
    };
    s.create_topic(topic, cfg).await.unwrap();
    (dir, faults, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_always_appends_share_fsyncs() {
    let (_dir, faults, s) = store_with_always_topic("g").await;
    // A slow disk: every fsync takes 30 ms, so appenders pile up behind the one running.
    faults.set_sync_delay_ms(30);
    let before = faults.data_syncs();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append(
                "g",
                0,
                AppendBatch::new(vec![Record::from_value(format!("v{i}"))]),
            )
            .await
            .unwrap()
            .base_offset
        }));
    }
    let mut offsets = Vec::new();
    for t in tasks {
        offsets.push(t.await.unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..64).collect::<Vec<i64>>());
    let log_syncs = faults.data_syncs() - before;
    assert!(log_syncs >= 1, "always appends were never synced");
    assert!(
        log_syncs <= 16,
        "64 concurrent appends took {log_syncs} fsyncs: no group commit"
    );

    // Acks under `always` share journal fsyncs the same way.
    let leases = s
        .lease("g", 0, "q", 64, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leases.len(), 64);
    let before = faults.data_syncs();
    let mut tasks = Vec::new();
    for l in leases {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.ack("g", "q", &[l.token]).await.unwrap()[0]
                .clone()
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ack_syncs = faults.data_syncs() - before;
    assert!(ack_syncs >= 1, "always acks were never synced");
    assert!(
        ack_syncs <= 16,
        "64 concurrent acks took {ack_syncs} fsyncs: no group commit"
    );
    assert_eq!(s.lease_counts("g", 0, "q").await.unwrap().done, 64);
    s.close().await.unwrap();
}

/// Waits until at least one data sync beyond `before` has started.
async fn sync_started(faults: &FaultInjector, before: u64) {
    for _ in 0..2000 {
        if faults.data_syncs() > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("no fsync started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_records_are_invisible_until_synced() {
    let (_dir, faults, s) = store_with_always_topic("v").await;
    s.append("v", 0, AppendBatch::new(vec![Record::from_value("a")]))
        .await
        .unwrap();

    // A slow disk: the second append's bytes are written, its fsync is running.
    faults.set_sync_delay_ms(400);
    let before = faults.data_syncs();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            s.append("v", 0, AppendBatch::new(vec![Record::from_value("b")]))
                .await
                .unwrap()
        })
    };
    sync_started(&faults, before).await;
    let offs = s.partition_offsets("v", 0).await.unwrap();
    assert_eq!(
        offs.high_watermark, 1,
        "high watermark counts an unsynced record"
    );
    let f = s
        .fetch("v", 0, 0, broker_api::FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records.len(), 1, "fetch returned an unsynced record");
    assert_eq!(f.high_watermark, 1);
    assert!(
        !s.wait_for("v", 0, 1, Duration::from_millis(50))
            .await
            .unwrap(),
        "wait_for woke for an unsynced record"
    );
    let leased = s
        .lease("v", 0, "q", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leased.len(), 1, "an unsynced record was leased");

    let res = writer.await.unwrap();
    assert_eq!(res.base_offset, 1);
    // Once the append has returned, its record is visible everywhere.
    assert_eq!(s.partition_offsets("v", 0).await.unwrap().high_watermark, 2);
    let f = s
        .fetch("v", 0, 1, broker_api::FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records.len(), 1);
    assert_eq!(f.records[0].value.as_deref(), Some(&b"b"[..]));
    faults.set_sync_delay_ms(0);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_record_of_a_cancelled_append_becomes_visible() {
    let (_dir, faults, s) = store_with_always_topic("c").await;
    faults.set_sync_delay_ms(200);
    // The caller gives up while the fsync runs (a client that disconnects).
    let call = s.append("c", 0, AppendBatch::new(vec![Record::from_value("x")]));
    let waited = tokio::time::timeout(Duration::from_millis(20), call).await;
    assert!(
        waited.is_err(),
        "the append finished before its 200 ms fsync"
    );
    faults.set_sync_delay_ms(0);
    // Nobody appends again; the record is written, so it must become visible by itself.
    assert!(
        s.wait_for("c", 0, 0, Duration::from_secs(5)).await.unwrap(),
        "the record of a cancelled always append never became visible"
    );
    let f = s
        .fetch("c", 0, 0, broker_api::FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records[0].value.as_deref(), Some(&b"x"[..]));
    s.close().await.unwrap();
}

#[tokio::test]
async fn appends_start_writeback_early_except_under_always() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let opts = LogOptions {
        faults: Some(faults.clone()),
        ..LogOptions::default()
    };
    let s = LogStore::open(dir.path(), opts, Arc::new(ManualClock::default())).unwrap();
    let value = bytes::Bytes::from(vec![1u8; 100 << 10]);
    let mut counts = Vec::new();
    for (name, durability) in [
        ("n", Durability::Never),
        ("i", Durability::default()),
        ("a", Durability::Always),
    ] {
        let cfg = TopicConfig {
            durability,
            ..TopicConfig::with_partitions(1)
        };
        s.create_topic(name, cfg).await.unwrap();
        let before = faults.writebacks();
        // 4 MB in 40 appends of 100 KB.
        for _ in 0..40 {
            s.append(
                name,
                0,
                AppendBatch::new(vec![Record::from_value(value.clone())]),
            )
            .await
            .unwrap();
        }
        counts.push(faults.writebacks() - before);
    }
    assert!(
        (3..=4).contains(&counts[0]) && (3..=4).contains(&counts[1]),
        "one writeback per MiB appended under never and interval: {counts:?}"
    );
    assert_eq!(counts[2], 0, "always syncs every append: {counts:?}");
    s.close().await.unwrap();
}
