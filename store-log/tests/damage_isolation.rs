//! Damage is contained: a damaged batch costs only itself. Reads serve every batch before it
//! and fail only when they start at it (naming the file); other partitions and leases go on;
//! the active segment's tail is verified on every open, clean or not, and a damaged tail is cut
//! into a quarantine file; damaged indexes, time indexes and metadata files are noticed, named
//! and (where the store can) rebuilt; `store_log::verify` lists every problem by file and byte.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use broker_api::{
    AppendBatch, FetchLimits, ManualClock, OffsetCommit, ProducerBatch, Record, Store, StoreError,
    TopicConfig,
};
use store_log::{verify, LogError, LogOptions, LogStore, CLEAN_SHUTDOWN};

const RECORDS: i64 = 600;

fn options() -> LogOptions {
    LogOptions {
        // One segment per partition unless a test asks for more.
        segment_bytes: 1 << 20,
        index_interval_bytes: 200,
        ..LogOptions::default()
    }
}

fn value(i: i64) -> Vec<u8> {
    format!("v{i}-{}", "z".repeat((i % 30) as usize)).into_bytes()
}

fn open_with(dir: &Path, opts: LogOptions) -> LogStore {
    LogStore::open(dir, opts, Arc::new(ManualClock::default())).expect("the store opens")
}

fn open(dir: &Path) -> LogStore {
    open_with(dir, options())
}

/// Appends offsets 0..RECORDS in batches of 1-4 records to partition `p` of `d`.
async fn fill(s: &LogStore, p: i32) {
    let mut i = 0;
    while i < RECORDS {
        let n = (1 + i % 4).min(RECORDS - i);
        let recs = (i..i + n)
            .map(|k| Record {
                value: Some(value(k).into()),
                timestamp_ms: Some(1000 + k),
                ..Record::default()
            })
            .collect();
        s.append("d", p, AppendBatch::new(recs)).await.unwrap();
        i += n;
    }
}

/// A closed store with topic `d` of two partitions, each holding offsets 0..RECORDS.
async fn build(dir: &Path, opts: LogOptions) {
    let s = open_with(dir, opts);
    s.create_topic("d", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    fill(&s, 0).await;
    fill(&s, 1).await;
    s.close().await.unwrap();
}

fn pdir(root: &Path, p: i32) -> PathBuf {
    root.join(format!("topics/d~0/{p}"))
}

fn files(root: &Path, p: i32, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(pdir(root, p))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn quarantined(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| f.to_string_lossy().contains(".quarantine-"))
        .collect();
    v.sort();
    v
}

/// (position, total length, base offset, record count) of each batch of a segment file.
fn batches(path: &Path) -> Vec<(usize, usize, i64, i64)> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 61 <= data.len() {
        let base = i64::from_be_bytes(data[pos..pos + 8].try_into().unwrap());
        let len = u32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let n = u32::from_be_bytes(data[pos + 57..pos + 61].try_into().unwrap()) as i64;
        out.push((pos, 12 + len, base, n));
        pos += 12 + len;
    }
    out
}

fn flip(path: &Path, at: usize, n: usize) {
    let mut data = std::fs::read(path).unwrap();
    for b in &mut data[at..at + n] {
        *b ^= 0x5a;
    }
    std::fs::write(path, &data).unwrap();
}

/// The records of one fetch from `from` with no practical limits.
async fn fetch_all(s: &LogStore, p: i32, from: i64) -> Result<Vec<i64>, StoreError> {
    let f = s
        .fetch(
            "d",
            p,
            from,
            FetchLimits {
                max_records: 100_000,
                max_bytes: 64 << 20,
            },
        )
        .await?;
    for r in &f.records {
        assert_eq!(
            r.value.as_deref(),
            Some(&value(r.offset)[..]),
            "record {}",
            r.offset
        );
    }
    Ok(f.records.iter().map(|r| r.offset).collect())
}

