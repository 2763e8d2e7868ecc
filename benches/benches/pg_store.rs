//! Criterion benches of the Postgres store (issue 4): append of 100 B records in batches of
//! 1000, and lease + ack of 100 records. Needs DATABASE_URL.

use std::time::Duration;

use benches::stores::{self, StoreEnv, StoreSpec};
use benches::workloads::{payload, prefill, TOPIC};
use broker_api::{AppendBatch, Record, TopicConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::runtime::Runtime;

fn env() -> StoreEnv {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("DATABASE_URL must name a PostgreSQL server for the postgres benches");
    StoreEnv {
        data_dir: std::env::temp_dir(),
        database_url: Some(url),
        pg_schema_prefix: format!("bench_crit_{}", std::process::id()),
    }
}

fn pg(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let env = env();
    let mut g = c.benchmark_group("postgres");
    g.sample_size(10).measurement_time(Duration::from_secs(3));

    let opened = rt
        .block_on(stores::open(StoreSpec::Postgres, &env, 1))
        .expect("open the postgres store");
    let store = opened.store.clone();
    rt.block_on(store.create_topic(TOPIC, TopicConfig::with_partitions(1)))
        .expect("create the topic");
    let value = payload(100);
    let records: Vec<Record> = (0..1000)
        .map(|_| Record::from_value(value.clone()))
        .collect();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("append_100B_b1000", |b| {
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

    // The batch path: a producer's batch of 1000 x 100 B appended as bytes (one row).
    let mut buf = Vec::new();
    kafka_batch::encode_records(&mut buf, &records, 1_767_225_600_000, None).expect("encode");
    let batch = bytes::Bytes::from(buf);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("append_batch_100B_b1000", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            let batch = batch.clone();
            async move {
                store
                    .append_batch(TOPIC, 0, batch, broker_api::TimestampType::CreateTime)
                    .await
                    .expect("append_batch")
            }
        })
    });

    // Lease + ack: refill whenever the backlog runs out, outside the timing.
    g.throughput(Throughput::Elements(100));
    g.bench_function("lease_ack_b100", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = std::time::Instant::now();
                    let mut leases = store
                        .lease(TOPIC, 0, "bench", 100, Duration::from_secs(60))
                        .await
                        .expect("lease");
                    let mut refill = Duration::ZERO;
                    if leases.len() < 100 {
                        let r = std::time::Instant::now();
                        prefill(&store, TOPIC, 100, 100_000, None)
                            .await
                            .expect("refill");
                        refill = r.elapsed();
                        leases.extend(
                            store
                                .lease(TOPIC, 0, "bench", 100, Duration::from_secs(60))
                                .await
                                .expect("lease"),
                        );
                    }
                    let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
                    for r in store.ack(TOPIC, "bench", &tokens).await.expect("ack") {
                        r.expect("ack of a fresh lease");
                    }
                    spent += t.elapsed().saturating_sub(refill);
                }
                spent
            }
        })
    });
    g.finish();
    rt.block_on(opened.dispose(&env));
}

criterion_group!(pg_store, pg);
criterion_main!(pg_store);
