//! Transactions on the PostgreSQL store: a schema of the version before them is migrated,
//! and the store-specific paths (record fetches over runs of markers, the fast lease path,
//! per-topic and retention clean-up of the transaction tables).

mod support;

use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AbortedTxn, AppendBatch, BatchLimits, FetchLimits, LeaseGroupConfig, ProducerBatch, Record,
    Store, TimestampType, TopicConfig, TxnMarker,
};
use bytes::Bytes;
use store_postgres::SCHEMA_VERSION;
use support::{database_url, fresh_store, open_store};

const LONG: Duration = Duration::from_secs(3600);

const COMMITTED: BatchLimits = BatchLimits {
    max_bytes: 1 << 20,
    min_one: true,
    read_committed: true,
};

async fn sql(query: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client.query(query, &[]).await.expect(query)
}

async fn count(query: &str) -> i64 {
    sql(query).await[0].get(0)
}

/// A batch of `n` records of a producer, transactional or only idempotent.
fn batch(producer_id: i64, first_sequence: i32, n: usize, txn: bool) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record::from_value(format!("p{producer_id}s{}", first_sequence + i as i32)))
        .collect();
    let mut buf = Vec::new();
    kafka_batch::encode_records(
        &mut buf,
        &records,
        1_000,
        Some(ProducerBatch {
            producer_id,
            epoch: 0,
            first_sequence,
        }),
    )
    .unwrap();
    if txn {
        kafka_batch::set_transactional(&mut buf);
    }
    Bytes::from(buf)
}

async fn send(store: &dyn Store, producer_id: i64, seq: i32, n: usize, txn: bool) -> i64 {
    store
        .append_batch(
            "t",
            0,
            batch(producer_id, seq, n, txn),
            TimestampType::CreateTime,
        )
        .await
        .unwrap()
        .base_offset
}

fn marker(producer_id: i64, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: 0,
        commit,
        coordinator_epoch: 1,
    }
}

