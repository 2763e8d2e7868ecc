//! The log cleaner's files and tools (compaction of a partition is in
//! `partition/compaction.rs`): the "cleaned up to" checkpoint, the recovery of a segment
//! swap a crash interrupted, a bounded sequential reader of a segment's batches, the writer
//! of a cleaned segment, and the cleaner's counters. See docs/log-format.md, "Compaction".

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{LogError, LogResult};
use crate::index::{self, IndexFile, OFFSET_ENTRY, TIME_ENTRY};
use crate::io::{sync_dir, Io};
use crate::segment::{read_at, stem};

/// Name of a partition's cleaner checkpoint file.
pub const CHECKPOINT: &str = "cleaner.checkpoint";

/// Bytes of one read of the cleaner (and of its write buffer).
const WINDOW: usize = 1 << 20;

/// A partition's cleaner checkpoint (`cleaner.checkpoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Offsets below it were cleaned: the next compaction's key map starts here.
    pub cleaned_to: i64,
    /// No segment at or past it was ever rewritten by the cleaner: those hold every offset
    /// they span, which opening checks (saved before a swap, so a crash cannot outrun it).
    pub gaps_below: i64,
}

/// The partition's checkpoint, if a good one exists. A missing or damaged file (logged) is
/// `None`: compaction starts over from the log start, which is always correct, only slower.
pub fn read_checkpoint(dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(CHECKPOINT);
    let data = std::fs::read(&path).ok()?;
    let field = |at: usize| i64::from_le_bytes(data[at..at + 8].try_into().unwrap_or_default());
    let good = data.len() == 20 && crc32fast::hash(&data[..16]).to_le_bytes() == data[16..20];
    if !good || field(0) < 0 || field(8) < 0 {
        tracing::warn!(file = %path.display(), "damaged cleaner checkpoint; ignoring it");
        return None;
    }
    Some(Checkpoint {
        cleaned_to: field(0),
        gaps_below: field(8),
    })
}

