//! A rough throughput probe (not a benchmark): append batches of 1000 x 100 B records, then
//! lease + ack in batches of 100 with N concurrent leasers.
//! `DATABASE_URL=... cargo run --release -p store-postgres --example probe -- [leasers]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{AppendBatch, Record, Store, SystemClock, TopicConfig};
use store_postgres::{PgOptions, PgStore};

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let leasers: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(8);
    let schema = "probe";
    PgStore::drop_schema(&url, schema).await.unwrap();
    let store = Arc::new(
        PgStore::connect(
            &url,
            PgOptions {
                schema: schema.into(),
                pool_size: 16,
                ..PgOptions::default()
            },
            Arc::new(SystemClock),
        )
        .await
        .unwrap(),
    );
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let value = vec![b'x'; 100];
    let batches = 100;
    let start = Instant::now();
    for _ in 0..batches {
        let records = (0..1000)
            .map(|_| Record::from_value(value.clone()))
            .collect();
        store
            .append("t", 0, AppendBatch::new(records))
            .await
            .unwrap();
    }
    let el = start.elapsed();
    println!(
        "append: {:.0} records/s",
        (batches * 1000) as f64 / el.as_secs_f64()
    );
    let start = Instant::now();
    let tasks = (0..leasers).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0;
            let (mut tl, mut ta) = (Duration::ZERO, Duration::ZERO);
            loop {
                let t0 = Instant::now();
                let l = store
                    .lease("t", 0, "g", 100, Duration::from_secs(30))
                    .await
                    .unwrap();
                tl += t0.elapsed();
                if l.is_empty() {
                    if std::env::var("PROBE_VERBOSE").is_ok() {
                        println!("lease {tl:?} ack {ta:?}");
                    }
                    break n;
                }
                let tokens: Vec<_> = l.iter().map(|l| l.token).collect();
                let t1 = Instant::now();
                store.ack("t", "g", &tokens).await.unwrap();
                ta += t1.elapsed();
                n += l.len();
            }
        })
    });
    let total: usize = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    let el = start.elapsed();
    println!(
        "lease+ack with {leasers} leasers: {:.0} records/s ({total} records)",
        total as f64 / el.as_secs_f64()
    );

    raw_copy(&url, batches).await;
    naive(&url, leasers).await;
}

/// Baseline: binary COPY of the same rows (100 B values) into a bare table, 1000 per COPY.
async fn raw_copy(url: &str, batches: usize) {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute(
        "DROP TABLE IF EXISTS probe.bare; CREATE TABLE probe.bare (topic_id bigint, partition int, \"offset\" bigint, timestamp_ms bigint, value bytea)",
    )
    .await
    .unwrap();
    let value = vec![b'x'; 100];
    let start = Instant::now();
    for b in 0..batches {
        let sink = c
            .copy_in("COPY probe.bare FROM STDIN (FORMAT binary)")
            .await
            .unwrap();
        let mut w = std::pin::pin!(BinaryCopyInWriter::new(
            sink,
            &[Type::INT8, Type::INT4, Type::INT8, Type::INT8, Type::BYTEA]
        ));
        for i in 0..1000i64 {
            let off = b as i64 * 1000 + i;
            w.as_mut()
                .write(&[&1i64, &0i32, &off, &0i64, &value])
                .await
                .unwrap();
        }
        w.as_mut().finish().await.unwrap();
    }
    println!(
        "raw binary COPY into a bare table: {:.0} records/s",
        (batches * 1000) as f64 / start.elapsed().as_secs_f64()
    );
}

/// The seeds' naive queue: single-row INSERT, SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1, DELETE.
async fn naive(url: &str, workers: usize) {
    let connect = || async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c
    };
    let c = connect().await;
    c.batch_execute(
        "DROP TABLE IF EXISTS probe.naive; CREATE TABLE probe.naive (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
    )
    .await
    .unwrap();
    let n = 4_000;
    for _ in 0..n {
        c.execute(
            "INSERT INTO probe.naive (payload) VALUES ($1)",
            &[&vec![b'x'; 100]],
        )
        .await
        .unwrap();
    }
    let start = Instant::now();
    let tasks = (0..workers).map(|_| async {
        let mut c = connect().await;
        let mut got = 0;
        loop {
            let tx = c.transaction().await.unwrap();
            let row = tx
                .query_opt(
                    "SELECT id, payload FROM probe.naive ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1",
                    &[],
                )
                .await
                .unwrap();
            let Some(row) = row else { break got };
            let id: i64 = row.get(0);
            tx.execute("DELETE FROM probe.naive WHERE id = $1", &[&id])
                .await
                .unwrap();
            tx.commit().await.unwrap();
            got += 1;
        }
    });
    let total: usize = futures::future::join_all(tasks).await.into_iter().sum();
    println!(
        "naive claim+delete with {workers} workers: {:.0} records/s ({total} records)",
        total as f64 / start.elapsed().as_secs_f64()
    );
}
