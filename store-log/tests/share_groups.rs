//! The share-group calls of the log store (lease-start resets, lease-group deletion, group
//! configs, archiving past `max_deliveries`) after a crash: the store is dropped without
//! `close` and reopened, so the metadata journal is replayed (and, with a tiny
//! `snapshot_bytes`, the state comes back from snapshots). The conformance suite covers
//! the same calls over a clean close.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, Durability, LeaseGroupConfig, ManualClock, Record, Store, StoreError, TopicConfig,
};
use store_log::{LogOptions, LogStore};

const MIN: Duration = Duration::from_secs(60);

fn open(dir: &Path, clock: &ManualClock, snapshot_bytes: u64) -> LogStore {
    let opts = LogOptions {
        snapshot_bytes,
        ..LogOptions::default()
    };
    LogStore::open(dir, opts, Arc::new(clock.clone())).expect("open")
}

fn offsets(l: &[broker_api::Lease]) -> Vec<i64> {
    l.iter().map(|l| l.record.offset).collect()
}

fn counts(c: broker_api::LeaseCounts) -> (u64, u64, u64, u64, u64) {
    (c.available, c.leased, c.delayed, c.done, c.dead_lettered)
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Builds state with every new kind of journal entry, "crashes", and checks it came back.
async fn crash_and_replay(snapshot_bytes: u64) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let s = open(dir.path(), &clock, snapshot_bytes);
    let cfg = |durability| TopicConfig {
        durability,
        ..TopicConfig::with_partitions(2)
    };
    s.create_topic("q", cfg(Durability::Always)).await.unwrap();
    s.create_topic("lazy", cfg(Durability::Interval { ms: 60_000 }))
        .await
        .unwrap();
    let archive = LeaseGroupConfig {
        max_deliveries: Some(1),
        dead_letter_topic: None,
        ordered_by_key: false,
        read_uncommitted: false,
    };
    s.set_lease_group("q", "g", archive.clone()).await.unwrap();
    let recs = (0..6)
        .map(|i| Record::from_value(format!("m{i}")))
        .collect();
    s.append("q", 0, AppendBatch::new(recs)).await.unwrap();
    // g: 0 archived (leased once, lapsed), 1..6 acked: everything done, floor 6.
    let l = s.lease("q", 0, "g", 1, Duration::ZERO).await.unwrap();
    assert_eq!(offsets(&l), vec![0]);
    let l = s.lease("q", 0, "g", 10, MIN).await.unwrap();
    assert_eq!(offsets(&l), vec![1, 2, 3, 4, 5], "0 archived by this call");
    let tokens: Vec<_> = l.iter().map(|l| l.token).collect();
    assert!(s
        .ack("q", "g", &tokens)
        .await
        .unwrap()
        .iter()
        .all(|r| r.is_ok()));
    assert_eq!(
        counts(s.lease_counts("q", 0, "g").await.unwrap()),
        (0, 0, 0, 6, 1)
    );
    // Back to 2, then 2 and 3 leased again and 2 acked: a reset followed by lease entries.
    assert_eq!(s.reset_lease_start("q", 0, "g", 2).await.unwrap(), 2);
    let again = s.lease("q", 0, "g", 2, MIN).await.unwrap();
    assert_eq!(offsets(&again), vec![2, 3]);
    assert_eq!(
        again.iter().map(|l| l.delivery_count).collect::<Vec<_>>(),
        vec![1, 1]
    );
    assert!(s.ack("q", "g", &[again[0].token]).await.unwrap()[0].is_ok());
    // h: state on both partitions and a config, deleted; k: a reset only.
    s.set_lease_group("q", "h", LeaseGroupConfig::default())
        .await
        .unwrap();
    s.append("q", 1, AppendBatch::new(vec![Record::from_value("p1")]))
        .await
        .unwrap();
    s.lease("q", 0, "h", 3, MIN).await.unwrap();
    s.lease("q", 1, "h", 3, MIN).await.unwrap();
    assert!(s.delete_lease_group("q", "h").await.unwrap());
    assert_eq!(s.reset_lease_start("q", 1, "k", 5).await.unwrap(), 1);
    // A reset on an `interval` topic: its journal entry is synced by close or the flusher,
    // not before returning; it is in the page cache when the process "crashes" here.
    s.append("lazy", 0, AppendBatch::new(vec![Record::from_value("x")]))
        .await
        .unwrap();
    assert_eq!(s.reset_lease_start("lazy", 0, "g", 1).await.unwrap(), 1);
    // Group configs: one kept, one replaced, one removed.
    s.set_group_config("kept", settings(&[("a", "1")]))
        .await
        .unwrap();
    s.set_group_config("replaced", settings(&[("a", "1"), ("b", "2")]))
        .await
        .unwrap();
    s.set_group_config("replaced", settings(&[("c", "3")]))
        .await
        .unwrap();
    s.set_group_config("removed", settings(&[("a", "1")]))
        .await
        .unwrap();
    s.set_group_config("removed", BTreeMap::new())
        .await
        .unwrap();
    drop(s);
    assert!(!dir.path().join(store_log::CLEAN_SHUTDOWN).exists());
    let report = store_log::verify(dir.path(), false).unwrap();
    assert!(report.is_clean(), "verify: {:?}", report.problems);

    let s = open(dir.path(), &clock, snapshot_bytes);
    assert_eq!(
        counts(s.lease_counts("q", 0, "g").await.unwrap()),
        (2, 1, 0, 3, 1),
        "g after replay: 0 and 1 done below the reset (0 still counted as archived), 2 \
         acked, 3 in flight, 4 and 5 available"
    );
    assert_eq!(s.lease_floor("q", 0, "g").await.unwrap(), 3);
    let mut groups = BTreeMap::new();
    groups.insert("g".to_string(), archive.clone());
    assert_eq!(s.lease_groups("q").await.unwrap(), {
        let mut g = groups.clone();
        g.insert("k".into(), LeaseGroupConfig::default());
        g
    });
    assert_eq!(
        counts(s.lease_counts("q", 0, "h").await.unwrap()),
        (6, 0, 0, 0, 0),
        "the deleted group has no state after replay"
    );
    assert!(matches!(
        s.ack("q", "h", &[again[1].token]).await.unwrap()[0],
        Err(StoreError::LeaseExpired)
    ));
    assert_eq!(
        counts(s.lease_counts("q", 1, "k").await.unwrap()),
        (0, 0, 0, 1, 0)
    );
    assert_eq!(
        counts(s.lease_counts("lazy", 0, "g").await.unwrap()),
        (0, 0, 0, 1, 0)
    );
    assert_eq!(
        s.list_group_configs().await.unwrap(),
        vec![
            ("kept".to_string(), settings(&[("a", "1")])),
            ("replaced".to_string(), settings(&[("c", "3")])),
        ]
    );
    // The archive limit applies to the reset records from delivery 1 again: 3 lapses and
    // is archived by the next lease call, which leases 4 and 5.
    clock.advance(60_000);
    let l = s.lease("q", 0, "g", 10, MIN).await.unwrap();
    assert_eq!(offsets(&l), vec![4, 5]);
    assert_eq!(
        counts(s.lease_counts("q", 0, "g").await.unwrap()),
        (0, 2, 0, 4, 2)
    );
    // A second crash right after a backward reset over everything.
    assert_eq!(s.reset_lease_start("q", 0, "g", 0).await.unwrap(), 0);
    drop(s);
    let s = open(dir.path(), &clock, snapshot_bytes);
    assert_eq!(
        counts(s.lease_counts("q", 0, "g").await.unwrap()),
        (6, 0, 0, 0, 0)
    );
    let l = s.lease("q", 0, "g", 10, MIN).await.unwrap();
    assert_eq!(offsets(&l), vec![0, 1, 2, 3, 4, 5]);
    assert!(l.iter().all(|l| l.delivery_count == 1));
    s.close().await.unwrap();
}

#[tokio::test]
async fn share_group_state_is_replayed_from_the_journal() {
    crash_and_replay(LogOptions::default().snapshot_bytes).await;
}

#[tokio::test]
async fn share_group_state_comes_back_from_snapshots() {
    // Every journal entry passes the limit: each change is followed by a snapshot.
    crash_and_replay(1).await;
}
