//! A rough speed check of the log store (the real benchmarks live in `benches`):
//! `cargo run --release -p store-log --example speed [dir]`.

use std::sync::Arc;
use std::time::Instant;

use broker_api::{AppendBatch, Durability, FetchLimits, Record, Store, SystemClock, TopicConfig};
use bytes::Bytes;
use store_log::{LogOptions, LogStore};

#[tokio::main]
async fn main() {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir_in(base.unwrap_or_else(std::env::temp_dir)).unwrap();
    let mut opts = LogOptions::default();
    if let Some(b) = std::env::var("SEGMENT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        opts.segment_bytes = b;
    }
    let store = Arc::new(LogStore::open(tmp.path(), opts, Arc::new(SystemClock)).unwrap());
    let durability = match std::env::var("DURABILITY") {
        Ok(d) => d.parse().unwrap(),
        Err(_) => Durability::default(),
    };
    let size: usize = std::env::var("VALUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let cfg = TopicConfig {
        durability,
        ..TopicConfig::with_partitions(1)
    };
    store.create_topic("i", cfg).await.unwrap();
    let value = Bytes::from(vec![b'x'; size]);
    let per_batch: usize = std::env::var("BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let batch: Vec<Record> = (0..per_batch)
        .map(|_| Record::from_value(value.clone()))
        .collect();
    let total: usize = std::env::var("BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000_000);
    let n = total / (size + 6) / per_batch;
    let t = Instant::now();
    for _ in 0..n {
        store
            .append("i", 0, AppendBatch::new(batch.clone()))
            .await
            .unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "append {durability}: {:.2} M records/s, {:.0} MB/s of values",
        n as f64 * per_batch as f64 / secs / 1e6,
        n as f64 * per_batch as f64 * size as f64 / secs / 1e6
    );
    let t = Instant::now();
    store.sync_all().unwrap();
    println!(
        "with a sync at the end: {:.0} MB/s of values",
        n as f64 * per_batch as f64 * size as f64 / (secs + t.elapsed().as_secs_f64()) / 1e6
    );

    if std::env::var("REOPEN").is_ok() {
        store.close().await.unwrap();
        drop(store);
        let t = Instant::now();
        let s = LogStore::open(tmp.path(), LogOptions::default(), Arc::new(SystemClock)).unwrap();
        println!("clean reopen: {:.3} s", t.elapsed().as_secs_f64());
        s.close().await.unwrap();
        return;
    }
    let passes = if std::env::var("APPEND_ONLY").is_ok() {
        0
    } else {
        3
    };
    for _ in 0..passes {
        let t = Instant::now();
        let mut off = 0i64;
        let mut bytes = 0usize;
        loop {
            let f = store
                .fetch(
                    "i",
                    0,
                    off,
                    FetchLimits {
                        max_records: 100_000,
                        max_bytes: 8 << 20,
                    },
                )
                .await
                .unwrap();
            if f.records.is_empty() {
                break;
            }
            off = f.records.last().unwrap().offset + 1;
            bytes += f.records.iter().map(|r| r.size()).sum::<usize>();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "fetch: {:.2} GB/s ({} records)",
            bytes as f64 / secs / 1e9,
            off
        );
    }
    if passes == 0 {
        return;
    }

    let cfg = TopicConfig {
        durability: Durability::Always,
        ..TopicConfig::with_partitions(1)
    };
    store.create_topic("a", cfg).await.unwrap();
    let one = || AppendBatch::new(vec![Record::from_value(value.clone())]);
    let t = Instant::now();
    for _ in 0..200 {
        store.append("a", 0, one()).await.unwrap();
    }
    let single = 200.0 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let s = store.clone();
        let v = value.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                s.append(
                    "a",
                    0,
                    AppendBatch::new(vec![Record::from_value(v.clone())]),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let many = 64.0 * 50.0 / t.elapsed().as_secs_f64();
    println!(
        "always: 1 appender {single:.0}/s, 64 appenders {many:.0}/s, ratio {:.1}",
        many / single
    );
    store.close().await.unwrap();
}
