//! Criterion benches of the log store (issue 3): append (100 B and 1 KiB records; batches of
//! 1, 100 and 1000; each durability policy), catch-up fetch from the page cache, and timestamp
//! lookup; and the batch path (issue 16): appending a producer's Kafka batch as bytes, and a
//! catch-up fetch of whole stored batches.

use std::sync::Arc;
use std::time::Duration;

use benches::stores::{self, StoreEnv, StoreSpec};
use benches::workloads::{payload, prefill, TOPIC};
use broker_api::{
    AppendBatch, BatchLimits, Durability, FetchLimits, Record, Store, TimestampType, TopicConfig,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use tokio::runtime::Runtime;

fn env() -> StoreEnv {
    StoreEnv {
        data_dir: std::env::temp_dir(),
        database_url: None,
        pg_schema_prefix: "unused".into(),
    }
}

fn open(rt: &Runtime, durability: Durability, n: usize) -> stores::Opened {
    rt.block_on(async {
        let opened = stores::open(StoreSpec::Log(durability), &env(), n)
            .await
            .expect("open a log store");
        opened
            .store
            .create_topic(
                TOPIC,
                TopicConfig {
                    durability,
                    ..TopicConfig::with_partitions(1)
                },
            )
            .await
            .expect("create the topic");
        opened
    })
}

fn append(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let mut g = c.benchmark_group("log_append");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut n = 0;
    for durability in [Durability::Always, Durability::default(), Durability::Never] {
        for size in [100usize, 1024] {
            for batch in [1usize, 100, 1000] {
                n += 1;
                let opened = open(&rt, durability, n);
                let store: Arc<dyn Store> = opened.store.clone();
                let value = payload(size);
                let records: Vec<Record> = (0..batch)
                    .map(|_| Record::from_value(value.clone()))
                    .collect();
                g.throughput(Throughput::Elements(batch as u64));
                let id = BenchmarkId::new(
                    durability.to_string().replace(':', "-"),
                    format!("{size}B_b{batch}"),
                );
                g.bench_function(id, |b| {
                    b.to_async(&rt).iter(|| {
                        let store = store.clone();
                        let records = records.clone();
                        async move {
                            store
                                .append(TOPIC, 0, AppendBatch::new(records))
                                .await
                                .expect("append")
                        }
                    })
                });
                rt.block_on(opened.dispose(&env()));
            }
        }
    }
    g.finish();
}

fn fetch(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let mut g = c.benchmark_group("log_fetch_catch_up");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    for (i, size) in [100usize, 1024].into_iter().enumerate() {
        let opened = open(&rt, Durability::Never, 100 + i);
        let store = opened.store.clone();
        let total = (16 << 20) / size;
        rt.block_on(prefill(&store, TOPIC, size, total, None))
            .expect("prefill");
        g.throughput(Throughput::Bytes((total * size) as u64));
        g.bench_function(
            BenchmarkId::new("whole_partition", format!("{size}B")),
            |b| {
                b.to_async(&rt).iter(|| {
                    let store = store.clone();
                    async move {
                        let mut offset = 0i64;
                        while offset < total as i64 {
                            let got = store
                                .fetch(TOPIC, 0, offset, FetchLimits::default())
                                .await
                                .expect("fetch");
                            offset = got.records.last().expect("records below the end").offset + 1;
                        }
                    }
                })
            },
        );
        rt.block_on(opened.dispose(&env()));
    }
    g.finish();
}

fn timestamp_lookup(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let mut g = c.benchmark_group("log_timestamp_lookup");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    let opened = open(&rt, Durability::Never, 200);
    let store = opened.store.clone();
    let base = 1_767_225_600_000i64;
    let n = 200_000usize;
    rt.block_on(prefill(&store, TOPIC, 100, n, Some(base)))
        .expect("prefill");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    g.throughput(Throughput::Elements(1));
    g.bench_function("random_200k_records", |b| {
        b.to_async(&rt).iter(|| {
            let i = rng.gen_range(0..n as i64);
            let store = store.clone();
            async move {
                let got = store
                    .offset_for_timestamp(TOPIC, 0, base + i)
                    .await
                    .expect("lookup")
                    .expect("a record at or after the timestamp");
                assert_eq!(got.offset, i, "wrong offset for timestamp {}", base + i);
            }
        })
    });
    rt.block_on(opened.dispose(&env()));
    g.finish();
}

/// A producer's batch of `count` records of `size` bytes, as bytes.
fn kafka_batch(count: usize, size: usize) -> bytes::Bytes {
    let value = payload(size);
    let records: Vec<Record> = (0..count)
        .map(|_| Record::from_value(value.clone()))
        .collect();
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, &records, 1_767_225_600_000, None).expect("encode");
    bytes::Bytes::from(buf)
}

fn batch_path(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let mut g = c.benchmark_group("log_batches");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (i, size) in [100usize, 1024].into_iter().enumerate() {
        let opened = open(&rt, Durability::default(), 300 + i);
        let store = opened.store.clone();
        let batch = kafka_batch(1000, size);
        g.throughput(Throughput::Elements(1000));
        g.bench_function(
            BenchmarkId::new("append_batch", format!("{size}B_b1000")),
            |b| {
                b.to_async(&rt).iter(|| {
                    let store = store.clone();
                    let batch = batch.clone();
                    async move {
                        store
                            .append_batch(TOPIC, 0, batch, TimestampType::CreateTime)
                            .await
                            .expect("append_batch")
                    }
                })
            },
        );
        rt.block_on(opened.dispose(&env()));

        let opened = open(&rt, Durability::Never, 310 + i);
        let store = opened.store.clone();
        let total = (16 << 20) / size;
        rt.block_on(prefill(&store, TOPIC, size, total, None))
            .expect("prefill");
        g.throughput(Throughput::Bytes((total * size) as u64));
        g.bench_function(
            BenchmarkId::new("fetch_batches_whole_partition", format!("{size}B")),
            |b| {
                b.to_async(&rt).iter(|| {
                    let store = store.clone();
                    async move {
                        let mut offset = 0i64;
                        let limits = BatchLimits {
                            max_bytes: 1 << 20,
                            min_one: true,
                            read_committed: false,
                        };
                        while offset < total as i64 {
                            let got = store
                                .fetch_batches(TOPIC, 0, offset, limits)
                                .await
                                .expect("fetch_batches");
                            let last = got.chunks.last().expect("batches below the end");
                            let mut at = 0;
                            let mut next = offset;
                            while at < last.len() {
                                let h = kafka_batch::BatchHeader::read(&last[at..])
                                    .expect("a batch header");
                                next = h.last_offset() + 1;
                                at += h.total_len();
                            }
                            offset = next;
                        }
                    }
                })
            },
        );
        rt.block_on(opened.dispose(&env()));
    }
    g.finish();
}

criterion_group!(log_store, append, fetch, timestamp_lookup, batch_path);
criterion_main!(log_store);
