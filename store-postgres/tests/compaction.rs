//! Log compaction on the PostgreSQL store: a large partition compacts to one record per
//! live key within bounded storage, appends and fetches go on during compaction, a tiny key
//! map takes several calls to the same result, and a version 7 schema is migrated.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use broker_api::{
    AppendBatch, CleanupPolicy, FetchLimits, ManualClock, Record, Store, StoredRecord, TopicConfig,
};
use bytes::Bytes;
use store_postgres::{PgOptions, PgStore, SCHEMA_VERSION};
use support::{database_url, fresh_store};

const DELETE_RETENTION_MS: i64 = 60_000;

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

fn compacted() -> TopicConfig {
    TopicConfig {
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
            min_compaction_lag_ms: 0,
            delete_retention_ms: DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio: 0.0,
        },
        ..TopicConfig::default()
    }
}

fn kv(key: &str, value: Option<String>) -> Record {
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: value.map(Bytes::from),
        ..Record::default()
    }
}

/// A store on an emptied `schema` whose compaction key map has `map_bytes` of memory.
async fn store_with_map(schema: &str, map_bytes: usize, clock: &ManualClock) -> PgStore {
    PgStore::drop_schema(&database_url(), schema).await.unwrap();
    let options = PgOptions {
        schema: schema.to_string(),
        pool_size: 8,
        compaction_map_bytes: map_bytes,
        ..PgOptions::default()
    };
    PgStore::connect(&database_url(), options, Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// Compacts until a call neither moves the cleanable end nor removes anything; returns the
/// calls made, the last cleaned-to offset and the batch bytes read.
async fn compact_fully(store: &PgStore) -> (usize, i64, u64) {
    let (mut calls, mut end, mut read) = (0, i64::MIN, 0u64);
    loop {
        let s = store.compact("t", 0, None).await.unwrap();
        calls += 1;
        read += s.bytes_read;
        if s.cleaned_to <= end && s.records_removed == 0 {
            return (calls, end, read);
        }
        end = end.max(s.cleaned_to);
        assert!(calls < 1_000, "compaction does not finish");
    }
}

/// Every record from the log start, in offset order (fetching as often as needed).
async fn all_records(store: &PgStore) -> Vec<StoredRecord> {
    let o = store.partition_offsets("t", 0).await.unwrap();
    let mut out: Vec<StoredRecord> = Vec::new();
    let mut next = o.log_start_offset;
    while next < o.high_watermark {
        let f = store
            .fetch("t", 0, next, FetchLimits::default())
            .await
            .unwrap();
        let Some(last) = f.records.last().map(|r| r.offset) else {
            break;
        };
        for r in f.records {
            assert!(r.offset >= next, "fetch at {next} returned {}", r.offset);
            out.push(r);
        }
        next = last + 1;
    }
    out
}

/// (key, value) of each record, keyed by offset.
fn by_key(records: &[StoredRecord]) -> BTreeMap<String, (i64, Option<Bytes>)> {
    let mut out = BTreeMap::new();
    for r in records {
        let k = String::from_utf8_lossy(r.key.as_ref().unwrap()).into_owned();
        assert!(
            out.insert(k.clone(), (r.offset, r.value.clone())).is_none(),
            "key {k} survives twice"
        );
    }
    out
}

/// 100k records over 10k keys (updates, then tombstones for a tenth of the keys): one
/// record per live key with its newest value, tombstones until the delete retention has
/// passed, storage below twice the live data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_partition_compacts_to_its_live_keys() {
    let (store, clock) = fresh_store("pgc_large").await;
    clock.set(1_000_000);
    store.create_topic("t", compacted()).await.unwrap();
    const KEYS: usize = 10_000;
    const RECORDS: usize = 100_000;
    const BATCH: usize = 500;
    let mut newest: HashMap<String, Option<String>> = HashMap::new();
    let mut i = 0usize;
    while i < RECORDS {
        let mut records = Vec::with_capacity(BATCH);
        for j in i..i + BATCH {
            let key = format!("k{}", j % KEYS);
            let round = j / KEYS;
            // The last round deletes every tenth key.
            let value = (round + 1 < RECORDS / KEYS || j % 10 != 0)
                .then(|| format!("{round}:{j}:{:0>96}", 0));
            newest.insert(key.clone(), value.clone());
            records.push(kv(&key, value));
        }
        store
            .append("t", 0, AppendBatch::new(records))
            .await
            .unwrap();
        i += BATCH;
    }
    let before: i64 = count(
        "SELECT sum(octet_length(data))::bigint FROM pgc_large.batches WHERE topic_id = \
         (SELECT id FROM pgc_large.topics WHERE name = 't')",
    )
    .await;
    let started = Instant::now();
    let (calls, end, read) = compact_fully(&store).await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "compacted {} MB of batches in {calls} calls, {secs:.2} s: {:.1} MB/s read",
        before / 1_000_000,
        read as f64 / 1e6 / secs
    );
    assert_eq!(
        end, RECORDS as i64,
        "the cleanable end reaches the high watermark"
    );
    let o = store.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.log_start_offset, o.high_watermark), (0, RECORDS as i64));
    let check = |survivors: &BTreeMap<String, (i64, Option<Bytes>)>, tombstones: bool| {
        for (k, v) in &newest {
            match (v, survivors.get(k)) {
                (Some(v), Some((_, got))) => {
                    assert_eq!(got.as_deref(), Some(v.as_bytes()), "value of {k}")
                }
                (None, Some((_, None))) if tombstones => {}
                (None, None) if !tombstones => {}
                (v, got) => panic!("key {k}: want {v:?}, got {got:?}"),
            }
        }
        assert_eq!(
            survivors.len(),
            newest
                .values()
                .filter(|v| tombstones || v.is_some())
                .count()
        );
    };
    let survivors = by_key(&all_records(&store).await);
    check(&survivors, true);
    // Storage: batch bytes below twice the live record bytes.
    let live: usize = all_records(&store).await.iter().map(|r| r.size()).sum();
    let stored: i64 = count(
        "SELECT sum(octet_length(data))::bigint FROM pgc_large.batches WHERE topic_id = \
         (SELECT id FROM pgc_large.topics WHERE name = 't')",
    )
    .await;
    assert!(
        stored < 2 * live as i64,
        "{stored} bytes stored for {live} bytes of live records (from {before})"
    );
    let accounted: i64 = count("SELECT bytes FROM pgc_large.partitions WHERE partition = 0").await;
    assert_eq!(accounted, stored, "partitions.bytes follows the rewrites");
    // Tombstones stay until the delete retention has passed, then go.
    clock.advance(DELETE_RETENTION_MS - 1);
    compact_fully(&store).await;
    check(&by_key(&all_records(&store).await), true);
    clock.advance(1);
    compact_fully(&store).await;
    check(&by_key(&all_records(&store).await), false);
    // Record counts of compacted batches match their data.
    let records_col: i64 = count(
        "SELECT coalesce(sum(coalesce(records, last_offset - base_offset + 1)), 0)::bigint \
         FROM pgc_large.batches",
    )
    .await;
    assert_eq!(records_col as usize, newest.values().flatten().count());
    let metrics = store.store_metrics();
    let runs = metrics
        .iter()
        .find(|m| m.name == "broker_pg_compaction_runs_total")
        .expect("compaction runs metric");
    assert!(matches!(runs.value, broker_api::MetricValue::Counter(n) if n >= 3));
    store.close().await.unwrap();
}

