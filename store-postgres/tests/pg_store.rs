//! Behaviour specific to the PostgreSQL store: migrations, cross-store wake-ups, plain-table
//! layout, bounded lease state, concurrency and chunked retention.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, CommittedOffset, FetchLimits, Header, ManualClock, OffsetCommit, Record, Store,
    TopicConfig,
};
use store_postgres::{PgError, PgOptions, PgStore, SCHEMA_VERSION};
use support::{database_url, fresh_store, open_store};

async fn sql(query: &str) -> Vec<tokio_postgres::Row> {
    let (client, conn) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client.query(query, &[]).await.expect(query)
}

fn options(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_string(),
        pool_size: 4,
        ..PgOptions::default()
    }
}

fn values(n: usize, prefix: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record::from_value(format!("{prefix}{i}")))
        .collect()
}

#[tokio::test]
async fn bad_schema_names_are_refused() {
    for bad in [
        "",
        "Broker",
        "a;drop schema public",
        "x\"y",
        "pg_catalog",
        "1abc",
    ] {
        let r = PgStore::connect(
            &database_url(),
            options(bad),
            Arc::new(ManualClock::default()),
        )
        .await;
        assert!(
            matches!(r, Err(PgError::Config(_))),
            "schema {bad:?} was accepted: {r:?}"
        );
    }
}