fn corrupt_message(r: Result<Vec<i64>, StoreError>) -> String {
    match r {
        Err(StoreError::Corrupt(m)) => m,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// The batch in the middle of partition 0's segment whose bytes are flipped (its body only,
/// so its header stays readable): (position, length, base offset, count).
fn middle_batch(seg: &Path) -> (usize, usize, i64, i64) {
    let bs = batches(seg);
    bs[bs.len() / 2]
}

#[tokio::test]
async fn damage_in_the_middle_of_a_segment_costs_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, options()).await;
    let seg = files(root, 0, "log").pop().unwrap();
    let (pos, len, base, n) = middle_batch(&seg);
    assert!(base > 100 && base + n < RECORDS - 100);
    flip(&seg, pos + len - 8, 4);
    let s = open(root);
    assert_eq!(
        s.corrupt_batches_total(),
        0,
        "a mid-segment batch is not checked on open"
    );
    // One fetch from the start serves every record before the damage.
    let got = fetch_all(&s, 0, 0).await.unwrap();
    assert_eq!(got, (0..base).collect::<Vec<_>>());
    // Only the fetch that starts at the damaged batch fails, naming file, byte and offsets.
    for from in base..base + n {
        let m = corrupt_message(fetch_all(&s, 0, from).await);
        assert!(m.contains(&seg.display().to_string()), "{m}");
        assert!(m.contains(&format!("byte {pos}")), "{m}");
        assert!(
            m.contains(&format!("offsets {base}..={}", base + n - 1)),
            "{m}"
        );
    }
    // The batches after it are intact and readable.
    let after = fetch_all(&s, 0, base + n).await.unwrap();
    assert_eq!(after, (base + n..RECORDS).collect::<Vec<_>>());
    // Other partitions are not affected.
    let other = fetch_all(&s, 1, 0).await.unwrap();
    assert_eq!(other.len() as i64, RECORDS);
    // Counted once, however often it was met.
    assert_eq!(s.corrupt_batches_total(), 1);
    assert_eq!(s.corrupt_batches(), 1, "through the Store trait");
    // Producing goes on.
    let r = s
        .append("d", 0, AppendBatch::new(vec![Record::from_value("new")]))
        .await
        .unwrap();
    assert_eq!(r.base_offset, RECORDS);
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_header_in_a_sealed_segment_ends_reads_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let opts = LogOptions {
        segment_bytes: 8 << 10,
        ..options()
    };
    build(root, opts.clone()).await;
    let logs = files(root, 0, "log");
    assert!(logs.len() > 2);
    let seg = &logs[1];
    let (pos, _, base, _) = middle_batch(seg);
    let next_seg = batches(&logs[2])[0].2;
    // The length field: the batch can no longer be walked over.
    flip(seg, pos + 8, 4);
    let s = open_with(root, opts);
    // Open noticed it (it walks every header) and left it in place.
    assert_eq!(s.corrupt_batches_total(), 1);
    assert!(quarantined(&pdir(root, 0)).is_empty());
    let got = fetch_all(&s, 0, 0).await.unwrap();
    assert_eq!(got, (0..base).collect::<Vec<_>>());
    let m = corrupt_message(fetch_all(&s, 0, base).await);
    assert!(
        m.contains(&seg.display().to_string()) && m.contains(&format!("byte {pos}")),
        "{m}"
    );
    // The later segments stay readable, the other partition too.
    let later = fetch_all(&s, 0, next_seg).await.unwrap();
    assert_eq!(later, (next_seg..RECORDS).collect::<Vec<_>>());
    assert_eq!(fetch_all(&s, 1, 0).await.unwrap().len() as i64, RECORDS);
    assert_eq!(s.corrupt_batches_total(), 1, "counted once");
    s.close().await.unwrap();
}

