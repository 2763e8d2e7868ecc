//! Transactions on the log store beyond the conformance checks: read-committed fetches over
//! many segments, the lease floor past markers, read-uncommitted lease groups, retention of
//! aborted transactions, recovery when the producer snapshot is ahead of the log, and
//! `verify` on transactional data.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AbortedTxn, AppendBatch, BatchLimits, Durability, FetchLimits, Lease, LeaseGroupConfig,
    ManualClock, ProducerBatch, Record, Store, TimestampType, TopicConfig, TxnMarker,
};
use bytes::Bytes;
use kafka_batch::BatchHeader;
use store_log::{LogOptions, LogStore};

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 2 << 10,
        index_interval_bytes: 128,
        index_bytes: 1 << 10,
        ..LogOptions::default()
    }
}

fn open(dir: &Path) -> LogStore {
    LogStore::open(dir, options(), Arc::new(ManualClock::new(1_000))).unwrap()
}

fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::from_value(format!(
                "p{producer_id}s{first_sequence}-{i}-{}",
                "v".repeat(40)
            ))
        })
        .collect();
    txn_records(producer_id, epoch, first_sequence, &records)
}

fn txn_records(producer_id: i64, epoch: i16, first_sequence: i32, records: &[Record]) -> Bytes {
    let mut buf = Vec::new();
    let p = ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
    };
    kafka_batch::encode_records(&mut buf, records, 1_000, Some(p)).unwrap();
    kafka_batch::set_transactional(&mut buf);
    Bytes::from(buf)
}

async fn send(s: &LogStore, producer_id: i64, seq: i32, n: usize) -> i64 {
    s.append_batch(
        "t",
        0,
        txn_batch(producer_id, 0, seq, n),
        TimestampType::CreateTime,
    )
    .await
    .unwrap()
    .base_offset
}

async fn plain(s: &LogStore, v: &str) -> i64 {
    let b = AppendBatch::new(vec![Record::from_value(format!("{v}-{}", "x".repeat(60)))]);
    s.append("t", 0, b).await.unwrap().base_offset
}

fn marker(producer_id: i64, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch: 0,
        commit,
        coordinator_epoch: 0,
    }
}

const COMMITTED: BatchLimits = BatchLimits {
    max_bytes: 1 << 20,
    min_one: true,
    read_committed: true,
};

/// Base offsets of the batches of a fetch, checking that each chunk is whole batches.
fn bases(chunks: &[Bytes]) -> Vec<i64> {
    chunks
        .iter()
        .flat_map(|c| kafka_batch::split_batches(c).expect("whole batches"))
        .map(|b| BatchHeader::read(&b).unwrap().base_offset)
        .collect()
}

async fn topic(s: &LogStore, durability: Durability) {
    let cfg = TopicConfig {
        durability,
        ..TopicConfig::with_partitions(1)
    };
    s.create_topic("t", cfg).await.unwrap();
}

/// Read committed over many segments: every fetch offset below the last stable offset gets
/// whole batches ending right before it, wherever the index entries fall.
#[tokio::test]
async fn read_committed_stops_at_the_last_stable_offset_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Never).await;
    for i in 0..40 {
        plain(&s, &format!("a{i}")).await;
    }
    let first = send(&s, 7, 0, 3).await; // 40-42, stays open
    for i in 0..40 {
        plain(&s, &format!("b{i}")).await;
    }
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!(o.last_stable_offset, first);
    for from in 0..o.high_watermark {
        let f = s.fetch_batches("t", 0, from, COMMITTED).await.unwrap();
        assert_eq!(f.last_stable_offset, first);
        let b = bases(&f.chunks);
        if from >= first {
            assert!(b.is_empty(), "from {from}: {b:?}");
            continue;
        }
        assert_eq!(b.first(), Some(&from), "from {from}");
        assert_eq!(b.last(), Some(&(first - 1)), "from {from}");
        assert!(f.aborted.is_empty());
    }
    // Without read committed, everything.
    let all = BatchLimits {
        read_committed: false,
        ..COMMITTED
    };
    let f = s.fetch_batches("t", 0, 0, all).await.unwrap();
    assert_eq!(bases(&f.chunks).len() as i64, 81);
    s.write_txn_marker("t", 0, marker(7, false)).await.unwrap();
    let f = s.fetch_batches("t", 0, 41, COMMITTED).await.unwrap();
    assert_eq!(bases(&f.chunks).len(), 42);
    assert_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: 7,
            first_offset: 40
        }]
    );
    s.close().await.unwrap();
}