/// A schema of version 6 (no transaction tables or columns) with records, an idempotent
/// producer and a lease group opens: migration 7 is applied, the old rows stay valid (plain
/// data batches, the producer's last append time read from its newest batch, the group reads
/// committed), and transactions work, for groups reading committed or uncommitted.
#[tokio::test]
async fn a_version_6_schema_is_migrated_for_transactions() {
    const { assert!(SCHEMA_VERSION >= 7) };
    let (store, clock) = fresh_store("pgt_v6_txn").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    clock.set(5_000);
    let p = store.init_producer_id().await.unwrap().producer_id;
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("old")]))
        .await
        .unwrap();
    assert_eq!(send(&store, p, 0, 2, false).await, 1);
    let old_group = LeaseGroupConfig {
        max_deliveries: Some(3),
        ..LeaseGroupConfig::default()
    };
    store
        .set_lease_group("t", "g", old_group.clone())
        .await
        .unwrap();
    store.close().await.unwrap();
    // Back to the version 6 shape.
    for stmt in [
        "DROP TABLE pgt_v6_txn.open_txns",
        "DROP TABLE pgt_v6_txn.aborted_txns",
        "ALTER TABLE pgt_v6_txn.batches DROP COLUMN txn, DROP COLUMN control",
        "ALTER TABLE pgt_v6_txn.producer_state DROP COLUMN last_timestamp_ms",
        "ALTER TABLE pgt_v6_txn.lease_groups DROP COLUMN read_uncommitted",
        "DELETE FROM pgt_v6_txn.schema_migrations WHERE version > 6",
    ] {
        sql(stmt).await;
    }
    clock.set(9_000);
    let store = open_store("pgt_v6_txn", Arc::new(clock.clone())).await;
    assert_eq!(
        count("SELECT max(version)::bigint FROM pgt_v6_txn.schema_migrations").await,
        i64::from(SCHEMA_VERSION)
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'pgt_v6_txn' AND table_name = 'lease_groups'
               AND column_name = 'read_uncommitted' AND data_type = 'boolean'
               AND is_nullable = 'NO' AND column_default = 'false'"
        )
        .await,
        1,
        "lease_groups.read_uncommitted added"
    );
    assert_eq!(
        store.lease_groups("t").await.unwrap().get("g"),
        Some(&old_group),
        "an existing group reads committed"
    );
    let o = store.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable_offset), (3, 3));
    let f = store
        .fetch("t", 0, 0, FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records.len(), 3, "old records are records");
    let producers = store.producer_states("t", 0).await.unwrap();
    assert_eq!(producers.len(), 1);
    assert_eq!(
        (producers[0].producer_id, producers[0].last_sequence),
        (p, 1)
    );
    assert_eq!(
        producers[0].last_timestamp_ms, 5_000,
        "the append time of the producer's newest batch"
    );
    // The same producer goes on transactionally; a second one aborts.
    let q = store.init_producer_id().await.unwrap().producer_id;
    assert_eq!(send(&store, p, 2, 1, true).await, 3);
    assert_eq!(send(&store, q, 0, 2, true).await, 4);
    assert_eq!(
        store
            .partition_offsets("t", 0)
            .await
            .unwrap()
            .last_stable_offset,
        3
    );
    assert_eq!(
        store
            .write_txn_marker("t", 0, marker(p, true))
            .await
            .unwrap(),
        6
    );
    assert_eq!(
        store
            .write_txn_marker("t", 0, marker(q, false))
            .await
            .unwrap(),
        7
    );
    let f = store.fetch_batches("t", 0, 0, COMMITTED).await.unwrap();
    assert_eq!(f.last_stable_offset, 8);
    assert_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: q,
            first_offset: 4
        }]
    );
    let leased: Vec<i64> = store
        .lease("t", 0, "g", 100, LONG)
        .await
        .unwrap()
        .iter()
        .map(|l| l.record.offset)
        .collect();
    assert_eq!(leased, vec![0, 1, 2, 3], "old and committed records");
    let uncommitted = LeaseGroupConfig {
        read_uncommitted: true,
        ..LeaseGroupConfig::default()
    };
    store
        .set_lease_group("t", "u", uncommitted.clone())
        .await
        .unwrap();
    let leased: Vec<i64> = store
        .lease("t", 0, "u", 100, LONG)
        .await
        .unwrap()
        .iter()
        .map(|l| l.record.offset)
        .collect();
    assert_eq!(leased, vec![0, 1, 2, 3, 4, 5], "aborted records too");
    let producers = store.producer_states("t", 0).await.unwrap();
    assert_eq!(producers[0].last_timestamp_ms, 9_000, "set by the marker");
    store.close().await.unwrap();
    let store = open_store("pgt_v6_txn", Arc::new(clock.clone())).await;
    let groups = store.lease_groups("t").await.unwrap();
    assert_eq!(
        (groups.get("g"), groups.get("u")),
        (Some(&old_group), Some(&uncommitted)),
        "both modes after reopen"
    );
    store.close().await.unwrap();
}

/// A record fetch from a run of markers longer than `max_records` reads on to the next
/// record instead of answering nothing.
#[tokio::test]
async fn record_fetch_reads_past_runs_of_markers() {
    let (store, _) = fresh_store("pgt_txn_markers").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let p = store.init_producer_id().await.unwrap().producer_id;
    assert_eq!(send(&store, p, 0, 1, true).await, 0);
    for _ in 0..5 {
        store
            .write_txn_marker("t", 0, marker(p, true))
            .await
            .unwrap(); // 1-5
    }
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("next")]))
        .await
        .unwrap(); // 6
    for from in 1..=6 {
        let f = store
            .fetch(
                "t",
                0,
                from,
                FetchLimits {
                    max_records: 1,
                    ..FetchLimits::default()
                },
            )
            .await
            .unwrap();
        let got: Vec<i64> = f.records.iter().map(|r| r.offset).collect();
        assert_eq!(got, vec![6], "fetch of one record from {from}");
    }
    let t = store
        .offset_for_timestamp("t", 0, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.offset, 0);
    store.close().await.unwrap();
}

