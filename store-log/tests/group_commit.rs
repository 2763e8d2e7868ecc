//! Group commit: with `always`, appenders (and ackers) that wait together share one fsync.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{AppendBatch, Durability, ManualClock, Record, Store, TopicConfig};
use store_log::{FaultInjector, LogOptions, LogStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_always_appends_share_fsyncs() {
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
    s.create_topic("g", cfg).await.unwrap();
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