/// Saves the partition's checkpoint: written to a temporary file, synced, renamed over the
/// old one and the directory synced, so a crash leaves the old or the new.
pub fn write_checkpoint(dir: &Path, io: &Io, c: Checkpoint) -> LogResult<()> {
    let path = dir.join(CHECKPOINT);
    let tmp = dir.join(format!("{CHECKPOINT}.tmp"));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut out = c.cleaned_to.to_le_bytes().to_vec();
    out.extend_from_slice(&c.gaps_below.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    let f = File::create(&tmp).map_err(|e| LogError::io(ctx("creating"), e))?;
    io.write_at(&f, &out, 0)
        .map_err(|e| LogError::io(ctx("writing"), e))?;
    io.sync_data(&f)
        .map_err(|e| LogError::io(ctx("syncing"), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| LogError::io(ctx("renaming"), e))?;
    sync_dir(io, dir).map_err(|e| LogError::io(format!("syncing {}", dir.display()), e))
}

/// Finishes or undoes the segment swaps a crash interrupted in a partition directory, before
/// its segments are opened (see docs/log-format.md, "Compaction"):
/// - `<base>.log.swap` is a complete cleaned segment (synced before it got the name): it
///   replaces `<base>.log`, and `<base>.log.deleted` goes;
/// - `<base>.log.deleted` without a `<base>.log` is the old segment whose replacement never
///   got its name: it is put back; with one, it is removed;
/// - every `*.cleaned` file is an unfinished cleaning: removed.
///
/// Afterwards every segment is either as before its cleaning or cleaned, never both.
pub fn recover_swaps(dir: &Path, io: &Io) -> LogResult<()> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|e| {
            LogError::io(
                format!("renaming {} to {}", from.display(), to.display()),
                e,
            )
        })
    };
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(".log.swap")) {
        let stem = &name[..name.len() - ".log.swap".len()];
        let log = dir.join(format!("{stem}.log"));
        rename(&dir.join(name), &log)?;
        let _ = std::fs::remove_file(dir.join(format!("{stem}.log.deleted")));
        tracing::warn!(segment = %log.display(), "finished a segment swap the cleaner left");
        changed = true;
    }
    for name in names.iter().filter(|n| n.ends_with(".log.deleted")) {
        let stem = &name[..name.len() - ".log.deleted".len()];
        let (deleted, log) = (dir.join(name), dir.join(format!("{stem}.log")));
        if !deleted.exists() {
            continue;
        }
        if log.exists() {
            std::fs::remove_file(&deleted)
                .map_err(|e| LogError::io(format!("removing {}", deleted.display()), e))?;
        } else {
            rename(&deleted, &log)?;
            tracing::warn!(segment = %log.display(), "undid a segment swap the cleaner left");
        }
        changed = true;
    }
    for name in names.iter().filter(|n| n.ends_with(".cleaned")) {
        let path = dir.join(name);
        std::fs::remove_file(&path)
            .map_err(|e| LogError::io(format!("removing {}", path.display()), e))?;
        changed = true;
    }
    if changed {
        sync_dir(io, dir).map_err(|e| LogError::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

/// The cleaner's work since the store opened, for the store's metrics.
#[derive(Debug, Default)]
pub struct CleanerMetrics {
    pub runs: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_removed: AtomicU64,
}

impl CleanerMetrics {
    /// Counts one cleaning run and what it did.
    pub fn add(&self, s: &broker_api::CompactionStats) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(s.bytes_read, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(s.bytes_written, Ordering::Relaxed);
        self.records_removed
            .fetch_add(s.records_removed, Ordering::Relaxed);
    }
}

/// A stored batch read by [`BatchReader`].
pub struct ReadBatch {
    pub header: BatchHeader,
    /// The whole batch (a slice of the reader's window).
    pub bytes: Bytes,
}

/// Reads the batches of a segment file one after the other, through a window of at most
/// 1 MiB (or one batch, when larger): never the whole segment in memory. Every batch's CRC is
/// checked, so the cleaner never rewrites damaged bytes under a fresh CRC.
pub struct BatchReader<'a> {
    file: &'a File,
    path: &'a Path,
    pos: u64,
    end: u64,
    window: Bytes,
    window_start: u64,
    /// The offset after the last batch read (a batch must not start before it).
    next_offset: i64,
    /// Bytes of the batches read so far.
    pub bytes_read: u64,
}

impl<'a> BatchReader<'a> {
    /// A reader of the first `end` bytes of `file` (named `path` in errors).
    pub fn new(file: &'a File, path: &'a Path, end: u64) -> BatchReader<'a> {
        BatchReader {
            file,
            path,
            pos: 0,
            end,
            window: Bytes::new(),
            window_start: 0,
            next_offset: 0,
            bytes_read: 0,
        }
    }

    fn corrupt(&self, what: &str) -> LogError {
        LogError::Corrupt(format!(
            "{what} at byte {} of {}",
            self.pos,
            self.path.display()
        ))
    }

    /// The `n` bytes at the current position, reading a new window when needed.
    fn bytes(&mut self, n: usize) -> LogResult<Bytes> {
        let in_window = self.pos >= self.window_start
            && self.pos + n as u64 <= self.window_start + self.window.len() as u64;
        if !in_window {
            let want = (n.max(WINDOW) as u64).min(self.end - self.pos) as usize;
            self.window = read_at(self.file, self.pos, want)
                .map_err(|e| LogError::io(format!("reading {}", self.path.display()), e))?;
            self.window_start = self.pos;
        }
        let at = (self.pos - self.window_start) as usize;
        Ok(self.window.slice(at..at + n))
    }

    /// The next batch, `None` at the end; `Corrupt` (naming the file and byte) for a batch
    /// that is torn, malformed, out of sequence or fails its CRC.
    pub fn next_batch(&mut self) -> LogResult<Option<ReadBatch>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        if self.pos + HEADER_LEN as u64 > self.end {
            return Err(self.corrupt("truncated batch"));
        }
        let hb = self.bytes(HEADER_LEN)?;
        let Some(header) = BatchHeader::parse(&hb) else {
            return Err(self.corrupt("bad batch header"));
        };
        if header.base_offset < self.next_offset {
            return Err(self.corrupt("batch out of sequence"));
        }
        let total = header.total_len();
        if self.pos + total as u64 > self.end {
            return Err(self.corrupt("batch runs past the segment end"));
        }
        let bytes = self.bytes(total)?;
        if !batch::crc_ok(&bytes, &header) {
            return Err(self.corrupt("batch CRC mismatch"));
        }
        self.pos += total as u64;
        self.bytes_read += total as u64;
        self.next_offset = header.last_offset() + 1;
        Ok(Some(ReadBatch { header, bytes }))
    }
}

