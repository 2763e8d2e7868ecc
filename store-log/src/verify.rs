//! Offline check of a log store directory (like Kafka's `DumpLogSegments`): every segment,
//! offset index, time index and metadata file; with `repair`, indexes are rebuilt and damaged
//! tails cut off into quarantine files. Run it only while no broker holds the directory.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::damage::cut_to_quarantine;
use crate::error::{LogError, LogResult};
use crate::index::{self, OFFSET_ENTRY, TIME_ENTRY};
use crate::io::Io;
use crate::meta::{self, MetaState, Op};
use crate::store::CLEAN_SHUTDOWN;

/// One thing wrong with one file.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    /// Byte position in the file, when the problem has one.
    pub pos: Option<u64>,
    pub what: String,
    /// What `repair` did about it, if anything.
    pub repaired: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.pos {
            write!(f, ": byte {p}")?;
        }
        write!(f, ": {}", self.what)?;
        if let Some(r) = &self.repaired {
            write!(f, " [repaired: {r}]")?;
        }
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub problems: Vec<Problem>,
    pub partitions: usize,
    pub segments: usize,
    pub batches: u64,
    pub records: u64,
    pub index_files: usize,
    pub metadata_files: usize,
    /// The clean-shutdown marker was present.
    pub clean_shutdown: bool,
}

impl VerifyReport {
    /// True when nothing is damaged.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line: what was checked and how many problems were found and repaired.
    pub fn summary(&self) -> String {
        let repaired = self
            .problems
            .iter()
            .filter(|p| p.repaired.is_some())
            .count();
        format!(
            "checked {} partitions, {} segments ({} batches, {} records), {} index files, \
             {} metadata files (clean shutdown: {}): {} problems, {} repaired",
            self.partitions,
            self.segments,
            self.batches,
            self.records,
            self.index_files,
            self.metadata_files,
            if self.clean_shutdown { "yes" } else { "no" },
            self.problems.len(),
            repaired
        )
    }

    fn add(&mut self, file: &Path, pos: Option<u64>, what: impl Into<String>) -> usize {
        self.problems.push(Problem {
            file: file.to_path_buf(),
            pos,
            what: what.into(),
            repaired: None,
        });
        self.problems.len() - 1
    }
}

/// Index entries every this many log bytes when `repair` rebuilds an index (the store's
/// default; the store rebuilds again on open when it uses another interval).
const REPAIR_INDEX_INTERVAL: u64 = 4096;

