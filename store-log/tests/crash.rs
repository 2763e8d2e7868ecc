//! Crash tests: a child process appends and acks with `always` durability and is killed with
//! SIGKILL at random moments; after each kill the store is reopened and checked.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, Durability, FetchLimits, Record, Store, StoreError, SystemClock, TopicConfig,
};
use rand::Rng;
use store_log::{LogOptions, LogStore};

const CHILD_ENV: &str = "STORE_LOG_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "STORE_LOG_CRASH_CYCLE";

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 32 << 10,
        index_interval_bytes: 256,
        index_bytes: 4 << 10,
        snapshot_bytes: 16 << 10,
        ..LogOptions::default()
    }
}

fn value(cycle: u64, i: u64) -> String {
    format!("c{cycle}-r{i}-{}", "p".repeat((i % 40) as usize))
}

async fn open_or_create(dir: &Path) -> LogStore {
    let s = LogStore::open(dir, options(), Arc::new(SystemClock)).expect("open");
    let cfg = TopicConfig {
        durability: Durability::Always,
        ..TopicConfig::with_partitions(1)
    };
    match s.create_topic("c", cfg).await {
        Ok(_) | Err(StoreError::TopicExists(_)) => {}
        Err(e) => panic!("create topic: {e}"),
    }
    s
}

/// The child: appends and acks until killed, printing each acknowledged append and ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_cycles in a child process"]
async fn crash_child() {
    let dir = std::env::var(CHILD_ENV).expect("crash_child runs only as a child of crash_cycles");
    let cycle: u64 = std::env::var(CYCLE_ENV).unwrap().parse().unwrap();
    let s = Arc::new(open_or_create(Path::new(&dir)).await);
    println!("READY");
    // A few concurrent appenders so that group commit is exercised too.
    let mut tasks = Vec::new();
    for w in 0..3u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w * 1_000_000;
            loop {
                let n = 1 + (i % 4);
                let recs = (0..n)
                    .map(|k| Record::from_value(value(cycle, i + k)))
                    .collect();
                let r = s.append("c", 0, AppendBatch::new(recs)).await.unwrap();
                println!("A {} {n} {i}", r.base_offset);
                i += n;
            }
        }));
    }
    let s2 = s.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let leases = s2
                .lease("c", 0, "g", 5, Duration::from_secs(3600))
                .await
                .unwrap();
            if leases.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let tokens: Vec<_> = leases.iter().map(|l| l.token).collect();
            let res = s2.ack("c", "g", &tokens).await.unwrap();
            for (t, r) in tokens.iter().zip(res) {
                r.unwrap();
                println!("K {}", t.offset);
            }
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
}

/// What the children acknowledged, over all cycles.
#[derive(Default)]
struct Acked {
    /// base offset -> (cycle, count, first value index)
    appends: BTreeMap<i64, (u64, u64, u64)>,
    acks: HashSet<i64>,
}

async fn verify(dir: &Path, acked: &Acked) {
    let s = LogStore::open(dir, options(), Arc::new(SystemClock)).expect("reopen after a crash");
    let o = s.partition_offsets("c", 0).await.unwrap();
    // Every record reads back, offsets dense from the log start.
    let mut next = o.log_start_offset;
    let mut all = BTreeMap::new();
    while next < o.high_watermark {
        let f = s
            .fetch(
                "c",
                0,
                next,
                FetchLimits {
                    max_records: 5000,
                    max_bytes: 4 << 20,
                },
            )
            .await
            .expect("nothing corrupt is served after a crash");
        assert!(!f.records.is_empty());
        for r in f.records {
            assert_eq!(r.offset, next, "offsets are dense");
            all.insert(r.offset, r.value.unwrap());
            next += 1;
        }
    }
    for (&base, &(cycle, n, i0)) in &acked.appends {
        for k in 0..n {
            let off = base + k as i64;
            let v = all.get(&off).unwrap_or_else(|| {
                panic!("acknowledged record {off} lost (hw {})", o.high_watermark)
            });
            assert_eq!(
                &v[..],
                value(cycle, i0 + k).as_bytes(),
                "record {off} changed"
            );
        }
    }
    // No acked record is leased again.
    let leases = s
        .lease("c", 0, "g", 1_000_000, Duration::from_millis(1))
        .await
        .unwrap();
    for l in &leases {
        assert!(
            !acked.acks.contains(&l.record.offset),
            "acked record {} leased again",
            l.record.offset
        );
    }
    let c = s.lease_counts("c", 0, "g").await.unwrap();
    assert!(
        c.done >= acked.acks.len() as u64,
        "acks lost: done {} < {}",
        c.done,
        acked.acks.len()
    );
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = Acked::default();
    let mut rng = rand::thread_rng();
    let cycles = 20;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(CYCLE_ENV, cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Started once its first append was acknowledged.
                if l.starts_with("A ") {
                    let _ = tx.send(());
                }
                lines.push(l);
            }
            lines
        });
        // Once it is running, let it work a random while, then kill it mid-flight.
        let started = rx.recv_timeout(Duration::from_secs(60)).is_ok();
        let delay = rng.gen_range(20..250);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(
            started,
            "child never started: {:?}",
            &lines[..lines.len().min(5)]
        );
        let before = acked.appends.len();
        for l in &lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["A", base, n, i] => {
                    acked.appends.insert(
                        base.parse().unwrap(),
                        (cycle, n.parse().unwrap(), i.parse().unwrap()),
                    );
                }
                ["K", off] => {
                    acked.acks.insert(off.parse().unwrap());
                }
                _ => {}
            }
        }
        assert!(
            acked.appends.len() > before,
            "cycle {cycle}: the child acknowledged nothing"
        );
        verify(dir.path(), &acked).await;
    }
    assert!(!acked.acks.is_empty(), "no ack was ever acknowledged");
}

