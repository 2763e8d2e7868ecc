//! Damage tests: truncated and bit-flipped segments, missing and corrupt index files. The
//! store must open, keep every batch before the damage, and serve nothing damaged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker_api::{
    AppendBatch, BatchLimits, FetchLimits, ManualClock, Record, Store, StoreError, TopicConfig,
};
use rand::{Rng, SeedableRng};
use store_log::{LogOptions, LogStore, CLEAN_SHUTDOWN};

const RECORDS: i64 = 600;

fn options() -> LogOptions {
    LogOptions {
        segment_bytes: 8 << 10,
        index_interval_bytes: 200,
        index_bytes: 2 << 10,
        ..LogOptions::default()
    }
}

fn value(i: i64) -> Vec<u8> {
    format!("v{i}-{}", "z".repeat((i % 30) as usize)).into_bytes()
}

fn open(dir: &Path) -> LogStore {
    LogStore::open(dir, options(), Arc::new(ManualClock::default())).expect("the store opens")
}

/// Builds a closed store holding offsets 0..RECORDS in batches of 1-4 records.
async fn build(dir: &Path) {
    let s = open(dir);
    s.create_topic("d", TopicConfig::with_partitions(1))
        .await
        .unwrap();
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
        s.append("d", 0, AppendBatch::new(recs)).await.unwrap();
        i += n;
    }
    s.close().await.unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn partition_dir(root: &Path) -> PathBuf {
    root.join("topics/d~0/0")
}