#[tokio::test]
async fn leases_stop_at_a_damaged_batch_and_never_ack_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, options()).await;
    let seg = files(root, 0, "log").pop().unwrap();
    let (pos, len, base, n) = middle_batch(&seg);
    flip(&seg, pos + len - 8, 4);
    let s = open(root);
    let vis = Duration::from_secs(60);
    let leased = s.lease("d", 0, "g", 10_000, vis).await.unwrap();
    let offs: Vec<i64> = leased.iter().map(|l| l.token.offset).collect();
    assert_eq!(
        offs,
        (0..base).collect::<Vec<_>>(),
        "the records before the damage"
    );
    let tokens: Vec<_> = leased.iter().map(|l| l.token).collect();
    for r in s.ack("d", "g", &tokens).await.unwrap() {
        r.unwrap();
    }
    // Nothing past the damage is leased, skipped or acked: the damaged records stay pending.
    assert!(s.lease("d", 0, "g", 10_000, vis).await.unwrap().is_empty());
    let c = s.lease_counts("d", 0, "g").await.unwrap();
    assert_eq!(c.done, base as u64);
    assert_eq!(c.available, (RECORDS - base) as u64);
    assert!(n > 0);
    // The other partition leases everything.
    assert_eq!(
        s.lease("d", 1, "g", 10_000, vis).await.unwrap().len() as i64,
        RECORDS
    );
    s.close().await.unwrap();
}

/// Flips 8 bytes 40 bytes before the end of partition 0's segment (in its last batch), with
/// or without a clean shutdown before; the tail must be cut into quarantine on open.
async fn tail_damage(clean: bool) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, options()).await;
    if !clean {
        std::fs::remove_file(root.join(CLEAN_SHUTDOWN)).unwrap();
    }
    let seg = files(root, 0, "log").pop().unwrap();
    let original = std::fs::read(&seg).unwrap();
    let len = original.len();
    let (lpos, _, lbase, _) = *batches(&seg).last().unwrap();
    flip(&seg, len - 40, 8);
    let damaged = std::fs::read(&seg).unwrap();
    let s = open(root);
    let o = s.partition_offsets("d", 0).await.unwrap();
    assert_eq!(o.high_watermark, lbase, "the damaged last batch is cut off");
    assert_eq!(s.corrupt_batches_total(), 1);
    // Kept, not deleted: the quarantine file holds exactly the cut bytes.
    let q = quarantined(&pdir(root, 0));
    assert_eq!(q.len(), 1, "{q:?}");
    let name = q[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!(
            "{}.quarantine-",
            seg.file_name().unwrap().to_string_lossy()
        )),
        "{name}"
    );
    assert_eq!(std::fs::read(&q[0]).unwrap(), &damaged[lpos..]);
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, lpos);
    // Everything before is served in one fetch; the other partition is whole.
    assert_eq!(
        fetch_all(&s, 0, 0).await.unwrap(),
        (0..lbase).collect::<Vec<_>>()
    );
    assert_eq!(fetch_all(&s, 1, 0).await.unwrap().len() as i64, RECORDS);
    // Producing continues with dense offsets after the cut, and survives reopening.
    let r = s
        .append("d", 0, AppendBatch::new(vec![Record::from_value("after")]))
        .await
        .unwrap();
    assert_eq!(r.base_offset, lbase);
    s.close().await.unwrap();
    let s = open(root);
    let f = s
        .fetch("d", 0, lbase, FetchLimits::default())
        .await
        .unwrap();
    assert_eq!(f.records.len(), 1);
    assert_eq!(f.records[0].value.as_deref(), Some(&b"after"[..]));
    assert_eq!(s.corrupt_batches_total(), 0, "nothing damaged is left");
    assert_eq!(quarantined(&pdir(root, 0)).len(), 1);
    s.close().await.unwrap();
}

#[tokio::test]
async fn damaged_tail_after_a_clean_stop_is_cut_into_quarantine() {
    tail_damage(true).await;
}

#[tokio::test]
async fn damaged_tail_after_a_crash_is_cut_into_quarantine() {
    tail_damage(false).await;
}

#[tokio::test]
async fn damaged_offset_index_is_named_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, options()).await;
    let ix = files(root, 0, "index").pop().unwrap();
    let entries = std::fs::metadata(&ix).unwrap().len() as usize / 8;
    assert!(entries > 4);
    // Entry 2's position points into the middle of a batch.
    let at = 2 * 8 + 4;
    let mut data = std::fs::read(&ix).unwrap();
    let p = u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) + 3;
    data[at..at + 4].copy_from_slice(&p.to_le_bytes());
    std::fs::write(&ix, &data).unwrap();
    let report = verify(root, false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, ix);
    assert_eq!(report.problems[0].pos, Some(16));
    let s = open(root);
    for from in (0..RECORDS).step_by(7) {
        assert_eq!(
            fetch_all(&s, 0, from).await.unwrap(),
            (from..RECORDS).collect::<Vec<_>>()
        );
    }
    s.close().await.unwrap();
    assert!(
        verify(root, false).unwrap().is_clean(),
        "the store rebuilt it"
    );
}

