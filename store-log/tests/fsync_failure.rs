//! A failed fsync, produced with the store's fault injector. After one, the kernel may have
//! dropped the unsynced pages while reporting later fsyncs as good, so the partition must
//! take no more writes and show readers nothing more until the store is reopened.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, Durability, FetchLimits, ManualClock, Record, Store, StoreError, TopicConfig,
};
use store_log::{FaultInjector, LogOptions, LogStore};

fn open(dir: &Path, faults: Option<&Arc<FaultInjector>>) -> LogStore {
    let opts = LogOptions {
        faults: faults.cloned(),
        ..LogOptions::default()
    };
    LogStore::open(dir, opts, Arc::new(ManualClock::default())).unwrap()
}

async fn values(s: &LogStore, topic: &str) -> Vec<String> {
    let f = s.fetch(topic, 0, 0, FetchLimits::default()).await.unwrap();
    f.records
        .iter()
        .map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap())
        .collect()
}

async fn append(s: &LogStore, topic: &str, v: &str) -> Result<i64, StoreError> {
    s.append(
        topic,
        0,
        AppendBatch::new(vec![Record::from_value(v.to_string())]),
    )
    .await
    .map(|r| r.base_offset)
}

fn topic(durability: Durability) -> TopicConfig {
    TopicConfig {
        durability,
        ..TopicConfig::with_partitions(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_partition_takes_no_writes_after_a_failed_fsync_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let s = open(dir.path(), Some(&faults));
    s.create_topic("a", topic(Durability::Always))
        .await
        .unwrap();
    s.create_topic("other", topic(Durability::Always))
        .await
        .unwrap();
    assert_eq!(append(&s, "a", "one").await.unwrap(), 0);

    faults.fail_next_syncs(1);
    let err = append(&s, "a", "two").await.unwrap_err();
    assert!(
        matches!(err, StoreError::Internal(_)),
        "a failed fsync must fail the append: {err:?}"
    );
    // The disk answers again, but the partition stays failed: nothing more is shown or taken,
    // not even by the background sync that makes stranded records visible.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(values(&s, "a").await, ["one"]);
    assert_eq!(s.partition_offsets("a", 0).await.unwrap().high_watermark, 1);
    let err = append(&s, "a", "three").await.unwrap_err();
    assert!(
        err.to_string().contains("until the store is reopened"),
        "the error must say what to do: {err}"
    );
    // Other partitions are not affected.
    assert_eq!(append(&s, "other", "x").await.unwrap(), 0);
    assert!(
        s.close().await.is_err(),
        "close must report the failed partition"
    );
    drop(s);

    // Reopened (recovery, no clean-shutdown marker): the partition takes writes again.
    assert!(!dir.path().join(store_log::CLEAN_SHUTDOWN).exists());
    let s = open(dir.path(), None);
    let before = values(&s, "a").await;
    assert_eq!(before[0], "one");
    let next = append(&s, "a", "four").await.unwrap();
    assert_eq!(next, before.len() as i64);
    assert_eq!(values(&s, "other").await, ["x"]);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_partition_stops_after_a_failed_background_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let s = open(dir.path(), Some(&faults));
    s.create_topic("i", topic(Durability::Interval { ms: 20 }))
        .await
        .unwrap();
    faults.fail_next_syncs(1);
    assert_eq!(append(&s, "i", "one").await.unwrap(), 0);
    // The background fsync fails within a few intervals; then appends are refused.
    let mut refused = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Err(e) = append(&s, "i", "more").await {
            refused = Some(e);
            break;
        }
    }
    let err = refused.expect("appends went on after a failed background fsync");
    assert!(
        err.to_string().contains("until the store is reopened"),
        "{err}"
    );
    assert_eq!(values(&s, "i").await[0], "one");
    drop(s);
    let s = open(dir.path(), None);
    let n = values(&s, "i").await.len() as i64;
    assert_eq!(append(&s, "i", "again").await.unwrap(), n);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_takes_no_entries_after_a_failed_fsync_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let s = open(dir.path(), Some(&faults));
    s.create_topic("q", topic(Durability::Always))
        .await
        .unwrap();
    for v in ["one", "two"] {
        append(&s, "q", v).await.unwrap();
    }
    let leases = s
        .lease("q", 0, "g", 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(leases.len(), 2);

    // The ack's journal fsync fails: the ack is not confirmed.
    faults.fail_next_syncs(1);
    let r = s.ack("q", "g", &[leases[0].token]).await;
    assert!(
        r.is_err(),
        "an ack whose journal fsync failed was confirmed: {r:?}"
    );
    // Then no journal entry is taken, even with a healthy disk.
    let err = s.ack("q", "g", &[leases[1].token]).await.unwrap_err();
    assert!(err.to_string().contains("until it is reopened"), "{err}");
    let commit = broker_api::OffsetCommit {
        topic: "q".into(),
        partition: 0,
        offset: 1,
        leader_epoch: None,
        metadata: String::new(),
    };
    assert!(s
        .commit_offsets("grp", std::slice::from_ref(&commit))
        .await
        .is_err());
    // Appends (the log, not the journal) still work.
    assert_eq!(append(&s, "q", "three").await.unwrap(), 2);
    assert!(s.close().await.is_err());
    drop(s);

    let s = open(dir.path(), None);
    s.commit_offsets("grp", &[commit]).await.unwrap();
    assert_eq!(values(&s, "q").await, ["one", "two", "three"]);
    s.close().await.unwrap();
}
