//! Appends encode through a few shared buffers: a partition must not hold on to the buffer of
//! its largest batch (with one buffer per partition, memory grew with partitions times batch
//! size: 1 MiB batches to a few thousand partitions held gigabytes). Alone in its file: it
//! reads this process's `/proc/self/status`.

use std::sync::Arc;

use broker_api::{AppendBatch, Record, Store, SystemClock, TopicConfig};
use bytes::Bytes;
use store_log::{LogOptions, LogStore};

/// Resident anonymous memory of this process, in MiB.
fn rss_anon_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .expect("RssAnon in /proc/self/status");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_to_many_partitions_leave_no_buffer_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = LogStore::open(dir.path(), LogOptions::default(), Arc::new(SystemClock)).unwrap();
    let partitions = 128;
    s.create_topic("wide", TopicConfig::with_partitions(partitions))
        .await
        .unwrap();
    let value = Bytes::from(vec![7u8; 64 << 10]);
    let before = rss_anon_mib();
    for p in 0..partitions as i32 {
        // One 1 MiB batch per partition.
        let batch = vec![Record::from_value(value.clone()); 16];
        s.append("wide", p, AppendBatch::new(batch)).await.unwrap();
    }
    let grown = rss_anon_mib().saturating_sub(before);
    // 128 MiB were encoded; at most a few buffers may stay.
    assert!(
        grown < 48,
        "anonymous memory grew by {grown} MiB after 1 MiB batches to {partitions} partitions"
    );
}