fn files(root: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(partition_dir(root))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// (position, total length, base offset) of each batch of a segment file.
fn batches(path: &Path) -> Vec<(usize, usize, i64)> {
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 12 <= data.len() {
        let base = i64::from_be_bytes(data[pos..pos + 8].try_into().unwrap());
        let len = u32::from_be_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        out.push((pos, 12 + len, base));
        pos += 12 + len;
    }
    out
}

/// Reads every offset from 0 to the high watermark; each record must be the original.
/// Returns the offsets that could not be served (a `Corrupt` error).
async fn check_served(s: &LogStore) -> (i64, Vec<i64>) {
    let o = s.partition_offsets("d", 0).await.unwrap();
    assert_eq!(o.log_start_offset, 0);
    let mut refused = Vec::new();
    for off in 0..o.high_watermark {
        match s
            .fetch(
                "d",
                0,
                off,
                FetchLimits {
                    max_records: 1,
                    max_bytes: 1,
                },
            )
            .await
        {
            Ok(f) => {
                let r = &f.records[0];
                assert_eq!(r.offset, off);
                assert_eq!(
                    r.value.as_deref(),
                    Some(&value(off)[..]),
                    "record {off} is damaged"
                );
                assert_eq!(r.timestamp_ms, 1000 + off);
            }
            Err(StoreError::Corrupt(_)) => refused.push(off),
            Err(e) => panic!("fetch {off}: {e}"),
        }
        // The batch path serves and refuses exactly the same.
        let limits = BatchLimits {
            max_bytes: 1,
            min_one: true,
            read_committed: false,
        };
        match s.fetch_batches("d", 0, off, limits).await {
            Ok(f) => {
                assert!(
                    refused.last() != Some(&off),
                    "offset {off}: the record path refused it, the batch path served it"
                );
                let batch = f.concat();
                assert!(
                    kafka_batch::crc_ok(&batch),
                    "offset {off}: a batch failing its CRC"
                );
                let mut found = None;
                kafka_batch::decode_records(&batch, off, |r| {
                    found = Some(r);
                    false
                })
                .unwrap();
                let r = found.expect("the first batch holds the offset");
                assert_eq!((r.offset, r.value.as_deref()), (off, Some(&value(off)[..])));
            }
            Err(StoreError::Corrupt(_)) => assert_eq!(
                refused.last(),
                Some(&off),
                "offset {off}: the batch path refused what the record path served"
            ),
            Err(e) => panic!("fetch_batches {off}: {e}"),
        }
    }
    (o.high_watermark, refused)
}

/// After damage, the store still appends at the high watermark and survives a reopen.
async fn still_works(dir: &Path, s: LogStore) {
    let hw = s.partition_offsets("d", 0).await.unwrap().high_watermark;
    let r = s
        .append("d", 0, AppendBatch::new(vec![Record::from_value("after")]))
        .await
        .unwrap();
    assert_eq!(r.base_offset, hw);
    s.close().await.unwrap();
    let s = open(dir);
    assert_eq!(
        s.partition_offsets("d", 0).await.unwrap().high_watermark,
        hw + 1
    );
    s.close().await.unwrap();
}

#[tokio::test]
async fn truncated_last_segment() {
    let base = tempfile::tempdir().unwrap();
    build(&base.path().join("orig")).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for case in 0..12 {
        let dir = base.path().join(format!("t{case}"));
        copy_dir(&base.path().join("orig"), &dir);
        let last = files(&dir, "log").pop().unwrap();
        let bs = batches(&last);
        let len = std::fs::metadata(&last).unwrap().len() as usize;
        let cut = rng.gen_range(0..len);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        if case % 2 == 0 {
            std::fs::remove_file(dir.join(CLEAN_SHUTDOWN)).unwrap();
        }
        // Every batch wholly before the cut is kept; the torn one and nothing after is served.
        let expect_hw = bs
            .iter()
            .find(|(p, l, _)| p + l > cut)
            .map(|b| b.2)
            .unwrap_or(RECORDS);
        let s = open(&dir);
        let (hw, refused) = check_served(&s).await;
        assert_eq!(hw, expect_hw, "case {case}: cut at {cut}");
        assert!(refused.is_empty());
        still_works(&dir, s).await;
    }
}

#[tokio::test]
async fn flipped_bytes_after_a_crash() {
    let base = tempfile::tempdir().unwrap();
    build(&base.path().join("orig")).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for case in 0..12 {
        let dir = base.path().join(format!("f{case}"));
        copy_dir(&base.path().join("orig"), &dir);
        let last = files(&dir, "log").pop().unwrap();
        let bs = batches(&last);
        let mut data = std::fs::read(&last).unwrap();
        let at = rng.gen_range(0..data.len());
        data[at] ^= rng.gen_range(1..=255u8);
        std::fs::write(&last, &data).unwrap();
        // A crash came with the damage: no clean-shutdown marker, so recovery runs.
        std::fs::remove_file(dir.join(CLEAN_SHUTDOWN)).unwrap();
        let damaged = bs.iter().find(|(p, l, _)| at < p + l).unwrap();
        let s = open(&dir);
        let (hw, refused) = check_served(&s).await;
        assert_eq!(
            hw, damaged.2,
            "case {case}: byte {at} flipped; the batch at {} holds it",
            damaged.0
        );
        assert!(refused.is_empty());
        still_works(&dir, s).await;
    }
}

#[tokio::test]
async fn flipped_bytes_after_a_clean_shutdown() {
    let base = tempfile::tempdir().unwrap();
    build(&base.path().join("orig")).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for case in 0..12 {
        let dir = base.path().join(format!("c{case}"));
        copy_dir(&base.path().join("orig"), &dir);
        let logs = files(&dir, "log");
        let which = rng.gen_range(0..logs.len());
        let seg = &logs[which];
        let bs = batches(seg);
        let mut data = std::fs::read(seg).unwrap();
        let at = rng.gen_range(0..data.len());
        data[at] ^= rng.gen_range(1..=255u8);
        std::fs::write(seg, &data).unwrap();
        let damaged = bs.iter().find(|(p, l, _)| at < p + l).unwrap().2;
        // The first offset of the next segment: damage never spreads past its segment.
        let next_segment = logs
            .get(which + 1)
            .map(|p| batches(p)[0].2)
            .unwrap_or(i64::MAX);
        // Recovery is skipped; reads check CRCs, so the damaged batch is refused, not served.
        let s = open(&dir);
        let (hw, refused) = check_served(&s).await;
        assert!(
            hw >= damaged,
            "case {case}: batches before the damage were lost"
        );
        if next_segment != i64::MAX {
            assert_eq!(
                hw, RECORDS,
                "case {case}: a damaged sealed segment cost later segments"
            );
            assert!(
                !refused.is_empty(),
                "case {case}: the damage was not noticed"
            );
        }
        for off in refused {
            assert!(
                off >= damaged && off < next_segment,
                "case {case}: undamaged record {off} refused"
            );
        }
        s.close().await.unwrap();
    }
}

#[tokio::test]
async fn missing_or_corrupt_indexes_are_rebuilt() {
    let base = tempfile::tempdir().unwrap();
    build(&base.path().join("orig")).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    for case in 0..8 {
        let dir = base.path().join(format!("i{case}"));
        copy_dir(&base.path().join("orig"), &dir);
        let mut idx = files(&dir, "index");
        idx.extend(files(&dir, "timeindex"));
        for p in &idx {
            match (case + rng.gen_range(0..3)) % 4 {
                0 => std::fs::remove_file(p).unwrap(),
                1 => {
                    let len = std::fs::metadata(p).unwrap().len() as usize;
                    let junk: Vec<u8> = (0..len.max(8)).map(|_| rng.gen()).collect();
                    std::fs::write(p, junk).unwrap();
                }
                2 => std::fs::write(p, b"short").unwrap(),
                _ => {}
            }
        }
        if case % 2 == 1 {
            std::fs::remove_file(dir.join(CLEAN_SHUTDOWN)).unwrap();
        }
        let s = open(&dir);
        let (hw, refused) = check_served(&s).await;
        assert_eq!(hw, RECORDS);
        assert!(refused.is_empty());
        for t in [999, 1000, 1001, 1234, 1000 + RECORDS - 1] {
            let r = s.offset_for_timestamp("d", 0, t).await.unwrap().unwrap();
            assert_eq!(r.offset, (t - 1000).max(0), "timestamp {t}");
        }
        assert!(s
            .offset_for_timestamp("d", 0, 1000 + RECORDS)
            .await
            .unwrap()
            .is_none());
        // Bulk reads through the rebuilt index from every 37th offset.
        for from in (0..RECORDS).step_by(37) {
            let f = s.fetch("d", 0, from, FetchLimits::default()).await.unwrap();
            assert_eq!(f.records.len() as i64, RECORDS - from);
            assert_eq!(f.records[0].offset, from);
        }
        still_works(&dir, s).await;
    }
}