// ---- transactions across a SIGKILL ----

const TXN_CHILD_ENV: &str = "STORE_LOG_TXN_CRASH_CHILD_DIR";

/// A transactional batch of `n` records as a producer sends it.
fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, n: usize) -> bytes::Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record::from_value(format!("p{producer_id}e{epoch}s{first_sequence}-{i}")))
        .collect();
    let mut buf = Vec::new();
    let p = broker_api::ProducerBatch {
        producer_id,
        epoch,
        first_sequence,
    };
    kafka_batch::encode_records(&mut buf, &records, 1_000, Some(p)).unwrap();
    kafka_batch::set_transactional(&mut buf);
    bytes::Bytes::from(buf)
}

fn txn_marker(producer_id: i64, producer_epoch: i16, commit: bool) -> broker_api::TxnMarker {
    broker_api::TxnMarker {
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch: 3,
    }
}

async fn send_txn(s: &LogStore, producer_id: i64, epoch: i16, seq: i32, n: usize) -> i64 {
    s.append_batch(
        "x",
        0,
        txn_batch(producer_id, epoch, seq, n),
        broker_api::TimestampType::CreateTime,
    )
    .await
    .unwrap()
    .base_offset
}

/// The child of `transactions_survive_sigkill`: continues the parent's transactions after
/// a clean reopen, prints DONE and waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by transactions_survive_sigkill in a child process"]
async fn txn_crash_child() {
    let dir = std::env::var(TXN_CHILD_ENV).expect("run by transactions_survive_sigkill");
    let s = LogStore::open(Path::new(&dir), options(), Arc::new(SystemClock)).unwrap();
    let plain = AppendBatch::new(vec![Record::from_value("plain")]);
    assert_eq!(s.append("x", 0, plain).await.unwrap().base_offset, 3);
    // Producer 1's transaction aborted by a marker of a newer epoch.
    assert_eq!(
        s.write_txn_marker("x", 0, txn_marker(1, 1, false))
            .await
            .unwrap(),
        4
    );
    assert_eq!(send_txn(&s, 1, 1, 0, 1).await, 5);
    println!("DONE");
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

/// Checks the transaction state the child left: 0-1 producer 1 (aborted by 4), 2 producer 2
/// (open), 3 plain, 4 the abort, 5 producer 1 at epoch 1 (open).
async fn check_txn_state(s: &LogStore) {
    let o = s.partition_offsets("x", 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable_offset), (6, 2));
    let committed = broker_api::BatchLimits {
        max_bytes: 1 << 20,
        min_one: true,
        read_committed: true,
    };
    let f = s.fetch_batches("x", 0, 0, committed).await.unwrap();
    let bases: Vec<i64> = kafka_batch::split_batches(&f.concat())
        .unwrap()
        .iter()
        .map(|b| kafka_batch::BatchHeader::read(b).unwrap().base_offset)
        .collect();
    assert_eq!(bases, vec![0]);
    assert_eq!(
        f.aborted,
        vec![broker_api::AbortedTxn {
            producer_id: 1,
            first_offset: 0
        }]
    );
    let states: Vec<_> = s
        .producer_states("x", 0)
        .await
        .unwrap()
        .iter()
        .map(|p| (p.producer_id, p.epoch, p.last_sequence, p.txn_start_offset))
        .collect();
    assert_eq!(states, vec![(1, 1, 0, Some(5)), (2, 0, 0, Some(2))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Before the snapshot a clean close writes: producer 1 at 0-1, producer 2 at 2.
    {
        let s = LogStore::open(dir.path(), options(), Arc::new(SystemClock)).unwrap();
        let cfg = TopicConfig {
            durability: Durability::Always,
            ..TopicConfig::with_partitions(1)
        };
        s.create_topic("x", cfg).await.unwrap();
        assert_eq!(send_txn(&s, 1, 0, 0, 2).await, 0);
        assert_eq!(send_txn(&s, 2, 0, 0, 1).await, 2);
        s.close().await.unwrap();
    }
    // After it, in a process killed without closing: replayed from the log on reopen.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "txn_crash_child",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(TXN_CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let done = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // The test harness may print "test txn_crash_child ... " before it on the line.
        .any(|l| l.ends_with("DONE"));
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    assert!(done, "the child did not finish its writes");
    assert!(!dir.path().join(store_log::CLEAN_SHUTDOWN).exists());
    let s = LogStore::open(dir.path(), options(), Arc::new(SystemClock)).unwrap();
    check_txn_state(&s).await;
    // The marker's epoch fences producer 1's old one.
    let err = s
        .append_batch(
            "x",
            0,
            txn_batch(1, 0, 2, 1),
            broker_api::TimestampType::CreateTime,
        )
        .await;
    assert!(
        matches!(err, Err(StoreError::ProducerFenced { .. })),
        "{err:?}"
    );
    s.close().await.unwrap();
    // Without the snapshot the whole log is replayed, to the same state.
    std::fs::remove_file(dir.path().join("topics/x~0/0/producers.snapshot")).unwrap();
    let s = LogStore::open(dir.path(), options(), Arc::new(SystemClock)).unwrap();
    check_txn_state(&s).await;
    // Committing producer 2 moves the last stable offset to producer 1's open transaction.
    assert_eq!(
        s.write_txn_marker("x", 0, txn_marker(2, 0, true))
            .await
            .unwrap(),
        6
    );
    let o = s.partition_offsets("x", 0).await.unwrap();
    assert_eq!((o.high_watermark, o.last_stable_offset), (7, 5));
    s.close().await.unwrap();
}