/// Checks every file of the store in `dir`; with `repair`, rebuilds damaged indexes, cuts
/// damaged tails of partitions' last segments and of the metadata journal into quarantine
/// files beside them, and moves a damaged `producers.snapshot` aside. Fails with
/// [`LogError::DataDirLocked`] when a running store holds the directory.
pub fn verify(dir: &Path, repair: bool) -> LogResult<VerifyReport> {
    if !dir.join("topics").is_dir() && !dir.join("meta").is_dir() {
        return Err(LogError::Io {
            context: format!("{} is not a log store directory", dir.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    // Held until the check ends, so no broker opens the directory meanwhile. A running store
    // holding it refuses even a read-only check: the tail it is appending and the journal
    // entry it is writing would be reported as damage.
    let _lock = crate::dir_lock::lock_if_present(dir)?;
    let io = Io::default();
    let mut r = VerifyReport {
        clean_shutdown: dir.join(CLEAN_SHUTDOWN).exists(),
        ..VerifyReport::default()
    };
    let state = check_metadata(&dir.join("meta"), repair, &io, &mut r)?;
    // Partition directories: the ones the metadata names, and any others present.
    let mut parts: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("topics")) {
        let mut tdirs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        tdirs.sort();
        for t in tdirs {
            let Ok(prd) = std::fs::read_dir(&t) else {
                continue;
            };
            let mut ps: Vec<(u32, PathBuf)> = prd
                .flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
                .collect();
            ps.sort();
            parts.extend(ps.into_iter().map(|(_, p)| p));
        }
    }
    if let Some(state) = &state {
        for (name, t) in &state.topics {
            let tdir = dir.join("topics").join(format!("{name}~{}", t.id));
            for p in 0..t.config.partitions {
                let pdir = tdir.join(p.to_string());
                if !pdir.is_dir() {
                    r.add(
                        &pdir,
                        None,
                        format!("partition directory of topic {name} is missing"),
                    );
                }
            }
        }
    }
    for p in parts {
        r.partitions += 1;
        check_partition(&p, repair, &io, &mut r)?;
    }
    Ok(r)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the snapshot and the journal files; returns the metadata state they hold, when
/// it could be decoded.
fn check_metadata(
    mdir: &Path,
    repair: bool,
    io: &Io,
    r: &mut VerifyReport,
) -> LogResult<Option<MetaState>> {
    let mut state = MetaState::default();
    let mut ok = true;
    let mut snap_seq = 0;
    let snap = mdir.join(meta::SNAPSHOT);
    if let Ok(data) = std::fs::read(&snap) {
        r.metadata_files += 1;
        let (frames, valid) = meta::parse_frames(&data);
        match frames.first() {
            None => {
                ok = false;
                r.add(
                    &snap,
                    Some(0),
                    format!(
                        "snapshot frame is torn or fails its CRC ({} bytes); the store cannot open \
                         without it: restore it from a backup",
                        data.len()
                    ),
                );
            }
            Some((_, payload)) => {
                if valid < data.len() {
                    r.add(
                        &snap,
                        Some(valid as u64),
                        format!(
                            "{} unexpected bytes after the snapshot frame",
                            data.len() - valid
                        ),
                    );
                }
                match serde_json::from_slice::<meta::Snapshot>(payload) {
                    Ok(s) => {
                        snap_seq = s.seq;
                        state = s.state;
                    }
                    Err(e) => {
                        ok = false;
                        r.add(&snap, Some(0), format!("snapshot does not decode: {e}"));
                    }
                }
            }
        }
    }
    let mut journals: Vec<(u64, PathBuf)> = std::fs::read_dir(mdir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    Some((name.strip_prefix("journal-")?.parse().ok()?, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    journals.sort();
    for (_, path) in &journals {
        r.metadata_files += 1;
        let data = std::fs::read(path)
            .map_err(|e| LogError::io(format!("reading {}", path.display()), e))?;
        let (frames, valid) = meta::parse_frames(&data);
        let mut pos = 0u64;
        for (seq, payload) in frames {
            match serde_json::from_slice::<Op>(payload) {
                Ok(op) if seq > snap_seq => state.apply(&op),
                Ok(_) => {}
                Err(e) => {
                    ok = false;
                    r.add(
                        path,
                        Some(pos),
                        format!("journal entry {seq} does not decode: {e}"),
                    );
                }
            }
            pos += (16 + payload.len()) as u64;
        }
        if valid < data.len() {
            let i = r.add(
                path,
                Some(valid as u64),
                format!(
                    "journal frame is torn or fails its CRC; the {} bytes from here on are not applied",
                    data.len() - valid
                ),
            );
            if repair {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
                if let Some(q) = cut_to_quarantine(&f, path, valid as u64, io)? {
                    r.problems[i].repaired = Some(format!("cut into {}", q.display()));
                }
            }
        }
    }
    Ok(ok.then_some(state))
}

/// One batch of a segment as the check walked it.
struct Walked {
    pos: u64,
    base: i64,
    max_ts: i64,
}

fn check_partition(pdir: &Path, repair: bool, io: &Io, r: &mut VerifyReport) -> LogResult<()> {
    let mut bases: Vec<i64> = std::fs::read_dir(pdir)
        .map_err(|e| LogError::io(format!("listing {}", pdir.display()), e))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".log")?;
            (stem.len() == 20)
                .then(|| stem.parse::<i64>().ok())
                .flatten()
        })
        .collect();
    bases.sort_unstable();
    let mut expect_base: Option<i64> = None;
    // Segments below it may have gaps the cleaner left.
    let gaps_below = crate::cleaner::read_checkpoint(pdir).map_or(0, |c| c.gaps_below);
    let n = bases.len();
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == n;
        let stem = crate::segment::stem(base);
        let lp = pdir.join(format!("{stem}.log"));
        if let Some(e) = expect_base {
            // A gap after a cleaned segment is fine (the cleaner may have removed its last
            // batches); otherwise segments are contiguous.
            let cleaned = bases[i - 1] < gaps_below;
            if e > base || (e < base && !cleaned) {
                r.add(
                    &lp,
                    None,
                    format!(
                        "segment starts at offset {base} but the one before ends at {e}; \
                         the store drops segments after a gap"
                    ),
                );
            }
        }
        r.segments += 1;
        let data =
            std::fs::read(&lp).map_err(|e| LogError::io(format!("reading {}", lp.display()), e))?;
        let data = Bytes::from(data);
        let mut walked: Vec<Walked> = Vec::new();
        let mut next = base;
        let mut pos = 0usize;
        // The first damaged batch: where a repair would cut the last segment.
        let mut first_bad: Option<usize> = None;
        let mut max_ts = i64::MIN;
        while pos < data.len() {
            let bad = |r: &mut VerifyReport, what: String| r.add(&lp, Some(pos as u64), what);
            if pos + HEADER_LEN > data.len() {
                bad(
                    r,
                    format!(
                        "{} bytes at the end are not a whole batch (offset {next} on)",
                        data.len() - pos
                    ),
                );
                first_bad.get_or_insert(pos);
                break;
            }
            let Some(h) = BatchHeader::parse(&data[pos..]) else {
                bad(r, format!("bad batch header (offset {next} on); the rest of the segment ({} bytes) cannot be read", data.len() - pos));
                first_bad.get_or_insert(pos);
                break;
            };
            // Cleaned segments may have gaps; the others hold every offset they span.
            let in_sequence = if !last && base < gaps_below {
                h.base_offset >= next
            } else {
                h.base_offset == next
                    && h.last_offset() + 1 - h.base_offset == h.record_count as i64
            };
            if !in_sequence {
                bad(r, format!("batch out of sequence: base offset {}, expected {next}; the rest of the segment ({} bytes) cannot be read", h.base_offset, data.len() - pos));
                first_bad.get_or_insert(pos);
                break;
            }
            let total = h.total_len();
            if pos + total > data.len() {
                bad(r, format!("batch of offsets {}..={} runs past the end of the file ({total} bytes, {} left)", h.base_offset, h.last_offset(), data.len() - pos));
                first_bad.get_or_insert(pos);
                break;
            }
            let body = data.slice(pos..pos + total);
            if !batch::crc_ok(&body, &h) {
                bad(
                    r,
                    format!(
                        "batch CRC mismatch (offsets {}..={})",
                        h.base_offset,
                        h.last_offset()
                    ),
                );
                first_bad.get_or_insert(pos);
            } else if batch::decode_records(&body, &h, 0, |_| true).is_none() {
                bad(
                    r,
                    format!(
                        "malformed records (offsets {}..={})",
                        h.base_offset,
                        h.last_offset()
                    ),
                );
                first_bad.get_or_insert(pos);
            }
            r.batches += 1;
            r.records += h.record_count as u64;
            walked.push(Walked {
                pos: pos as u64,
                base: h.base_offset,
                max_ts,
            });
            max_ts = max_ts.max(h.max_timestamp);
            next = h.last_offset() + 1;
            pos += total;
        }
        expect_base = if pos == data.len() { Some(next) } else { None };
        let mut cut = false;
        if let Some(at) = first_bad {
            if last && repair {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&lp)
                    .map_err(|e| LogError::io(format!("opening {}", lp.display()), e))?;
                if let Some(q) = cut_to_quarantine(&f, &lp, at as u64, io)? {
                    let note = format!("cut at byte {at} into {}", q.display());
                    for p in r.problems.iter_mut().filter(|p| p.file == lp) {
                        p.repaired = Some(note.clone());
                    }
                    walked.retain(|w| (w.pos as usize) < at);
                    cut = true;
                }
            } else if !last {
                r.add(
                    &lp,
                    Some(at as u64),
                    "sealed segment: the damage is left in place (reads that reach it fail, \
                     later segments stay readable); not repairable"
                        .to_string(),
                );
            }
        }
        let ok = check_indexes(pdir, &stem, base, last, &walked, r);
        if repair && (!ok || cut) {
            rebuild_indexes(pdir, &stem, base, io, r)?;
        }
    }
    let ps = pdir.join("producers.snapshot");
    if let Ok(data) = std::fs::read(&ps) {
        r.metadata_files += 1;
        if let Some(what) = producer_snapshot_problem(&data) {
            let i = r.add(&ps, Some(0), what);
            if repair {
                let q = crate::damage::quarantine_path(&ps, now_secs());
                std::fs::rename(&ps, &q)
                    .map_err(|e| LogError::io(format!("moving {} aside", ps.display()), e))?;
                r.problems[i].repaired = Some(format!(
                    "moved to {} (the store rebuilds producer state from the segments)",
                    q.display()
                ));
            }
        }
    }
    Ok(())
}

fn producer_snapshot_problem(data: &[u8]) -> Option<String> {
    if data.len() < 8 {
        return Some(format!(
            "{} bytes: shorter than its 8-byte header",
            data.len()
        ));
    }
    let len = u32::from_le_bytes(data[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data[4..8].try_into().ok()?);
    let Some(payload) = data.get(8..8 + len) else {
        return Some(format!(
            "torn: {len} payload bytes announced, {} present",
            data.len() - 8
        ));
    };
    if crc32fast::hash(payload) != crc {
        return Some("fails its CRC (the store ignores it and rebuilds producer state)".into());
    }
    if let Err(e) = serde_json::from_slice::<(i64, crate::producer::Producers)>(payload) {
        return Some(format!("does not decode: {e}"));
    }
    None
}

/// Checks a segment's `.index` and `.timeindex` against its walked batches; false when
/// either is damaged.
fn check_indexes(
    pdir: &Path,
    stem: &str,
    base: i64,
    last: bool,
    walked: &[Walked],
    r: &mut VerifyReport,
) -> bool {
    let ip = pdir.join(format!("{stem}.index"));
    let tp = pdir.join(format!("{stem}.timeindex"));
    let at: HashMap<u64, &Walked> = walked.iter().map(|w| (w.pos, w)).collect();
    let mut ok = true;
    let (Ok(mut off), Ok(mut time)) = (std::fs::read(&ip), std::fs::read(&tp)) else {
        for p in [&ip, &tp] {
            if !p.exists() {
                r.add(
                    p,
                    None,
                    "index file is missing (the store rebuilds it on open)",
                );
            }
        }
        return false;
    };
    r.index_files += 2;
    for (path, data, entry) in [(&ip, &off, OFFSET_ENTRY), (&tp, &time, TIME_ENTRY)] {
        if data.len() % entry != 0 {
            r.add(
                path,
                Some((data.len() - data.len() % entry) as u64),
                format!(
                    "length {} is not a whole number of {entry}-byte entries",
                    data.len()
                ),
            );
            ok = false;
        }
    }
    if !ok {
        return false;
    }
    if last {
        // The active segment's indexes keep their unused, zeroed room after a crash.
        while off.len() >= OFFSET_ENTRY && off[off.len() - OFFSET_ENTRY..].iter().all(|&b| b == 0) {
            off.truncate(off.len() - OFFSET_ENTRY);
        }
        while time.len() >= TIME_ENTRY && time[time.len() - TIME_ENTRY..].iter().all(|&b| b == 0) {
            time.truncate(time.len() - TIME_ENTRY);
        }
    }
    let mut prev: Option<(u32, u32)> = None;
    for (i, e) in off.chunks_exact(OFFSET_ENTRY).enumerate() {
        let (rel, pos) = index::read_offset_entry(e);
        let bad = match at.get(&(pos as u64)) {
            _ if prev.is_some_and(|(pr, pp)| rel <= pr || pos <= pp) => {
                Some("entries do not increase".to_string())
            }
            None => Some(format!(
                "entry {i} (relative offset {rel}, position {pos}) does not point at a batch"
            )),
            Some(w) if w.base - base != rel as i64 => Some(format!(
                "entry {i} says relative offset {rel} but the batch at position {pos} starts at {}",
                w.base - base
            )),
            Some(_) => None,
        };
        if let Some(what) = bad {
            r.add(&ip, Some((i * OFFSET_ENTRY) as u64), what);
            ok = false;
            break;
        }
        prev = Some((rel, pos));
    }
    let n_off = off.len() / OFFSET_ENTRY;
    let n_time = time.len() / TIME_ENTRY;
    if n_off != n_time {
        r.add(
            &tp,
            None,
            format!("{n_time} entries, but the offset index has {n_off}"),
        );
        return false;
    }
    for (i, e) in time.chunks_exact(TIME_ENTRY).enumerate() {
        let (ts, rel) = index::read_time_entry(e);
        let (orel, pos) = index::read_offset_entry(&off[i * OFFSET_ENTRY..(i + 1) * OFFSET_ENTRY]);
        let bad = if rel != orel {
            Some(format!(
                "entry {i} names relative offset {rel}, the offset index {orel}"
            ))
        } else {
            match at.get(&(pos as u64)) {
                Some(w) if w.max_ts != ts => Some(format!(
                    "entry {i} says timestamp {ts}, but the records before it reach {}",
                    w.max_ts
                )),
                _ => None,
            }
        };
        if let Some(what) = bad {
            r.add(&tp, Some((i * TIME_ENTRY) as u64), what);
            ok = false;
            break;
        }
    }
    ok
}

/// Rewrites a segment's two indexes from its log (trimmed to their entries).
fn rebuild_indexes(
    pdir: &Path,
    stem: &str,
    base: i64,
    io: &Io,
    r: &mut VerifyReport,
) -> LogResult<()> {
    let lp = pdir.join(format!("{stem}.log"));
    let ip = pdir.join(format!("{stem}.index"));
    let tp = pdir.join(format!("{stem}.timeindex"));
    let log = File::open(&lp).map_err(|e| LogError::io(format!("opening {}", lp.display()), e))?;
    let s = crate::segment::scan(&log, base, None, REPAIR_INDEX_INTERVAL, true, |_| {})?;
    for (path, bytes) in [(&ip, &s.offset_entries), (&tp, &s.time_entries)] {
        let ctx = |e| LogError::io(format!("rewriting {}", path.display()), e);
        let tmp = path.with_extension("rebuild.tmp");
        let f = File::create(&tmp).map_err(ctx)?;
        io.write_at(&f, bytes, 0).map_err(ctx)?;
        io.sync_all(&f).map_err(ctx)?;
        std::fs::rename(&tmp, path).map_err(ctx)?;
        let note = format!(
            "rebuilt ({} entries)",
            bytes.len()
                / if *path == ip {
                    OFFSET_ENTRY
                } else {
                    TIME_ENTRY
                }
        );
        let mut marked = false;
        for p in r.problems.iter_mut().filter(|p| &p.file == path) {
            p.repaired = Some(note.clone());
            marked = true;
        }
        let _ = marked;
    }
    crate::io::sync_dir(io, pdir)
        .map_err(|e| LogError::io(format!("syncing {}", pdir.display()), e))
}