/// Paths of the files of a cleaned segment: `<base>.<ext>.cleaned`.
pub fn cleaned_path(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{}.{ext}.cleaned", stem(base)))
}

/// A cleaned segment written and synced, with its indexes: ready to be swapped in.
#[derive(Debug)]
pub struct CleanedFiles {
    pub base: i64,
    /// `<base>.log.cleaned`, open for reading and writing.
    pub log: File,
    pub size: u64,
    /// Largest record timestamp of the survivors (`i64::MIN` when none).
    pub max_ts: i64,
    /// `<base>.index.cleaned` and `<base>.timeindex.cleaned`, trimmed.
    pub offset_index: IndexFile,
    pub time_index: IndexFile,
    pub bytes_since_entry: u64,
}

impl CleanedFiles {
    /// Removes the files (a swap that was not made).
    pub fn discard(self, dir: &Path) {
        for ext in ["log", "index", "timeindex"] {
            let _ = std::fs::remove_file(cleaned_path(dir, self.base, ext));
        }
    }
}

/// Writes the cleaned copy of one segment. Batches the cleaner keeps as they are cost
/// nothing until the first change: the file is created then, and the unchanged prefix copied
/// from the old segment; a segment with no change writes nothing at all. The index entries
/// are built as `segment::scan` would build them from the new file.
pub struct CleanedWriter<'a> {
    dir: &'a Path,
    base: i64,
    io: &'a Io,
    interval: u64,
    /// The old segment, for the unchanged prefix.
    old: &'a File,
    old_path: &'a Path,
    /// The new file, once something changed.
    file: Option<File>,
    buf: Vec<u8>,
    /// Bytes flushed to the new file.
    flushed: u64,
    /// Bytes of the new segment so far (written or not).
    size: u64,
    max_ts: i64,
    since_entry: u64,
    offset_entries: Vec<u8>,
    time_entries: Vec<u8>,
    /// Bytes written to the new file (the unchanged prefix included).
    pub bytes_written: u64,
}

