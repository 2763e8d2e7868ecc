//! Reads, appends, segment rolls and retention at the same time on one partition.

use std::sync::Arc;

use broker_api::{AppendBatch, FetchLimits, ManualClock, Record, Store, StoreError, TopicConfig};
use store_log::{LogOptions, LogStore};

fn value(writer: u64, i: u64) -> String {
    format!("w{writer}-{i}-{}", "k".repeat((i % 20) as usize))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_during_appends_rolls_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        segment_bytes: 4 << 10,
        index_interval_bytes: 256,
        index_bytes: 1 << 10,
        ..LogOptions::default()
    };
    let s = Arc::new(LogStore::open(dir.path(), opts, Arc::new(ManualClock::default())).unwrap());
    s.create_topic("c", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let per_writer = 1500u64;
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while i < per_writer {
                let n = (1 + i % 3).min(per_writer - i);
                let recs = (i..i + n)
                    .map(|k| Record::from_value(value(w, k)))
                    .collect();
                s.append("c", 0, AppendBatch::new(recs)).await.unwrap();
                i += n;
                tokio::task::yield_now().await;
            }
        }));
    }
    let total = (2 * per_writer) as i64;
    // Retention runs alongside: the log start creeps up behind the writers.
    let trimmer = {
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                let o = s.partition_offsets("c", 0).await.unwrap();
                if o.high_watermark >= total {
                    break;
                }
                s.delete_records("c", 0, o.high_watermark / 2)
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    // The reader sees each writer's records in its own order, at dense offsets.
    let mut next = 0i64;
    let mut last_seen = [-1i64; 2];
    while next < total {
        match s
            .fetch(
                "c",
                0,
                next,
                FetchLimits {
                    max_records: 200,
                    max_bytes: 8 << 10,
                },
            )
            .await
        {
            Ok(f) => {
                for r in f.records {
                    assert_eq!(r.offset, next, "dense offsets");
                    let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                    let mut parts = v.splitn(3, '-');
                    let w: usize = parts.next().unwrap()[1..].parse().unwrap();
                    let i: i64 = parts.next().unwrap().parse().unwrap();
                    assert_eq!(v, value(w as u64, i as u64), "record {next} damaged");
                    assert!(
                        i > last_seen[w],
                        "writer {w}'s records out of order at {next}"
                    );
                    last_seen[w] = i;
                    next += 1;
                }
                tokio::task::yield_now().await;
            }
            Err(StoreError::OffsetOutOfRange { log_start, .. }) if log_start > next => {
                next = log_start;
                last_seen = [-1; 2];
            }
            Err(e) => panic!("fetch at {next}: {e}"),
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    trimmer.await.unwrap();
    assert_eq!(
        s.partition_offsets("c", 0).await.unwrap().high_watermark,
        total
    );
    s.close().await.unwrap();
}