/// Markers and aborted records are done for lease groups: once the records around them are
/// acked, the group's floor moves past them.
#[tokio::test]
async fn lease_floor_moves_past_markers_and_aborted_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Never).await;
    plain(&s, "0").await; // 0
    send(&s, 3, 0, 2).await; // 1-2, aborted by 3
    s.write_txn_marker("t", 0, marker(3, false)).await.unwrap(); // 3
    plain(&s, "4").await; // 4
    s.write_txn_marker("t", 0, marker(3, true)).await.unwrap(); // 5: nothing open
    let vis = Duration::from_secs(30);
    let leases = s.lease("t", 0, "g", 10, vis).await.unwrap();
    let offsets: Vec<i64> = leases.iter().map(|l| l.record.offset).collect();
    assert_eq!(offsets, vec![0, 4]);
    let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
    assert!(s
        .ack("t", "g", &tokens)
        .await
        .unwrap()
        .iter()
        .all(Result::is_ok));
    assert!(s.lease("t", 0, "g", 10, vis).await.unwrap().is_empty());
    assert_eq!(s.lease_floor("t", 0, "g").await.unwrap(), 6);
    let c = s.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!((c.done, c.available, c.leased, c.delayed), (6, 0, 0, 0));
    // A record after it is leased from there.
    plain(&s, "6").await;
    let leases = s.lease("t", 0, "g", 10, vis).await.unwrap();
    assert_eq!(
        leases.iter().map(|l| l.record.offset).collect::<Vec<_>>(),
        vec![6]
    );
    s.close().await.unwrap();
}

fn uncommitted(f: impl FnOnce(&mut LeaseGroupConfig)) -> LeaseGroupConfig {
    let mut c = LeaseGroupConfig {
        read_uncommitted: true,
        ..LeaseGroupConfig::default()
    };
    f(&mut c);
    c
}

fn offsets(leases: &[Lease]) -> Vec<i64> {
    leases.iter().map(|l| l.record.offset).collect()
}

async fn ack_all(s: &LogStore, group: &str, leases: &[Lease]) {
    let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
    let r = s.ack("t", group, &tokens).await.unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
}