/// Leases on the fast path stop at the last stable offset, and a range with a marker or
/// aborted records goes to the general path, which marks them done; counts add up on the way.
#[tokio::test]
async fn leases_meet_markers_on_both_paths() {
    let (store, clock) = fresh_store("pgt_txn_leases").await;
    clock.set(1_000);
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let a = store.init_producer_id().await.unwrap().producer_id;
    let b = store.init_producer_id().await.unwrap().producer_id;
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("x0")]))
        .await
        .unwrap(); // 0
    let offsets =
        |ls: Vec<broker_api::Lease>| ls.iter().map(|l| l.record.offset).collect::<Vec<_>>();
    assert_eq!(
        offsets(store.lease("t", 0, "g", 1, LONG).await.unwrap()),
        vec![0]
    );
    send(&store, a, 0, 3, true).await; // 1-3, aborted later
    send(&store, b, 0, 2, true).await; // 4-5, committed later
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("x6")]))
        .await
        .unwrap(); // 6
                   // The fast path applies (a lease is in flight, none due) and stops at 1.
    assert!(store.lease("t", 0, "g", 10, LONG).await.unwrap().is_empty());
    let c = store.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (1, 6, 0, 0));
    store
        .write_txn_marker("t", 0, marker(a, false))
        .await
        .unwrap(); // 7
    let c = store.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!(
        (c.leased, c.delayed, c.available, c.done),
        (1, 4, 0, 3),
        "aborted records before the last stable offset are done"
    );
    store
        .write_txn_marker("t", 0, marker(b, true))
        .await
        .unwrap(); // 8
    let c = store.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (1, 0, 3, 5));
    assert_eq!(
        offsets(store.lease("t", 0, "g", 2, LONG).await.unwrap()),
        vec![4, 5]
    );
    assert_eq!(
        offsets(store.lease("t", 0, "g", 10, LONG).await.unwrap()),
        vec![6]
    );
    let c = store.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (4, 0, 0, 5));
    // Plain records after the transactions take the fast path again.
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("x9")]))
        .await
        .unwrap(); // 9
    assert_eq!(
        offsets(store.lease("t", 0, "g", 10, LONG).await.unwrap()),
        vec![9]
    );
    store.close().await.unwrap();
}

