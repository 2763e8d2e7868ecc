//! One segment: a `.log` file of batches plus its `.index` and `.timeindex`.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::damage::{cut_to_quarantine, Damage, PartLabel};
use crate::error::{LogError, LogResult};
use crate::index::{self, IndexFile, OFFSET_ENTRY, TIME_ENTRY};
use crate::io::Io;

/// File name stem of a segment: its base offset padded to 20 digits.
pub fn stem(base: i64) -> String {
    format!("{base:020}")
}

/// The two indexes of a segment and the state that decides their next entry.
#[derive(Debug)]
pub struct Indexes {
    pub offset: IndexFile,
    pub time: IndexFile,
    /// Log bytes appended since the last index entry.
    pub bytes_since_entry: u64,
}

/// A segment of a partition's log.
#[derive(Debug)]
pub struct Segment {
    pub base: i64,
    pub log_path: PathBuf,
    pub log: File,
    /// Bytes of whole, acknowledged batches.
    pub size: AtomicU64,
    /// The offset after the segment's last record.
    pub next_offset: AtomicI64,
    /// Largest record timestamp in the segment (`i64::MIN` when empty).
    pub max_ts: AtomicI64,
    /// Clock time of the segment's first append (for rolling by age).
    pub created_ms: AtomicI64,
    pub indexes: RwLock<Indexes>,
    /// A sealed segment whose batches could not all be read on open.
    pub damaged: bool,
    /// Offsets may be missing between its batches: a segment the cleaner wrote, or found
    /// below the cleaner checkpoint's `gaps_below` on open. Appends never leave gaps.
    pub gaps: bool,
    /// The memory mapping of a sealed segment's log, made on its first read.
    sealed: std::sync::OnceLock<Option<Bytes>>,
}

/// Keeps a read-only mapping alive while `Bytes` borrow from it.
struct MapOwner(memmap2::Mmap);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One batch met while scanning a segment.
pub struct ScannedBatch<'a> {
    pub header: &'a BatchHeader,
    /// The whole batch, when it was read (verifying, a marker, or it holds not-before
    /// records).
    pub body: Option<&'a Bytes>,
}

/// What a scan of a `.log` file found.
pub struct Scan {
    /// Bytes of the valid prefix.
    pub valid_len: u64,
    pub next_offset: i64,
    pub max_ts: i64,
    pub first_append_time: Option<i64>,
    pub offset_entries: Vec<u8>,
    pub time_entries: Vec<u8>,
    pub bytes_since_entry: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<ScanProblem>,
}

/// The first damaged batch a scan met.
#[derive(Debug, Clone)]
pub struct ScanProblem {
    /// Its byte position (the end of the valid prefix).
    pub pos: u64,
    /// Its last offset, when its header could be read.
    pub last_offset: Option<i64>,
    pub what: String,
}

/// Read buffers kept for reuse, so large reads do not fault in fresh pages every time.
static POOL: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());
const POOL_MAX: usize = 8;
const POOL_MIN_LEN: usize = 256 << 10;

/// A read buffer that goes back to the pool when the last `Bytes` sharing it is dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        let mut pool = POOL.lock();
        if pool.len() < POOL_MAX {
            pool.push(v);
        }
    }
}

fn take_buffer(len: usize) -> Vec<u8> {
    if len >= POOL_MIN_LEN {
        let mut pool = POOL.lock();
        if let Some(i) = pool.iter().position(|v| v.capacity() >= len) {
            let mut v = pool.swap_remove(i);
            v.clear();
            return v;
        }
    }
    Vec::with_capacity(len)
}

/// Reads `len` bytes at `pos` into a buffer (reused from earlier reads when large).
pub fn read_at(file: &File, pos: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf: Vec<u8> = take_buffer(len);
    let mut done = 0usize;
    while done < len {
        // SAFETY: the kernel writes at most `len - done` bytes into the spare capacity.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done) as *mut libc::c_void,
                len - done,
                (pos + done as u64) as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "short read",
            ));
        }
        done += n as usize;
    }
    // SAFETY: `done == len` bytes were initialised by pread.
    unsafe { buf.set_len(len) };
    if len >= POOL_MIN_LEN {
        Ok(Bytes::from_owner(Pooled(buf)))
    } else {
        Ok(Bytes::from(buf))
    }
}

/// Bytes of one read of a scan.
const SCAN_WINDOW: usize = 1 << 20;

/// A window of a file kept in memory while a scan walks through it.
#[derive(Default)]
struct Window {
    start: u64,
    data: Bytes,
}

