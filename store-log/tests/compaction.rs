//! Compaction of the log store beyond the conformance checks: a large history, a cleaner
//! stopped at every step of a segment swap, a cleaner process killed with SIGKILL, and a
//! key map too small for one pass.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_api::{
    AppendBatch, CleanupPolicy, CompactionStats, FetchLimits, ManualClock, Record, SharedClock,
    Store, SystemClock, TopicConfig,
};
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use store_log::{CleanerStop, FaultInjector, LogOptions, LogStore};

const DELETE_RETENTION_MS: i64 = 60_000;
const SEGMENT_MS: i64 = 3_600_000;

fn options(segment_bytes: u64, cleaner_memory_bytes: usize) -> LogOptions {
    LogOptions {
        segment_bytes,
        index_interval_bytes: 1024,
        index_bytes: 16 << 10,
        cleaner_memory_bytes,
        ..LogOptions::default()
    }
}

fn compacted() -> TopicConfig {
    TopicConfig {
        segment_ms: Some(SEGMENT_MS),
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

/// (offset, key, value) of a record; `None` for a tombstone.
type Row = (i64, String, Option<String>);

fn kv(key: &str, value: Option<String>) -> Record {
    Record {
        key: Some(Bytes::from(key.to_string())),
        value: value.map(Bytes::from),
        ..Record::default()
    }
}

/// Appends one batch; returns its rows.
async fn append(s: &LogStore, recs: Vec<(String, Option<String>)>) -> Vec<Row> {
    let batch = recs.iter().map(|(k, v)| kv(k, v.clone())).collect();
    let r = s.append("t", 0, AppendBatch::new(batch)).await.unwrap();
    recs.into_iter()
        .enumerate()
        .map(|(i, (k, v))| (r.base_offset + i as i64, k, v))
        .collect()
}

/// Every record from the log start; offsets must grow strictly (no duplicates).
async fn survivors(s: &LogStore) -> Vec<Row> {
    let o = s.partition_offsets("t", 0).await.unwrap();
    let mut out: Vec<Row> = Vec::new();
    let mut next = o.log_start_offset;
    let limits = FetchLimits {
        max_records: 10_000,
        max_bytes: 4 << 20,
    };
    while next < o.high_watermark {
        let f = s.fetch("t", 0, next, limits).await.unwrap();
        let Some(last) = f.records.last().map(|r| r.offset) else {
            break;
        };
        for r in f.records {
            assert!(r.offset >= next, "offset {} fetched again", r.offset);
            let s = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
            out.push((r.offset, s(&r.key).unwrap(), s(&r.value)));
        }
        next = last + 1;
    }
    out
}

/// Compacts until a call neither moves the cleanable end nor removes a record; returns the
/// number of calls and the summed stats.
async fn compact_until_done(s: &LogStore) -> (usize, CompactionStats) {
    let mut total = CompactionStats::default();
    for calls in 1..=1000 {
        let st = s.compact("t", 0, None).await.unwrap();
        total.records_removed += st.records_removed;
        total.bytes_read += st.bytes_read;
        total.bytes_written += st.bytes_written;
        let done = st.cleaned_to <= total.cleaned_to && st.records_removed == 0;
        total.cleaned_to = total.cleaned_to.max(st.cleaned_to);
        if done {
            return (calls, total);
        }
    }
    panic!("compaction never finished");
}

/// Seals the active segment: the segment age passes and one more record rolls it.
async fn roll(s: &LogStore, clock: &ManualClock) -> Vec<Row> {
    clock.advance(SEGMENT_MS);
    append(s, vec![("sentinel".into(), Some("s".into()))]).await
}

/// Below `end`, the newest record of each key (tombstones too unless `drop_tombstones`);
/// everything at or past it.
fn expected(all: &[Row], end: i64, drop_tombstones: bool) -> Vec<Row> {
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for (o, k, _) in all.iter().filter(|r| r.0 < end) {
        newest.insert(k, *o);
    }
    all.iter()
        .filter(|(o, k, v)| {
            *o >= end || (newest[k.as_str()] == *o && !(drop_tombstones && v.is_none()))
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_history_compacts_to_one_record_per_live_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let segment_bytes = 256 << 10;
    let s = LogStore::open(
        dir.path(),
        options(segment_bytes, 32 << 20),
        Arc::new(clock.clone()),
    )
    .unwrap();
    s.create_topic("t", compacted()).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (records, keys) = (200_000usize, 10_000usize);
    let mut latest: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut all = Vec::with_capacity(records);
    for b in 0..records / 100 {
        let batch: Vec<(String, Option<String>)> = (0..100)
            .map(|i| {
                let key = format!("key-{}", rng.gen_range(0..keys));
                let value = (rng.gen_range(0..10) != 0).then(|| {
                    format!(
                        "{key}-{}-{}",
                        b * 100 + i,
                        "v".repeat(rng.gen_range(40..120))
                    )
                });
                latest.insert(key.clone(), value.clone());
                (key, value)
            })
            .collect();
        all.extend(append(&s, batch).await);
    }
    all.extend(roll(&s, &clock).await);
    let appended = s.partition_disk_bytes()[0].2;
    let started = Instant::now();
    let (calls, stats) = compact_until_done(&s).await;
    let took = started.elapsed();
    println!(
        "compacted {records} records ({:.1} MB on disk) in {calls} calls, {took:?}: read {:.1} MB \
         ({:.1} MB/s), wrote {:.1} MB, removed {}",
        appended as f64 / 1e6,
        stats.bytes_read as f64 / 1e6,
        stats.bytes_read as f64 / 1e6 / took.as_secs_f64(),
        stats.bytes_written as f64 / 1e6,
        stats.records_removed
    );
    let end = stats.cleaned_to;
    assert_eq!(
        end, records as i64,
        "everything before the sentinel is cleanable"
    );
    assert_eq!(survivors(&s).await, expected(&all, end, false));
    // Once the delete retention has passed, the tombstones go too.
    clock.advance(DELETE_RETENTION_MS);
    compact_until_done(&s).await;
    let got = survivors(&s).await;
    assert_eq!(got, expected(&all, end, true));
    let live: BTreeMap<String, String> = latest
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
        .collect();
    let got_live: BTreeMap<String, String> = got
        .iter()
        .filter(|r| r.1 != "sentinel")
        .map(|(_, k, v)| (k.clone(), v.clone().expect("no tombstone is left")))
        .collect();
    assert_eq!(got.len() - 1, live.len(), "one record per live key");
    assert_eq!(got_live, live, "the newest value of every live key");
    // Disk: at most twice the live data, plus the active segment and small files.
    let live_bytes: u64 = got
        .iter()
        .map(|(_, k, v)| (k.len() + v.as_ref().map_or(0, |v| v.len())) as u64)
        .sum();
    let disk = s.partition_disk_bytes()[0].2;
    println!("disk {disk} bytes after compaction, live data {live_bytes} bytes");
    assert!(
        disk < 2 * live_bytes + segment_bytes + (64 << 10),
        "{disk} bytes on disk for {live_bytes} bytes of live data"
    );
    let metrics = s.store_metrics();
    let counter = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value.clone())
    };
    assert!(matches!(
        counter("broker_log_cleaner_removed_records_total"),
        Some(broker_api::MetricValue::Counter(n)) if n == (records + 1 - got.len()) as u64
    ));
    assert!(metrics
        .iter()
        .any(|m| m.name == "broker_log_cleaner_cleaned_to_offset"));
    // The same after reopen.
    s.close().await.unwrap();
    let s = LogStore::open(
        dir.path(),
        options(segment_bytes, 32 << 20),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert_eq!(survivors(&s).await, got);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_key_map_needs_several_calls_for_the_same_result() {
    let clock = ManualClock::new(1_000_000);
    let mut results = Vec::new();
    // 40 keys of entries: more than one batch, far fewer than the 300 keys.
    for memory in [32 << 20, 40 * kafka_batch::OFFSET_MAP_ENTRY_BYTES] {
        let dir = tempfile::tempdir().unwrap();
        let s = LogStore::open(
            dir.path(),
            options(4 << 10, memory),
            Arc::new(clock.clone()),
        )
        .unwrap();
        s.create_topic("t", compacted()).await.unwrap();
        let mut all = Vec::new();
        for b in 0..300 {
            let batch = (0..10)
                .map(|i| {
                    let key = format!("k{}", (b * 7 + i * 31) % 300);
                    (key, Some(format!("v{b}-{i}")))
                })
                .collect();
            all.extend(append(&s, batch).await);
        }
        all.extend(roll(&s, &clock).await);
        let first = s.compact("t", 0, None).await.unwrap();
        let (calls, total) = compact_until_done(&s).await;
        let got = survivors(&s).await;
        assert_eq!(got, expected(&all, total.cleaned_to, false));
        results.push((first.cleaned_to, calls, got));
    }
    let (big, small) = (&results[0], &results[1]);
    assert_eq!(big.0, 3000, "a large map cleans everything in one call");
    assert!(small.0 < big.0, "a small map cleans a prefix first");
    assert!(small.1 > 1, "and needs more calls");
    assert_eq!(small.2, big.2, "to the same result");
}

/// A store for the crash tests: keys `k0..k49`, batches of 10, small segments; the last
/// sentinel seals everything else. Returns every row.
async fn fill(s: &LogStore, clock: &ManualClock, batches: usize) -> Vec<Row> {
    s.create_topic("t", compacted()).await.unwrap();
    let mut all = Vec::new();
    for b in 0..batches {
        let batch = (0..10)
            .map(|i| {
                let key = format!("k{}", (b * 3 + i * 7) % 50);
                let v = (i != 3).then(|| format!("{key}={b}.{i}"));
                (key, v)
            })
            .collect();
        all.extend(append(s, batch).await);
    }
    all.extend(roll(s, clock).await);
    all
}

/// Every surviving record is one of `all` unchanged, no offset twice, and the newest
/// record of every key survives; the offsets are as before.
async fn check_either_way(s: &LogStore, all: &[Row]) {
    let by_offset: HashMap<i64, &Row> = all.iter().map(|r| (r.0, r)).collect();
    let got = survivors(s).await;
    for r in &got {
        assert_eq!(Some(&r), by_offset.get(&r.0), "record {} changed", r.0);
    }
    let mut newest: HashMap<&str, i64> = HashMap::new();
    for (o, k, _) in all {
        newest.insert(k, *o);
    }
    for (k, o) in newest {
        assert!(
            got.iter().any(|r| r.0 == o),
            "the newest record of {k} ({o}) is lost"
        );
    }
    let o = s.partition_offsets("t", 0).await.unwrap();
    assert_eq!(
        (o.log_start_offset, o.high_watermark),
        (0, all.len() as i64)
    );
    // Offsets and timestamps still answer from the survivors.
    let first = s.offset_for_timestamp("t", 0, 0).await.unwrap().unwrap();
    assert_eq!(first.offset, got[0].0);
    let f = s
        .fetch("t", 0, got[1].0 - 1, FetchLimits::default())
        .await
        .unwrap();
    assert!(f.records[0].offset <= got[1].0);
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let pdir = std::fs::read_dir(dir.join("topics"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("0");
    for e in std::fs::read_dir(pdir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if [".cleaned", ".swap", ".deleted"]
            .iter()
            .any(|x| name.ends_with(x))
        {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleaner_stopped_at_any_step_of_a_swap_loses_and_duplicates_nothing() {
    let steps = [
        (CleanerStop::CleanedWritten, ".log.cleaned"),
        (CleanerStop::SwapRenamed, ".log.swap"),
        (CleanerStop::OldDeleted, ".log.deleted"),
    ];
    for (step, left) in steps {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(1_000_000);
        let faults = FaultInjector::new();
        let opts = LogOptions {
            faults: Some(faults.clone()),
            ..options(2 << 10, 1 << 20)
        };
        let s = LogStore::open(dir.path(), opts, Arc::new(clock.clone())).unwrap();
        let all = fill(&s, &clock, 60).await;
        faults.stop_cleaner_after(step);
        let err = s.compact("t", 0, None).await;
        assert!(
            err.is_err(),
            "{step:?}: the injected stop did not fail the call"
        );
        assert!(
            leftovers(dir.path()).iter().any(|n| n.ends_with(left)),
            "{step:?}: no {left} file: {:?}",
            leftovers(dir.path())
        );
        // Readers of the running store are not disturbed.
        check_either_way(&s, &all).await;
        // A crash: no close.
        drop(s);
        let s = LogStore::open(
            dir.path(),
            options(2 << 10, 1 << 20),
            Arc::new(clock.clone()),
        )
        .unwrap();
        assert!(
            leftovers(dir.path()).is_empty(),
            "{step:?}: recovery left files"
        );
        check_either_way(&s, &all).await;
        let (_, stats) = compact_until_done(&s).await;
        assert_eq!(
            survivors(&s).await,
            expected(&all, stats.cleaned_to, false),
            "{step:?}: compaction after recovery"
        );
        s.close().await.unwrap();
    }
}

const CHILD_ENV: &str = "STORE_LOG_COMPACTION_CHILD_DIR";

/// The child of `a_cleaner_killed_with_sigkill_recovers`: appends and compacts until killed,
/// printing each acknowledged append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_cleaner_killed_with_sigkill_recovers in a child process"]
async fn compaction_child() {
    let dir = std::env::var(CHILD_ENV).expect("run by a_cleaner_killed_with_sigkill_recovers");
    let clock: SharedClock = Arc::new(SystemClock);
    let s = Arc::new(LogStore::open(Path::new(&dir), options(2 << 10, 4 << 10), clock).unwrap());
    let cleaner = {
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                s.compact("t", 0, None).await.unwrap();
                println!("C");
            }
        })
    };
    for b in 0u64.. {
        let recs = (0..5)
            .map(|i| {
                let key = format!("k{}", (b * 3 + i * 7) % 50);
                let v = format!("{key}=child{b}.{i}");
                (key, Some(v))
            })
            .collect();
        let rows = append(&s, recs).await;
        println!("A {} {b}", rows[0].0);
        if cleaner.is_finished() {
            break;
        }
    }
    cleaner.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleaner_killed_with_sigkill_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = {
        let clock = ManualClock::new(1_000_000);
        let s = LogStore::open(
            dir.path(),
            options(2 << 10, 4 << 10),
            Arc::new(clock.clone()),
        )
        .unwrap();
        let all = fill(&s, &clock, 200).await;
        s.close().await.unwrap();
        all
    };
    let mut rng = rand::thread_rng();
    for cycle in 0..6 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "compaction_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if l.ends_with('C') {
                    let _ = tx.send(());
                }
                lines.push(l);
            }
            lines
        });
        let cleaning = rx.recv_timeout(Duration::from_secs(60)).is_ok();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..150)));
        child.kill().expect("SIGKILL the child");
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        assert!(cleaning, "cycle {cycle}: the child never compacted");
        // Acknowledged appends: 5 records each, values derived from the key.
        let s = LogStore::open(
            dir.path(),
            options(2 << 10, 4 << 10),
            Arc::new(SystemClock) as SharedClock,
        )
        .unwrap();
        assert!(
            leftovers(dir.path()).is_empty(),
            "cycle {cycle}: recovery left files"
        );
        let got = survivors(&s).await;
        let by_offset: HashMap<i64, &Row> = got.iter().map(|r| (r.0, r)).collect();
        let mut newest: HashMap<String, i64> = HashMap::new();
        for (o, k, _) in &all {
            newest.insert(k.clone(), *o);
        }
        for l in &lines {
            let f: Vec<&str> = l.split_whitespace().collect();
            let ["A", base, b] = f.as_slice() else {
                continue;
            };
            let (base, b): (i64, u64) = (base.parse().unwrap(), b.parse().unwrap());
            for i in 0..5u64 {
                let key = format!("k{}", (b * 3 + i * 7) % 50);
                let off = base + i as i64;
                newest.insert(key.clone(), off);
                if let Some(r) = by_offset.get(&off) {
                    let want = (off, key.clone(), Some(format!("{key}=child{b}.{i}")));
                    assert_eq!(**r, want, "cycle {cycle}: record {off} changed");
                }
            }
        }
        // Every key's newest acknowledged record survives, or a newer one of the key does.
        for (k, o) in &newest {
            assert!(
                got.iter().any(|r| &r.1 == k && r.0 >= *o),
                "cycle {cycle}: the newest record of {k} ({o}) is lost"
            );
        }
        all = got;
        s.close().await.unwrap();
    }
}