#[tokio::test]
async fn damaged_time_index_is_named_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build(root, options()).await;
    let tix = files(root, 0, "timeindex").pop().unwrap();
    let mut data = std::fs::read(&tix).unwrap();
    assert!(data.len() >= 5 * 12);
    // Every timestamp zeroed: lookups through it would start at the last entry.
    for e in data.chunks_exact_mut(12) {
        e[..8].copy_from_slice(&0i64.to_le_bytes());
    }
    std::fs::write(&tix, &data).unwrap();
    let report = verify(root, false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, tix);
    assert_eq!(report.problems[0].pos, Some(0));
    let s = open(root);
    for t in [1000, 1001, 1100, 1000 + RECORDS / 2, 1000 + RECORDS - 1] {
        let r = s.offset_for_timestamp("d", 0, t).await.unwrap().unwrap();
        assert_eq!(r.offset, t - 1000, "timestamp {t}");
    }
    s.close().await.unwrap();
    assert!(verify(root, false).unwrap().is_clean());
}

/// A store with a topic, commits and producer state, whose journal is never compacted.
async fn build_meta(dir: &Path, snapshot_bytes: u64) {
    let s = open_with(
        dir,
        LogOptions {
            snapshot_bytes,
            ..options()
        },
    );
    s.create_topic("d", TopicConfig::with_partitions(2))
        .await
        .unwrap();
    for i in 0..20 {
        s.commit_offsets(
            "g",
            &[OffsetCommit {
                topic: "d".into(),
                partition: 0,
                offset: i,
                leader_epoch: None,
                metadata: String::new(),
            }],
        )
        .await
        .unwrap();
    }
    let pid = s.init_producer_id().await.unwrap();
    let mut b = AppendBatch::new(vec![Record::from_value("x")]);
    b.producer = Some(ProducerBatch {
        producer_id: pid.producer_id,
        epoch: pid.epoch,
        first_sequence: 0,
    });
    s.append("d", 0, b).await.unwrap();
    s.close().await.unwrap();
}

fn journal(root: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root.join("meta"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("journal-") && !n.contains("quarantine")
        })
        .collect();
    v.sort();
    v.pop().unwrap()
}

#[tokio::test]
async fn damaged_journal_keeps_its_prefix_and_quarantines_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build_meta(root, 8 << 20).await;
    let j = journal(root);
    let data = std::fs::read(&j).unwrap();
    // A byte in the middle of the commits: the topic (first entry) survives, later commits
    // are not applied.
    let at = data.len() / 2;
    flip(&j, at, 1);
    let report = verify(root, false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.file, j);
    let frame_at = p.pos.unwrap() as usize;
    assert!(frame_at <= at && frame_at > 0, "{p}");
    let s = open(root);
    assert_eq!(s.list_topics().await.unwrap().len(), 1);
    let c = s.committed_offset("g", "d", 0).await.unwrap().unwrap();
    assert!(c.offset < 19, "a commit after the damage was applied");
    let q = quarantined(&root.join("meta"));
    assert_eq!(q.len(), 1);
    let mut damaged = data.clone();
    damaged[at] ^= 0x5a;
    assert_eq!(std::fs::read(&q[0]).unwrap(), &damaged[frame_at..]);
    // The journal goes on after the cut.
    s.commit_offsets(
        "g",
        &[OffsetCommit {
            topic: "d".into(),
            partition: 0,
            offset: 100,
            leader_epoch: None,
            metadata: String::new(),
        }],
    )
    .await
    .unwrap();
    s.close().await.unwrap();
    let s = open(root);
    assert_eq!(
        s.committed_offset("g", "d", 0)
            .await
            .unwrap()
            .unwrap()
            .offset,
        100
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn damaged_snapshot_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Every entry compacts: the state is all in the snapshot.
    build_meta(root, 1).await;
    let snap = root.join("meta/snapshot");
    let len = std::fs::metadata(&snap).unwrap().len() as usize;
    flip(&snap, len / 2, 1);
    let report = verify(root, false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == snap && p.pos == Some(0)),
        "{:?}",
        report.problems
    );
    let e = LogStore::open(root, options(), Arc::new(ManualClock::default()))
        .err()
        .expect("a store without its metadata does not open");
    let m = e.to_string();
    assert!(m.contains(&snap.display().to_string()), "{m}");
}