/// Appends and fetches during compaction: the appender's offsets stay dense, fetches never
/// go back nor repeat an offset, and once compaction catches up exactly the newest record
/// of each key is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_and_fetches_during_compaction_stay_correct() {
    let (store, _clock) = fresh_store("pgc_concurrent").await;
    let store = Arc::new(store);
    store.create_topic("t", compacted()).await.unwrap();
    const KEYS: usize = 200;
    const APPENDS: usize = 400;
    let appender = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut newest: HashMap<String, (i64, String)> = HashMap::new();
            let mut next = 0i64;
            for a in 0..APPENDS {
                let records: Vec<Record> = (0..10)
                    .map(|j| {
                        let n = a * 10 + j;
                        kv(&format!("k{}", (n * 7) % KEYS), Some(format!("v{n}")))
                    })
                    .collect();
                let keys: Vec<(String, String)> = records
                    .iter()
                    .map(|r| {
                        (
                            String::from_utf8_lossy(r.key.as_ref().unwrap()).into_owned(),
                            String::from_utf8_lossy(r.value.as_ref().unwrap()).into_owned(),
                        )
                    })
                    .collect();
                let res = store
                    .append("t", 0, AppendBatch::new(records))
                    .await
                    .unwrap();
                assert_eq!(res.base_offset, next, "appended offsets are dense");
                assert_eq!(res.last_offset, next + 9);
                for (i, (k, v)) in keys.into_iter().enumerate() {
                    newest.insert(k, (next + i as i64, v));
                }
                next += 10;
            }
            newest
        })
    };
    let fetcher = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..30 {
                let mut seen = HashSet::new();
                let mut next = 0i64;
                loop {
                    let f = store
                        .fetch("t", 0, next, FetchLimits::default())
                        .await
                        .unwrap();
                    let Some(last) = f.records.last().map(|r| r.offset) else {
                        break;
                    };
                    for r in &f.records {
                        assert!(r.offset >= next, "fetch went back");
                        assert!(seen.insert(r.offset), "offset {} fetched twice", r.offset);
                    }
                    next = last + 1;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let mut rounds = 0;
    while !appender.is_finished() {
        store.compact("t", 0, None).await.unwrap();
        rounds += 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let newest = appender.await.unwrap();
    fetcher.await.unwrap();
    assert!(rounds > 1, "compaction ran during the appends");
    let (_, end, _) = compact_fully(&store).await;
    assert_eq!(end, (APPENDS * 10) as i64);
    let got = by_key(&all_records(&store).await);
    assert_eq!(got.len(), newest.len());
    for (k, (offset, value)) in &newest {
        let (o, v) = &got[k];
        assert_eq!(
            (o, v.as_deref()),
            (offset, Some(value.as_bytes())),
            "key {k}"
        );
    }
}

/// A key map too small for the dirty range cleans a prefix per call; calling again reaches
/// the same records as one call with a large map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_key_map_takes_several_calls_to_the_same_result() {
    let clock = ManualClock::default();
    // Room for 250 keys: batches of 100 keys, 1000 keys in all.
    let tiny = store_with_map("pgc_tiny", 48 * 250, &clock).await;
    let (large, _) = fresh_store("pgc_tiny_ref").await;
    for s in [&tiny, &large] {
        s.create_topic("t", compacted()).await.unwrap();
        for round in 0..5 {
            for b in 0..10 {
                let records = (0..100)
                    .map(|i| {
                        let k = b * 100 + i;
                        kv(&format!("k{k}"), Some(format!("r{round}k{k}")))
                    })
                    .collect();
                s.append("t", 0, AppendBatch::new(records)).await.unwrap();
            }
        }
    }
    let first = tiny.compact("t", 0, None).await.unwrap();
    assert!(
        first.cleaned_to < 5_000,
        "a map of 250 keys cleans a prefix, not up to {}",
        first.cleaned_to
    );
    let (calls, end, _) = compact_fully(&tiny).await;
    assert!(calls >= 2, "{calls} calls");
    assert_eq!(end, 5_000);
    compact_fully(&large).await;
    let a = by_key(&all_records(&tiny).await);
    let b = by_key(&all_records(&large).await);
    assert_eq!(a, b);
    assert_eq!(a.len(), 1_000);
}

/// A schema of version 7 (no compaction columns) opens: migration 8 is applied, old rows
/// stay valid, and compaction works on them.
#[tokio::test]
async fn a_version_7_schema_is_migrated_for_compaction() {
    const { assert!(SCHEMA_VERSION >= 8) };
    let (store, clock) = fresh_store("pgc_v7").await;
    store.create_topic("t", compacted()).await.unwrap();
    for v in 0..3 {
        let records = vec![
            kv("a", Some(format!("a{v}"))),
            kv("b", Some(format!("b{v}"))),
        ];
        store
            .append("t", 0, AppendBatch::new(records))
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    for stmt in [
        "ALTER TABLE pgc_v7.partitions DROP COLUMN cleaned_to, DROP COLUMN sparse_to",
        "ALTER TABLE pgc_v7.batches DROP COLUMN records",
        "DELETE FROM pgc_v7.schema_migrations WHERE version > 7",
    ] {
        sql(stmt).await;
    }
    let store = support::open_store("pgc_v7", Arc::new(clock.clone())).await;
    assert_eq!(
        count("SELECT max(version)::bigint FROM pgc_v7.schema_migrations").await,
        i64::from(SCHEMA_VERSION)
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'pgc_v7'
             AND ((table_name = 'partitions' AND column_name IN ('cleaned_to', 'sparse_to'))
               OR (table_name = 'batches' AND column_name = 'records'))"
        )
        .await,
        3
    );
    assert_eq!(
        all_records(&store).await.len(),
        6,
        "old rows are read as before"
    );
    let (_, end, _) = compact_fully(&store).await;
    assert_eq!(end, 6);
    let got = by_key(&all_records(&store).await);
    assert_eq!(got["a"], (4, Some(Bytes::from("a2"))));
    assert_eq!(got["b"], (5, Some(Bytes::from("b2"))));
    assert_eq!(
        count("SELECT cleaned_to FROM pgc_v7.partitions").await,
        6,
        "the cleaned-to offset is kept"
    );
}