impl<'a> CleanedWriter<'a> {
    /// A writer of the cleaned copy of the segment at `base` (`old`, at `old_path`).
    pub fn new(
        dir: &'a Path,
        base: i64,
        io: &'a Io,
        interval: u64,
        old: &'a File,
        old_path: &'a Path,
    ) -> CleanedWriter<'a> {
        CleanedWriter {
            dir,
            base,
            io,
            interval,
            old,
            old_path,
            file: None,
            buf: Vec::new(),
            flushed: 0,
            size: 0,
            max_ts: i64::MIN,
            since_entry: 0,
            offset_entries: Vec::new(),
            time_entries: Vec::new(),
            bytes_written: 0,
        }
    }

    /// Index entries for a batch of `len` bytes about to take position `self.size`.
    fn account(&mut self, h: &BatchHeader, len: u64) {
        if self.size > 0 && self.since_entry >= self.interval {
            let rel = (h.base_offset - self.base) as u32;
            self.offset_entries
                .extend_from_slice(&index::offset_entry(rel, self.size as u32));
            self.time_entries
                .extend_from_slice(&index::time_entry(self.max_ts, rel));
            self.since_entry = 0;
        }
        self.since_entry += len;
        self.max_ts = self.max_ts.max(h.max_timestamp);
        self.size += len;
    }

    /// Creates the new file at the first change and copies the unchanged prefix into it.
    fn start(&mut self) -> LogResult<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let path = cleaned_path(self.dir, self.base, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
        self.file = Some(file);
        let mut at = 0u64;
        while at < self.size {
            let n = (self.size - at).min(WINDOW as u64) as usize;
            let chunk = read_at(self.old, at, n)
                .map_err(|e| LogError::io(format!("reading {}", self.old_path.display()), e))?;
            self.write_out(&chunk)?;
            at += n as u64;
        }
        Ok(())
    }

    /// Writes `bytes` at the end of the new file (through the buffer).
    fn write_out(&mut self, bytes: &[u8]) -> LogResult<()> {
        self.buf.extend_from_slice(bytes);
        self.bytes_written += bytes.len() as u64;
        if self.buf.len() >= WINDOW {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> LogResult<()> {
        let Some(f) = &self.file else { return Ok(()) };
        if self.buf.is_empty() {
            return Ok(());
        }
        let path = cleaned_path(self.dir, self.base, "log");
        self.io
            .write_at(f, &self.buf, self.flushed)
            .map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        if self.buf.capacity() > 2 * WINDOW {
            self.buf.shrink_to(WINDOW);
        }
        Ok(())
    }

    /// Keeps a batch of the old segment as it is.
    pub fn keep(&mut self, b: &ReadBatch) -> LogResult<()> {
        self.account(&b.header, b.bytes.len() as u64);
        if self.file.is_some() {
            self.write_out(&b.bytes)?;
        }
        Ok(())
    }

    /// Writes the rewritten copy of a batch (`bytes`, whose header is `h`).
    pub fn replace(&mut self, h: &BatchHeader, bytes: &[u8]) -> LogResult<()> {
        self.start()?;
        self.account(h, bytes.len() as u64);
        self.write_out(bytes)
    }

    /// Leaves a batch of the old segment out.
    pub fn remove(&mut self) -> LogResult<()> {
        self.start()
    }

    /// Syncs the new segment and writes its trimmed indexes; `None` when nothing changed
    /// (nothing was written).
    pub fn finish(mut self) -> LogResult<Option<CleanedFiles>> {
        if self.file.is_none() {
            return Ok(None);
        }
        self.flush()?;
        let log = self.file.take().expect("started above");
        let path = cleaned_path(self.dir, self.base, "log");
        self.io
            .sync_data(&log)
            .map_err(|e| LogError::io(format!("syncing {}", path.display()), e))?;
        let make = |ext: &str, entry: usize, bytes: &[u8]| -> LogResult<IndexFile> {
            let p = cleaned_path(self.dir, self.base, ext);
            let mut ix = IndexFile::create(&p, entry, bytes.len(), self.io, bytes)?;
            ix.trim()?;
            Ok(ix)
        };
        let offset_index = make("index", OFFSET_ENTRY, &self.offset_entries)?;
        let time_index = make("timeindex", TIME_ENTRY, &self.time_entries)?;
        Ok(Some(CleanedFiles {
            base: self.base,
            log,
            size: self.size,
            max_ts: self.max_ts,
            offset_index,
            time_index,
            bytes_since_entry: self.since_entry,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_damage_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io::default();
        assert_eq!(read_checkpoint(dir.path()), None);
        let c = Checkpoint {
            cleaned_to: 1234,
            gaps_below: 2000,
        };
        write_checkpoint(dir.path(), &io, c).unwrap();
        assert_eq!(read_checkpoint(dir.path()), Some(c));
        std::fs::write(dir.path().join(CHECKPOINT), b"garbage").unwrap();
        assert_eq!(read_checkpoint(dir.path()), None);
    }

    #[test]
    fn recovery_finishes_swaps_and_undoes_half_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let w = |name: &str, data: &str| std::fs::write(d.join(name), data).unwrap();
        let r = |name: &str| std::fs::read_to_string(d.join(name)).ok();
        // Base 0: swapped in, the old one renamed away; base 5: only the old one renamed
        // away; base 9: an unfinished cleaning.
        w("00000000000000000000.log.swap", "new0");
        w("00000000000000000000.log.deleted", "old0");
        w("00000000000000000005.log.deleted", "old5");
        w("00000000000000000009.log", "old9");
        w("00000000000000000009.log.cleaned", "new9");
        w("00000000000000000009.index.cleaned", "");
        recover_swaps(d, &Io::default()).unwrap();
        assert_eq!(r("00000000000000000000.log").as_deref(), Some("new0"));
        assert_eq!(r("00000000000000000005.log").as_deref(), Some("old5"));
        assert_eq!(r("00000000000000000009.log").as_deref(), Some("old9"));
        let left: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".log"))
            .collect();
        assert!(left.is_empty(), "left over: {left:?}");
    }
}