/// A read-uncommitted group leases records of aborted and open transactions; its floor
/// moves past markers only (aborted records are done once acked), its counts delay nothing
/// for the last stable offset, records past `max_deliveries` are dead-lettered whatever
/// their transaction, and all of it survives reopen.
#[tokio::test]
async fn read_uncommitted_group_floor_counts_and_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000);
    let open = || LogStore::open(dir.path(), options(), Arc::new(clock.clone())).unwrap();
    let s = open();
    topic(&s, Durability::Never).await;
    s.create_topic("dl", TopicConfig::with_partitions(1))
        .await
        .unwrap();
    plain(&s, "0").await; // 0
    send(&s, 3, 0, 2).await; // 1-2, aborted by 3
    s.write_txn_marker("t", 0, marker(3, false)).await.unwrap(); // 3
    plain(&s, "4").await; // 4
    send(&s, 5, 0, 2).await; // 5-6, left open
    let cfg = uncommitted(|c| {
        c.max_deliveries = Some(1);
        c.dead_letter_topic = Some("dl".into());
    });
    s.set_lease_group("t", "u", cfg.clone()).await.unwrap();
    let vis = Duration::from_secs(30);
    let leases = s.lease("t", 0, "u", 10, vis).await.unwrap();
    assert_eq!(offsets(&leases), vec![0, 1, 2, 4, 5, 6]);
    let c = s.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.done, c.delayed, c.available), (6, 1, 0, 0));
    // The read-committed default group still stops at the open transaction.
    let g = s.lease("t", 0, "g", 10, vis).await.unwrap();
    assert_eq!(offsets(&g), vec![0, 4]);
    let c = s.lease_counts("t", 0, "g").await.unwrap();
    assert_eq!((c.leased, c.done, c.delayed, c.available), (2, 3, 2, 0));
    // Acking 0 leaves the floor at the aborted record 1, still leased.
    ack_all(&s, "u", &leases[..1]).await;
    assert_eq!(s.lease_floor("t", 0, "u").await.unwrap(), 1);
    // Once 1-2 are acked too the floor moves past the marker, up to 4 (in flight).
    ack_all(&s, "u", &leases[1..3]).await;
    assert!(s.lease("t", 0, "u", 10, vis).await.unwrap().is_empty());
    assert_eq!(s.lease_floor("t", 0, "u").await.unwrap(), 4);
    let c = s.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.done, c.delayed, c.available), (3, 4, 0, 0));
    // Past the visibility, 4-6 were delivered once: they go to the dead-letter topic, the
    // open transaction's records too.
    clock.advance(31_000);
    let c = s.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.leased, c.done, c.available), (0, 4, 3));
    assert!(s.lease("t", 0, "u", 10, vis).await.unwrap().is_empty());
    let c = s.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.done, c.dead_lettered, c.available), (7, 3, 0));
    assert_eq!(s.lease_floor("t", 0, "u").await.unwrap(), 7);
    let dl = s.fetch("dl", 0, 0, FetchLimits::default()).await.unwrap();
    assert_eq!(dl.records.len(), 3);
    s.close().await.unwrap();

    let s = open();
    assert_eq!(s.lease_groups("t").await.unwrap().get("u"), Some(&cfg));
    let c = s.lease_counts("t", 0, "u").await.unwrap();
    assert_eq!((c.done, c.dead_lettered, c.delayed), (7, 3, 0));
    // New records of the open transaction are leased right away after reopen.
    send(&s, 5, 2, 1).await; // 7
    let leases = s.lease("t", 0, "u", 10, vis).await.unwrap();
    assert_eq!(offsets(&leases), vec![7]);
    // The read-committed group's leases lapsed: 0 and 4 again, nothing of the open one.
    let g = s.lease("t", 0, "g", 10, vis).await.unwrap();
    assert_eq!(offsets(&g), vec![0, 4]);
    s.close().await.unwrap();
}

/// With `ordered_by_key`, a read-uncommitted group keeps a key locked while a record of an
/// open transaction with that key is in flight, also for an earlier record of the key.
#[tokio::test]
async fn read_uncommitted_ordered_by_key_locks_keys_of_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Never).await;
    let keyed = |k: &str| AppendBatch::new(vec![Record::keyed(k.to_string(), "v")]);
    s.append("t", 0, keyed("a")).await.unwrap(); // 0
    s.append("t", 0, keyed("b")).await.unwrap(); // 1
    let b = txn_records(9, 0, 0, &[Record::keyed("b", "open")]);
    s.append_batch("t", 0, b, TimestampType::CreateTime)
        .await
        .unwrap(); // 2, left open
    s.append("t", 0, keyed("c")).await.unwrap(); // 3
    let cfg = uncommitted(|c| c.ordered_by_key = true);
    s.set_lease_group("t", "k", cfg).await.unwrap();
    let vis = Duration::from_secs(30);
    let first = s.lease("t", 0, "k", 3, vis).await.unwrap();
    assert_eq!(offsets(&first), vec![0, 1, 2]);
    s.release("t", "k", first[1].token, Duration::ZERO)
        .await
        .unwrap();
    // 1 waits for 2 (key b, in flight in the open transaction); 3 is free.
    let next = s.lease("t", 0, "k", 10, vis).await.unwrap();
    assert_eq!(offsets(&next), vec![3]);
    ack_all(&s, "k", &first[2..]).await;
    let next = s.lease("t", 0, "k", 10, vis).await.unwrap();
    assert_eq!(offsets(&next), vec![1]);
    s.close().await.unwrap();
}

