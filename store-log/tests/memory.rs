//! Reads go through memory mappings of the segments; the pages they touch must not stay in
//! the process's resident set (a broker that reads its whole log would otherwise look as big
//! as its log to operators and to the OOM killer). Alone in its file: it reads this process's
//! `/proc/self/status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{AppendBatch, FetchLimits, Record, Store, SystemClock, TopicConfig};
use bytes::Bytes;
use store_log::{LogOptions, LogStore};

/// Resident file-backed memory of this process, in MiB.
fn rss_file_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("RssFile:"))
        .expect("RssFile in /proc/self/status");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_through_mappings_leave_the_resident_set() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        // Two sealed segments and an active one, all read through mappings.
        segment_bytes: 24 << 20,
        ..LogOptions::default()
    };
    let s = LogStore::open(dir.path(), opts, Arc::new(SystemClock)).unwrap();
    s.create_topic("m", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let value = Bytes::from(vec![9u8; 64 << 10]);
    let total = 64 << 20;
    for _ in 0..total / (64 << 10) / 16 {
        let batch = vec![Record::from_value(value.clone()); 16];
        s.append("m", 0, AppendBatch::new(batch)).await.unwrap();
    }
    s.sync_all().unwrap();

    let before = rss_file_mib();
    let mut next = 0i64;
    let mut read = 0usize;
    let mut peak = before;
    loop {
        let f = s
            .fetch(
                "m",
                0,
                next,
                FetchLimits {
                    max_records: 1000,
                    max_bytes: 4 << 20,
                },
            )
            .await
            .unwrap();
        let Some(last) = f.records.last() else { break };
        next = last.offset + 1;
        read += f.records.iter().map(|r| r.size()).sum::<usize>();
        peak = peak.max(rss_file_mib());
    }
    assert_eq!(read, total);
    assert!(
        peak >= before + 16,
        "reading {} MiB through mappings did not show in RssFile ({before} -> {peak} MiB); \
         the test cannot see the effect it checks",
        total >> 20
    );
    // The store lets go of them within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = rss_file_mib();
        if now <= before + 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pages read through mappings stay resident: {before} -> {peak} -> {now} MiB"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.close().await.unwrap();
}