/// A group reading uncommitted leases open and aborted transactions' records on the fast
/// path (no marker in range), skips markers on the general path (also on its later pages),
/// and its counts add up with nothing delayed by the last stable offset; a read-committed
/// group on the same partition still stops there.
#[tokio::test]
async fn read_uncommitted_leases_on_both_paths() {
    let (store, clock) = fresh_store("pgt_txn_uncommitted").await;
    clock.set(1_000);
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let uncommitted = LeaseGroupConfig {
        read_uncommitted: true,
        ..LeaseGroupConfig::default()
    };
    store
        .set_lease_group("t", "u", uncommitted.clone())
        .await
        .unwrap();
    let a = store.init_producer_id().await.unwrap().producer_id;
    let b = store.init_producer_id().await.unwrap().producer_id;
    let offsets =
        |ls: Vec<broker_api::Lease>| ls.iter().map(|l| l.record.offset).collect::<Vec<_>>();
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("x0")]))
        .await
        .unwrap(); // 0
    assert_eq!(
        offsets(store.lease("t", 0, "u", 1, LONG).await.unwrap()),
        vec![0]
    );
    send(&store, a, 0, 3, true).await; // 1-3, open
    let c = store.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (1, 0, 3, 0));
    // The fast path applies (a lease in flight, none due) and takes the open records.
    assert_eq!(
        offsets(store.lease("t", 0, "u", 2, LONG).await.unwrap()),
        vec![1, 2]
    );
    let c = store.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (3, 0, 1, 0));
    store
        .write_txn_marker("t", 0, marker(a, false))
        .await
        .unwrap(); // 4
    send(&store, b, 0, 2, true).await; // 5-6, open
    store
        .write_txn_marker("t", 0, marker(b, true))
        .await
        .unwrap(); // 7
    send(&store, a, 3, 1, true).await; // 8, open
    store
        .write_txn_marker("t", 0, marker(a, false))
        .await
        .unwrap(); // 9
    store
        .append("t", 0, AppendBatch::new(vec![Record::from_value("x10")]))
        .await
        .unwrap(); // 10
    send(&store, b, 2, 1, true).await; // 11, open
    let c = store.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!(
        (c.leased, c.delayed, c.available, c.done),
        (3, 0, 6, 3),
        "markers are done, aborted records available"
    );
    // Markers in range: the general path, paging one record at a time past them.
    let mut got = Vec::new();
    loop {
        let l = offsets(store.lease("t", 0, "u", 1, LONG).await.unwrap());
        if l.is_empty() {
            break;
        }
        got.extend(l);
    }
    assert_eq!(got, vec![3, 5, 6, 8, 10, 11]);
    let c = store.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (9, 0, 0, 3));
    // From the start again in one call: the general path over markers.
    store.reset_lease_start("t", 0, "u", 0).await.unwrap();
    assert_eq!(
        offsets(store.lease("t", 0, "u", 100, LONG).await.unwrap()),
        vec![0, 1, 2, 3, 5, 6, 8, 10, 11]
    );
    // A read-committed group stops at the open transaction and skips aborted records.
    assert_eq!(
        offsets(store.lease("t", 0, "g", 100, LONG).await.unwrap()),
        vec![0, 5, 6, 10]
    );
    let c = store.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (4, 1, 0, 7));
    store.close().await.unwrap();
    let store = open_store("pgt_txn_uncommitted", Arc::new(clock.clone())).await;
    assert_eq!(
        store.lease_groups("t").await.unwrap().get("u"),
        Some(&uncommitted)
    );
    let c = store.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.delayed, c.available, c.done), (9, 0, 0, 3));
    store.close().await.unwrap();
}

/// Aborted transactions whose marker is below the log start are deleted with the records;
/// deleting the topic removes its open and aborted transactions.
#[tokio::test]
async fn transaction_rows_go_with_the_log_start_and_the_topic() {
    let (store, _) = fresh_store("pgt_txn_cleanup").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let p = store.init_producer_id().await.unwrap().producer_id;
    let q = store.init_producer_id().await.unwrap().producer_id;
    send(&store, p, 0, 2, true).await; // 0-1
    store
        .write_txn_marker("t", 0, marker(p, false))
        .await
        .unwrap(); // 2
    send(&store, q, 0, 1, true).await; // 3
    send(&store, p, 2, 1, true).await; // 4
    store
        .write_txn_marker("t", 0, marker(p, false))
        .await
        .unwrap(); // 5
    assert_eq!(
        count("SELECT count(*) FROM pgt_txn_cleanup.aborted_txns").await,
        2
    );
    store.delete_records("t", 0, 3).await.unwrap();
    assert_eq!(
        count("SELECT count(*) FROM pgt_txn_cleanup.aborted_txns").await,
        1,
        "the abort at 2 is below the log start"
    );
    let o = store.partition_offsets("t", 0).await.unwrap();
    assert_eq!(o.last_stable_offset, 3, "q is open");
    store.delete_records("t", 0, 5).await.unwrap();
    assert_eq!(
        store
            .partition_offsets("t", 0)
            .await
            .unwrap()
            .last_stable_offset,
        5,
        "never below the log start"
    );
    store.delete_topic("t").await.unwrap();
    assert_eq!(
        count("SELECT count(*) FROM pgt_txn_cleanup.aborted_txns").await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM pgt_txn_cleanup.open_txns").await,
        0
    );
    store.close().await.unwrap();
}