/// Delete-records past an abort marker forgets the aborted transaction; the last stable
/// offset never falls below the log start.
#[tokio::test]
async fn retention_forgets_aborted_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Never).await;
    send(&s, 1, 0, 2).await; // 0-1
    s.write_txn_marker("t", 0, marker(1, false)).await.unwrap(); // 2
    send(&s, 2, 0, 1).await; // 3, aborted by 5
    plain(&s, "4").await; // 4
    s.write_txn_marker("t", 0, marker(2, false)).await.unwrap(); // 5
    let f = s.fetch_batches("t", 0, 0, COMMITTED).await.unwrap();
    assert_eq!(f.aborted.len(), 2);
    s.delete_records("t", 0, 3).await.unwrap();
    let f = s.fetch_batches("t", 0, 3, COMMITTED).await.unwrap();
    assert_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: 2,
            first_offset: 3
        }]
    );
    send(&s, 1, 2, 1).await; // 6, open
    plain(&s, "7").await;
    s.delete_records("t", 0, 8).await.unwrap();
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.log_start_offset, o.last_stable_offset), (8, 8));
    s.close().await.unwrap();
    let s = open(dir.path());
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.log_start_offset, o.last_stable_offset), (8, 8));
    s.close().await.unwrap();
}

/// A snapshot ahead of the log (the log lost its tail after a clean close) is ignored: the
/// transaction state is rebuilt from the batches left, so a marker lost with the tail leaves
/// its transaction open.
#[tokio::test]
async fn snapshot_ahead_of_the_log_rebuilds_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Never).await;
    send(&s, 1, 0, 2).await; // 0-1
    s.write_txn_marker("t", 0, marker(1, false)).await.unwrap(); // 2
    send(&s, 2, 0, 1).await; // 3
    s.write_txn_marker("t", 0, marker(2, true)).await.unwrap(); // 4
    s.close().await.unwrap();
    // Cut the last of the 4 batches (the commit of producer 2).
    let seg = dir.path().join("topics/t~0/0/00000000000000000000.log");
    let data = std::fs::read(&seg).unwrap();
    let mut pos = 0;
    for _ in 0..3 {
        pos += 12 + u32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
    }
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(pos as u64).unwrap();

    std::fs::remove_file(dir.path().join(store_log::CLEAN_SHUTDOWN)).unwrap();
    let s = open(dir.path());
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable_offset), (4, 3));
    let f = s.fetch_batches("t", 0, 0, COMMITTED).await.unwrap();
    assert_eq!(bases(&f.chunks), vec![0, 2]);
    assert_eq!(
        f.aborted,
        vec![AbortedTxn {
            producer_id: 1,
            first_offset: 0
        }]
    );
    s.close().await.unwrap();
}

/// Markers written under `always` are synced before the call returns and visible then;
/// record fetches step over them.
#[tokio::test]
async fn markers_follow_the_topic_durability() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Always).await;
    send(&s, 1, 0, 2).await;
    assert_eq!(
        s.write_txn_marker("t", 0, marker(1, true)).await.unwrap(),
        2
    );
    plain(&s, "3").await;
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable_offset), (4, 4));
    let f = s.fetch("t", 0, 2, FetchLimits::default()).await.unwrap();
    assert_eq!(
        f.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![3]
    );
    // A marker with a negative producer id is refused, nothing written.
    assert!(s.write_txn_marker("t", 0, marker(-1, true)).await.is_err());
    assert_eq!(s.partition_offsets("t", 0).await.unwrap().high_watermark, 4);
    s.close().await.unwrap();
}

/// `verify` finds nothing wrong with transactional batches and markers.
#[tokio::test]
async fn verify_accepts_transactional_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    topic(&s, Durability::Never).await;
    for i in 0..30 {
        send(&s, 1, i * 2, 2).await;
        s.write_txn_marker("t", 0, marker(1, i % 2 == 0))
            .await
            .unwrap();
    }
    s.close().await.unwrap();
    let r = store_log::verify(dir.path(), false).unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
    assert!(r.segments > 1, "several segments: {}", r.segments);
    // An unclean open (every batch verified) keeps all of it.
    std::fs::remove_file(dir.path().join(store_log::CLEAN_SHUTDOWN)).unwrap();
    let s = open(dir.path());
    assert_eq!(
        s.partition_offsets("t", 0).await.unwrap().high_watermark,
        90
    );
    assert_eq!(s.corrupt_batches_total(), 0);
    let f = s.fetch_batches("t", 0, 0, COMMITTED).await.unwrap();
    assert_eq!(f.aborted.len(), 15);
    s.close().await.unwrap();
}