#[tokio::test]
async fn damaged_producer_snapshot_is_ignored_named_and_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    build_meta(root, 8 << 20).await;
    let ps = pdir(root, 0).join("producers.snapshot");
    let len = std::fs::metadata(&ps).unwrap().len() as usize;
    flip(&ps, len - 3, 1);
    let report = verify(root, false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert_eq!(report.problems[0].file, ps);
    // The store opens and still knows the producer (rebuilt from the segments).
    let s = open(root);
    let mut b = AppendBatch::new(vec![Record::from_value("x")]);
    b.producer = Some(ProducerBatch {
        producer_id: 1,
        epoch: 0,
        first_sequence: 0,
    });
    let r = s.append("d", 0, b).await.unwrap();
    assert!(r.duplicate, "the retry is a duplicate");
    s.close().await.unwrap();
    // Repair moves a damaged one aside (here the store already rewrote it: clean).
    flip(&ps, len - 3, 1);
    let report = verify(root, true).unwrap();
    assert!(report.problems[0].repaired.is_some());
    assert!(!ps.exists());
    assert!(verify(root, false).unwrap().is_clean());
}

#[tokio::test]
async fn verify_lists_problems_by_file_and_byte_and_repair_cuts_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Small segments: partition 0 has sealed segments and an active one.
    build(
        root,
        LogOptions {
            segment_bytes: 8 << 10,
            ..options()
        },
    )
    .await;
    let clean = verify(root, false).unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert_eq!(clean.records, 2 * RECORDS as u64);
    assert!(clean.clean_shutdown);
    // A running store holds the directory: verify refuses.
    let s = open(root);
    assert!(matches!(
        verify(root, false),
        Err(LogError::DataDirLocked { .. })
    ));
    s.close().await.unwrap();

    let logs = files(root, 0, "log");
    assert!(logs.len() > 2);
    let sealed = &logs[0];
    let (spos, slen, sbase, sn) = middle_batch(sealed);
    flip(sealed, spos + slen - 5, 2);
    let active = logs.last().unwrap();
    let (apos, alen, abase, _) = *batches(active).last().unwrap();
    flip(active, apos + alen - 5, 2);
    let report = verify(root, false).unwrap();
    let lines: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{}: byte {spos}: batch CRC mismatch (offsets {sbase}..={})",
            sealed.display(),
            sbase + sn - 1
        ))),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "{}: byte {apos}: batch CRC mismatch",
            active.display()
        ))),
        "{lines:#?}"
    );
    assert!(!report.is_clean());
    assert!(
        report.summary().contains("problems"),
        "{}",
        report.summary()
    );
    // Repair cuts the active segment's damaged tail (the sealed damage stays, reported).
    let repaired = verify(root, true).unwrap();
    assert!(repaired
        .problems
        .iter()
        .any(|p| &p.file == active && p.repaired.is_some()));
    assert_eq!(quarantined(&pdir(root, 0)).len(), 1);
    assert_eq!(std::fs::metadata(active).unwrap().len() as usize, apos);
    let after = verify(root, false).unwrap();
    assert!(
        after.problems.iter().all(|p| &p.file == sealed),
        "{:?}",
        after.problems
    );
    let s = open(root);
    assert_eq!(
        s.partition_offsets("d", 0).await.unwrap().high_watermark,
        abase
    );
    assert_eq!(
        fetch_all(&s, 0, 0).await.unwrap(),
        (0..sbase).collect::<Vec<_>>()
    );
    s.close().await.unwrap();
}