#[tokio::test]
async fn schema_newer_than_the_binary_is_refused() {
    let (store, _) = fresh_store("pgt_newer").await;
    store.close().await.unwrap();
    sql("INSERT INTO pgt_newer.schema_migrations (version, description) VALUES (999, 'future')")
        .await;
    let r = PgStore::connect(
        &database_url(),
        options("pgt_newer"),
        Arc::new(ManualClock::default()),
    )
    .await;
    match r {
        Err(e @ PgError::SchemaTooNew { found: 999, .. }) => {
            assert!(e.to_string().contains("newer"), "{e}")
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

/// A schema written before migration 2 (metadata as text, no leader_epoch) opens, keeps its
/// commits and then takes epochs and NUL bytes.
#[tokio::test]
async fn commits_of_a_version_1_schema_survive_the_migration() {
    let (store, _) = fresh_store("pgt_v1_commits").await;
    store
        .create_topic("t", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    store.close().await.unwrap();
    // Back to the version 1 shape of consumer_offsets, with a commit written the old way.
    sql("ALTER TABLE pgt_v1_commits.consumer_offsets DROP COLUMN leader_epoch").await;
    sql(
        "ALTER TABLE pgt_v1_commits.consumer_offsets ALTER COLUMN metadata TYPE text \
         USING convert_from(metadata, 'UTF8')",
    )
    .await;
    sql("DELETE FROM pgt_v1_commits.schema_migrations WHERE version > 1").await;
    sql("INSERT INTO pgt_v1_commits.consumer_offsets (grp, topic_id, partition, \"offset\", metadata) \
         SELECT 'g', id, 0, 7, 'old \u{e9}' FROM pgt_v1_commits.topics WHERE name = 't'")
    .await;
    let store = PgStore::connect(
        &database_url(),
        options("pgt_v1_commits"),
        Arc::new(ManualClock::default()),
    )
    .await
    .unwrap();
    let got = store.committed_offset("g", "t", 0).await.unwrap();
    assert_eq!(
        got,
        Some(CommittedOffset {
            offset: 7,
            leader_epoch: None,
            metadata: "old \u{e9}".into()
        })
    );
    let versions = sql("SELECT max(version) FROM pgt_v1_commits.schema_migrations").await;
    assert_eq!(versions[0].get::<_, i32>(0), SCHEMA_VERSION);
    let new = OffsetCommit {
        topic: "t".into(),
        partition: 1,
        offset: 3,
        leader_epoch: Some(4),
        metadata: "a\0b".into(),
    };
    store
        .commit_offsets("g", std::slice::from_ref(&new))
        .await
        .unwrap();
    let listed = store.list_committed("g").await.unwrap();
    assert_eq!(listed[1], new);
    store.close().await.unwrap();
}

#[tokio::test]
async fn brokers_starting_together_migrate_once() {
    PgStore::drop_schema(&database_url(), "pgt_together")
        .await
        .expect("PostgreSQL reachable");
    let url = database_url();
    let opens = (0..6).map(|_| {
        PgStore::connect(
            &url,
            options("pgt_together"),
            Arc::new(ManualClock::default()),
        )
    });
    for r in futures::future::join_all(opens).await {
        r.expect("concurrent start-up");
    }
    let rows = sql("SELECT count(*), max(version) FROM pgt_together.schema_migrations").await;
    assert_eq!(rows[0].get::<_, i64>(0), i64::from(SCHEMA_VERSION));
    assert_eq!(rows[0].get::<_, i32>(1), SCHEMA_VERSION);
}

#[tokio::test]
async fn notify_wakes_a_waiter_of_another_store() {
    let (writer, clock) = fresh_store("pgt_notify").await;
    writer
        .create_topic("t", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    // No safety net worth mentioning: only LISTEN/NOTIFY can wake this one in time.
    let reader = PgStore::connect(
        &database_url(),
        PgOptions {
            safety_check_interval: Duration::from_secs(3600),
            ..options("pgt_notify")
        },
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let reader = Arc::new(reader);
    let waiting = {
        let reader = reader.clone();
        tokio::spawn(async move {
            reader
                .wait_for("t", 1, 0, Duration::from_secs(60))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "wait_for returned before any append"
    );
    writer
        .append("t", 0, AppendBatch::new(values(1, "other")))
        .await
        .unwrap();
    writer
        .append("t", 1, AppendBatch::new(values(3, "x")))
        .await
        .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("waiter not woken by NOTIFY")
        .unwrap();
    assert!(woke);
}

#[tokio::test]
async fn batches_are_plain_rows() {
    let (store, _) = fresh_store("pgt_rows").await;
    store
        .create_topic("orders", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let rec = Record {
        key: Some("k1".into()),
        value: Some("hello".into()),
        headers: vec![
            Header {
                key: "h".into(),
                value: Some("v".into()),
            },
            Header {
                key: "empty\0nul".into(),
                value: None,
            },
        ],
        timestamp_ms: Some(42),
        not_before_ms: None,
    };
    store
        .append(
            "orders",
            0,
            AppendBatch::new(vec![rec.clone(), Record::default()]),
        )
        .await
        .unwrap();
    // One row per batch: offsets, timestamps, and the Kafka record batch (magic 2 at byte 16).
    let rows = sql(
        r#"SELECT b.base_offset, b.last_offset, b.max_ts, get_byte(b.data, 16),
                  octet_length(b.data), b.bytes
           FROM pgt_rows.batches b JOIN pgt_rows.topics t ON t.id = b.topic_id
           WHERE t.name = 'orders'"#,
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    assert_eq!(rows[0].get::<_, i64>(1), 1);
    assert!(rows[0].get::<_, i64>(2) >= 42);
    assert_eq!(rows[0].get::<_, i32>(3), 2);
    assert_eq!(
        rows[0].get::<_, i32>(4) as i64,
        rows[0].get::<_, i64>(5),
        "bytes is the batch's size"
    );
    let none = sql("SELECT count(*) FROM pgt_rows.records").await;
    assert_eq!(none[0].get::<_, i64>(0), 0, "no record rows");
    let f = store
        .fetch("orders", 0, 0, FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records[0].headers, rec.headers);
    assert_eq!(f.records[0].timestamp_ms, 42);
    assert_eq!(f.records[1].key, None);
    assert_eq!(f.records[1].value, None);
    assert!(f.records[1].headers.is_empty());
}

/// Record rows written by schema version 2 become batch rows when a version 3 store opens
/// the schema: every record reads back the same, on the record and the batch path.
#[tokio::test]
async fn record_rows_of_an_older_schema_become_batches() {
    let (store, _) = fresh_store("pgt_v2_rows").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    store.close().await.unwrap();
    // Two batches written the version 2 way: 0..=2 (offset 0 already deleted below a log
    // start of 1) and 3 (a delayed record).
    for q in [
        r#"INSERT INTO pgt_v2_rows.records (topic_id, partition, "offset", timestamp_ms,
               not_before_ms, key, value, header_keys, header_values, size)
           SELECT id, 0, o, 100 + o, CASE WHEN o = 3 THEN 9999 END, 'k'::bytea,
               convert_to('v' || o, 'UTF8'), ARRAY['h'], ARRAY['x'::bytea], 4
           FROM pgt_v2_rows.topics, generate_series(1, 3) AS o"#,
        r#"INSERT INTO pgt_v2_rows.batches (topic_id, partition, base_offset, last_offset,
               max_ts, ts_high, bytes, append_time_ms)
           SELECT id, 0, b.base, b.last, 100 + b.last, 100 + b.last, 8, 1
           FROM pgt_v2_rows.topics, (VALUES (0, 2), (3, 3)) AS b(base, last)"#,
        "UPDATE pgt_v2_rows.partitions SET log_start = 1, purged_to = 1, next_offset = 4,
             bytes = 16, max_ts = 103",
    ] {
        sql(q).await;
    }
    let store = open_store("pgt_v2_rows", Arc::new(ManualClock::new(5_000))).await;
    let f = store
        .fetch("t", 0, 1, FetchLimits::default())
        .await
        .unwrap();
    let got: Vec<(i64, i64, Option<i64>)> = f
        .records
        .iter()
        .map(|r| (r.offset, r.timestamp_ms, r.not_before_ms))
        .collect();
    assert_eq!(
        got,
        vec![(1, 101, None), (2, 102, None), (3, 103, Some(9999))]
    );
    assert_eq!(f.records[0].value.as_deref(), Some(&b"v1"[..]));
    assert_eq!(f.records[0].headers[0].key, "h");
    let c = store.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!(
        (c.available, c.delayed),
        (2, 1),
        "the delayed record counts as delayed"
    );
    let b = store
        .fetch_batches(
            "t",
            0,
            1,
            broker_api::BatchLimits {
                max_bytes: 1 << 20,
                min_one: true,
                read_committed: false,
            },
        )
        .await
        .unwrap();
    let bytes = b.concat();
    let batches = kafka_batch::split_batches(&bytes).unwrap();
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| kafka_batch::crc_ok(b)));
    let rows = sql("SELECT count(*) FROM pgt_v2_rows.records").await;
    assert_eq!(rows[0].get::<_, i64>(0), 0, "record rows converted");
    let rows = sql("SELECT count(*) FROM pgt_v2_rows.batches WHERE data IS NULL").await;
    assert_eq!(rows[0].get::<_, i64>(0), 0);
}

#[tokio::test]
async fn lease_state_stays_small() {
    let (store, _) = fresh_store("pgt_small").await;
    store
        .create_topic("q", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    for i in 0..5 {
        store
            .append("q", 0, AppendBatch::new(values(200, &format!("b{i}-"))))
            .await
            .unwrap();
    }
    for _ in 0..9 {
        let l = store
            .lease("q", 0, "g", 100, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(l.len(), 100);
        let tokens: Vec<_> = l.iter().map(|l| l.token).collect();
        for r in store.ack("q", "g", &tokens).await.unwrap() {
            r.unwrap();
        }
    }
    // One lease call moves the floor over the acked records and forgets their rows.
    let l = store
        .lease("q", 0, "g", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(l.len(), 10);
    assert_eq!(l[0].record.offset, 900);
    let rows = sql("SELECT count(*) FROM pgt_small.lease_state").await;
    assert_eq!(
        rows[0].get::<_, i64>(0),
        10,
        "lease_state should hold only the records in flight"
    );
    let c = store.lease_counts("q", 0, "g").await.unwrap();
    assert_eq!((c.available, c.leased, c.done), (90, 10, 900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_leasers_share_without_overlap() {
    let (store, _) = fresh_store("pgt_leasers").await;
    let store = Arc::new(store);
    store
        .create_topic("q", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    for p in 0..2 {
        for i in 0..4 {
            store
                .append("q", p, AppendBatch::new(values(250, &format!("{p}-{i}-"))))
                .await
                .unwrap();
        }
    }
    let tasks = (0..24).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut empty = 0;
            while empty < 3 {
                let p = w % 2;
                let l = store
                    .lease("q", p, "g", 7, Duration::from_secs(300))
                    .await
                    .unwrap();
                if l.is_empty() {
                    empty += 1;
                    continue;
                }
                let tokens: Vec<_> = l.iter().map(|l| l.token).collect();
                for r in store.ack("q", "g", &tokens).await.unwrap() {
                    r.unwrap();
                }
                mine.extend(l.iter().map(|l| (p, l.record.offset)));
            }
            mine
        })
    });
    let mut seen: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for t in futures::future::join_all(tasks).await {
        for k in t.unwrap() {
            *seen.entry(k).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 2000, "every record leased");
    assert!(seen.values().all(|&n| n == 1), "a record was leased twice");
    for p in 0..2 {
        let c = store.lease_counts("q", p, "g").await.unwrap();
        assert_eq!(c.done, 1000);
    }
}

#[tokio::test]
async fn retention_deletes_rows_in_chunks() {
    let (store, clock) = fresh_store("pgt_retention").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    for i in 0..12 {
        store
            .append("t", 0, AppendBatch::new(values(1_000, &format!("{i}-"))))
            .await
            .unwrap();
        clock.advance(1_000);
    }
    assert_eq!(store.delete_records("t", 0, 11_500).await.unwrap(), 11_500);
    // Whole batches go: the one holding the log start (11 000..11 999) stays.
    let rows = sql(
        "SELECT count(*), min(base_offset), sum(octet_length(data))::bigint
         FROM pgt_retention.batches",
    )
    .await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
    assert_eq!(rows[0].get::<_, i64>(1), 11_000);
    let kept: i64 = rows[0].get(2);
    let rows = sql("SELECT bytes, purged_to FROM pgt_retention.partitions").await;
    assert_eq!(rows[0].get::<_, i64>(1), 11_500);
    assert_eq!(
        rows[0].get::<_, i64>(0),
        kept,
        "bytes counts the batches kept"
    );
    // Offsets keep growing.
    let r = store
        .append("t", 0, AppendBatch::new(values(1, "n")))
        .await
        .unwrap();
    assert_eq!(r.base_offset, 12_000);
    // Size retention down to the newest batch.
    let mut config = store.describe_topic("t").await.unwrap().config;
    config.retention_bytes = Some(1);
    store.update_topic_config("t", config).await.unwrap();
    assert_eq!(store.enforce_retention("t").await.unwrap(), 500);
    let o = store.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.log_start_offset, o.high_watermark), (12_000, 12_001));
    let rows = sql("SELECT count(*) FROM pgt_retention.batches").await;
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}

#[tokio::test]
async fn data_survives_a_new_store_on_the_same_schema() {
    let (store, clock) = fresh_store("pgt_reopen").await;
    store
        .create_topic("t", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    store
        .append("t", 0, AppendBatch::new(values(3, "v")))
        .await
        .unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.fetch("t", 0, 0, FetchLimits::default()).await,
        Err(broker_api::StoreError::Closed)
    ));
    let again = open_store("pgt_reopen", Arc::new(clock)).await;
    let f = again
        .fetch("t", 0, 0, FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records.len(), 3);
    assert_eq!(f.high_watermark, 3);
}

#[tokio::test]
async fn shortened_lease_is_redelivered_at_once() {
    let (store, _clock) = fresh_store("pgt_shorten").await;
    store
        .create_topic("q", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    store
        .append("q", 0, AppendBatch::new(values(1, "v")))
        .await
        .unwrap();
    let l = store
        .lease("q", 0, "g", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(l.len(), 1);
    // Extending to zero ends the lease now; the record must come back without waiting 60 s.
    store
        .extend("q", "g", l[0].token, Duration::ZERO)
        .await
        .unwrap();
    let again = store
        .lease("q", 0, "g", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.len(), 1, "shortened lease not redelivered");
    assert_eq!(again[0].delivery_count, 2);
    // Release without delay: available again at once, too.
    store
        .release("q", "g", again[0].token, Duration::ZERO)
        .await
        .unwrap();
    let third = store
        .lease("q", 0, "g", 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(third.len(), 1, "released record not redelivered");
    assert_eq!(third[0].delivery_count, 3);
}

fn counter(store: &PgStore, name: &str) -> u64 {
    store
        .store_metrics()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| match m.value {
            broker_api::MetricValue::Counter(n) => n,
            _ => 0,
        })
        .unwrap_or(0)
}

/// Concurrent appends, acks and commits share transactions (fewer commits than calls), get
/// gapless offsets, and one bad call in a group (a record over the limit, an unknown
/// partition) fails only itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_share_commit_groups() {
    share_commit_groups("pgt_group").await;
}

/// The same on one thread: a caller waiting for its group must yield, or the group's task
/// never runs (a busy wait there once livelocked the broker-bench lease case). The runtime
/// runs on a thread of its own, so a livelock fails the test instead of hanging it.
#[test]
fn commit_groups_make_progress_on_one_thread() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(share_commit_groups("pgt_group1"));
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("commit groups stalled on a one-thread runtime");
}

async fn share_commit_groups(schema: &str) {
    let (store, _) = fresh_store(schema).await;
    let store = Arc::new(store);
    let config = TopicConfig {
        max_record_bytes: 50,
        ..TopicConfig::with_partitions(2)
    };
    store.create_topic("g", config).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut offsets = Vec::new();
                for i in 0..20 {
                    let r = store
                        .append("g", 0, AppendBatch::new(values(1, &format!("t{t}-{i}-"))))
                        .await
                        .unwrap();
                    offsets.push(r.base_offset);
                    if i % 7 == 3 {
                        let big = Record::from_value(vec![b'x'; 51]);
                        let e = store.append("g", 0, AppendBatch::new(vec![big])).await;
                        assert!(
                            matches!(e, Err(broker_api::StoreError::RecordTooLarge { .. })),
                            "{e:?}"
                        );
                        let e = store.append("g", 9, AppendBatch::new(values(1, "x"))).await;
                        assert!(
                            matches!(e, Err(broker_api::StoreError::UnknownTopic(_))),
                            "{e:?}"
                        );
                    }
                    if i % 5 == 0 {
                        let commit = OffsetCommit {
                            topic: "g".into(),
                            partition: 1,
                            offset: i,
                            leader_epoch: None,
                            metadata: format!("t{t}"),
                        };
                        store
                            .commit_offsets(&format!("c{t}"), &[commit])
                            .await
                            .unwrap();
                    }
                }
                offsets
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..640).collect::<Vec<i64>>(), "gapless and distinct");
    let o = store.partition_offsets("g", 0).await.unwrap();
    assert_eq!(o.high_watermark, 640);
    for t in 0..32 {
        let c = store
            .committed_offset(&format!("c{t}"), "g", 1)
            .await
            .unwrap();
        assert_eq!(c.map(|c| c.offset), Some(15));
    }
    // Acks in groups too.
    let leases = store
        .lease("g", 0, "q", 640, Duration::from_secs(60))
        .await
        .unwrap();
    let acks: Vec<_> = leases
        .chunks(20)
        .map(|chunk| {
            let store = store.clone();
            let tokens: Vec<_> = chunk.iter().map(|l| l.token).collect();
            tokio::spawn(async move { store.ack("g", "q", &tokens).await.unwrap() })
        })
        .collect();
    for a in futures::future::join_all(acks).await {
        assert!(a.unwrap().iter().all(|r| r.is_ok()));
    }
    assert_eq!(store.lease_counts("g", 0, "q").await.unwrap().done, 640);
    let (groups, jobs) = (
        counter(&store, "broker_pg_group_commits_total"),
        counter(&store, "broker_pg_group_commit_jobs_total"),
    );
    assert!(jobs >= 640 + 32 * 4 + 32, "{jobs} jobs");
    assert!(
        groups < jobs / 2,
        "{groups} groups for {jobs} jobs: calls did not share commits"
    );
}

/// A caller that goes away while it leads a commit group (a cancelled request) gives its slot
/// back: later calls still commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_group_leader_does_not_block_later_calls() {
    let (store, _) = fresh_store("pgt_group_cancel").await;
    store
        .create_topic("c", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    for i in 0..10 {
        // Polled once (it queues its call and leads a group), then dropped.
        let _ = tokio::time::timeout(
            Duration::ZERO,
            store.append("c", 0, AppendBatch::new(values(1, &format!("x{i}-")))),
        )
        .await;
    }
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        store.append("c", 0, AppendBatch::new(values(1, "after"))),
    )
    .await
    .expect("an append after cancelled leaders did not finish")
    .unwrap();
    // The cancelled calls ran anyway (their groups had started): the new one comes after them.
    assert!(r.base_offset <= 10, "{r:?}");
    let c = tokio::time::timeout(Duration::from_secs(30), async {
        store
            .commit_offsets(
                "g",
                &[OffsetCommit {
                    topic: "c".into(),
                    partition: 0,
                    offset: 1,
                    leader_epoch: None,
                    metadata: String::new(),
                }],
            )
            .await
    })
    .await
    .expect("a commit after cancelled leaders did not finish");
    c.unwrap();
}