impl Window {
    /// The `n` bytes at `pos` (a file of `file_len` bytes), reading `ahead` bytes when they
    /// are not in the window; `None` when they cannot be read.
    fn get(
        &mut self,
        file: &File,
        pos: u64,
        n: usize,
        ahead: usize,
        file_len: u64,
    ) -> Option<Bytes> {
        let end = pos.checked_add(n as u64)?;
        if pos < self.start || end > self.start + self.data.len() as u64 {
            let want = (n.max(ahead) as u64).min(file_len.checked_sub(pos)?);
            if want < n as u64 {
                return None;
            }
            self.data = read_at(file, pos, want as usize).ok()?;
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        Some(self.data.slice(at..at + n))
    }
}

/// Scans a segment's log from the start, stopping at the first batch that is torn, malformed,
/// out of sequence or (at or after byte `verify_from`, when given) fails its CRC. Calls
/// `on_batch` for every good batch and rebuilds the index entries with `interval` bytes
/// between entries. `gaps`: offsets may be missing between and inside batches (a segment the
/// cleaner may have rewritten); otherwise each batch must hold every offset it spans and start
/// where the one before ended.
pub fn scan(
    file: &File,
    base: i64,
    verify_from: Option<u64>,
    interval: u64,
    gaps: bool,
    mut on_batch: impl FnMut(ScannedBatch<'_>),
) -> LogResult<Scan> {
    let len = file
        .metadata()
        .map_err(|e| LogError::io("reading segment size", e))?
        .len();
    let mut s = Scan {
        valid_len: 0,
        next_offset: base,
        max_ts: i64::MIN,
        first_append_time: None,
        offset_entries: Vec::new(),
        time_entries: Vec::new(),
        bytes_since_entry: 0,
        problem: None,
    };
    let mut pos = 0u64;
    let problem = |pos: u64, last: Option<i64>, what: String| {
        Some(ScanProblem {
            pos,
            last_offset: last,
            what,
        })
    };
    // The file is read in large windows: a segment of small batches is not one read each.
    let mut window = Window::default();
    let mut last_total = 0u64;
    while pos + HEADER_LEN as u64 <= len {
        // Large batches: read just the next header; small ones: a whole window of them.
        let ahead = if last_total >= SCAN_WINDOW as u64 / 16 {
            HEADER_LEN
        } else {
            SCAN_WINDOW
        };
        let Some(hb) = window.get(file, pos, HEADER_LEN, ahead, len) else {
            s.problem = problem(pos, None, "cannot read the batch header".into());
            break;
        };
        let Some(h) = BatchHeader::parse(&hb) else {
            s.problem = problem(pos, None, "bad batch header".into());
            break;
        };
        let total = h.total_len() as u64;
        if pos + total > len {
            s.problem = problem(
                pos,
                Some(h.last_offset()),
                format!("batch of {total} bytes runs past the end of the file ({len} bytes)"),
            );
            break;
        }
        // Without gaps every batch is as appended: dense, right after the one before.
        let in_sequence = if gaps {
            h.base_offset >= s.next_offset
        } else {
            h.base_offset == s.next_offset && h.offset_span() == h.record_count
        };
        if !in_sequence {
            s.problem = problem(
                pos,
                None,
                format!(
                    "batch out of sequence: base offset {}, expected {}",
                    h.base_offset, s.next_offset
                ),
            );
            break;
        }
        let verify = verify_from.is_some_and(|from| pos >= from);
        // A marker's body says whether it commits; markers are small.
        let need_body = verify || h.has_not_before || h.is_control;
        let body = if need_body {
            let Some(b) = window.get(file, pos, total as usize, SCAN_WINDOW, len) else {
                s.problem = problem(pos, Some(h.last_offset()), "cannot read the batch".into());
                break;
            };
            if verify && !batch::crc_ok(&b, &h) {
                s.problem = problem(pos, Some(h.last_offset()), "batch CRC mismatch".into());
                break;
            }
            Some(b)
        } else {
            None
        };
        if pos > 0 && s.bytes_since_entry >= interval {
            let rel = (h.base_offset - base) as u32;
            s.offset_entries
                .extend_from_slice(&index::offset_entry(rel, pos as u32));
            s.time_entries
                .extend_from_slice(&index::time_entry(s.max_ts, rel));
            s.bytes_since_entry = 0;
        }
        s.bytes_since_entry += total;
        on_batch(ScannedBatch {
            header: &h,
            body: body.as_ref(),
        });
        s.first_append_time.get_or_insert(h.append_time);
        s.max_ts = s.max_ts.max(h.max_timestamp);
        s.next_offset = h.last_offset() + 1;
        last_total = total;
        pos += total;
    }
    if s.problem.is_none() && pos < len {
        s.problem = problem(
            pos,
            None,
            format!("{} bytes at the end are not a whole batch", len - pos),
        );
    }
    s.valid_len = pos;
    Ok(s)
}

/// Byte position of the last entry of the `.index` at `path` when it is a plausible
/// position in a log of `log_len` bytes; 0 (verify everything) otherwise.
fn last_indexed_position(path: &Path, log_len: u64) -> u64 {
    IndexFile::read_trimmed(path, OFFSET_ENTRY)
        .and_then(|b| {
            let last = b.chunks_exact(OFFSET_ENTRY).last()?;
            Some(index::read_offset_entry(last).1 as u64)
        })
        .filter(|&p| p < log_len)
        .unwrap_or(0)
}

/// True when trimmed index bytes agree with a segment: entries strictly increasing, pointing
/// inside the log, and the two indexes pairing up.
fn indexes_valid(off: &[u8], time: &[u8], log_len: u64) -> bool {
    if off.len() / OFFSET_ENTRY != time.len() / TIME_ENTRY {
        return false;
    }
    let mut prev: Option<(u32, u32)> = None;
    for (i, e) in off.chunks_exact(OFFSET_ENTRY).enumerate() {
        let (rel, pos) = index::read_offset_entry(e);
        let (_, trel) = index::read_time_entry(&time[i * TIME_ENTRY..(i + 1) * TIME_ENTRY]);
        if trel != rel || pos == 0 || pos as u64 >= log_len {
            return false;
        }
        if let Some((pr, pp)) = prev {
            if rel <= pr || pos <= pp {
                return false;
            }
        }
        prev = Some((rel, pos));
    }
    true
}

impl Segment {
    fn paths(dir: &Path, base: i64) -> (PathBuf, PathBuf, PathBuf) {
        let s = stem(base);
        (
            dir.join(format!("{s}.log")),
            dir.join(format!("{s}.index")),
            dir.join(format!("{s}.timeindex")),
        )
    }

    /// Creates an empty segment at `base`.
    pub fn create(
        dir: &Path,
        base: i64,
        index_bytes: usize,
        io: &Io,
        now: i64,
    ) -> LogResult<Segment> {
        let (lp, ip, tp) = Self::paths(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&lp)
            .map_err(|e| LogError::io(format!("creating {}", lp.display()), e))?;
        let entries = index_bytes / OFFSET_ENTRY;
        let offset = IndexFile::create(&ip, OFFSET_ENTRY, entries * OFFSET_ENTRY, io, &[])?;
        let time = IndexFile::create(&tp, TIME_ENTRY, entries * TIME_ENTRY, io, &[])?;
        Ok(Segment {
            base,
            log_path: lp,
            log,
            size: AtomicU64::new(0),
            next_offset: AtomicI64::new(base),
            max_ts: AtomicI64::new(i64::MIN),
            created_ms: AtomicI64::new(now),
            indexes: RwLock::new(Indexes {
                offset,
                time,
                bytes_since_entry: 0,
            }),
            damaged: false,
            gaps: false,
            sealed: std::sync::OnceLock::new(),
        })
    }

    /// Opens an existing segment. `recover`: verify every batch CRC, truncate the log after
    /// the last good batch and rebuild the indexes. Otherwise the log is trusted and the
    /// indexes are reused when they check out (rebuilt when missing or damaged); the active
    /// segment's batches after its last index entry (the last point known good) are verified
    /// all the same. `active`: the indexes get room for more entries, and a damaged tail is
    /// cut off into a quarantine file (see [`crate::damage::cut_to_quarantine`]). `gaps`:
    /// the cleaner may have removed batches of the segment (see [`scan`]).
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        dir: &Path,
        base: i64,
        recover: bool,
        active: bool,
        gaps: bool,
        interval: u64,
        index_bytes: usize,
        io: &Io,
        now: i64,
        label: &PartLabel,
        on_batch: impl FnMut(ScannedBatch<'_>),
    ) -> LogResult<Segment> {
        let (lp, ip, tp) = Self::paths(dir, base);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&lp)
            .map_err(|e| LogError::io(format!("opening {}", lp.display()), e))?;
        let file_len = log
            .metadata()
            .map_err(|e| LogError::io("reading segment size", e))?
            .len();
        let verify_from = if recover {
            Some(0)
        } else if active {
            Some(last_indexed_position(&ip, file_len))
        } else {
            None
        };
        let scan = scan(&log, base, verify_from, interval, gaps, on_batch)?;
        let mut size = scan.valid_len;
        let damaged = scan.valid_len < file_len && !active;
        if let Some(p) = &scan.problem {
            label.damage.report(&Damage {
                topic: &label.topic,
                partition: label.partition,
                file: &lp,
                pos: p.pos,
                first_offset: scan.next_offset,
                last_offset: p.last_offset,
                what: &p.what,
            });
        }
        if damaged {
            // A sealed segment is never cut: the damage stays in place and reads that reach
            // it fail with `Corrupt`; the segments after it stay readable.
            tracing::warn!(
                topic = %label.topic,
                partition = label.partition,
                segment = %lp.display(),
                valid = scan.valid_len,
                file_len,
                "sealed segment is damaged; reads that start at or past the damage in it fail"
            );
            size = file_len;
        } else if scan.valid_len < file_len {
            let q = cut_to_quarantine(&log, &lp, scan.valid_len, io)?;
            tracing::warn!(
                topic = %label.topic,
                partition = label.partition,
                segment = %lp.display(),
                valid = scan.valid_len,
                file_len,
                next_offset = scan.next_offset,
                quarantine = %q.as_deref().unwrap_or(Path::new("")).display(),
                "cut a torn or corrupt segment tail into a quarantine file"
            );
        }
        let mut off_bytes = scan.offset_entries.clone();
        let mut time_bytes = scan.time_entries.clone();
        if !recover {
            if let (Some(o), Some(t)) = (
                IndexFile::read_trimmed(&ip, OFFSET_ENTRY),
                IndexFile::read_trimmed(&tp, TIME_ENTRY),
            ) {
                if indexes_valid(&o, &t, scan.valid_len)
                    && o == scan.offset_entries
                    && t == scan.time_entries
                {
                    off_bytes = o;
                    time_bytes = t;
                } else {
                    tracing::warn!(segment = %lp.display(), "rebuilding damaged indexes");
                }
            } else {
                tracing::warn!(segment = %lp.display(), "rebuilding missing indexes");
            }
        }
        let entries = if active {
            (index_bytes / OFFSET_ENTRY).max(off_bytes.len() / OFFSET_ENTRY + 1)
        } else {
            off_bytes.len() / OFFSET_ENTRY
        };
        let mut offset =
            IndexFile::create(&ip, OFFSET_ENTRY, entries * OFFSET_ENTRY, io, &off_bytes)?;
        let mut time = IndexFile::create(&tp, TIME_ENTRY, entries * TIME_ENTRY, io, &time_bytes)?;
        if !active {
            offset.trim()?;
            time.trim()?;
        }
        Ok(Segment {
            base,
            log_path: lp,
            log,
            size: AtomicU64::new(size),
            damaged,
            gaps,
            sealed: std::sync::OnceLock::new(),
            next_offset: AtomicI64::new(scan.next_offset),
            max_ts: AtomicI64::new(scan.max_ts),
            created_ms: AtomicI64::new(scan.first_append_time.unwrap_or(now)),
            indexes: RwLock::new(Indexes {
                offset,
                time,
                bytes_since_entry: scan.bytes_since_entry,
            }),
        })
    }

    /// The segment that replaces `old` once its cleaned copy `c` has been renamed to the
    /// final names (`log_path` for the log): same base offset, same end (its last batches may
    /// be gone, the offsets it spans are not), the survivors' sizes and timestamps.
    pub fn cleaned(old: &Segment, c: crate::cleaner::CleanedFiles, log_path: PathBuf) -> Segment {
        Segment {
            base: old.base,
            log_path,
            log: c.log,
            size: AtomicU64::new(c.size),
            next_offset: AtomicI64::new(old.next_offset.load(Ordering::Acquire)),
            max_ts: AtomicI64::new(c.max_ts),
            created_ms: AtomicI64::new(old.created_ms.load(Ordering::Acquire)),
            indexes: RwLock::new(Indexes {
                offset: c.offset_index,
                time: c.time_index,
                bytes_since_entry: c.bytes_since_entry,
            }),
            damaged: false,
            gaps: true,
            sealed: std::sync::OnceLock::new(),
        }
    }

    /// The segment's log as shared bytes borrowed from a read-only memory mapping of at
    /// least `min_len` bytes (made on the first call; later calls reuse it), or `None` when
    /// it cannot be mapped. Only bytes below the committed size may be read from it: the
    /// mapping may reach past the end of the file, whose committed part never shrinks while
    /// the store runs.
    pub fn view(&self, min_len: u64) -> Option<Bytes> {
        self.sealed
            .get_or_init(|| {
                let len = self.size().max(min_len) as usize;
                if len == 0 {
                    return None;
                }
                // SAFETY: the store never shortens a segment below its committed size while
                // open, and readers touch only committed bytes.
                let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.log) }.ok()?;
                let _ = map.advise(memmap2::Advice::Sequential);
                Some(Bytes::from_owner(MapOwner(map)))
            })
            .clone()
    }

    /// Drops this process's page-table entries for the segment's mapping, so that pages
    /// read through it stop counting in the process's resident memory (the page cache keeps
    /// them; a later read faults them back in). Readers holding slices are not affected:
    /// the mapping is read-only and the file's committed bytes never change.
    pub fn release_mapped_pages(&self) {
        if let Some(Some(map)) = self.sealed.get() {
            // SAFETY: the range is exactly a live read-only file mapping of ours.
            unsafe {
                libc::madvise(
                    map.as_ptr() as *mut libc::c_void,
                    map.len(),
                    libc::MADV_DONTNEED,
                );
            }
        }
    }

    /// Committed size in bytes.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// True when the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }

    /// File position of the batch to start a scan at for `offset`: the last indexed batch at
    /// or before it, or the segment start.
    pub fn position_for(&self, offset: i64) -> u64 {
        let rel = (offset - self.base).clamp(0, u32::MAX as i64) as u32;
        let ix = self.indexes.read();
        match ix
            .offset
            .last_where(|e| index::read_offset_entry(e).0 <= rel)
        {
            Some(i) => index::read_offset_entry(ix.offset.get(i)).1 as u64,
            None => 0,
        }
    }

    /// File position and base offset of the batch to start a scan at for `offset`: the
    /// last indexed batch at or before it, or the segment start.
    pub fn entry_for(&self, offset: i64) -> (u64, i64) {
        let rel = (offset - self.base).clamp(0, u32::MAX as i64) as u32;
        let ix = self.indexes.read();
        match ix
            .offset
            .last_where(|e| index::read_offset_entry(e).0 <= rel)
        {
            Some(i) => {
                let (r, p) = index::read_offset_entry(ix.offset.get(i));
                (p as u64, self.base + r as i64)
            }
            None => (0, self.base),
        }
    }

    /// File position of a batch from which a scan for the first timestamp `>= ts` may start:
    /// every record before it has a smaller timestamp.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let ix = self.indexes.read();
        match ix.time.last_where(|e| index::read_time_entry(e).0 < ts) {
            Some(i) => index::read_offset_entry(ix.offset.get(i)).1 as u64,
            None => 0,
        }
    }

    /// Records the index entries for a batch about to be written at `pos`. Returns false
    /// when the indexes are full (the caller rolls first).
    pub fn index_batch(&self, pos: u64, base_offset: i64, len: u64, interval: u64) -> bool {
        let mut ix = self.indexes.write();
        if pos > 0 && ix.bytes_since_entry >= interval {
            if ix.offset.is_full() || ix.time.is_full() {
                return false;
            }
            let rel = (base_offset - self.base) as u32;
            let max_ts = self.max_ts.load(Ordering::Acquire);
            ix.offset.push(&index::offset_entry(rel, pos as u32));
            ix.time.push(&index::time_entry(max_ts, rel));
            ix.bytes_since_entry = 0;
        }
        ix.bytes_since_entry += len;
        true
    }

    /// True when the next indexed batch would not fit in the indexes.
    pub fn index_full(&self, interval: u64) -> bool {
        let ix = self.indexes.read();
        ix.bytes_since_entry >= interval && (ix.offset.is_full() || ix.time.is_full())
    }

    /// Shrinks the indexes to their entries (sealing the segment, or closing).
    pub fn trim_indexes(&self) -> LogResult<()> {
        let mut ix = self.indexes.write();
        ix.offset.trim()?;
        ix.time.trim()
    }

    /// True when a batch at `base_offset` may follow one that ended just before `expect`:
    /// exactly there, or later in a segment the cleaner may have rewritten.
    pub fn in_sequence(&self, base_offset: i64, expect: i64) -> bool {
        base_offset == expect || (self.gaps && base_offset > expect)
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) {
        let s = stem(self.base);
        let dir = self
            .log_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for ext in ["log", "index", "timeindex"] {
            let _ = std::fs::remove_file(dir.join(format!("{s}.{ext}")));
        }
    }
}
